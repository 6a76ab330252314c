"""power-bert-tf."""
