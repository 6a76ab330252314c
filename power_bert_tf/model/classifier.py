"""Classification / regression head on the [CLS] vector of a `BertEncoder`."""
from __future__ import annotations

import keras

# A saved classifier holds a BertEncoder or an AlbertEncoder: importing both registers
# them, so `keras.saving.load_model` can rebuild either.
from power_bert_tf.model.albert import AlbertEncoder  # noqa: F401
from power_bert_tf.model.encoder import BertEncoder


@keras.saving.register_keras_serializable(package="power_bert_tf")
class BertClassifier(keras.Model):
    """Encoder -> pooled [CLS] -> dropout -> dense logits.

    Args:
        encoder: a `BertEncoder` (with or without extract layers).
        num_classes: number of labels; 1 makes a regression head (STS-B).
        dropout: dropout on the pooled vector.

    Inputs: the encoder's dict of (B, T) int32 tensors.
    Outputs: (B, num_classes) logits (or scores for regression).
    """

    def __init__(self, encoder: BertEncoder, num_classes: int, dropout: float = 0.1, **kwargs):
        inputs = encoder.input
        pooled = encoder(inputs)["pooled_output"]
        pooled = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
        logits = keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="logits")(pooled)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_classes": self.num_classes, "dropout": self.dropout}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
