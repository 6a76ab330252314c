"""--phase=predict streams its split: bounded memory, progress, atomic output."""
import re
import tracemalloc

import keras
import pytest

from power_bert_tf.data.tasks import CustomTaskSpec
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.pipeline import phases
from tiny_task import tiny_config, tiny_run_config, write_tiny_model, write_tiny_task

ROWS = 200_000
WORDS = ["the film was good", "a dull , boring plot", "fine", "the actor is superb and fun"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model folder, a retrained (Hard-Extract) model in place, and a
    200,000-line test file (about 4 MB)."""
    root = tmp_path_factory.mktemp("predict")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=8, dev=8)
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(**tiny_config().to_dict(), extract="hard", retention=[8, 6, 4],
                          sequence_length=16)
    classifier = BertClassifier(encoder, 2)
    (root / "out" / "custom" / "retrain").mkdir(parents=True)
    classifier.save(root / "out" / "custom" / "retrain" / "model.keras")
    test = root / "data" / "test.tsv"
    with test.open("w") as file:
        file.write("text\n")
        for index in range(ROWS):
            file.write(f"{WORDS[index % len(WORDS)]} {index}\n")
    return {"model": model, "train": train, "dev": dev, "test": test, "root": root}


def config(setup, **overrides):
    custom = CustomTaskSpec(train_file=str(setup["train"]), dev_file=str(setup["dev"]),
                            test_file=str(setup["test"]), text_a_column="text",
                            label_column="label", labels=("neg", "pos"))
    return tiny_run_config(setup["model"], setup["train"], setup["dev"], setup["root"] / "out",
                           **{"phase": "predict", "predict_split": "test",
                              "eval_batch_size": 1024, "custom": custom, **overrides})


def test_a_200000_line_file_is_streamed_with_progress(setup, capsys):
    tracemalloc.start()
    try:
        result = phases.run(config(setup, overwrite=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["count"] == ROWS
    out = capsys.readouterr().out
    progress = re.findall(r"predicted (\d+) rows", out)
    assert len(progress) >= 3 and progress[-1] == str(ROWS), out
    # Holding the rows would take tens of MB of Python objects; streaming keeps the
    # Python heap (tracemalloc: not TensorFlow's buffers) small.
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    path = setup["root"] / "out" / "custom" / "predict" / "test_predictions.tsv"
    with path.open() as file:
        assert next(file) == "index\tprediction\n"
        count = 0
        for count, line in enumerate(file, start=1):
            index, label = line.rstrip("\n").split("\t")
            assert label in ("neg", "pos")
        assert int(index) == ROWS - 1 and count == ROWS
    assert not list(path.parent.glob("*.partial"))


def test_output_is_atomic(setup, monkeypatch):
    """A run that fails part-way leaves neither a partial nor a half-written file."""
    bad = setup["root"] / "data" / "bad_test.tsv"
    bad.write_text("text\n" + "a fine film\n" * 3000 + "\n".join(["x\ty"]) + "\n")
    custom = CustomTaskSpec(train_file=str(setup["train"]), dev_file=str(setup["dev"]),
                            test_file=str(bad), text_a_column="text", label_column="label",
                            labels=("neg", "pos"))
    with pytest.raises(PowerBertError, match=r"bad_test.tsv:3002: expected 1 columns"):
        phases.run(config(setup, custom=custom, overwrite=True))
    predict_dir = setup["root"] / "out" / "custom" / "predict"
    assert sorted(p.name for p in predict_dir.iterdir()) == []
