"""The paper's Table 2 (GLUE test, BERT-base, K80, batch 128): the figures we compare to."""

# task: (BERT-base metric, PoWER-BERT metric, BERT ms/batch, PoWER-BERT ms/batch, speed-up)
PAPER_TABLE2 = {
    "CoLA": (52.5, 52.3, 898, 201, 4.5),
    "RTE": (68.1, 67.4, 3993, 1189, 3.4),
    "QQP": (71.2, 70.2, 1833, 405, 4.5),
    "MRPC": (88.7, 88.1, 1798, 674, 2.7),
    "SST-2": (93.0, 92.1, 905, 374, 2.4),
    "MNLI-m": (84.6, 83.8, 1867, 725, 2.6),
    "MNLI-mm": (84.0, 83.1, 1881, 908, 2.1),
    "QNLI": (91.0, 90.1, 1848, 916, 2.0),
    "STS-B": (85.8, 85.1, 881, 448, 2.0),
}
