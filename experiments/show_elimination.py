"""Which word-vectors survive, layer by layer (the paper's anecdotal figure, as text).

With --checkpoint (a retrained PoWER-BERT `model.keras`, e.g.
checkpoints/demo/SST-2/retrain/model.keras) it uses that model, its retention
configuration and its predictions. Without one it builds the embedded MiniLM with
--retention and an untrained, seeded 2-class head, and compares it with the same
model without elimination.

    python experiments/show_elimination.py [--checkpoint=...] [--retention=16,12,9,6,4,2]
"""
from __future__ import annotations

from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.cli import exit_on_user_error, quiet_python_logs  # noqa: E402
from power_bert_tf.model.classifier import BertClassifier  # noqa: E402
from power_bert_tf.model.retention import (RETENTION_MODES, flop_bound,  # noqa: E402
                                           parse_retention)
from power_bert_tf.training.checkpoints import load_model  # noqa: E402
from power_bert_tf.weights import load_pretrained  # noqa: E402

flags.DEFINE_string("model", "embedded", "Vocabulary and weights: 'embedded' or a Hugging "
                    "Face / Google BERT folder.")
flags.DEFINE_string("checkpoint", None, "A retrained PoWER-BERT model.keras; default: the "
                    "pre-trained model with --retention and an untrained head.")
flags.DEFINE_integer("max_seq_length", 32, "Padded input length N (without --checkpoint).")
flags.DEFINE_string("retention", "16,12,9,6,4,2", "Kept word-vectors per layer (without "
                    "--checkpoint), comma-separated, non-increasing, one per layer.")
flags.DEFINE_enum("retention_mode", "absolute", RETENTION_MODES, "Unit of --retention "
                  "(without --checkpoint): counts at N, or fractions of each input's length "
                  "(e.g. 0.8,0.5,0.3,0.2,0.1,0.05); a checkpoint carries its own.")
flags.DEFINE_list("labels", ["0", "1"], "Label names of the checkpoint's classes.")
flags.DEFINE_integer("seed", 0, "Seed of the untrained classification head.")
FLAGS = flags.FLAGS

SENTENCES = [
    "The movie was a complete waste of time, and the acting was even worse.",
    "An utterly charming, funny and beautifully shot film about growing up.",
    "It is neither the best nor the worst thriller I have seen this year.",
    "Despite a promising premise and a strong opening act, the film slowly loses its way, "
    "burying its few genuinely moving scenes under clumsy dialogue, a bloated running time "
    "and an ending that nobody asked for.",
]


def _models(pretrained):
    """(PoWER-BERT classifier, optional unpruned twin, retention configuration)."""
    if FLAGS.checkpoint:
        model = load_model(Path(FLAGS.checkpoint), "retrain")
        encoder = model.encoder
        return model, None, encoder.retention_config()
    retention = parse_retention(FLAGS.retention, FLAGS.max_seq_length, FLAGS.retention_mode)
    retention.check_layers(pretrained.config.num_layers)
    keras.utils.set_random_seed(FLAGS.seed)
    plain = BertClassifier(pretrained.build_encoder(), num_classes=2)
    pruned = BertClassifier(pretrained.build_encoder(
        extract="hard", retention=retention.to_dict()["retention"],
        sequence_length=FLAGS.max_seq_length, retention_mode=retention.mode), 2)
    pruned.get_layer("logits").set_weights(plain.get_layer("logits").get_weights())
    return pruned, plain, retention


@exit_on_user_error
def main(argv):
    del argv
    quiet_python_logs(verbose=FLAGS["verbosity"].present)
    pretrained = load_pretrained(FLAGS.model)
    model, plain, retention = _models(pretrained)
    tokenizer = pretrained.tokenizer(retention.sequence_length)
    inputs = tokenizer(tf.constant(SENTENCES))
    print(f"{retention.mode} retention configuration (N={retention.sequence_length}): "
          f"{retention}  "
          f"word-vector bound {retention.word_vector_bound:.2f}x, "
          f"FLOP bound {flop_bound(pretrained.config, retention):.2f}x")
    outputs = model.encoder(inputs)
    mask = np.asarray(inputs["input_mask"])
    logits = np.asarray(model(inputs))
    for row, sentence in enumerate(SENTENCES):
        ids = np.asarray(inputs["input_word_ids"][row])
        print(f"\n[{row}] {sentence}  ({mask[row].sum()} tokens)")
        gathered = retention.kept_at(inputs["input_mask"].shape[1])
        for layer, positions in enumerate(outputs["kept_positions"], start=1):
            kept = [p for p in np.asarray(positions[row]) if p >= 0 and mask[row, p]]
            print(f"  layer {layer}: {gathered[layer - 1]:2d} vectors kept, "
                  f"{len(kept):2d} real tokens | {' '.join(tokenizer.ids_to_tokens(ids[kept]))}")
        if plain is None:
            print(f"  prediction: {FLAGS.labels[int(np.argmax(logits[row]))]} "
                  f"(logits {np.round(logits[row], 3)})")
    if plain is not None:
        plain_logits = np.asarray(plain(inputs))
        print("\nuntrained 2-class head (seeded), logits without -> with elimination:")
        for row in range(len(SENTENCES)):
            print(f"  [{row}] {np.round(plain_logits[row], 4)} -> {np.round(logits[row], 4)}")


if __name__ == "__main__":
    app.run(main)
