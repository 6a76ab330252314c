"""Demo: PoWER-BERT word-vector elimination on the embedded MiniLM, offline.

Tokenizes a few sentences in the graph, runs the encoder with and without
Hard-Extract under one retention configuration, and prints per layer how many
word-vectors each layer keeps and which tokens survive, plus the outputs of an
(untrained, seeded) 2-class head on both models.

    python experiments/demo.py [--retention=16,12,9,6,4,2] [--max_seq_length=32]
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.model.classifier import BertClassifier  # noqa: E402
from power_bert_tf.model.retention import RetentionConfig, flop_bound  # noqa: E402
from power_bert_tf.weights import load_pretrained  # noqa: E402

flags.DEFINE_string("model", "embedded", "Weights: 'embedded' or a Hugging Face / Google "
                    "BERT folder.")
flags.DEFINE_integer("max_seq_length", 32, "Padded input length N.")
flags.DEFINE_string("retention", "16,12,9,6,4,2",
                    "Kept word-vectors per layer, comma-separated, non-increasing, one per "
                    "encoder layer.")
flags.DEFINE_integer("seed", 0, "Seed of the untrained classification head.")
FLAGS = flags.FLAGS

SENTENCES = [
    "The movie was a complete waste of time, and the acting was even worse.",
    "An utterly charming, funny and beautifully shot film about growing up.",
    "It is neither the best nor the worst thriller I have seen this year.",
]


@exit_on_user_error
def main(argv):
    del argv
    pretrained = load_pretrained(FLAGS.model)
    retention = RetentionConfig.parse(FLAGS.retention, FLAGS.max_seq_length)
    retention.check_layers(pretrained.config.num_layers)

    tokenizer = pretrained.tokenizer(FLAGS.max_seq_length)
    inputs = tokenizer(tf.constant(SENTENCES))
    keras.utils.set_random_seed(FLAGS.seed)
    plain = BertClassifier(pretrained.build_encoder(), num_classes=2)
    pruned_encoder = pretrained.build_encoder(extract="hard", retention=list(retention.kept),
                                              sequence_length=FLAGS.max_seq_length)
    pruned = BertClassifier(pruned_encoder, num_classes=2)
    pruned.get_layer("logits").set_weights(plain.get_layer("logits").get_weights())

    print(f"model: {pretrained.source}")
    print(f"retention configuration (N={retention.sequence_length}): {retention}  "
          f"word-vector bound {retention.word_vector_bound:.2f}x, "
          f"FLOP bound {flop_bound(pretrained.config, retention):.2f}x")
    outputs = pruned_encoder(inputs)
    lengths = np.asarray(inputs["input_mask"]).sum(axis=1)
    for row, sentence in enumerate(SENTENCES):
        ids = np.asarray(inputs["input_word_ids"][row])
        print(f"\n[{row}] {sentence}  ({lengths[row]} tokens)")
        for layer, (positions, mask) in enumerate(
                zip(outputs["kept_positions"], _kept_masks(outputs, inputs)), start=1):
            kept = [p for p, m in zip(np.asarray(positions[row]), mask[row]) if m]
            tokens = " ".join(tokenizer.ids_to_tokens(ids[kept]))
            print(f"  layer {layer}: {retention.kept[layer - 1]:2d} vectors kept, "
                  f"{len(kept):2d} real tokens | {tokens}")

    plain_logits, pruned_logits = np.asarray(plain(inputs)), np.asarray(pruned(inputs))
    print("\nuntrained 2-class head (seeded), logits without -> with elimination:")
    for row in range(len(SENTENCES)):
        print(f"  [{row}] {np.round(plain_logits[row], 4)} -> {np.round(pruned_logits[row], 4)}")
    print("\nThe head is untrained here; `python run_glue.py` fine-tunes, searches and retrains.")


def _kept_masks(outputs, inputs):
    """Per layer (B, n_j) masks of real tokens among the kept vectors."""
    mask = np.asarray(inputs["input_mask"])
    return [np.take_along_axis(mask, np.asarray(p), axis=1) for p in outputs["kept_positions"]]


if __name__ == "__main__":
    app.run(main)
