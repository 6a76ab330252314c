"""`import power_bert_tf` is light: TensorFlow loads only when a name needs it."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import power_bert_tf

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_import_does_not_load_tensorflow():
    done = _run("import sys, power_bert_tf\n"
                "heavy = sorted({'tensorflow', 'keras', 'numpy'} & set(sys.modules))\n"
                "assert not heavy, heavy\n"
                "assert 'BertEncoder' in dir(power_bert_tf)\n"
                "power_bert_tf.PowerBertError('light')\n"
                "assert 'tensorflow' not in sys.modules\n"
                "encoder = power_bert_tf.BertEncoder\n"
                "assert 'tensorflow' in sys.modules and encoder.__name__ == 'BertEncoder'")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("flags, message", [
    (["--task=SST-2", "--batch_size=0"], "error: --batch_size must be >= 1, got 0"),
    (["--task=SST-2", "--length_grouping=-2"], "error: --length_grouping=-2 must be >= 0"),
    (["--task=SST-2", "--finetune_epochs=4", "--finetune_stop_epoch=5"],
     "error: --finetune_stop_epoch=5 must be between 0 (off) and --finetune_epochs=4"),
    (["--task=SST-2", "--train_precision=fp16"],
     "flag --train_precision=fp16: value should be one of <fp32|bf16>"),
])
def test_a_bad_run_glue_flag_is_reported_before_tensorflow_loads(flags, message):
    """Flag mistakes cost the user no TensorFlow start-up (seconds)."""
    done = _run("import runpy, sys\n"
                f"sys.argv = ['run_glue.py', *{flags!r}]\n"
                "try:\n"
                "    runpy.run_path('run_glue.py', run_name='__main__')\n"
                "except SystemExit as exit:\n"
                "    assert exit.code == 1, exit.code\n"
                "heavy = sorted({'tensorflow', 'keras'} & set(sys.modules))\n"
                "assert not heavy, heavy\n")
    assert done.returncode == 0, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_experiment_modules_the_tests_import_load_in_one_process():
    """pytest-xdist may run any tests in one worker, so every experiments module a test
    imports must import beside the others: no two may define the same absl flag (a
    driver that defines its flags at import is run, not imported)."""
    imports = re.compile(r"^\s*from experiments(?:\.(\w+) import| import ([\w, ]+))", re.M)
    modules = set()
    for test in (REPO / "tests").glob("test_*.py"):
        for module, names in imports.findall(test.read_text()):
            modules.update([module] if module else [n.strip() for n in names.split(",")])
    assert {"analyses", "table2_runs", "ablation_figure"} <= modules, sorted(modules)
    done = _run("".join(f"import experiments.{m}\n" for m in sorted(modules)))
    assert done.returncode == 0, done.stderr[-2000:]


def test_all_lists_every_lazy_name():
    assert sorted(power_bert_tf.__all__) == sorted(["PowerBertError", *power_bert_tf._EXPORTS])


@pytest.mark.parametrize("name", power_bert_tf.__all__)
def test_every_public_name_resolves_to_its_definition(name):
    value = getattr(power_bert_tf, name)
    assert value.__name__ == name and value.__module__.startswith("power_bert_tf.")


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        power_bert_tf.Nope  # noqa: B018
    from_import = _run("from power_bert_tf import Nope")
    assert "ImportError: cannot import name 'Nope'" in from_import.stderr


def test_loading_a_classifier_registers_every_encoder():
    done = _run("import keras, power_bert_tf.model.classifier\n"
                "for name in ('BertClassifier', 'BertEncoder', 'AlbertEncoder', "
                "'SoftExtract', 'HardExtract', 'SignificanceScore'):\n"
                "    assert keras.saving.get_registered_object('power_bert_tf>' + name), name")
    assert done.returncode == 0, done.stderr


def test_every_relative_link_in_the_docs_resolves():
    """README.md and docs/*.md link files of the repository that exist (code is not
    read for links)."""
    import re

    root = Path(__file__).parents[1]

    def prose(page: Path) -> str:
        return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.S))

    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    links = [(page, target) for page in pages
             for target in re.findall(r"\]\(([^)#\s]+)", prose(page))]
    assert len(links) > 20
    broken = [f"{page.relative_to(root)}: {target}" for page, target in links
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken
