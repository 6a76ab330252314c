"""Pre-trained weights: the embedded MiniLM, Hugging Face and Google BERT and ALBERT folders;
`FAMILIES` names what differs between BERT and ALBERT."""
from power_bert_tf.weights.families import FAMILIES, ModelFamily, get_family
from power_bert_tf.weights.pretrained import PretrainedBert, load_pretrained

__all__ = ["FAMILIES", "ModelFamily", "PretrainedBert", "get_family", "load_pretrained"]
