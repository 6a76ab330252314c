"""A quick-subset comparison of the retrain with and without distillation (issue 44):
one fine-tune and one search, then the retrain from the SAME search weights as plain,
logits and logits+ranking; and the cost of a distilled training step against a plain
one, timed interleaved (serving/timing.py) on the same batches.

    python experiments/distill_comparison.py --task=MRPC --max_train_examples=1000

One seed on data subsets: it chooses a design, it is not a result. Writes
experiments/results/distill_comparison_<task>.json (command, commit, CPU, wall time).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import runner  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402

ARMS = {"plain": {"distill": "none"}, "logits": {"distill": "logits"},
        "logits+ranking": {"distill": "logits+ranking"}}

flags.DEFINE_string("task", "MRPC", "GLUE task.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR.")
flags.DEFINE_string("output_dir", "checkpoints/distill_comparison", "Where the runs go.")
flags.DEFINE_string("results_dir", str(ROOT / "experiments" / "results"), "Where the JSON goes.")
flags.DEFINE_integer("max_train_examples", 1000, "Seeded training subset.")
flags.DEFINE_integer("max_eval_examples", 400, "Seeded dev subset.")
flags.DEFINE_integer("max_seq_length", None, "N. Default: the task's.")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of every phase.")
flags.DEFINE_integer("finetune_epochs", 3, "Fine-tune epochs (best dev kept).")
flags.DEFINE_integer("search_epochs", 1, "Search epochs.")
flags.DEFINE_integer("retrain_epochs", 2, "Retrain epochs of every arm (best dev kept).")
flags.DEFINE_float("target_speedup", 3.0, "--target_speedup of the search.")
flags.DEFINE_float("distill_alpha", 0.5, "--distill_alpha of the distilled arms.")
flags.DEFINE_float("ranking_weight", 0.1, "--ranking_weight of logits+ranking.")
flags.DEFINE_integer("ranking_top_k", 20, "--ranking_top_k of logits+ranking.")
flags.DEFINE_integer("seed", 1, "Seed of every phase.")
flags.DEFINE_integer("timing_batches", 8, "Training batches per timed pass.")
flags.DEFINE_integer("timing_repeats", 5, "Interleaved timed rounds of the step cost.")
flags.DEFINE_string("result_name", None, "The JSON's file stem. Default: "
                    "distill_comparison_<task> (distill_step_cost_<task> with --step_cost_only).")
flags.DEFINE_bool("step_cost_only", False, "Only time the steps again (from the finished "
                  "fine-tune and search), into distill_step_cost_<task>.json.")
FLAGS = flags.FLAGS


def _config(phase: str, output_dir: Path, **overrides):
    from power_bert_tf.pipeline.config import TASK_DEFAULTS, RunConfig

    defaults = TASK_DEFAULTS[FLAGS.task]
    return RunConfig(
        task=FLAGS.task, phase=phase, output_dir=str(output_dir), data_dir=FLAGS.data_dir,
        max_seq_length=FLAGS.max_seq_length or defaults.max_seq_length,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        soft_extract_learning_rate=defaults.soft_extract_learning_rate,
        target_speedup=FLAGS.target_speedup, finetune_epochs=FLAGS.finetune_epochs,
        search_epochs=FLAGS.search_epochs, retrain_epochs=FLAGS.retrain_epochs,
        seed=FLAGS.seed, max_train_examples=FLAGS.max_train_examples,
        max_eval_examples=FLAGS.max_eval_examples, compare_after_retrain=False, resume=True,
        distill_alpha=FLAGS.distill_alpha, ranking_weight=FLAGS.ranking_weight,
        ranking_top_k=FLAGS.ranking_top_k, **overrides)


def _phase(config) -> dict:
    import json

    from power_bert_tf.pipeline import phases

    record = Path(config.output_dir) / config.task / config.phase / "run.json"
    if not record.is_file():
        phases.run(config)
    return json.loads(record.read_text())


def step_cost(base: Path) -> dict:
    """Seconds of `timing_batches` training steps per arm from the search weights,
    interleaved; the teacher pass is cached already (its one-off cost is separate)."""
    from power_bert_tf.model.transfer import transfer_weights
    from power_bert_tf.pipeline.context import make_context
    from power_bert_tf.pipeline.distill import distilled_training
    from power_bert_tf.pipeline.fitting import build_classifier, total_steps
    from power_bert_tf.pipeline.search import retention_for_retrain
    from power_bert_tf.serving.timing import time_interleaved
    from power_bert_tf.training.optimization import adam
    from power_bert_tf.training.trainer import OptimizerGroup, Trainer

    passes = {}
    for arm, overrides in ARMS.items():
        ctx = make_context(_config("retrain", base, **overrides))
        retention = retention_for_retrain(ctx)
        source = ctx.load_phase_model("search")
        model = build_classifier(ctx, extract="hard", retention=list(retention.kept),
                                 selection="attention", seed=FLAGS.seed)
        transfer_weights(source, model, "search")
        with ctx.strategy.scope():
            optimizer = adam(FLAGS.learning_rate, total_steps(ctx, 1), 0.1, "adam")
        distilled = distilled_training(ctx, model, "retrain")
        trainer = Trainer(model, ctx.strategy, [OptimizerGroup(optimizer, lambda v: True)],
                          regression=ctx.task.labels is None,
                          objective=distilled.objective if distilled else None)
        make = (distilled.dataset if distilled else
                lambda epoch, ctx=ctx: ctx.dataset("train", training=True, epoch=epoch))
        data = ctx.strategy.experimental_distribute_dataset(make(1).take(FLAGS.timing_batches))
        step = trainer.train_step(data)

        def run(data=data, step=step):
            for features, labels in data:
                loss = step(features, labels)
            return float(loss)

        passes[arm] = run
    timings = time_interleaved(passes, repeats=FLAGS.timing_repeats)
    plain = timings["plain"]
    return {"batches_per_pass": FLAGS.timing_batches, "repeats": FLAGS.timing_repeats,
            "seconds": {arm: timing.to_dict() for arm, timing in timings.items()},
            "ratio_to_plain": {arm: {"median": round(sorted(
                a / b for a, b in zip(timing.seconds, plain.seconds))[len(plain.seconds) // 2],
                3), "per_round": [round(a / b, 3) for a, b in zip(timing.seconds,
                                                                   plain.seconds)]}
                for arm, timing in timings.items() if arm != "plain"}}


@exit_on_user_error
def main(argv):
    del argv
    started = time.time()
    out = Path(FLAGS.output_dir)
    base = out / "base"
    finetune = _phase(_config("finetune", base))
    search = _phase(_config("search", base))
    metric = next(iter(finetune["dev"]))
    result = {
        "task": FLAGS.task, "metric": metric, "seed": FLAGS.seed,
        "max_train_examples": FLAGS.max_train_examples,
        "max_eval_examples": FLAGS.max_eval_examples,
        "finetune_epochs": FLAGS.finetune_epochs, "search_epochs": FLAGS.search_epochs,
        "retrain_epochs": FLAGS.retrain_epochs, "target_speedup": FLAGS.target_speedup,
        "retention": search["retention"], "flop_bound": search["flop_bound"],
        "distill_alpha": FLAGS.distill_alpha, "distill_temperature": 2.0,
        "ranking_weight": FLAGS.ranking_weight, "ranking_top_k": FLAGS.ranking_top_k,
        "baseline_dev": finetune["dev"][metric], "complete": False,
        "note": "one seed on subsets, on a 2-core CPU shared with other jobs: it chooses a "
                "design, it is not a result"}
    stem = FLAGS.result_name or (f"distill_step_cost_{FLAGS.task}" if FLAGS.step_cost_only
                                 else f"distill_comparison_{FLAGS.task}")
    path = Path(FLAGS.results_dir) / f"{stem}.json"
    command = [" ".join(["python", *sys.argv])]

    def write() -> None:  # after each step, so that a cut-off run leaves what it measured
        runner.write_result(path, result, started=started, commands=command, overwrite=True)
        print(f"wrote {path}", flush=True)

    result["step_cost"] = step_cost(base)
    write()
    if FLAGS.step_cost_only:
        return
    arms = result["arms"] = {}
    for arm, overrides in ARMS.items():
        folder = out / arm
        task_dir = folder / FLAGS.task
        task_dir.mkdir(parents=True, exist_ok=True)
        for phase in ("finetune", "search"):  # the same teacher and search weights
            link = task_dir / phase
            if not link.exists():
                link.symlink_to((base / FLAGS.task / phase).resolve(), target_is_directory=True)
        run = _phase(_config("retrain", folder, **overrides))
        arms[arm] = {"best_dev": run["dev"], "history": run["history"],
                     "wall_seconds": run["wall_seconds"], "teacher": run.get("teacher")}
        result["retrained_dev"] = {a: v["best_dev"][metric] for a, v in arms.items()}
        result["change_vs_baseline"] = {a: round(v["best_dev"][metric]
                                                 - finetune["dev"][metric], 4)
                                        for a, v in arms.items()}
        result["complete"] = len(arms) == len(ARMS)
        write()


if __name__ == "__main__":
    app.run(main)
