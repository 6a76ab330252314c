"""PoWER-BERT on GLUE (or your own data): fine-tune, search, retrain, evaluate, predict.

    python run_glue.py --task=RTE --phase=all
    python run_glue.py --task=RTE --phase=search --lambda=1e-3
    python run_glue.py --task=SST-2 --phase=retrain --retention_config=40,30,20,12,8,4

Per-task defaults (sequence length, both learning rates, lambda, batch size) are the
reference's (docs/method.md); every one can be overridden. Outputs go to
<output_dir>/<task>/<phase>/, and each phase reads the previous phase's folder.
"""
from __future__ import annotations

from power_bert_tf.cli import exit_on_user_error, quiet_native_logs, quiet_python_logs

quiet_native_logs()  # before TensorFlow loads: TF_CPP_MIN_LOG_LEVEL=0 or --verbosity shows all

from absl import app, flags  # noqa: E402

from power_bert_tf.model.config import MODEL_TYPES, SELECTIONS  # noqa: E402
from power_bert_tf.model.config import DISTILL_MODES, RANK_DEPTH  # noqa: E402
from power_bert_tf.model.retention import RETENTION_MODES  # noqa: E402
from power_bert_tf.pipeline.config import (DISTRIBUTIONS, PADDING_MULTIPLE, PHASES,  # noqa: E402
                                           TASK_DEFAULTS, RunConfig)
from power_bert_tf.data.tasks import CustomTaskSpec, canonical_task_name  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

flags.DEFINE_string("task", None, "GLUE task (CoLA, SST-2, MRPC, STS-B, QQP, MNLI-m, MNLI-mm, "
                    "QNLI, RTE, WNLI) or 'custom' for your own TSV/CSV files.")
flags.DEFINE_enum("phase", "all", PHASES, "What to run: finetune, import (--finetuned_model "
                  "as the fine-tuned model, in place of finetune), search (Soft-Extract "
                  "configuration search), retrain (Hard-Extract), evaluate (dev metric and "
                  "measured speed-up against the fine-tuned baseline), predict, export (a "
                  "versioned TF Serving SavedModel of the retrained model), or all: the four "
                  "training/evaluation phases in turn.")
flags.DEFINE_string("model", "embedded", "Pre-trained weights: 'embedded' (the packaged "
                    "MiniLM, offline) or a Hugging Face / Google BERT or ALBERT folder.")
flags.DEFINE_enum("model_type", None, MODEL_TYPES, "bert or albert: the kind of model --model "
                  "must hold (an error if it holds the other). Default: the folder's "
                  "(albert_config.json, or config.json with model_type albert, is ALBERT).")
flags.DEFINE_string("init_checkpoint", None, "--phase=finetune/all: start the encoder from "
                    "another task's fine-tuned model.keras (or its finetune/ folder) instead "
                    "of --model's pre-trained weights, with a new classifier: intermediate-task "
                    "transfer, e.g. MRPC's model for RTE. --model still gives the tokenizer and "
                    "must have the same shape.")
flags.DEFINE_string("finetuned_model", None, "Start from your own fine-tuned classifier: a "
                    "Hugging Face BertForSequenceClassification (or ALBERT) folder, imported "
                    "by --phase=import (and --phase=all, in place of the fine-tune) with its "
                    "encoder, pooler, classifier and tokenizer, its id2label names as the "
                    "task's labels (regression for num_labels 1). Also --model, so pass it "
                    "to every later phase (docs/import.md).")
flags.DEFINE_string("data_dir", None, "GLUE data root (glue_data/ layout). Default: $GLUE_DIR, "
                    "else ../shared/glue when it exists.")
flags.DEFINE_enum("data_source", "files", ["files", "tfds"], "Read GLUE from --data_dir "
                  "files or from tensorflow-datasets (needs the network once).")
flags.DEFINE_string("output_dir", "checkpoints", "Where runs write: one folder per task, one "
                    "sub-folder per phase.")
flags.DEFINE_integer("max_seq_length", None, "Padded input length N. Default: per task.")
flags.DEFINE_integer("batch_size", None, "Training batch size (global). Default: per task.")
flags.DEFINE_integer("eval_batch_size", 64, "Batch size for evaluation, prediction and timing.")
flags.DEFINE_float("learning_rate", None, "LR_BERT: learning rate of BERT and the classifier "
                   "in every phase. Default: per task.")
flags.DEFINE_float("soft_extract_learning_rate", None, "LR_SOFT_EXTRACT: learning rate of the "
                   "retention parameters r in the search. Default: per task.")
flags.DEFINE_float("mass_lambda", None, "Weight lambda of the mass loss lambda * sum_j j * "
                   "mass(j) in the search (alias: --lambda). Default: per task.")
flags.DEFINE_alias("lambda", "mass_lambda")
flags.DEFINE_float("target_speedup", None, "Speed-up on demand: steer the search so that the "
                   "retention configuration it ends with has this FLOP-bound speed-up (within "
                   "a few percent), whatever the task's lengths, steps or learning rates; "
                   "exclusive with --lambda (see docs/method.md).")
flags.DEFINE_float("target_ramp", 0.5, "--target_speedup: fraction of the search steps over "
                   "which the required speed-up rises from 1x to the target (then held).")
flags.DEFINE_integer("epochs", None, "Epochs of every training phase whose own flag below "
                     "is not given.")
flags.DEFINE_integer("finetune_epochs", 3, "Epochs of the fine-tune phase (best dev kept).")
flags.DEFINE_integer("finetune_stop_epoch", 0, "Stop the fine-tune after this epoch of its "
                     "--finetune_epochs schedule (0: run them all). The epochs it runs are those "
                     "of the whole schedule (learning rate, data order, dropout), so a recorded "
                     "run's best-epoch model comes back without the epochs after it.")
flags.DEFINE_integer("search_epochs", 3, "Epochs of the search phase (last epoch kept).")
flags.DEFINE_integer("retrain_epochs", 3, "Epochs of the retrain phase (best dev kept).")
flags.DEFINE_float("warmup_proportion", 0.1, "Fraction of steps of linear warm-up before the "
                   "linear decay to 0.")
flags.DEFINE_integer("timing_repeats", 5, "Timed passes over the dev set per model when "
                     "retrain/evaluate measure the speed-up: baseline and PoWER-BERT alternate, "
                     "after one warm-up pass each; the median of the per-pass ratios is reported.")
flags.DEFINE_integer("seed", 42, "Seed of shuffling, dropout, initialisation and subsets.")
flags.DEFINE_bool("compare_after_retrain", True, "With --phase=retrain, end with the dev "
                  "metric beside the baseline's and the interleaved timing (the evaluate "
                  "phase's report); --nocompare_after_retrain skips it, for a run that "
                  "evaluates next.")
flags.DEFINE_string("retention_config", None, "Kept word-vectors per layer, e.g. 7,7,4,4,2,2, "
                    "to retrain without a search; with --retention_mode=relative the "
                    "fractions of each input's length, e.g. 0.8,0.5,0.3,0.2,0.1,0.05.")
flags.DEFINE_enum("retention_mode", "absolute", RETENTION_MODES, "Unit of the retention "
                  "configuration of search and retrain: absolute (the paper's: l_j word-vectors "
                  "kept at --max_seq_length, min(l_j, T) of an input of T tokens) or relative "
                  "(fractions f_j: an input of real length T keeps ceil(f_j * T); "
                  "--retention_config then takes fractions, e.g. 0.8,0.5,0.3,0.2,0.1,0.05, and "
                  "--target_speedup means the FLOP-bound speed-up over length-bucketed plain "
                  "BERT on the task's training lengths). See docs/method.md.")
flags.DEFINE_enum("selection", "attention", SELECTIONS, "Which word-vectors Hard-Extract keeps: "
                  "attention (PoWER-BERT), head (first positions) or random (baselines).")
flags.DEFINE_bool("include_padded_queries", False, "Count attention paid by padded positions in "
                  "the significance score, as the IBM reference does; every batch is then "
                  "padded to --max_seq_length (no dynamic padding), as the reference's are, "
                  "since the scores depend on the amount of padding.")
flags.DEFINE_integer("max_train_examples", None, "Train on a seeded random subset of this size.")
flags.DEFINE_integer("max_eval_examples", None, "Evaluate on a seeded random subset of this "
                     "size.")
flags.DEFINE_string("predict_split", "dev", "Split that --phase=predict labels (dev or test).")
flags.DEFINE_bool("resume", False, "Continue a killed phase from its last completed epoch "
                  "(with --phase=all, also skip finished phases).")
flags.DEFINE_bool("overwrite", False, "Replace a phase's finished output.")
flags.DEFINE_enum("distribution", "default", DISTRIBUTIONS, "tf.distribute strategy: default, "
                  "mirrored (local GPUs, else CPUs), multi_worker (TF_CONFIG) or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --distribution=tpu.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
flags.DEFINE_bool("dynamic_padding", True, "Pad each training batch and each dev batch of "
                  "the per-epoch metric only to its longest sequence (rounded up to a multiple "
                  f"of {PADDING_MULTIPLE}) instead of --max_seq_length. Padded positions are "
                  "inert in every phase (score 0, masked), so only the time changes (and "
                  "dropout's random draws). The speed-up measured in retrain/evaluate always "
                  "pads to --max_seq_length, as the paper does.")
flags.DEFINE_integer("length_grouping", 0, "With --dynamic_padding: group training batches "
                     "by length, so that trimming cuts more: the shuffled rows are taken this "
                     "many batches at a time, sorted by length, cut into batches, and the "
                     "batches shuffled. Every row is still seen once an epoch; only which rows "
                     "share a batch changes (experiments/padding_lengths.py measures the "
                     "saving). 0: off.")
flags.DEFINE_string("export_dir", None, "--phase=export: TF Serving model base folders go to "
                    "<export_dir>/<task>/<version>/. Default: <output_dir>/export.")
flags.DEFINE_integer("export_version", None, "--phase=export: version number; default 1 + "
                     "the largest existing one. An existing version is never overwritten.")
flags.DEFINE_enum("export_format", "saved_model", ["saved_model", "onnx"], "--phase=export: a TF "
                  "Serving SavedModel, or ONNX (float32 and int8) for ONNX Runtime.")
flags.DEFINE_integer("onnx_batch_size", 0, "--phase=export --export_format=onnx: fix the graph's "
                     "batch size, so that its shape arithmetic folds into constants (faster "
                     "at small batches; the exported OnnxClassifier feeds it that many rows at "
                     "a time). 0: any batch size.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16", "auto"], "Inference precision of "
                  "evaluate and export (SavedModel): bf16 computes the encoder in bfloat16 "
                  "(inputs and outputs stay int32 / float32); auto is bf16 on a GPU / TPU or "
                  "a CPU with AMX-BF16 or AVX512-BF16, fp32 elsewhere.")
flags.DEFINE_enum("train_precision", "fp32", ["fp32", "bf16"], "What the encoder computes "
                  "in while fine-tuning, searching and retraining: bf16 is Keras's mixed "
                  "bfloat16 (bfloat16 matrix multiplies, float32 variables, updates, logits "
                  "and saved weights; faster where the hardware multiplies in bfloat16: a "
                  "GPU / TPU, a CPU with AMX-BF16). Evaluate and export read --precision.")
flags.DEFINE_enum("distill", "none", list(DISTILL_MODES), "Learn from the fine-tuned model "
                  "(finetune/model.keras) while eliminating: none; logits (its logits, cached "
                  "once per training example); logits+ranking (also pull each extract "
                  "layer's significance ranking toward the teacher's top tokens). In the "
                  "retrain, and in the search too with --distill_search.")
flags.DEFINE_float("distill_temperature", 2.0, "--distill: temperature T of the softened "
                   "teacher and student distributions; the KL term is scaled by T^2.")
flags.DEFINE_float("distill_alpha", 0.5, "--distill: loss = alpha * task loss + (1 - alpha) "
                   "* teacher term (T^2 KL, or the squared distance to the teacher's score "
                   "for regression); 1 trains on the labels alone.")
flags.DEFINE_float("ranking_weight", 0.1, "--distill=logits+ranking: weight of the pairwise "
                   "ranking loss (mean over the extract layers).")
flags.DEFINE_integer("ranking_top_k", 20, "--distill=logits+ranking: how many of the "
                     "teacher's top positions (last-layer significance, [CLS] aside) each "
                     f"layer ranks above the others (1 to {RANK_DEPTH}).")
flags.DEFINE_bool("distill_search", False, "With --distill: distil the search phase too.")
flags.DEFINE_string("train_file", None, "--task=custom: training file, .tsv, .csv (quoted "
                    "fields may hold commas and newlines) or .jsonl (one JSON object a line).")
flags.DEFINE_string("dev_file", None, "--task=custom: dev file (.tsv, .csv or .jsonl).")
flags.DEFINE_string("test_file", None, "--task=custom: optional unlabelled file to predict "
                    "(--phase=predict --predict_split=test streams it, any size).")
flags.DEFINE_bool("header", True, "--task=custom: TSV/CSV files start with a header row. "
                  "--noheader: they do not, and the *_column flags are 0-based indices.")
flags.DEFINE_string("text_a_column", None, "--task=custom: column of the first text (header "
                    "name, JSON key, or index with --noheader).")
flags.DEFINE_string("text_b_column", None, "--task=custom: column of the second text (pairs).")
flags.DEFINE_string("label_column", None, "--task=custom: column of the label; labels are "
                    "compared as the strings written in the file.")
flags.DEFINE_list("labels", None, "--task=custom: the label set, comma-separated; omit for "
                  "regression.")
flags.DEFINE_string("metric", None, "--task=custom: accuracy, f1, matthews or spearman.")
flags.mark_flag_as_required("task")
FLAGS = flags.FLAGS


def _custom_spec() -> CustomTaskSpec | None:
    if FLAGS.task.lower() != "custom":
        return None
    for name in ("train_file", "dev_file", "text_a_column", "label_column"):
        if not FLAGS[name].value:
            raise PowerBertError(f"--task=custom needs --{name}")
    columns = {name: FLAGS[name].value
               for name in ("text_a_column", "text_b_column", "label_column")}
    if not FLAGS.header:
        for name, value in columns.items():
            if value is not None:
                try:
                    columns[name] = int(value)
                except ValueError:
                    raise PowerBertError(f"--{name}={value!r}: with --noheader columns are "
                                         f"0-based indices") from None
    return CustomTaskSpec(
        train_file=FLAGS.train_file, dev_file=FLAGS.dev_file, **columns,
        labels=tuple(FLAGS.labels) if FLAGS.labels else None, metric=FLAGS.metric,
        test_file=FLAGS.test_file, header=FLAGS.header)


def config_from_flags() -> RunConfig:
    """Maps the flags onto one typed RunConfig, filling per-task defaults."""
    task = canonical_task_name(FLAGS.task)
    defaults = TASK_DEFAULTS[task]

    def pick(flag: str, default):
        value = FLAGS[flag].value
        return default if value is None else value

    def phase_epochs(flag: str) -> int:  # a phase's own flag wins over --epochs
        return FLAGS[flag].value if FLAGS[flag].present or not FLAGS.epochs else FLAGS.epochs

    return RunConfig(
        task=task, phase=FLAGS.phase, output_dir=FLAGS.output_dir, model=FLAGS.model,
        model_type=FLAGS.model_type, data_dir=FLAGS.data_dir, data_source=FLAGS.data_source,
        init_checkpoint=FLAGS.init_checkpoint, finetuned_model=FLAGS.finetuned_model,
        max_seq_length=pick("max_seq_length", defaults.max_seq_length),
        batch_size=pick("batch_size", defaults.batch_size),
        eval_batch_size=FLAGS.eval_batch_size, timing_repeats=FLAGS.timing_repeats,
        learning_rate=pick("learning_rate", defaults.learning_rate),
        soft_extract_learning_rate=pick("soft_extract_learning_rate",
                                        defaults.soft_extract_learning_rate),
        mass_lambda=(FLAGS.mass_lambda if FLAGS.target_speedup is not None
                     else pick("mass_lambda", defaults.mass_lambda)),
        target_speedup=FLAGS.target_speedup, target_ramp=FLAGS.target_ramp,
        finetune_epochs=phase_epochs("finetune_epochs"),
        finetune_stop_epoch=FLAGS.finetune_stop_epoch,
        search_epochs=phase_epochs("search_epochs"),
        retrain_epochs=phase_epochs("retrain_epochs"),
        compare_after_retrain=FLAGS.compare_after_retrain,
        warmup_proportion=FLAGS.warmup_proportion, seed=FLAGS.seed,
        retention_config=FLAGS.retention_config, retention_mode=FLAGS.retention_mode,
        selection=FLAGS.selection,
        include_padded_queries=FLAGS.include_padded_queries,
        max_train_examples=FLAGS.max_train_examples, max_eval_examples=FLAGS.max_eval_examples,
        predict_split=FLAGS.predict_split, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
        distribution=FLAGS.distribution, tpu=FLAGS.tpu, jit_compile=FLAGS.jit_compile,
        dynamic_padding=FLAGS.dynamic_padding, length_grouping=FLAGS.length_grouping,
        export_dir=FLAGS.export_dir, export_version=FLAGS.export_version,
        export_format=FLAGS.export_format, onnx_batch_size=FLAGS.onnx_batch_size,
        precision=FLAGS.precision, train_precision=FLAGS.train_precision,
        custom=_custom_spec(), distill=FLAGS.distill,
        distill_temperature=FLAGS.distill_temperature, distill_alpha=FLAGS.distill_alpha,
        ranking_weight=FLAGS.ranking_weight, ranking_top_k=FLAGS.ranking_top_k,
        distill_search=FLAGS.distill_search)


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    quiet_python_logs(verbose=FLAGS["verbosity"].present)  # TF's INFO lines, retracing
    from power_bert_tf.pipeline import phases

    phases.run(config)


if __name__ == "__main__":
    app.run(main)
