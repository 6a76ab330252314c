"""Training: optimisation, the training loop, checkpoints, distribution and the
speed-up controller; the phases that use them are in `power_bert_tf.pipeline`."""
