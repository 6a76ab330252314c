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
from typing import ClassVar, Iterable, Sequence, Union

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
    mode: ClassVar[str] = "absolute"

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
        """{"retention": [l_1, ..., l_L], "sequence_length": N, "mode": "absolute"}, as
        saved in retention.json."""
        return {"retention": list(self.kept), "sequence_length": self.sequence_length,
                "mode": self.mode}

    def kept_at(self, length: int) -> tuple[int, ...]:
        """Vectors each layer keeps of inputs padded to `length`: min(l_j, length)."""
        return tuple(min(count, length) for count in self.kept)

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


def served_flop_bound(config: EncoderConfig, retention: "Retention",
                      batches: Iterable[tuple[int, int]]) -> float:
    """FLOP bound of the encoder as served with length buckets: plain over pruned FLOPs.

    Args:
        batches: (rows, padded length) of each served batch (`data.buckets.served_batches`).
            In a bucket of T < l_j tokens, layer j keeps all T (Hard-Extract's min(l_j, T)),
            so short buckets save less than padding to N does. A `RelativeRetention`
            keeps K_j(b) = ceil(f_j * b) in a bucket of b tokens (`kept_at`).
    """
    retention.check_layers(config.num_layers)
    plain = pruned = 0
    for rows, length in batches:
        plain += rows * encoder_flops(config, length)
        pruned += rows * encoder_flops(config, length, retention.kept_at(length))
    return plain / pruned


# -- Length-aware (relative) retention -------------------------------------------------

RETENTION_MODES = ("absolute", "relative")
# Fractions are held on a grid of 1e-4, so that ceil(f * T) is exact integer arithmetic,
# the same in Python, in the TensorFlow graph and in ONNX.
FRACTION_SCALE = 10_000


def fraction_units(fraction: float) -> int:
    """`fraction` in units of 1 / FRACTION_SCALE (the grid it is held on)."""
    return round(float(fraction) * FRACTION_SCALE)


def kept_count(fraction: float, length: int) -> int:
    """max(1, ceil(fraction * length)): the vectors an input of `length` tokens keeps."""
    return max(1, -(-fraction_units(fraction) * int(length) // FRACTION_SCALE))


@dataclasses.dataclass(frozen=True)
class RelativeRetention:
    """Kept word-vectors per layer as fractions of each input's real length.

    An input of real length T keeps ceil(f_j * T) word-vectors after layer j (at least
    1, [CLS]); in a length bucket of padded length b, Hard-Extract gathers the static
    K_j(b) = ceil(f_j * b) and masks out each example's extra ones (docs/method.md,
    "Length-aware (relative) retention").

    Attributes:
        fractions: (f_1, ..., f_L), each in (0, 1], non-increasing, rounded to 1e-4.
        sequence_length: N, the largest padded input length (the length of r in the search).
    """

    fractions: tuple[float, ...]
    sequence_length: int
    mode: ClassVar[str] = "relative"

    def __post_init__(self) -> None:
        n = self.sequence_length
        if not isinstance(n, int) or n < 1:
            raise PowerBertError(f"relative retention configuration: sequence length must be "
                                 f">= 1, got {n!r}")
        if not self.fractions:
            raise PowerBertError("relative retention configuration is empty")
        fractions, previous = [], 1.0
        for layer, fraction in enumerate(self.fractions, start=1):
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise PowerBertError(f"relative retention configuration: layer {layer} keeps "
                                     f"{fraction!r}, not a number")
            if not 0 < fraction <= 1:
                raise PowerBertError(
                    f"relative retention configuration: layer {layer} keeps the fraction "
                    f"{fraction:g}; each must be in (0, 1] (counts at N need "
                    f"--retention_mode=absolute)")
            fraction = fraction_units(fraction) / FRACTION_SCALE
            if fraction == 0:
                raise PowerBertError(f"relative retention configuration: layer {layer} keeps "
                                     f"the fraction {self.fractions[layer - 1]:g} < "
                                     f"{1 / FRACTION_SCALE:g}")
            if fraction > previous:
                raise PowerBertError(
                    f"relative retention configuration must be non-increasing: layer {layer} "
                    f"keeps {fraction:g} > layer {layer - 1} keeps {previous:g}")
            fractions.append(fraction)
            previous = fraction
        object.__setattr__(self, "fractions", tuple(fractions))

    @classmethod
    def from_masses(cls, masses: Iterable[float], sequence_length: int) -> "RelativeRetention":
        """The relative read-out: f_j = mass(j) / N, floored to the 1e-4 grid, clipped to
        (0, 1], then made non-increasing."""
        fractions: list[float] = []
        for mass in masses:
            units = math.floor(float(mass) / sequence_length * FRACTION_SCALE)
            units = min(max(1, units), FRACTION_SCALE, fractions[-1] if fractions else
                        FRACTION_SCALE)
            fractions.append(units)
        return cls(tuple(units / FRACTION_SCALE for units in fractions), sequence_length)

    @classmethod
    def parse(cls, text: str, sequence_length: int) -> "RelativeRetention":
        """Parses '0.8,0.5,0.3' (fractions of each input's length) from a command line."""
        try:
            fractions = tuple(float(part) for part in text.replace(" ", "").split(","))
        except ValueError:
            raise PowerBertError(
                f"relative retention configuration {text!r} is not a comma-separated list of "
                f"fractions in (0, 1], e.g. 0.8,0.5,0.3") from None
        return cls(fractions, sequence_length)

    def to_dict(self) -> dict:
        """{"retention": [f_1, ..., f_L], "sequence_length": N, "mode": "relative"}."""
        return {"retention": list(self.fractions), "sequence_length": self.sequence_length,
                "mode": self.mode}

    @classmethod
    def from_dict(cls, saved: dict, source: str) -> "RelativeRetention":
        try:
            fractions, length = saved["retention"], saved["sequence_length"]
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        try:
            return cls(tuple(fractions), length)
        except PowerBertError as error:
            raise PowerBertError(f"{source}: {error}") from None

    def kept_at(self, length: int) -> tuple[int, ...]:
        """K_j(length) = ceil(f_j * length) (>= 1) for every layer."""
        return tuple(kept_count(fraction, length) for fraction in self.fractions)

    def check_layers(self, num_layers: int) -> None:
        if len(self.fractions) != num_layers:
            raise PowerBertError(
                f"retention configuration has {len(self.fractions)} entries but the encoder "
                f"has {num_layers} layers")

    @property
    def num_layers(self) -> int:
        return len(self.fractions)

    @property
    def kept(self) -> tuple[int, ...]:
        """K_j(N): the counts an input of N real tokens keeps."""
        return self.kept_at(self.sequence_length)

    @property
    def total(self) -> int:
        return sum(self.kept)

    @property
    def word_vector_bound(self) -> float:
        """L*N / sum_j K_j(N), the word-vector bound of inputs padded to N."""
        return self.num_layers * self.sequence_length / self.total

    def __str__(self) -> str:
        return ",".join(f"{fraction:g}" for fraction in self.fractions)


Retention = Union[RetentionConfig, RelativeRetention]
RETENTION_CLASSES = {"absolute": RetentionConfig, "relative": RelativeRetention}


def check_mode(mode: str) -> None:
    if mode not in RETENTION_MODES:
        raise PowerBertError(f"--retention_mode={mode!r} is not one of "
                             f"{', '.join(RETENTION_MODES)}")


def parse_retention(text: str, sequence_length: int, mode: str) -> Retention:
    """--retention_config in `mode`: counts at N ("absolute") or fractions ("relative");
    a list of the other mode's kind is refused with a one-line error saying so."""
    check_mode(mode)
    if mode == "relative":
        return RelativeRetention.parse(text, sequence_length)
    try:
        return RetentionConfig.parse(text, sequence_length)
    except PowerBertError:
        if _fractions(text):
            raise PowerBertError(
                f"--retention_config={text} looks like fractions of each input's length, but "
                f"--retention_mode=absolute takes counts of word-vectors at N; pass "
                f"--retention_mode=relative") from None
        raise


def _fractions(text: str) -> bool:
    """Whether `text` is a comma-separated list of numbers in (0, 1]."""
    try:
        return all(0 < float(part) <= 1 for part in text.replace(" ", "").split(","))
    except ValueError:
        return False


def retention_from_dict(saved: dict, source: str, mode: str) -> Retention:
    """Reads a saved configuration (retention.json, run.json) that must be in `mode`;
    a file without "mode" is absolute (written before the relative mode existed)."""
    check_mode(mode)
    saved_mode = saved.get("mode", "absolute")
    if saved_mode not in RETENTION_MODES:
        raise PowerBertError(f"{source}: unknown retention mode {saved_mode!r}")
    if saved_mode != mode:
        raise PowerBertError(
            f"{source} holds a {saved_mode} retention configuration but this run has "
            f"--retention_mode={mode}; pass --retention_mode={saved_mode} or rerun the search "
            f"with --retention_mode={mode}")
    return RETENTION_CLASSES[mode].from_dict(saved, source)


def read_out(masses: Iterable[float], sequence_length: int, mode: str = "absolute") -> Retention:
    """The configuration read out of mass(j) in `mode` (floor(mass) or mass / N)."""
    check_mode(mode)
    return RETENTION_CLASSES[mode].from_masses(masses, sequence_length)


def make_retention(retention: Sequence[float], sequence_length: int, mode: str) -> Retention:
    """A configuration of `mode` from its list (counts or fractions)."""
    check_mode(mode)
    return RETENTION_CLASSES[mode](tuple(retention), sequence_length)
