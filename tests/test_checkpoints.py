"""Files: corrupt models and checkpoints, the phase-folder lock, a worker's shadow folder."""
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.training.checkpoints import (RUN_FILE, TrainingState, load_model,
                                                prepare_phase_dir)
from tiny_task import tiny_config, write_tiny_model, write_tiny_task

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    BertClassifier(BertEncoder(**tiny_config().to_dict(), sequence_length=16), 2).save(path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_model_file_is_one_line_naming_it(saved_model, tmp_path, damage):
    data = saved_model.read_bytes()
    broken = {"truncated": data[:len(data) // 2], "garbage": b"not a keras file" * 10,
              "empty": b""}[damage]
    path = tmp_path / "model.keras"
    path.write_bytes(broken)
    with pytest.raises(PowerBertError) as info:
        load_model(path, "finetune")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is truncated or corrupt")
    assert "rerun --phase=finetune --overwrite" in message


def _state(directory: Path, value: float):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.layers[0].kernel.assign(np.full((3, 2), value, "float32"))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return model, TrainingState(directory, model, [optimizer])


def _corrupt(directory: Path, epoch: int) -> None:
    data = directory / f"ckpt-{epoch}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:40])


def test_resume_falls_back_past_a_corrupt_last_checkpoint(tmp_path, capsys):
    model, state = _state(tmp_path, 1.0)
    state.save(1, 0.5)
    model.layers[0].kernel.assign(np.full((3, 2), 2.0, "float32"))
    state.save(2, 0.7)
    _corrupt(tmp_path, 2)

    model, state = _state(tmp_path, 0.0)
    assert state.restore()
    assert int(state.epoch.numpy()) == 1 and float(state.best.numpy()) == 0.5
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.full((3, 2), 1.0))
    assert f"checkpoint {tmp_path / 'ckpt-2'} cannot be restored" in capsys.readouterr().out

    _corrupt(tmp_path, 1)
    _, state = _state(tmp_path, 0.0)
    with pytest.raises(PowerBertError, match=r"checkpoint .*ckpt-2 cannot be restored .* no "
                                             r"earlier one can either"):
        state.restore()


def test_a_checkpoint_of_another_shape_is_one_line(tmp_path):
    _, state = _state(tmp_path, 1.0)
    state.save(1, 0.5)
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(other.trainable_variables)
    with pytest.raises(PowerBertError, match="ckpt-1 cannot be restored"):
        TrainingState(tmp_path, other, [optimizer]).restore()


def test_a_second_run_into_a_locked_folder_refuses_at_once(tmp_path):
    phase = tmp_path / "custom" / "finetune"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'custom' / '.finetune.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        (tmp_path / "custom").mkdir()
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(PowerBertError, match=rf"{phase} is in use by another run \(lock "):
            prepare_phase_dir(phase, resume=False, overwrite=True)
        assert time.monotonic() - start < 1
        assert not phase.exists()  # nothing written, nothing removed
    finally:
        holder.kill()
        holder.wait()
    prepare_phase_dir(phase, resume=False, overwrite=True)  # released with its process
    prepare_phase_dir(phase, resume=True, overwrite=False)  # this process holds it: fine
    lock = os.open(tmp_path / "custom" / ".finetune.lock", os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(lock)


def test_a_non_chief_shadow_checks_the_chief_folder_and_copies_it_to_resume(tmp_path):
    chief, shadow = tmp_path / "chief" / "search", tmp_path / "shadow" / "search"
    (chief / "state").mkdir(parents=True)
    (chief / "state" / "checkpoint").write_text("x")
    with pytest.raises(PowerBertError, match=f"{chief} holds an unfinished run"):
        prepare_phase_dir(shadow, resume=False, overwrite=False, chief_dir=chief)
    prepare_phase_dir(shadow, resume=True, overwrite=False, chief_dir=chief)
    assert (shadow / "state" / "checkpoint").read_text() == "x"
    assert not (tmp_path / "chief" / ".search.lock").exists()  # only the chief locks
    (chief / RUN_FILE).write_text("{}")
    with pytest.raises(PowerBertError, match=f"{chief} holds a finished run"):
        prepare_phase_dir(shadow, resume=True, overwrite=False, chief_dir=chief)
    prepare_phase_dir(shadow, resume=False, overwrite=True, chief_dir=chief)
    assert chief.exists() and list(shadow.iterdir()) == []  # the chief's is left alone


def test_run_glue_names_a_corrupt_model(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    train, dev = write_tiny_task(tmp_path / "data", train=8, dev=8)
    finetune = tmp_path / "out" / "custom" / "finetune"
    finetune.mkdir(parents=True)
    (finetune / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    (finetune / RUN_FILE).write_text(json.dumps({}))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_glue.py"), "--task=custom", f"--model={model}",
         f"--train_file={train}", f"--dev_file={dev}", "--text_a_column=text",
         "--label_column=label", "--labels=neg,pos", "--max_seq_length=16",
         f"--output_dir={tmp_path / 'out'}", "--phase=search"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {finetune / 'model.keras'} is truncated or corrupt "
                      + errors[0].partition("is truncated or corrupt ")[2]]
    assert "rerun --phase=finetune --overwrite" in errors[0]
