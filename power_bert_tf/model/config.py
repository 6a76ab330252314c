"""EncoderConfig: the shape of a BERT or ALBERT encoder, read from its config file."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from power_bert_tf.errors import PowerBertError

# Hugging Face `hidden_act` names -> our activation names (see model/encoder.py).
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate",
                   "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}
# Google's ALBERT code computes "gelu" with the tanh approximation.
_GOOGLE_ALBERT_ACTIVATIONS = {"gelu": "gelu_approximate", "relu": "relu"}
MODEL_TYPES = ("bert", "albert")
# How Hard-Extract selects the vectors it keeps: PoWER-BERT (attention) or the ablation's
# static baselines (docs/method.md, "Ablation").
SELECTIONS = ("attention", "head", "random")
# Distillation from the fine-tuned model (training/distillation.py), and how deep the
# teacher's per-example ranking of positions is kept (its top-k is at most this).
DISTILL_MODES = ("none", "logits", "logits+ranking")
RANK_DEPTH = 64
# What an encoder computes in: trained (model/policy.py, TRAINING_POLICIES), evaluated,
# timed and served (serving/precision.py).
PRECISIONS = ("fp32", "bf16")
_ALBERT_FIELDS = ("embedding_size", "num_hidden_groups")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape of a BERT or ALBERT encoder.

    `model_type` picks the encoder class (`BertEncoder` or `AlbertEncoder`); every
    other field is an argument of it. `embedding_size` and `num_hidden_groups` are
    ALBERT's (None and 1 for BERT): the factorised embedding width E and the number
    of groups of layers that share weights.
    """

    vocabulary_size: int
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    max_sequence_length: int = 512
    type_vocabulary_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_epsilon: float = 1e-12
    activation: str = "gelu"
    model_type: str = "bert"
    embedding_size: int | None = None
    num_hidden_groups: int = 1

    def __post_init__(self) -> None:
        for name in ("vocabulary_size", "num_layers", "hidden_size", "num_heads",
                     "intermediate_size", "max_sequence_length", "type_vocabulary_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PowerBertError(f"encoder config: {name} must be a positive integer, "
                                     f"got {value!r}")
        if self.hidden_size % self.num_heads:
            raise PowerBertError(
                f"encoder config: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}")
        if self.activation not in ("gelu", "gelu_approximate", "relu"):
            raise PowerBertError(f"encoder config: unsupported activation {self.activation!r}")
        if self.model_type not in MODEL_TYPES:
            raise PowerBertError(f"encoder config: model_type must be one of "
                                 f"{', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if self.model_type == "bert":
            if (self.embedding_size, self.num_hidden_groups) != (None, 1):
                raise PowerBertError("encoder config: embedding_size and num_hidden_groups "
                                     "are ALBERT's; set model_type='albert'")
            return
        if not isinstance(self.embedding_size, int) or self.embedding_size < 1:
            raise PowerBertError(f"encoder config: ALBERT needs a positive integer "
                                 f"embedding_size, got {self.embedding_size!r}")
        if not isinstance(self.num_hidden_groups, int) or not (
                1 <= self.num_hidden_groups <= self.num_layers):
            raise PowerBertError(f"encoder config: num_hidden_groups must be in [1, "
                                 f"{self.num_layers}], got {self.num_hidden_groups!r}")

    @classmethod
    def from_bert_json(cls, config: Mapping[str, Any], source: str = "config") -> "EncoderConfig":
        """Reads a Hugging Face `config.json` or a Google `bert_config.json`."""
        return cls._from_json(config, source, _HF_ACTIVATIONS)

    @classmethod
    def from_albert_json(cls, config: Mapping[str, Any], source: str = "config", *,
                         google: bool) -> "EncoderConfig":
        """Reads a Google `albert_config.json` (`google=True`, where "gelu" is the tanh
        approximation) or a Hugging Face ALBERT `config.json`."""
        inner_group_num = config.get("inner_group_num", 1)
        if inner_group_num != 1:
            raise PowerBertError(f"{source}: inner_group_num {inner_group_num!r} is not "
                                 f"supported (only 1, as in every released ALBERT)")
        try:
            extra = {"embedding_size": int(config["embedding_size"]),
                     "num_hidden_groups": int(config.get("num_hidden_groups", 1))}
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        activations = _GOOGLE_ALBERT_ACTIVATIONS if google else _HF_ACTIVATIONS
        return cls._from_json(config, source, activations, model_type="albert", **extra)

    @classmethod
    def _from_json(cls, config: Mapping[str, Any], source: str,
                   activations: Mapping[str, str], **extra) -> "EncoderConfig":
        activation = config.get("hidden_act", "gelu")
        if activation not in activations:
            raise PowerBertError(f"{source}: unsupported hidden_act {activation!r}")
        try:
            return cls(
                vocabulary_size=int(config["vocab_size"]),
                num_layers=int(config["num_hidden_layers"]),
                hidden_size=int(config["hidden_size"]),
                num_heads=int(config["num_attention_heads"]),
                intermediate_size=int(config["intermediate_size"]),
                max_sequence_length=int(config.get("max_position_embeddings", 512)),
                type_vocabulary_size=int(config.get("type_vocab_size", 2)),
                dropout=float(config.get("hidden_dropout_prob", 0.1)),
                attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
                layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
                activation=activations[activation],
                **extra,
            )
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        except PowerBertError as error:
            raise PowerBertError(f"{source}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The encoder class's constructor arguments: every field but `model_type`, and
        for BERT not ALBERT's `embedding_size` and `num_hidden_groups`."""
        fields = dataclasses.asdict(self)
        del fields["model_type"]
        if self.model_type == "bert":
            for name in _ALBERT_FIELDS:
                del fields[name]
        return fields
