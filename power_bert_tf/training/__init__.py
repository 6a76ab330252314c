"""Training: optimisation, the training loop, checkpoints and the three phases."""
