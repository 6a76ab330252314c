"""Distillation from the fine-tuned model: the losses against hand computations, the
teacher-target cache (reused, invalidated, atomic, rebuilt when corrupt or stale) and
the distilled retrain on the tiny task."""
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline import distill, phases
from power_bert_tf.pipeline.context import make_context
from power_bert_tf.training.distillation import (Distillation, kl_distillation_loss,
                                                 logit_distillation_loss,
                                                 pairwise_ranking_loss, teacher_pass,
                                                 teacher_ranking)
from tiny_task import tiny_run_config, write_tiny_model, write_tiny_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_distill")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=48, dev=16)
    return {"model": str(model), "train": str(train), "dev": str(dev), "root": root}


def make_config(tiny, output_dir, **overrides):
    return tiny_run_config(tiny["model"], tiny["train"], tiny["dev"], output_dir, **overrides)


@pytest.fixture(scope="module")
def finetuned_once(tiny):
    output = tiny["root"] / "finetuned"
    phases.run(make_config(tiny, output, phase="finetune", finetune_epochs=1))
    return output


@pytest.fixture
def finetuned(finetuned_once, tmp_path):
    shutil.copytree(finetuned_once, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_kl_loss_is_the_hand_computation():
    teacher = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], np.float32)
    student = np.array([[1.0, 0.0, 0.0], [1.0, -2.0, 0.5]], np.float32)
    labels = np.array([0, 2])
    t, alpha = 2.0, 0.3
    p, q = _softmax(teacher / t), _softmax(student / t)
    kl = (p * (np.log(p) - np.log(q))).sum(axis=-1)  # KL(teacher || student)
    np.testing.assert_allclose(kl_distillation_loss(teacher, student, t).numpy(), t * t * kl,
                               rtol=1e-5)
    ce = -np.log(_softmax(student)[np.arange(2), labels])
    combined = logit_distillation_loss(labels, student, teacher,
                                       Distillation("logits", t, alpha), regression=False)
    np.testing.assert_allclose(combined.numpy(), alpha * ce + (1 - alpha) * t * t * kl,
                               rtol=1e-5)
    # The direction matters: KL(student || teacher) is another number here.
    reverse = (q * (np.log(q) - np.log(p))).sum(axis=-1)
    assert not np.allclose(t * t * reverse, t * t * kl, rtol=1e-3)


def test_regression_loss_is_the_hand_computation():
    labels = np.array([1.0, 4.0], np.float32)
    student = np.array([[2.0], [3.5]], np.float32)
    teacher = np.array([[1.5], [5.0]], np.float32)
    loss = logit_distillation_loss(labels, student, teacher,
                                   Distillation("logits", temperature=2.0, alpha=0.25),
                                   regression=True)
    expected = 0.25 * (labels - student[:, 0]) ** 2 + 0.75 * (teacher[:, 0] - student[:, 0]) ** 2
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)  # no T^2 on regression


def test_pairwise_ranking_loss_is_the_hand_computation():
    scores = np.array([[5.0, 1.0, 3.0, 2.0, 9.0]], np.float32)
    positions = np.array([[0, 2, 3, 5, 7]])
    mask = np.array([[1, 1, 1, 1, 0]])  # position 7 is padding
    top = np.array([[3, 7, -1]])  # the teacher's top: position 3 (7 is not real here)
    # Pairs: t = position 3 (score 3) above u in {2 (score 1), 5 (score 2)}; [CLS] aside.
    expected = (np.log1p(np.exp(1.0 - 3.0)) + np.log1p(np.exp(2.0 - 3.0))) / 2
    loss = pairwise_ranking_loss(scores, positions, mask, top).numpy()
    np.testing.assert_allclose(loss, [expected], rtol=1e-6)
    no_pair = pairwise_ranking_loss(scores, positions, mask, np.array([[-1, -1, -1]]))
    assert no_pair.numpy().tolist() == [0.0]


def test_teacher_ranking_leaves_out_cls_and_padding():
    scores = np.array([[9.0, 1.0, 3.0, 3.0, 0.0], [4.0, 2.0, 0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    assert teacher_ranking(scores, mask, 4).tolist() == [[2, 3, 1, -1], [1, -1, -1, -1]]


def test_teacher_pass_is_the_models_inference(tiny, finetuned):
    ctx = make_context(make_config(tiny, finetuned, phase="retrain"))
    model = ctx.load_phase_model("finetune")
    features, _ = next(iter(ctx.dataset("train")))
    logits, scores = teacher_pass(model, False)(features)
    np.testing.assert_allclose(logits.numpy(), model(features, training=False).numpy(),
                               atol=1e-5)
    assert scores.shape == features["input_mask"].shape
    real = features["input_mask"].numpy().astype(bool)
    assert (scores.numpy()[real] > 0).all() and (scores.numpy()[~real] == 0).all()


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path).weights]


def _retrain(tiny, folder, **overrides):
    return phases.run(make_config(tiny, folder, **{
        "phase": "retrain", "retrain_epochs": 2, "retention_config": "8,6,4",
        "compare_after_retrain": False, **overrides}))


@pytest.mark.parametrize("mode", ["logits", "logits+ranking"])
def test_alpha_one_reproduces_the_plain_retrain(tiny, finetuned, tmp_path, mode):
    """alpha = 1 (and no ranking weight) trains exactly as --distill=none: same weights,
    same dev metrics every epoch."""
    other = tmp_path / "distilled"
    shutil.copytree(finetuned / "custom" / "finetune", other / "custom" / "finetune")
    plain = _retrain(tiny, finetuned)
    distilled = _retrain(tiny, other, distill=mode, distill_alpha=1.0, ranking_weight=0.0)
    assert distilled["dev"] == plain["dev"]
    history = [json.loads((folder / "custom" / "retrain" / "history.json").read_text())
               for folder in (finetuned, other)]
    assert [h["dev"] for h in history[0]] == [h["dev"] for h in history[1]]
    for a, b in zip(_weights(finetuned / "custom" / "retrain" / "model.keras"),
                    _weights(other / "custom" / "retrain" / "model.keras"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_distilled_retrain_learns_from_the_teacher(tiny, finetuned, tmp_path):
    other = tmp_path / "plain"
    shutil.copytree(finetuned / "custom" / "finetune", other / "custom" / "finetune")
    _retrain(tiny, other)
    result = _retrain(tiny, finetuned, distill="logits+ranking", ranking_weight=1.0,
                      ranking_top_k=4)
    assert result["distill"] == "logits+ranking"
    caches = list((finetuned / "custom" / "finetune" / "teacher_cache").glob("*.npz"))
    assert len(caches) == 1
    changed = [not np.array_equal(a, b) for a, b in zip(
        _weights(finetuned / "custom" / "retrain" / "model.keras"),
        _weights(other / "custom" / "retrain" / "model.keras"), strict=True)]
    assert any(changed)
    settings = json.loads((finetuned / "custom" / "retrain" / "settings.json").read_text())
    assert settings["distill"] == "logits+ranking" and settings["ranking_top_k"] == 4


def test_regression_retrain_distils(tiny, tmp_path):
    import csv
    import random

    from power_bert_tf.data.tasks import CustomTaskSpec
    from tiny_task import sentence

    rng = random.Random(1)
    for split, n in (("train", 24), ("dev", 8)):
        with (tmp_path / f"{split}.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["a", "score"])
            for i in range(n):
                writer.writerow([sentence(rng, i % 2), f"{(i % 6) * 1.0:.1f}"])
    custom = CustomTaskSpec(train_file=str(tmp_path / "train.csv"),
                            dev_file=str(tmp_path / "dev.csv"), text_a_column="a",
                            label_column="score", labels=None)
    phases.run(make_config(tiny, tmp_path / "out", phase="finetune", custom=custom,
                           finetune_epochs=1))
    result = phases.run(make_config(tiny, tmp_path / "out", phase="retrain", custom=custom,
                                    retrain_epochs=1, retention_config="8,6,4",
                                    compare_after_retrain=False, distill="logits+ranking"))
    assert set(result["dev"]) == {"spearman", "pearson"}


class _Counting:
    """Counts the teacher passes made (the cache's misses)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = distill.teacher_pass

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(distill, "teacher_pass", counted)


def _targets(tiny, folder, **overrides):
    return distill.teacher_targets(make_context(make_config(tiny, folder, phase="retrain",
                                                            distill="logits", **overrides)))


def test_the_teacher_cache_is_reused_and_invalidated(tiny, finetuned, monkeypatch, capsys):
    counting = _Counting(monkeypatch)
    first = _targets(tiny, finetuned)
    assert counting.calls == 1 and first.logits.shape == (48, 2)
    assert first.ranking.shape == (48, 15)  # N - 1 positions deep at N = 16
    again = _targets(tiny, finetuned, seed=7)  # another seed, the same data and teacher
    assert counting.calls == 1 and "teacher targets read from" in capsys.readouterr().out
    np.testing.assert_array_equal(again.logits, first.logits)

    subset = _targets(tiny, finetuned, max_train_examples=40)  # other data
    assert counting.calls == 2 and subset.path != first.path

    model_path = finetuned / "custom" / "finetune" / "model.keras"
    model = keras.saving.load_model(model_path)
    model.get_layer("logits").kernel.assign(model.get_layer("logits").kernel * 2.0)
    model.save(model_path)  # another teacher
    changed = _targets(tiny, finetuned)
    assert counting.calls == 3 and changed.path != first.path
    assert not np.allclose(changed.logits, first.logits)


def test_a_corrupt_or_stale_cache_is_rebuilt(tiny, finetuned, monkeypatch, capsys):
    counting = _Counting(monkeypatch)
    fresh = _targets(tiny, finetuned)
    path = fresh.path
    path.write_bytes(path.read_bytes()[:200])  # truncated
    rebuilt = _targets(tiny, finetuned)
    assert counting.calls == 2 and "is unreadable" in capsys.readouterr().out
    np.testing.assert_array_equal(rebuilt.logits, fresh.logits)

    with np.load(path) as data:  # the numbers changed, the checksum kept
        logits, ranking, meta = data["logits"] + 1.0, data["ranking"], data["meta"]
    np.savez(path, logits=logits, ranking=ranking, meta=meta)
    again = _targets(tiny, finetuned)
    assert counting.calls == 3 and "corrupt: its checksum fails" in capsys.readouterr().out
    np.testing.assert_array_equal(again.logits, fresh.logits)

    distill.write_cache(path, "another key", fresh.logits, fresh.ranking)  # stale
    stale = _targets(tiny, finetuned)
    assert counting.calls == 4 and "stale" in capsys.readouterr().out
    np.testing.assert_array_equal(stale.logits, fresh.logits)


def test_the_cache_is_written_atomically(tiny, finetuned, monkeypatch):
    fresh = _targets(tiny, finetuned)
    before = fresh.path.read_bytes()

    def dies(file, **arrays):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", dies)
    with pytest.raises(KeyboardInterrupt):
        distill.write_cache(fresh.path, "key", fresh.logits + 1, fresh.ranking)
    assert fresh.path.read_bytes() == before  # the old file whole, never the partial one
    assert not list(fresh.path.parent.glob("*.tmp"))  # and no partial file left
    monkeypatch.undo()
    assert _targets(tiny, finetuned).path == fresh.path


@pytest.mark.parametrize("overrides, message", [
    ({"distill": "kl"}, "--distill='kl' is not one of"),
    ({"distill": "logits", "distill_alpha": 1.5}, "--distill_alpha must be in [0, 1]"),
    ({"distill": "logits", "distill_temperature": 0.0}, "--distill_temperature must be > 0"),
    ({"distill": "logits+ranking", "ranking_top_k": 0}, "--ranking_top_k must be in [1, 64]"),
    ({"distill_search": True}, "--distill_search distils the search too"),
    ({"distill": "logits+ranking", "selection": "head"}, "--selection=head has none"),
])
def test_bad_distillation_flags_are_one_line_errors(tiny, tmp_path, overrides, message):
    with pytest.raises(PowerBertError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_config(tiny, tmp_path, **overrides)


def test_the_search_distils_with_distill_search(tiny, finetuned):
    result = phases.run(make_config(tiny, finetuned, phase="search", search_epochs=1,
                                    distill="logits+ranking", distill_search=True))
    assert len(result["retention"]) == 3
    assert list((finetuned / "custom" / "finetune" / "teacher_cache").glob("*.npz"))
    assert tf.executing_eagerly()


def test_ranking_distillation_in_the_relative_mode(tiny, finetuned, tmp_path):
    """Relative Hard-Extract marks the slots it masks out as position -1: the ranking
    loss leaves them out instead of gathering at -1."""
    other = tmp_path / "relative"
    shutil.copytree(finetuned / "custom" / "finetune", other / "custom" / "finetune")
    result = _retrain(tiny, other, retention_mode="relative", retention_config="0.6,0.4,0.2",
                      distill="logits+ranking", ranking_weight=1.0, ranking_top_k=4)
    assert result["distill"] == "logits+ranking" and result["retention_mode"] == "relative"
    assert np.isfinite(result["dev"]["accuracy"])
