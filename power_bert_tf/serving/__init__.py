"""Serving: bucketed XLA inference, SavedModel export for TF Serving, and a REST client."""
