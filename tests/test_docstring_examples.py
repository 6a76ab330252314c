"""The `Example:` blocks of the layers' docstrings run as doctests (tiny shapes)."""
import doctest

import pytest

from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.extract import HardExtract, SoftExtract
from power_bert_tf.model.significance import SignificanceScore


@pytest.mark.parametrize("layer", [SignificanceScore, SoftExtract, HardExtract, BertEncoder],
                         ids=lambda layer: layer.__name__)
def test_the_docstring_example_runs(layer):
    tests = doctest.DocTestFinder(recurse=False).find(layer, globs={layer.__name__: layer})
    assert len(tests) == 1 and "Example:" in layer.__doc__ and tests[0].examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(tests[0])
    result = runner.summarize(verbose=False)
    assert result.attempted == len(tests[0].examples) and result.failed == 0
