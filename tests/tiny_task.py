"""A tiny BERT folder and a tiny sentiment task, for end-to-end phase tests in seconds."""
from __future__ import annotations

import csv
import random
from pathlib import Path

from checkpoint_writers import canonical_from_encoder, write_hf_folder
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.encoder import BertEncoder

POSITIVE = ["good", "great", "fine", "nice", "fun", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak"]
NEUTRAL = ["the", "a", "movie", "film", "plot", "actor", "was", "is", "very", "story", "and"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + POSITIVE + NEGATIVE + NEUTRAL


def tiny_config(hidden_size: int = 32) -> EncoderConfig:
    return EncoderConfig(vocabulary_size=len(VOCAB), num_layers=3, hidden_size=hidden_size,
                         num_heads=4, intermediate_size=2 * hidden_size,
                         max_sequence_length=64, dropout=0.0, attention_dropout=0.0)


def write_tiny_model(folder: Path, hidden_size: int = 32, seed: int = 0) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    config = tiny_config(hidden_size)
    encoder = BertEncoder(**config.to_dict())
    return write_hf_folder(folder, canonical_from_encoder(encoder), config, VOCAB)


def sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 10))]
    words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words) + " ."


def write_tiny_task(folder: Path, train: int = 48, dev: int = 16, seed: int = 0,
                    delimiter: str = "\t") -> tuple[Path, Path]:
    """train/dev files with columns `text` and `label` (neg/pos)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "tsv" if delimiter == "\t" else "csv"
    paths = []
    for split, count in (("train", train), ("dev", dev)):
        path = folder / f"{split}.{suffix}"
        with path.open("w", newline="") as file:
            writer = csv.writer(file, delimiter=delimiter, lineterminator="\n")
            writer.writerow(["text", "label"])
            for index in range(count):
                label = index % 2
                writer.writerow([sentence(rng, label), ["neg", "pos"][label]])
        paths.append(path)
    return paths[0], paths[1]


def tiny_run_config(model: str | Path, train: str | Path, dev: str | Path,
                    output_dir: str | Path, /, **overrides):
    """A `RunConfig` for every phase on the tiny task, in seconds; `overrides` (any
    `RunConfig` field, `model` too) win."""
    from power_bert_tf.pipeline.config import RunConfig
    from power_bert_tf.data.tasks import CustomTaskSpec

    custom = CustomTaskSpec(train_file=str(train), dev_file=str(dev), text_a_column="text",
                            label_column="label", labels=("neg", "pos"))
    options = dict(task="custom", phase="all", output_dir=str(output_dir), model=str(model),
                   max_seq_length=16, batch_size=8, eval_batch_size=8, learning_rate=5e-3,
                   soft_extract_learning_rate=5e-2, mass_lambda=1e-2, finetune_epochs=2,
                   search_epochs=2, retrain_epochs=2, custom=custom)
    return RunConfig(**{**options, **overrides})
