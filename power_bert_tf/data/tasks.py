"""Tasks: the GLUE benchmark and user-defined TSV/CSV/JSON Lines classification or regression.

A `Task` names its labels and metric and reads `Example`s per split ("train", "dev",
"test"). `get_task` builds one from a local `glue_data/` folder (one sub-folder per task,
the official GLUE TSV files), from TensorFlow Datasets, or from a `CustomTaskSpec`.

Every row is checked as it is read; a bad file, column, row, label or text raises a
one-line `PowerBertError` naming it as `<file>:<line>` (1-based physical lines; a quoted
CSV field holding newlines spans several). GLUE and custom TSV files are read without
quoting (`csv.QUOTE_NONE`), as the GLUE reference processors do; CSV files use standard
double-quote quoting (fields may hold commas, quotes and newlines); JSON Lines files
(`.jsonl`) hold one object per line, its keys naming the columns. Labels are compared
as the strings written in the file ("1.0" is not the label "1").
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from power_bert_tf.data.rows import Column, Columns, Example, Table, read_table
from power_bert_tf.errors import PowerBertError

SPLITS = ("train", "dev", "test")
CUSTOM_SUFFIXES = (".tsv", ".csv", ".jsonl")
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews")
REGRESSION_METRICS = ("spearman", "pearson")



@dataclasses.dataclass(frozen=True)
class Task:
    """A classification or regression task over single texts or text pairs.

    Attributes:
        name: "SST-2", "MNLI-m", "custom", ...
        labels: label strings in class-index order; None for regression.
        metric: primary metric, one of `CLASSIFICATION_METRICS` or `REGRESSION_METRICS`.
        is_pair: whether examples have a `text_b`.
        readers: split name -> function yielding that split's examples, row by row.
    """

    name: str
    labels: tuple[str, ...] | None
    metric: str
    is_pair: bool
    readers: Mapping[str, Callable[[], Iterable[Example]]] = dataclasses.field(
        repr=False, compare=False)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_classes(self) -> int:
        """Number of classifier outputs: 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    def read(self, split: str) -> list[Example]:
        """The examples of `split` ("train", "dev", or "test" where the task has one)."""
        return list(self.stream(split))

    def stream(self, split: str) -> Iterator[Example]:
        """The examples of `split` one at a time, read (and checked) as they are used, so
        a file larger than memory can be predicted."""
        if split not in self.readers:
            raise PowerBertError(f"task {self.name} has no split {split!r} "
                                 f"(splits: {', '.join(self.readers)})")
        return iter(self.readers[split]())


@dataclasses.dataclass(frozen=True, kw_only=True)
class CustomTaskSpec:
    """A user task from TSV (`.tsv`), CSV (`.csv`) or JSON Lines (`.jsonl`) files.

    Attributes:
        train_file, dev_file, test_file: the files; relative paths are taken relative to
            the `data_dir` given to `get_task`. The test file is read unlabelled.
        text_a_column, text_b_column: the text columns (b for pairs): header names, or
            0-based indices (negative from the end) of TSV/CSV files; JSON keys.
        label_column: the label column, likewise.
        labels: the label strings in class-index order; None for regression (numbers).
        metric: primary metric; default "accuracy", or "spearman" for regression.
        header: whether TSV/CSV files start with a header row; without one, columns
            must be indices (the layout of SentEval and of GLUE's CoLA).
    """

    train_file: str | Path
    dev_file: str | Path
    text_a_column: Column
    text_b_column: Column | None = None
    label_column: Column
    labels: tuple[str, ...] | None
    metric: str | None = None
    test_file: str | Path | None = None
    header: bool = True


@dataclasses.dataclass(frozen=True)
class _GlueSpec:
    """A GLUE task: its folder, files and columns, and its TensorFlow Datasets config."""

    name: str
    folder: str
    labels: tuple[str, ...] | None
    metric: str
    columns: Columns  # train and dev
    test_columns: Columns
    tfds_config: str
    tfds_texts: tuple[str, str | None]
    files: tuple[str, str, str] = ("train.tsv", "dev.tsv", "test.tsv")
    tfds_splits: tuple[str, str, str] = ("train", "validation", "test")
    headerless: tuple[str, ...] | None = None  # train/dev column names when they lack a header

    @property
    def is_pair(self) -> bool:
        return self.columns.text_b is not None


# Label orders of the GLUE reference processors (BERT run_classifier / transformers glue.py).
_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")
_MNLI = ("contradiction", "entailment", "neutral")
_PAIR_COLUMNS = Columns(1, 2, 3)
_GLUE_SPECS = (
    _GlueSpec("CoLA", "CoLA", _BINARY, "matthews", Columns(3, None, 1), Columns(1, None, None),
              "cola", ("sentence", None), headerless=("source", "label", "mark", "sentence")),
    _GlueSpec("SST-2", "SST-2", _BINARY, "accuracy", Columns(0, None, 1),
              Columns(1, None, None), "sst2", ("sentence", None)),
    _GlueSpec("MRPC", "MRPC", _BINARY, "f1", Columns(3, 4, 0), Columns(3, 4, None),
              "mrpc", ("sentence1", "sentence2")),
    _GlueSpec("STS-B", "STS-B", None, "spearman", Columns(7, 8, -1), Columns(7, 8, None),
              "stsb", ("sentence1", "sentence2")),
    _GlueSpec("QQP", "QQP", _BINARY, "f1", Columns(3, 4, 5), Columns(1, 2, None),
              "qqp", ("question1", "question2")),
    _GlueSpec("MNLI-m", "MNLI", _MNLI, "accuracy",
              Columns(8, 9, -1), Columns(8, 9, None), "mnli", ("premise", "hypothesis"),
              files=("train.tsv", "dev_matched.tsv", "test_matched.tsv"),
              tfds_splits=("train", "validation_matched", "test_matched")),
    _GlueSpec("MNLI-mm", "MNLI", _MNLI, "accuracy",
              Columns(8, 9, -1), Columns(8, 9, None), "mnli", ("premise", "hypothesis"),
              files=("train.tsv", "dev_mismatched.tsv", "test_mismatched.tsv"),
              tfds_splits=("train", "validation_mismatched", "test_mismatched")),
    _GlueSpec("QNLI", "QNLI", _NLI, "accuracy", _PAIR_COLUMNS, Columns(1, 2, None),
              "qnli", ("question", "sentence")),
    _GlueSpec("RTE", "RTE", _NLI, "accuracy", _PAIR_COLUMNS, Columns(1, 2, None),
              "rte", ("sentence1", "sentence2")),
    _GlueSpec("WNLI", "WNLI", _BINARY, "accuracy", _PAIR_COLUMNS, Columns(1, 2, None),
              "wnli", ("sentence1", "sentence2")),
)
_GLUE = {spec.name.lower(): spec for spec in _GLUE_SPECS}
_ALIASES = {"mnli": "mnli-m"}
CUSTOM = "custom"
TASK_NAMES = tuple(spec.name for spec in _GLUE_SPECS) + (CUSTOM,)


def default_glue_dir() -> Path | None:
    """`$GLUE_DIR` if set, else `../shared/glue` next to the repository if it exists."""
    if "GLUE_DIR" in os.environ:
        return Path(os.environ["GLUE_DIR"])
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "glue"
    return shared if shared.is_dir() else None


def canonical_task_name(name: str) -> str:
    """"sst-2" -> "SST-2", "mnli" -> "MNLI-m"; an unknown name is a one-line error."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key == CUSTOM:
        return CUSTOM
    if key not in _GLUE:
        raise PowerBertError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)} "
                             f"(MNLI = MNLI-m)")
    return _GLUE[key].name


def get_task(name: str, data_dir: str | Path | None = None, *, source: str = "files",
             custom: CustomTaskSpec | None = None, download: bool = True) -> Task:
    """The task called `name` (case-insensitive; "MNLI" means "MNLI-m").

    Args:
        name: a GLUE task name or "custom".
        data_dir: with source "files", the `glue_data/` folder (default `default_glue_dir()`);
            with source "tfds", the TensorFlow Datasets data folder (default TFDS's own);
            for "custom", the folder that relative file names in `custom` are relative to.
        source: "files" (local TSV files) or "tfds" (TensorFlow Datasets' `glue/<config>`).
        custom: the files and columns of the "custom" task.
        download: with source "tfds", download and prepare a dataset missing from data_dir.
    """
    canonical = canonical_task_name(name)
    if canonical == CUSTOM:
        if custom is None:
            raise PowerBertError("task 'custom' needs its files, columns and labels "
                                 "(--train_file, --dev_file, --text_a_column, ...)")
        if source != "files":
            raise PowerBertError(f"task 'custom' reads its own files; got --data_source={source}")
        return _custom_task(custom, data_dir)
    spec = _GLUE[canonical.lower()]
    if source == "files":
        return _glue_file_task(spec, data_dir)
    if source == "tfds":
        return _glue_tfds_task(spec, data_dir, download)
    raise PowerBertError(f"unknown --data_source={source!r}; use 'files' or 'tfds'")


def _glue_file_task(spec: _GlueSpec, data_dir: str | Path | None) -> Task:
    root = Path(data_dir) if data_dir is not None else default_glue_dir()
    if root is None:
        raise PowerBertError("no GLUE data folder: set --data_dir or $GLUE_DIR")
    folder = root / spec.folder
    if not folder.is_dir():
        raise PowerBertError(f"GLUE data folder {folder} for task {spec.name} does not exist "
                             f"(set --data_dir or $GLUE_DIR)")
    tables = (Table(folder / spec.files[0], spec.columns, spec.headerless),
              Table(folder / spec.files[1], spec.columns, spec.headerless),
              Table(folder / spec.files[2], spec.test_columns))
    return Task(spec.name, spec.labels, spec.metric, spec.is_pair,
                {split: functools.partial(read_table, table, spec.labels)
                 for split, table in zip(SPLITS, tables)})


def _custom_task(spec: CustomTaskSpec, data_dir: str | Path | None) -> Task:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise PowerBertError(f"data folder {data_dir} does not exist (--data_dir)")
    labels = None if spec.labels is None else tuple(spec.labels)
    if labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels)):
        raise PowerBertError(f"custom task labels must be two or more distinct strings, "
                             f"got {', '.join(labels) or 'none'}")
    metric = spec.metric or ("accuracy" if labels else "spearman")
    allowed = CLASSIFICATION_METRICS if labels else REGRESSION_METRICS
    if metric not in allowed:
        kind = "classification" if labels else "regression"
        raise PowerBertError(f"metric {metric!r} does not suit {kind}; use one of "
                             f"{', '.join(allowed)}")
    if metric == "f1" and len(labels) != 2:
        raise PowerBertError(f"metric 'f1' needs two labels (the second is positive), "
                             f"got {len(labels)}")
    labelled = Columns(spec.text_a_column, spec.text_b_column, spec.label_column)
    if not spec.header and not all(isinstance(column, int) or column is None
                                   for column in dataclasses.astuple(labelled)):
        raise PowerBertError("files without a header row need column indices (0-based), "
                             "got " + ", ".join(repr(c) for c in dataclasses.astuple(labelled)
                                                if c is not None))
    files = {"train": spec.train_file, "dev": spec.dev_file, "test": spec.test_file}
    readers = {}
    for split, file in files.items():
        if file is None:
            continue
        path = Path(data_dir or ".") / file
        if path.suffix.lower() not in CUSTOM_SUFFIXES:
            raise PowerBertError(f"{path}: custom task files must end in "
                                 f"{', '.join(CUSTOM_SUFFIXES)}")
        columns = labelled if split != "test" else dataclasses.replace(labelled, label=None)
        table = Table(path, columns, header=spec.header)
        readers[split] = functools.partial(read_table, table, labels)
    return Task(CUSTOM, labels, metric, spec.text_b_column is not None, readers)


def _glue_tfds_task(spec: _GlueSpec, data_dir: str | Path | None, download: bool) -> Task:
    return Task(spec.name, spec.labels, spec.metric, spec.is_pair,
                {split: functools.partial(_read_tfds, spec, tfds_split, data_dir, download)
                 for split, tfds_split in zip(SPLITS, spec.tfds_splits)})


def _read_tfds(spec: _GlueSpec, split: str, data_dir: str | Path | None,
               download: bool) -> list[Example]:
    """TensorFlow Datasets' `glue/<config>` split as Examples, labels in GLUE's order."""
    import tensorflow_datasets as tfds

    name = f"glue/{spec.tfds_config}"
    try:
        dataset, info = tfds.load(name, split=split, data_dir=data_dir, download=download,
                                  with_info=True)
        records = list(tfds.as_numpy(dataset))
    except Exception as error:  # tfds raises many types: network, missing data, imports.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PowerBertError(f"cannot load TensorFlow Datasets {name} split {split} "
                             f"(offline?): {reason[:200]}; use --data_source=files with a "
                             f"local glue_data/ folder") from None
    # TFDS label names differ from GLUE's strings where the order differs (MNLI); map by name.
    names = info.features["label"].names if spec.labels else ()
    order = ([spec.labels.index(n) for n in names] if set(names) == set(spec.labels or ())
             else list(range(len(names))))
    key_a, key_b = spec.tfds_texts
    examples = []
    for record in records:
        if split.startswith("test"):  # TFDS labels GLUE's unlabelled test rows -1
            label = None
        elif spec.labels is None:
            label = float(record["label"])
        else:
            label = order[record["label"]]
        examples.append(Example(record[key_a].decode("utf-8"),
                                record[key_b].decode("utf-8") if key_b else None, label))
    return examples
