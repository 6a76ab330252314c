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

import csv
import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from power_bert_tf.errors import PowerBertError

SPLITS = ("train", "dev", "test")
CUSTOM_SUFFIXES = (".tsv", ".csv", ".jsonl")
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews")
REGRESSION_METRICS = ("spearman", "pearson")

Column = int | str  # 0-based position (negative counts from the end) or header name


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One input: text (or text pair) and its label.

    Attributes:
        text_a: first text.
        text_b: second text of a pair task, else None.
        label: class index, regression score, or None when unlabelled (test splits).
    """

    text_a: str
    text_b: str | None
    label: int | float | None


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
class _Columns:
    """Where a file's texts and label are; `label` None reads the file unlabelled."""

    text_a: Column
    text_b: Column | None
    label: Column | None


@dataclasses.dataclass(frozen=True)
class _Table:
    """One split's file; `names` are the columns of a file without a header row, and
    `header` False reads such a file with index columns and any row width."""

    path: Path
    columns: _Columns
    names: tuple[str, ...] | None = None
    header: bool = True


@dataclasses.dataclass(frozen=True)
class _GlueSpec:
    """A GLUE task: its folder, files and columns, and its TensorFlow Datasets config."""

    name: str
    folder: str
    labels: tuple[str, ...] | None
    metric: str
    columns: _Columns  # train and dev
    test_columns: _Columns
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
_PAIR_COLUMNS = _Columns(1, 2, 3)
_GLUE_SPECS = (
    _GlueSpec("CoLA", "CoLA", _BINARY, "matthews", _Columns(3, None, 1), _Columns(1, None, None),
              "cola", ("sentence", None), headerless=("source", "label", "mark", "sentence")),
    _GlueSpec("SST-2", "SST-2", _BINARY, "accuracy", _Columns(0, None, 1),
              _Columns(1, None, None), "sst2", ("sentence", None)),
    _GlueSpec("MRPC", "MRPC", _BINARY, "f1", _Columns(3, 4, 0), _Columns(3, 4, None),
              "mrpc", ("sentence1", "sentence2")),
    _GlueSpec("STS-B", "STS-B", None, "spearman", _Columns(7, 8, -1), _Columns(7, 8, None),
              "stsb", ("sentence1", "sentence2")),
    _GlueSpec("QQP", "QQP", _BINARY, "f1", _Columns(3, 4, 5), _Columns(1, 2, None),
              "qqp", ("question1", "question2")),
    _GlueSpec("MNLI-m", "MNLI", _MNLI, "accuracy",
              _Columns(8, 9, -1), _Columns(8, 9, None), "mnli", ("premise", "hypothesis"),
              files=("train.tsv", "dev_matched.tsv", "test_matched.tsv"),
              tfds_splits=("train", "validation_matched", "test_matched")),
    _GlueSpec("MNLI-mm", "MNLI", _MNLI, "accuracy",
              _Columns(8, 9, -1), _Columns(8, 9, None), "mnli", ("premise", "hypothesis"),
              files=("train.tsv", "dev_mismatched.tsv", "test_mismatched.tsv"),
              tfds_splits=("train", "validation_mismatched", "test_mismatched")),
    _GlueSpec("QNLI", "QNLI", _NLI, "accuracy", _PAIR_COLUMNS, _Columns(1, 2, None),
              "qnli", ("question", "sentence")),
    _GlueSpec("RTE", "RTE", _NLI, "accuracy", _PAIR_COLUMNS, _Columns(1, 2, None),
              "rte", ("sentence1", "sentence2")),
    _GlueSpec("WNLI", "WNLI", _BINARY, "accuracy", _PAIR_COLUMNS, _Columns(1, 2, None),
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
    tables = (_Table(folder / spec.files[0], spec.columns, spec.headerless),
              _Table(folder / spec.files[1], spec.columns, spec.headerless),
              _Table(folder / spec.files[2], spec.test_columns))
    return Task(spec.name, spec.labels, spec.metric, spec.is_pair,
                {split: functools.partial(_read_table, table, spec.labels)
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
    labelled = _Columns(spec.text_a_column, spec.text_b_column, spec.label_column)
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
        table = _Table(path, columns, header=spec.header)
        readers[split] = functools.partial(_read_table, table, labels)
    return Task(CUSTOM, labels, metric, spec.text_b_column is not None, readers)


def _read_table(table: _Table, labels: tuple[str, ...] | None) -> Iterator[Example]:
    """Reads and checks the rows of `table` one by one; `labels` None means regression."""
    path = table.path
    if not path.is_file():
        raise PowerBertError(f"{path}: no such file")
    label_ids = {label: index for index, label in enumerate(labels or ())}
    rows = _json_rows if path.suffix.lower() == ".jsonl" else _delimited_rows
    try:
        for where, text_a, text_b, value in rows(table):
            if value is None:
                target = None
            elif labels is None:
                target = _score(value, where)
            elif value in label_ids:
                target = label_ids[value]
            else:
                raise PowerBertError(f"{where}: label {value!r} is not one of "
                                     f"{', '.join(labels)}{_as_strings_note(value, labels)}")
            yield Example(text_a, text_b, target)
    except UnicodeDecodeError as error:
        raise PowerBertError(f"{path}: not UTF-8 text ({error.reason})") from None


Row = tuple[str, str, "str | None", "str | None"]  # where, text_a, text_b, label value


def _delimited_rows(table: _Table) -> Iterator[Row]:
    """`(file:line, text_a, text_b, label)` of a TSV or CSV file's rows, checked."""
    path = table.path
    if path.suffix.lower() == ".csv":
        dialect = dict(delimiter=",")
    else:
        dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE)
    with path.open(encoding="utf-8-sig", newline="") as file:
        rows = csv.reader(file, **dialect)
        try:
            header = table.names or (next(rows, None) if table.header else None)
            if table.header and not header:
                raise PowerBertError(f"{path}: empty file, expected a header row")
            if header:
                a, b, label = (None if column is None else _column_index(column, header, path)
                               for column in dataclasses.astuple(table.columns))
            else:
                a, b, label = dataclasses.astuple(table.columns)
            line_end = rows.line_num
            for row in rows:
                line, line_end = line_end + 1, rows.line_num
                where = f"{path}:{line}"
                if not row:
                    continue
                if header and len(row) != len(header):
                    raise PowerBertError(
                        f"{where}: expected {len(header)} columns, found {len(row)}")
                values = []
                for column in (a, b, label):
                    if column is not None and not -len(row) <= column < len(row):
                        raise PowerBertError(f"{where}: no column {column} in a row of "
                                             f"{len(row)} columns")
                    values.append(None if column is None else row[column])
                for column, text in zip((a, b), values):
                    if column is not None and not text.strip():
                        name = repr(header[column]) if header else column
                        raise PowerBertError(f"{where}: empty text in column {name}")
                yield where, values[0], values[1], None if label is None else values[2].strip()
        except csv.Error as error:
            raise PowerBertError(f"{path}:{rows.line_num}: {error}") from None


class _JsonNumber(str):
    """A JSON number kept as written ("1.0" stays "1.0"), told apart from a string."""


def _json_rows(table: _Table) -> Iterator[Row]:
    """`(file:line, text_a, text_b, label)` of a JSON Lines file: one object a line, keys
    naming the columns; a label is taken as written (1.0 stays "1.0")."""
    path, columns = table.path, table.columns
    with path.open(encoding="utf-8-sig") as file:
        for line, text in enumerate(file, start=1):
            where = f"{path}:{line}"
            if not text.strip():
                continue
            try:
                record = json.loads(text, parse_int=_JsonNumber, parse_float=_JsonNumber,
                                    parse_constant=_JsonNumber)
            except json.JSONDecodeError as error:
                raise PowerBertError(f"{where}: not JSON ({error.msg} at column "
                                     f"{error.colno})") from None
            if not isinstance(record, dict):
                raise PowerBertError(f"{where}: expected a JSON object, found "
                                     f"{type(record).__name__}")
            values = []
            for kind, key in zip(("text", "text", "label"), dataclasses.astuple(columns)):
                if key is None:
                    values.append(None)
                    continue
                if str(key) not in record:
                    raise PowerBertError(f"{where}: no key {str(key)!r} (keys: "
                                         f"{', '.join(record)})")
                value = record[str(key)]
                is_text = isinstance(value, str) and not isinstance(value, _JsonNumber)
                if kind == "text" and not is_text:
                    shown = str(value) if isinstance(value, _JsonNumber) else repr(value)
                    raise PowerBertError(f"{where}: no text in key {str(key)!r} (found {shown})")
                if kind == "text" and not value.strip():
                    raise PowerBertError(f"{where}: empty text in key {str(key)!r}")
                if kind == "label" and not isinstance(value, str):
                    raise PowerBertError(f"{where}: label {value!r} is not a string or number")
                values.append(value)
            label = None if values[2] is None else str(values[2]).strip()
            yield where, values[0], values[1], label


def _as_strings_note(value: str, labels: tuple[str, ...]) -> str:
    """Says so when `value` is a label written differently ("1.0" for "1")."""
    try:
        number = float(value)
    except ValueError:
        return ""
    same = []
    for label in labels:
        try:
            if float(label) == number:
                same.append(label)
        except ValueError:
            continue
    if not same:
        return ""
    return (f" (labels are compared as the strings given: {value!r} is not {same[0]!r}; "
            f"write them in --labels as the file does)")


def _column_index(column: Column, header: list[str] | tuple[str, ...], path: Path) -> int:
    """Position of `column` (an index or a header name) in `header`."""
    if isinstance(column, int) and -len(header) <= column < len(header):
        return column % len(header)
    if isinstance(column, str) and column in header:
        return header.index(column)
    raise PowerBertError(f"{path}: no column {column!r} in the header "
                         f"({', '.join(header)})")


def _score(value: str, where: str) -> float:
    """A regression label: a finite number."""
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise PowerBertError(f"{where}: label {value!r} is not a number")
    return score


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
