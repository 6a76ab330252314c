"""Typed configuration shared by the library: the encoder's shape."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from power_bert_tf.errors import PowerBertError

# Hugging Face `hidden_act` names -> our activation names (see model/encoder.py).
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate",
                   "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape of a BERT encoder; field names are `BertEncoder` arguments."""

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

    def __post_init__(self) -> None:
        for name in ("vocabulary_size", "num_layers", "hidden_size", "num_heads",
                     "intermediate_size", "max_sequence_length", "type_vocabulary_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PowerBertError(f"encoder config: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise PowerBertError(
                f"encoder config: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}")
        if self.activation not in ("gelu", "gelu_approximate", "relu"):
            raise PowerBertError(f"encoder config: unsupported activation {self.activation!r}")

    @classmethod
    def from_bert_json(cls, config: Mapping[str, Any], source: str = "config") -> "EncoderConfig":
        """Reads a Hugging Face `config.json` or a Google `bert_config.json`."""
        try:
            activation = config.get("hidden_act", "gelu")
            if activation not in _HF_ACTIVATIONS:
                raise PowerBertError(f"{source}: unsupported hidden_act {activation!r}")
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
                activation=_HF_ACTIVATIONS[activation],
            )
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
