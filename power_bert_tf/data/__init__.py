"""Input data: tokenization and packing."""
