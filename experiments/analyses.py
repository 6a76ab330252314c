"""The paper's analyses as plots (PNG + JSON under --results_dir).

    python experiments/analyses.py --analyses=diffusion,scoring,elimination,retention,position

- diffusion: mean pairwise cosine similarity of the word-vectors of a sentence, per
  layer, on the task's dev set, for the fine-tuned model and the pre-trained one:
  information diffuses, so the vectors grow alike and many become redundant.
- scoring: validation of the significance score. At one layer, eliminate the
  top-scored, bottom-scored or random fraction of a sentence's word-vectors
  ([CLS] always stays) and measure how far the output moves from the unpruned
  model's: KL(p_full || p_pruned) of the class distribution (mean |change| for
  regression). KL is the information about the prediction that the removal costs,
  a simpler and exactly computable stand-in for the paper's mutual information.
  Removing the top-scored vectors should cost far more than the bottom-scored.
- elimination: which word-pieces of a sentence survive at each layer of a
  retrained PoWER-BERT model (the paper's anecdotal figure).
- retention: the retention configuration of the Table 2 study's runs (--power_runs), as
  the fraction l_j / N of word-vectors each layer keeps.
- position: fine-tune with the classifier on the word-vector at position k instead
  of [CLS] (k = 0); after diffusion, any position classifies about as well.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.runner import git_commit  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.batching import count_batches, make_dataset  # noqa: E402
from power_bert_tf.data.tasks import Task, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.model.significance import SignificanceScore  # noqa: E402
from power_bert_tf.training.checkpoints import load_model  # noqa: E402
from power_bert_tf.training.optimization import adam  # noqa: E402
from power_bert_tf.weights import load_pretrained  # noqa: E402

ANALYSES = ("diffusion", "scoring", "elimination", "retention", "position")
flags.DEFINE_list("analyses", list(ANALYSES), f"Which analyses to run: {', '.join(ANALYSES)}.")
flags.DEFINE_string("task", "SST-2", "GLUE task whose dev set the analyses read.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_string("model", "embedded", "Pre-trained weights and vocabulary (as run_glue.py).")
flags.DEFINE_string("finetuned", None, "Fine-tuned model.keras (diffusion, scoring). Default: "
                    "checkpoints/glue/<task>/finetune/model.keras.")
flags.DEFINE_string("retrained", None, "Retrained PoWER-BERT model.keras (elimination). "
                    "Default: checkpoints/glue/<task>/retrain/model.keras.")
flags.DEFINE_integer("max_examples", None, "Use a seeded random subset of the dev set.")
flags.DEFINE_list("scoring_layers", ["1", "3"], "scoring: layers at which to eliminate.")
flags.DEFINE_list("fractions", ["0.1", "0.2", "0.3", "0.4", "0.5"],
                  "scoring: fractions of a sentence's word-vectors to eliminate.")
flags.DEFINE_string("sentence", "an utterly charming , funny and beautifully shot film about "
                    "growing up , even if the ending drags .", "elimination: the sentence.")
flags.DEFINE_list("positions", ["0", "1", "2", "3"], "position: word-vector positions to "
                  "classify from (0 = [CLS]).")
flags.DEFINE_integer("position_train_examples", 2000, "position: training subset size.")
flags.DEFINE_integer("position_epochs", 1, "position: fine-tuning epochs per position.")
flags.DEFINE_float("position_learning_rate", 5e-5, "position: learning rate.")
flags.DEFINE_integer("position_max_seq_length", 64, "position: padded input length N.")
flags.DEFINE_integer("seed", 42, "Seed of subsets, random elimination and fine-tuning.")
flags.DEFINE_string("results_dir", "experiments/results", "Where PNG and JSON files go.")
flags.DEFINE_list("power_runs", [], "retention: the Table 2 study's PoWER-BERT run files "
                  "(table2/<task>/power_<start>_seed1.json), one per task.")
flags.DEFINE_bool("overwrite", False, "Replace existing analysis_<name>.{json,png} files.")
FLAGS = flags.FLAGS
BATCH = 64


class Analysis:
    """Shared inputs: the task, its dev examples and the pre-trained weights."""

    def __init__(self):
        self.task: Task = get_task(FLAGS.task, FLAGS.data_dir)
        self.pretrained = load_pretrained(FLAGS.model)
        examples = self.task.read("dev")
        if FLAGS.max_examples and FLAGS.max_examples < len(examples):
            examples = random.Random(FLAGS.seed).sample(examples, FLAGS.max_examples)
        self.examples = examples

    def checkpoint(self, flag: str, phase: str) -> keras.Model:
        path = Path(FLAGS[flag].value or f"checkpoints/glue/{self.task.name}/{phase}/model.keras")
        return load_model(path, phase)

    def batches(self, sequence_length: int) -> list[tuple[dict, np.ndarray]]:
        dataset = make_dataset(self.examples, self.pretrained.tokenizer(sequence_length),
                               batch_size=BATCH, is_pair=self.task.is_pair,
                               regression=self.task.is_regression)
        return [(features, labels.numpy()) for features, labels in dataset]


def _save(name: str, data: dict, figure, seconds: float) -> None:
    results = Path(FLAGS.results_dir)
    data = {"analysis": name, "command": " ".join(["python", *sys.argv]),
            "git_commit": git_commit(), "wall_seconds": round(seconds, 1), **data}
    (results / f"analysis_{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    figure.savefig(results / f"analysis_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    print(f"wrote {results / f'analysis_{name}.png'} and .json")


# -- diffusion -----------------------------------------------------------------------

def mean_pairwise_cosine(encoder: keras.Model, batches) -> list[float]:
    """Per layer (0 = embeddings), the mean over sentences of the mean cosine
    similarity between distinct real word-vectors of the sentence."""
    totals, count = None, 0
    for features, _ in batches:
        outputs = encoder(features, training=False)
        layers = [encoder.embedded(features)]
        layers += outputs["encoder_outputs"]
        mask = features["input_mask"].numpy().astype(bool)
        pairs = mask[:, :, None] & mask[:, None, :] & ~np.eye(mask.shape[1], dtype=bool)
        per_layer = []
        for hidden in layers:
            unit = hidden.numpy() / np.linalg.norm(hidden.numpy(), axis=-1, keepdims=True)
            similarity = np.einsum("btd,bsd->bts", unit, unit)
            per_sentence = (similarity * pairs).sum((1, 2)) / np.maximum(pairs.sum((1, 2)), 1)
            per_layer.append(per_sentence.sum())
        totals = np.array(per_layer) if totals is None else totals + per_layer
        count += len(mask)
    return [round(float(value), 4) for value in totals / count]


def diffusion(analysis: Analysis) -> tuple[dict, plt.Figure]:
    finetuned = analysis.checkpoint("finetuned", "finetune")
    length = finetuned.encoder.sequence_length
    batches = analysis.batches(length)
    curves = {"fine-tuned": mean_pairwise_cosine(finetuned.encoder, batches),
              "pre-trained": mean_pairwise_cosine(
                  analysis.pretrained.build_encoder(sequence_length=length), batches)}
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for label, values in curves.items():
        axis.plot(range(len(values)), values, marker="o", label=label)
    axis.set(xlabel="layer (0 = embeddings)", ylabel="mean pairwise cosine similarity",
             title=f"Diffusion of information ({analysis.task.name} dev)")
    axis.legend()
    return ({"task": analysis.task.name, "examples": len(analysis.examples),
                        "sequence_length": length, "mean_pairwise_cosine": curves}, figure)


# -- scoring -------------------------------------------------------------------------

def forward_eliminating(model: keras.Model, features: dict, layer: int, fractions: np.ndarray,
                        order: str, rng: np.random.Generator) -> np.ndarray:
    """The classifier's outputs when, after layer `layer`'s attention, each sentence
    loses `fractions[b]` of its real word-vectors other than [CLS], chosen by
    significance score ("top", "bottom") or at random. An eliminated vector gets
    padding-mask 0: no later layer attends to it, as with Hard-Extract."""
    encoder = model.encoder
    mask = features["input_mask"]
    hidden = encoder.embedded(features)
    for j in range(1, encoder.num_layers + 1):
        attention, feed_forward = encoder.blocks(j)
        hidden, probs = attention(hidden, mask)
        if j == layer:
            scores = SignificanceScore()(probs, mask).numpy()
            mask = _eliminate(mask.numpy(), scores, fractions, order, rng)
        hidden = feed_forward(hidden)
    return model.get_layer("logits")(encoder.get_layer("pooler")(hidden[:, 0, :])).numpy()


def _eliminate(mask: np.ndarray, scores: np.ndarray, fractions: np.ndarray, order: str,
               rng: np.random.Generator) -> np.ndarray:
    candidates = mask.astype(bool).copy()
    candidates[:, 0] = False  # [CLS] is never eliminated
    key = {"top": -scores, "bottom": scores, "random": rng.random(scores.shape)}[order]
    key = np.where(candidates, key, np.inf)
    ranks = np.argsort(np.argsort(key, axis=1), axis=1)
    counts = np.floor(fractions * mask.sum(1)).astype(int)
    return np.where(candidates & (ranks < counts[:, None]), 0, mask)


def _output_change(full: np.ndarray, pruned: np.ndarray, regression: bool) -> np.ndarray:
    if regression:
        return np.abs(full[:, 0] - pruned[:, 0])
    p, q = (np.asarray(keras.ops.softmax(x)) for x in (full, pruned))
    return np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)


def scoring(analysis: Analysis) -> tuple[dict, plt.Figure]:
    model = analysis.checkpoint("finetuned", "finetune")
    batches = analysis.batches(model.encoder.sequence_length)
    regression = analysis.task.is_regression
    full = [model(features, training=False).numpy() for features, _ in batches]
    check = forward_eliminating(model, batches[0][0], 1, np.zeros(len(full[0])), "top",
                                np.random.default_rng(0))
    if not np.allclose(check, full[0], atol=1e-4):
        raise PowerBertError("scoring: the layer-by-layer forward pass does not reproduce the "
                             "model's outputs")
    rng = np.random.default_rng(FLAGS.seed)
    fractions = [float(f) for f in FLAGS.fractions]
    results = {}
    for layer in map(int, FLAGS.scoring_layers):
        for order in ("top", "random", "bottom"):
            curve = []
            for fraction in fractions:
                changes = [_output_change(out, forward_eliminating(
                    model, features, layer, np.full(len(out), fraction), order, rng), regression)
                    for (features, _), out in zip(batches, full)]
                curve.append(round(float(np.concatenate(changes).mean()), 5))
            results[f"layer {layer}, {order}"] = curve
            print(f"layer {layer}, eliminate {order}-scored: {curve}")
    figure, axes = plt.subplots(1, len(FLAGS.scoring_layers), sharey=True,
                                figsize=(4.5 * len(FLAGS.scoring_layers), 3.5), squeeze=False)
    for axis, layer in zip(axes[0], FLAGS.scoring_layers):
        for order, style in (("top", "v-"), ("random", "o--"), ("bottom", "^-")):
            axis.plot(fractions, results[f"layer {layer}, {order}"], style,
                      label=f"{order}-scored eliminated")
        axis.set(title=f"layer {layer}", xlabel="fraction of word-vectors eliminated")
    axes[0][0].set_ylabel("mean |output change|" if regression else "mean KL(full || pruned)")
    axes[0][0].legend()
    figure.suptitle(f"Validation of the significance score ({analysis.task.name} dev)")
    return ({"task": analysis.task.name, "examples": len(analysis.examples),
                      "measure": "mean_abs_change" if regression else "mean_kl_full_pruned",
                      "fractions": fractions, "curves": results}, figure)


# -- elimination ---------------------------------------------------------------------

def elimination(analysis: Analysis) -> tuple[dict, plt.Figure]:
    model = analysis.checkpoint("retrained", "retrain")
    encoder = model.encoder
    tokenizer = analysis.pretrained.tokenizer(encoder.sequence_length)
    features = tokenizer(tf.constant([FLAGS.sentence]))
    real = int(np.asarray(features["input_mask"]).sum())
    tokens = tokenizer.ids_to_tokens(np.asarray(features["input_word_ids"])[0, :real])
    kept = np.zeros((encoder.num_layers + 1, real), dtype=bool)
    kept[0] = True
    for layer, positions in enumerate(encoder(features)["kept_positions"], start=1):
        kept[layer, [p for p in np.asarray(positions[0]) if p < real]] = True
    output = np.asarray(model(features))[0]
    prediction = (f"{output[0]:.2f}" if analysis.task.is_regression
                  else analysis.task.labels[int(np.argmax(output))])
    figure, axis = plt.subplots(figsize=(max(6, 0.42 * real), 0.45 * len(kept) + 1.2))
    axis.imshow(kept, cmap="Greens", vmin=-0.3, vmax=1.2, aspect="auto")
    axis.set_xticks(range(real), tokens, rotation=70, fontsize=8)
    axis.set_yticks(range(len(kept)), ["input"] + [f"layer {j} ({n})" for j, n in
                                                    enumerate(encoder.retention, start=1)])
    axis.set_title(f"Word-vectors kept per layer, retention {','.join(map(str, encoder.retention))}"
                   f" (N={encoder.sequence_length}); prediction: {prediction}", fontsize=9)
    return ({"task": analysis.task.name, "sentence": FLAGS.sentence,
                          "tokens": tokens, "retention": encoder.retention,
                          "kept": {f"layer {j}": [t for t, k in zip(tokens, row) if k]
                                   for j, row in enumerate(kept[1:], start=1)},
                          "prediction": prediction}, figure)


# -- retention -----------------------------------------------------------------------

def retention(analysis: Analysis) -> tuple[dict, plt.Figure]:
    del analysis
    if not FLAGS.power_runs:
        raise PowerBertError("retention: --power_runs names no run file (make "
                             "reproduce-table2 passes the study's)")
    for path in FLAGS.power_runs:
        if not Path(path).is_file():
            raise PowerBertError(f"--power_runs: {path} does not exist")
    runs = [json.loads(Path(path).read_text()) for path in FLAGS.power_runs]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(runs)
    configurations = {}
    for i, run in enumerate(runs):
        kept = run["retention"]
        length = round(run["word_vector_bound"] * sum(kept) / len(kept))
        configurations[run["task"]] = {"retention": kept, "sequence_length": length}
        axis.bar(np.arange(1, len(kept) + 1) + (i - (len(runs) - 1) / 2) * width,
                 np.array(kept) / length, width, label=f"{run['task']} (N={length})")
    axis.set(xlabel="layer", ylabel="fraction of word-vectors kept (l_j / N)",
             title="Retention configurations found by the search")
    axis.legend(fontsize=8)
    return ({"configurations": configurations}, figure)


# -- position ------------------------------------------------------------------------

def position_classifier(analysis: Analysis, position: int, length: int) -> keras.Model:
    """The pre-trained encoder with pooler -> dropout -> dense on the word-vector at
    `position` instead of [CLS]."""
    encoder = analysis.pretrained.build_encoder(sequence_length=length)
    hidden = encoder(encoder.input)["sequence_output"][:, position, :]
    pooled = keras.layers.Dropout(0.1, name="classifier_dropout")(
        encoder.get_layer("pooler")(hidden))
    logits = keras.layers.Dense(analysis.task.num_classes, name="logits")(pooled)
    return keras.Model(encoder.input, logits, name=f"position_{position}_classifier")


def position(analysis: Analysis) -> tuple[dict, plt.Figure]:
    task = analysis.task
    if task.is_regression:
        raise PowerBertError(f"position: {task.name} is a regression task; use a "
                             f"classification task")
    length, positions = FLAGS.position_max_seq_length, [int(p) for p in FLAGS.positions]
    train = random.Random(FLAGS.seed).sample(task.read("train"), min(
        FLAGS.position_train_examples, len(task.read("train"))))
    tokenizer = analysis.pretrained.tokenizer(length)
    train_set = make_dataset(train, tokenizer, batch_size=32, is_pair=task.is_pair,
                             regression=False, shuffle=True, seed=FLAGS.seed)
    dev_set = make_dataset(analysis.examples, tokenizer, batch_size=BATCH, is_pair=task.is_pair,
                           regression=False)
    real = np.concatenate([f["input_mask"].numpy() for f, _ in dev_set])
    accuracy, real_fraction = {}, {}
    for k in positions:
        keras.utils.set_random_seed(FLAGS.seed)
        model = position_classifier(analysis, k, length)
        steps = FLAGS.position_epochs * count_batches(len(train), 32)
        model.compile(optimizer=adam(FLAGS.position_learning_rate, steps, 0.1, "adam"),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(train_set, epochs=FLAGS.position_epochs, verbose=2)
        accuracy[k] = round(float(model.evaluate(dev_set, verbose=0)[1]), 4)
        real_fraction[k] = round(float(real[:, k].mean()), 4)
        print(f"position {k}: dev accuracy {accuracy[k]} (a real token in "
              f"{100 * real_fraction[k]:.1f}% of dev inputs)")
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.bar([str(k) for k in positions], [accuracy[k] for k in positions], color="tab:blue")
    axis.set_ylim(min(accuracy.values()) - 0.1, min(1.0, max(accuracy.values()) + 0.05))
    axis.set(xlabel="classified from position k (0 = [CLS])", ylabel="dev accuracy",
             title=f"{task.name}: {len(train)} training examples, {FLAGS.position_epochs} epoch(s)")
    return ({"task": task.name, "train_examples": len(train),
                       "epochs": FLAGS.position_epochs, "dev_examples": len(analysis.examples),
                       "accuracy": accuracy, "real_token_fraction": real_fraction}, figure)


ANALYSIS_FUNCTIONS = {"diffusion": diffusion, "scoring": scoring, "elimination": elimination,
                      "retention": retention, "position": position}


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(FLAGS.analyses) - set(ANALYSES))
    if unknown:
        raise PowerBertError(f"--analyses: unknown {', '.join(unknown)}; choose from "
                             f"{', '.join(ANALYSES)}")
    results = Path(FLAGS.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    for name in FLAGS.analyses:
        existing = results / f"analysis_{name}.json"
        if existing.exists() and not FLAGS.overwrite:
            raise PowerBertError(f"{existing} exists; pass --overwrite to replace it")
    analysis = Analysis()
    for name in FLAGS.analyses:
        started = time.time()
        data, figure = ANALYSIS_FUNCTIONS[name](analysis)
        _save(name, data, figure, time.time() - started)
        print(f"{name}: {time.time() - started:.0f} s")


if __name__ == "__main__":
    app.run(main)
