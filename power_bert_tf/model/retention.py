"""Retention configuration: how many word-vectors each encoder layer keeps.

The configuration (l_1, ..., l_L) is read out of the Soft-Extract retention
parameters r_j after the search (docs/method.md, "Reading out the retention configuration"):

    l_j = max(1, floor(mass(j))),  mass(j) = sum_i r_j[i],  then l_j = min(l_j, l_{j-1}).

Two upper bounds on the encoder's speed-up come with it: the paper's word-vector
bound L*N / sum_j l_j, and a FLOP bound computed from the layer shapes (docs/method.md,
"Speed-up bounds").
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    """Kept word-vectors per layer for inputs of `sequence_length` tokens.

    Attributes:
        kept: (l_1, ..., l_L), each in [1, N], non-increasing.
        sequence_length: N, the padded input length the configuration is for.
    """

    kept: tuple[int, ...]
    sequence_length: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "kept", tuple(self.kept))
        n = self.sequence_length
        if not isinstance(n, int) or n < 1:
            raise PowerBertError(f"retention configuration: sequence length must be >= 1, "
                                 f"got {n!r}")
        if not self.kept:
            raise PowerBertError("retention configuration is empty")
        previous = n
        for layer, count in enumerate(self.kept, start=1):
            if not isinstance(count, int) or isinstance(count, bool):
                raise PowerBertError(
                    f"retention configuration: layer {layer} keeps {count!r}, not an integer")
            if count < 1:
                raise PowerBertError(
                    f"retention configuration: layer {layer} keeps {count}; every layer "
                    f"must keep >= 1")
            if count > n:
                raise PowerBertError(
                    f"retention configuration: layer {layer} keeps {count} > sequence length {n}")
            if count > previous:
                raise PowerBertError(
                    f"retention configuration must be non-increasing: layer {layer} keeps "
                    f"{count} > layer {layer - 1} keeps {previous}")
            previous = count

    @classmethod
    def from_masses(cls, masses: Iterable[float], sequence_length: int) -> "RetentionConfig":
        """The read-out: floor each mass, at least 1, then make non-increasing."""
        kept: list[int] = []
        for mass in masses:
            count = max(1, math.floor(float(mass)))
            count = min(count, kept[-1] if kept else sequence_length)
            kept.append(count)
        return cls(tuple(kept), sequence_length)

    @classmethod
    def parse(cls, text: str, sequence_length: int) -> "RetentionConfig":
        """Parses '153,125,111,...' as given on a command line."""
        try:
            kept = tuple(int(part) for part in text.replace(" ", "").split(","))
        except ValueError:
            raise PowerBertError(
                f"retention configuration {text!r} is not a comma-separated list of "
                f"integers") from None
        return cls(kept, sequence_length)

    def to_dict(self) -> dict:
        """{"retention": [l_1, ..., l_L], "sequence_length": N}, as saved in retention.json."""
        return {"retention": list(self.kept), "sequence_length": self.sequence_length}

    @classmethod
    def from_dict(cls, saved: dict, source: str) -> "RetentionConfig":
        """Reads `to_dict`'s keys back; `source` names the file in errors."""
        try:
            kept, length = saved["retention"], saved["sequence_length"]
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        try:
            return cls(tuple(kept), length)
        except PowerBertError as error:
            raise PowerBertError(f"{source}: {error}") from None

    def check_layers(self, num_layers: int) -> None:
        if len(self.kept) != num_layers:
            raise PowerBertError(
                f"retention configuration has {len(self.kept)} entries but the encoder has "
                f"{num_layers} layers")

    @property
    def num_layers(self) -> int:
        return len(self.kept)

    @property
    def total(self) -> int:
        """sum_j l_j, the word-vectors processed by all layers together."""
        return sum(self.kept)

    @property
    def word_vector_bound(self) -> float:
        """The paper's speed-up bound, L*N / sum_j l_j."""
        return self.num_layers * self.sequence_length / self.total

    def __str__(self) -> str:
        return ",".join(str(count) for count in self.kept)


def layer_flops(config: EncoderConfig, received: int, kept: int) -> int:
    """Multiply-add FLOPs (x2) of one encoder layer.

    Projections (Q, K, V, output) and attention run on the `received` vectors
    n_{j-1}; the feed-forward block runs on the `kept` vectors n_j.
    """
    d, i = config.hidden_size, config.intermediate_size
    projections = 4 * 2 * received * d * d
    attention = 2 * 2 * received * received * d  # Q K^T and A V
    feed_forward = 2 * 2 * kept * d * i
    return projections + attention + feed_forward


def encoder_flops(config: EncoderConfig, sequence_length: int,
                  kept: Sequence[int] | None = None) -> int:
    """FLOPs of all layers on one example; `kept=None` means no elimination."""
    kept = list(kept) if kept is not None else [sequence_length] * config.num_layers
    total, received = 0, sequence_length
    for count in kept:
        count = min(count, received)
        total += layer_flops(config, received, count)
        received = count
    return total


def flop_bound(config: EncoderConfig, retention: RetentionConfig) -> float:
    """Speed-up bound of the encoder from FLOPs: full model over pruned model."""
    retention.check_layers(config.num_layers)
    n = retention.sequence_length
    return encoder_flops(config, n) / encoder_flops(config, n, retention.kept)


def served_flop_bound(config: EncoderConfig, retention: RetentionConfig,
                      batches: Iterable[tuple[int, int]]) -> float:
    """FLOP bound of the encoder as served with length buckets: plain over pruned FLOPs.

    Args:
        batches: (rows, padded length) of each served batch (`data.buckets.served_batches`).
            In a bucket of T < l_j tokens, layer j keeps all T (Hard-Extract's min(l_j, T)),
            so short buckets save less than padding to N does.
    """
    retention.check_layers(config.num_layers)
    plain = pruned = 0
    for rows, length in batches:
        plain += rows * encoder_flops(config, length)
        pruned += rows * encoder_flops(config, length, retention.kept)
    return plain / pruned
