"""The phases of a PoWER-BERT run, above training and serving: fine-tune, search,
retrain, evaluate, predict, export (`phases.PHASES`, one entry each), the context they
share, the layout of their output folders, and the run configuration."""
