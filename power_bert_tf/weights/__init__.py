"""Pre-trained weights: the embedded MiniLM, Hugging Face and Google BERT and ALBERT folders."""
from power_bert_tf.weights.pretrained import PretrainedBert, load_pretrained

__all__ = ["PretrainedBert", "load_pretrained"]
