"""Inference benchmark: measured speed-up of Hard-Extract over the same BERT, per execution mode."""
