"""The three phases end to end on a tiny BERT and a tiny task (seconds each)."""
import json
import shutil

import keras
import numpy as np
import pytest

from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.data.tasks import CustomTaskSpec
from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline import finetune as finetune_module
from power_bert_tf.pipeline import phases
from power_bert_tf.training.checkpoints import TrainingState
from tiny_task import sentence, tiny_run_config, write_tiny_model, write_tiny_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=64, dev=16)
    return {"model": str(model), "train": str(train), "dev": str(dev), "root": root}


def make_config(tiny, output_dir, **overrides) -> RunConfig:
    return tiny_run_config(tiny["model"], tiny["train"], tiny["dev"], output_dir, **overrides)


@pytest.fixture(scope="module")
def finetuned_once(tiny):
    """One epoch of fine-tuning, run once for the tests that start from it."""
    output = tiny["root"] / "finetuned"
    phases.run(make_config(tiny, output, phase="finetune", finetune_epochs=1))
    return output


@pytest.fixture
def finetuned(finetuned_once, tmp_path):
    """A copy of `finetuned_once` in this test's tmp_path (returned), as if it had run
    `--phase=finetune --finetune_epochs=1` there."""
    shutil.copytree(finetuned_once, tmp_path, dirs_exist_ok=True)
    return tmp_path


def read(path):
    return json.loads(path.read_text())


def test_all_phases_then_predict(tiny, tmp_path, capsys):
    """Fine-tune, then `--phase=all --resume`: the finished fine-tune is skipped and the
    other phases run."""
    phases.run(make_config(tiny, tmp_path, phase="finetune"))
    results = phases.run(make_config(tiny, tmp_path, resume=True))
    printed = capsys.readouterr().out
    assert "finetune: finished earlier" in printed
    task_dir = tmp_path / "custom"
    for phase in ("finetune", "search", "retrain", "evaluate"):
        run = read(task_dir / phase / "run.json")
        assert run["phase"] == phase and run["seed"] == 42 and run["wall_seconds"] >= 0
        assert run["config"]["max_seq_length"] == 16 and "tensorflow" in run["versions"]
    assert [h["epoch"] for h in read(task_dir / "finetune" / "history.json")] == [1, 2]

    search = read(task_dir / "search" / "retention.json")
    assert len(search["masses"]) == 3 and len(search["retention"]) == 3
    assert search["retention"] == sorted(search["retention"], reverse=True)
    first, second = (h["masses"] for h in read(task_dir / "search" / "history.json"))
    assert all(16 > a > b for a, b in zip(first, second)), "every mass(j) fell each epoch"

    retrained = keras.saving.load_model(task_dir / "retrain" / "model.keras")
    assert retrained.encoder.extract == "hard"
    assert retrained.encoder.retention == search["retention"]

    summary = results["evaluate"]
    assert summary["metric"] == "accuracy" and summary["speedup"] > 0
    epochs = {phase: len(read(task_dir / phase / "history.json"))
              for phase in ("finetune", "search", "retrain")}
    assert epochs["search"] >= 1 and epochs["retrain"] >= 1
    assert summary["training_epochs"] == {"baseline": epochs["finetune"], "power_bert": epochs}
    # the report says each model's training budget
    assert f"{epochs['finetune']} (fine-tune)" in printed
    assert (f"with {epochs['search'] + epochs['retrain']} more training epochs for "
            "PoWER-BERT: not a same-budget comparison") in printed
    assert summary["retention"] == search["retention"]
    assert set(summary["baseline"]) == {"dev", "seconds", "ms_per_batch", "timing"}
    for name in ("baseline", "power_bert"):  # 5 interleaved passes each, median reported
        timing = summary[name]["timing"]
        assert len(timing["seconds"]) == 5
        assert summary[name]["seconds"] == pytest.approx(timing["median_seconds"], abs=1e-3)
    spread = summary["speedup_spread"]
    assert spread["rounds"] == 5 and spread["min"] <= summary["speedup"] <= spread["max"]
    for setting in ("bucketed", "bucketed_sorted"):  # both served in length buckets too
        served = summary["served"][setting]
        assert served["buckets"] == [16] and served["speedup"]["rounds"] == 5
        assert len(served["baseline_timing"]["seconds"]) == 5 and served["flop_bound"] >= 1

    phases.run(make_config(tiny, tmp_path, phase="predict"))
    lines = (task_dir / "predict" / "dev_predictions.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 17
    assert {line.split("\t")[1] for line in lines[1:]} <= {"neg", "pos"}


@pytest.mark.slow
def test_finetune_learns_the_tiny_task(tiny, tmp_path):
    result = phases.run(make_config(tiny, tmp_path, phase="finetune", finetune_epochs=10,
                                    learning_rate=2e-3))
    assert result["dev"]["accuracy"] >= 0.75  # chance is 0.5


def test_retention_config_skips_the_search(tiny, finetuned):
    result = phases.run(make_config(tiny, finetuned, phase="retrain", retrain_epochs=1,
                                    retention_config="8,6,4"))
    assert result["retention"] == [8, 6, 4]
    assert result["word_vector_bound"] == pytest.approx(48 / 18, abs=1e-3)
    comparison = result["comparison"]  # printed at the end of --phase=retrain
    assert comparison["retention"] == [8, 6, 4]
    ratios = np.divide(comparison["baseline"]["timing"]["seconds"],
                       comparison["power_bert"]["timing"]["seconds"])
    assert comparison["speedup"] == pytest.approx(np.median(ratios), rel=2e-2)
    assert set(comparison["baseline"]["dev"]) == {"accuracy"}


@pytest.mark.parametrize("selection", ["head", "random"])
def test_static_baselines_retrain(tiny, finetuned, selection):
    result = phases.run(make_config(tiny, finetuned, phase="retrain", retrain_epochs=1,
                                    retention_config="8,6,4", selection=selection,
                                    compare_after_retrain=False))
    model = keras.saving.load_model(finetuned / "custom" / "retrain" / "model.keras")
    assert result["selection"] == model.encoder.selection == selection
    assert "comparison" not in result  # the evaluate phase that follows times it


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path).weights]


def run_killed_after_epoch_1(monkeypatch, config) -> None:
    """Runs `config` until its first epoch's state is saved, then kills it."""
    original_save = TrainingState.save

    def save_then_die(self, epoch, best):
        original_save(self, epoch, best)
        if epoch == 1:
            raise KeyboardInterrupt("killed after epoch 1")

    with monkeypatch.context() as patch:
        patch.setattr(TrainingState, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            phases.run(config)


def test_resume_after_a_kill_matches_an_unbroken_run(tiny, tmp_path, monkeypatch):
    phases.run(make_config(tiny, tmp_path / "unbroken", phase="finetune"))

    run_killed_after_epoch_1(monkeypatch,
                             make_config(tiny, tmp_path / "killed", phase="finetune"))
    # Stopped after epoch 1 of the same 2-epoch schedule: the first epoch of the unbroken
    # run (its learning rates, batches and dropout), not a 1-epoch schedule's.
    phases.run(make_config(tiny, tmp_path / "stopped", phase="finetune", finetune_stop_epoch=1))
    stopped = read(tmp_path / "stopped" / "custom" / "finetune" / "history.json")
    assert [h["epoch"] for h in stopped] == [1]
    for stopped_weight, killed_weight in zip(
            _weights(tmp_path / "stopped" / "custom" / "finetune" / "model.keras"),
            _weights(tmp_path / "killed" / "custom" / "finetune" / "model.keras")):
        np.testing.assert_allclose(stopped_weight, killed_weight, atol=1e-5)
    with pytest.raises(PowerBertError, match="holds an unfinished run; pass --resume"):
        phases.run(make_config(tiny, tmp_path / "killed", phase="finetune"))
    phases.run(make_config(tiny, tmp_path / "killed", phase="finetune", resume=True))

    history = read(tmp_path / "killed" / "custom" / "finetune" / "history.json")
    assert [h["epoch"] for h in history] == [1, 2]
    unbroken = read(tmp_path / "unbroken" / "custom" / "finetune" / "history.json")
    assert history[1]["train_loss"] == pytest.approx(unbroken[1]["train_loss"], rel=1e-4)
    for resumed, reference in zip(
            _weights(tmp_path / "killed" / "custom" / "finetune" / "model.keras"),
            _weights(tmp_path / "unbroken" / "custom" / "finetune" / "model.keras")):
        np.testing.assert_allclose(resumed, reference, atol=1e-5)


def test_a_phase_is_resumed_only_with_the_settings_it_was_begun_with(tiny, tmp_path,
                                                                     monkeypatch):
    """A resume with another schedule would go on from the state silently (a 2-epoch
    fine-tune killed after epoch 1, resumed with 1 epoch, would stop there): refused.
    What its training does not depend on may change."""
    run_killed_after_epoch_1(monkeypatch, make_config(tiny, tmp_path, phase="finetune"))
    folder = tmp_path / "custom" / "finetune"
    assert read(folder / "settings.json")["finetune_epochs"] == 2
    with pytest.raises(PowerBertError, match=r"finetune was begun with other settings: "
                       r"--seed=7 \(begun with 42\); --finetune_epochs=1 \(begun with 2\); "
                       r"resume with the flags"):
        phases.run(make_config(tiny, tmp_path, phase="finetune", finetune_epochs=1, seed=7,
                               resume=True))
    assert not (folder / "run.json").exists()
    phases.run(make_config(tiny, tmp_path, phase="finetune", resume=True, timing_repeats=1,
                           eval_batch_size=4, finetune_stop_epoch=2))
    assert [h["epoch"] for h in read(folder / "history.json")] == [1, 2]


def test_a_phase_is_resumed_only_from_the_model_it_began_from(tiny, finetuned, monkeypatch):
    """A search killed after an epoch, its fine-tuned model trained again since (another
    model): resumed, the search would mix the two; refused."""
    run_killed_after_epoch_1(monkeypatch,
                             make_config(tiny, finetuned, phase="search", search_epochs=2))
    source = finetuned / "custom" / "finetune" / "model.keras"
    assert read(finetuned / "custom" / "search" / "settings.json")["start_sha256"]
    phases.run(make_config(tiny, finetuned, phase="finetune", finetune_epochs=1, seed=3,
                           overwrite=True))
    with pytest.raises(PowerBertError, match=f"search was begun with other settings: {source} "
                       r"is not the model it began from \(trained again since\?\); resume"):
        phases.run(make_config(tiny, finetuned, phase="search", search_epochs=2, resume=True))


def test_a_finished_phase_is_not_overwritten_silently(tiny, finetuned):
    with pytest.raises(PowerBertError, match="holds a finished run; pass --overwrite"):
        phases.run(make_config(tiny, finetuned, phase="finetune", finetune_epochs=1))
    phases.run(make_config(tiny, finetuned, phase="finetune", finetune_epochs=1,
                           overwrite=True))


def test_collapsed_search_is_reported(tiny, finetuned):
    collapse = dict(mass_lambda=50.0, soft_extract_learning_rate=1.0, search_epochs=1)
    with pytest.raises(PowerBertError, match=r"search collapsed.*smaller --lambda \(now 50\)"):
        phases.run(make_config(tiny, finetuned, phase="search", **collapse))
    assert read(finetuned / "custom" / "search" / "retention.json")["retention"] == [1, 1, 1]
    with pytest.raises(PowerBertError, match="search collapsed"):
        phases.run(make_config(tiny, finetuned, phase="retrain", **collapse))


def test_checkpoint_from_another_model_shape(tiny, finetuned):
    wider = write_tiny_model(finetuned / "wider", hidden_size=48)
    with pytest.raises(PowerBertError,
                       match="has hidden_size=32 but --model .* has hidden_size=48"):
        phases.run(make_config(tiny, finetuned, phase="search", model=str(wider)))


def _write_glue_rte(folder, count, rng_seed):
    import random

    rng = random.Random(rng_seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", count), ("dev", count // 2)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            label = i % 2
            rows.append(f"{i}\t{sentence(rng, label)}\t{sentence(rng, 1 - label)}\t"
                        f"{['entailment', 'not_entailment'][label]}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")


def test_glue_pair_task_from_a_data_dir(tiny, tmp_path):
    _write_glue_rte(tmp_path / "glue" / "RTE", 24, 0)
    config = make_config(tiny, tmp_path / "out", task="RTE", custom=None, phase="finetune",
                         data_dir=str(tmp_path / "glue"), finetune_epochs=1)
    result = phases.run(config)
    assert set(result["dev"]) >= {"accuracy"}
    assert (tmp_path / "out" / "RTE" / "finetune" / "logs").is_dir()  # TensorBoard


def test_regression_task(tiny, tmp_path):
    import csv
    import random

    rng = random.Random(1)
    for split, n in (("train", 32), ("dev", 12)):
        with (tmp_path / f"{split}.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["a", "b", "score"])
            for i in range(n):
                writer.writerow([sentence(rng, i % 2), sentence(rng, 1), f"{(i % 6) * 1.0:.1f}"])
    custom = CustomTaskSpec(train_file=str(tmp_path / "train.csv"),
                            dev_file=str(tmp_path / "dev.csv"), text_a_column="a",
                            text_b_column="b", label_column="score", labels=None)
    result = phases.run(make_config(tiny, tmp_path / "out", phase="finetune", custom=custom,
                                    finetune_epochs=1))
    assert set(result["dev"]) == {"spearman", "pearson"}


def test_xla_compiled_training_step(tiny, finetuned):
    result = phases.run(make_config(tiny, finetuned, phase="search", search_epochs=1,
                                    jit_compile=True))
    # r trains under XLA too: one epoch (8 steps, r step 5e-2 decaying to 0) lowers each
    # r_j[i] by at most 0.225, so a mass falls from 16 to no less than 12.4.
    assert len(result["masses"]) == 3 and all(12.3 < m < 14 for m in result["masses"])


def test_init_checkpoint_starts_from_another_tasks_encoder(tiny, finetuned, tmp_path):
    """Intermediate-task transfer: RTE's fine-tune starts from the tiny task's encoder,
    with a classifier of its own."""
    source = keras.saving.load_model(finetuned / "custom" / "finetune" / "model.keras")
    _write_glue_rte(tmp_path / "glue" / "RTE", 24, 0)
    rte = dict(task="RTE", custom=None, data_dir=str(tmp_path / "glue"))
    seen = {}
    real_fit_phase = finetune_module.fit_phase

    def fit_phase(ctx, phase, model, groups, epochs, **kwargs):
        seen["encoder"] = [w.copy() for w in model.encoder.get_weights()]
        seen["start"] = kwargs["start"]
        return real_fit_phase(ctx, phase, model, groups, epochs, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune_module, "fit_phase", fit_phase)
        phases.run(make_config(tiny, tmp_path / "out", phase="finetune", finetune_epochs=1,
                               init_checkpoint=str(finetuned / "custom" / "finetune"), **rte))
    for started, loaded in zip(seen["encoder"], source.encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(started, loaded)
    run = read(tmp_path / "out" / "RTE" / "finetune" / "run.json")
    assert run["config"]["init_checkpoint"].endswith("finetune")
    # the folder named, its model.keras the start a --resume must find unchanged
    assert seen["start"] == finetuned / "custom" / "finetune" / "model.keras"

    with pytest.raises(PowerBertError, match="--init_checkpoint: no model.keras at"):
        phases.run(make_config(tiny, tmp_path / "other", phase="finetune",
                               init_checkpoint=str(tmp_path / "missing.keras"), **rte))
    wider = write_tiny_model(tmp_path / "wider", hidden_size=48)
    with pytest.raises(PowerBertError, match="has hidden_size=32 but --model .* has hidden_"):
        phases.run(make_config(tiny, tmp_path / "wide", phase="finetune", model=str(wider),
                               init_checkpoint=str(finetuned / "custom" / "finetune"), **rte))
    with pytest.raises(PowerBertError, match="--init_checkpoint starts the fine-tune phase"):
        make_config(tiny, tmp_path / "x", phase="search", init_checkpoint="a.keras")


def test_bfloat16_training_keeps_float32_variables_and_saves_float32(tiny, tmp_path,
                                                                      monkeypatch):
    """--train_precision=bf16: every training phase's encoder computes in bfloat16 with
    float32 variables, the logits stay float32, and the saved models load (and are
    evaluated) as float32."""
    from power_bert_tf.pipeline import fitting

    seen = []

    class Recording(fitting.Trainer):
        def __init__(self, model, *args, **kwargs):
            super().__init__(model, *args, **kwargs)
            attention = model.encoder.get_layer("layer_1_attention")
            seen.append({"encoder": model.encoder.dtype_policy.name,
                         "compute": attention.compute_dtype,
                         "logits": model.get_layer("logits").compute_dtype,
                         "variables": {v.dtype for v in model.trainable_variables}})

    monkeypatch.setattr(fitting, "Trainer", Recording)
    results = phases.run(make_config(tiny, tmp_path, train_precision="bf16",
                                     finetune_epochs=1, search_epochs=1, retrain_epochs=1))
    assert seen == 3 * [{"encoder": "mixed_bfloat16", "compute": "bfloat16",
                         "logits": "float32", "variables": {"float32"}}]
    assert keras.config.dtype_policy().name == "float32"
    for phase in ("finetune", "search", "retrain"):
        history = read(tmp_path / "custom" / phase / "history.json")
        assert np.isfinite(history[-1]["train_loss"])
        loaded = keras.saving.load_model(tmp_path / "custom" / phase / "model.keras")
        assert loaded.encoder.dtype_policy.name == "float32"
        assert {v.dtype for v in loaded.weights if "seed" not in v.path} == {"float32"}
    masses = read(tmp_path / "custom" / "search" / "history.json")[-1]["masses"]
    assert all(m < 16 for m in masses), "r trains under bfloat16 too"
    assert results["evaluate"]["speedup"] > 0
    assert read(tmp_path / "custom" / "finetune" / "run.json")["config"][
        "train_precision"] == "bf16"
    with pytest.raises(PowerBertError, match="--train_precision='fp16' is not one of fp32, bf16"):
        make_config(tiny, tmp_path / "x", train_precision="fp16")
