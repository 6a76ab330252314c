"""Rows of a task's files -> `Example`s: TSV, CSV and JSON Lines, with or without a
header row, every row checked as it is read; a bad file, column, row, label or text is
a one-line `PowerBertError` naming `<file>:<line>` (1-based physical lines)."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Iterator

from power_bert_tf.errors import PowerBertError

Column = int | str  # 0-based position (negative counts from the end) or header name
Row = tuple[str, str, "str | None", "str | None"]  # where, text_a, text_b, label value


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
class Columns:
    """Where a file's texts and label are; `label` None reads the file unlabelled."""

    text_a: Column
    text_b: Column | None
    label: Column | None


@dataclasses.dataclass(frozen=True)
class Table:
    """One split's file; `names` are the columns of a file without a header row, and
    `header` False reads such a file with index columns and any row width."""

    path: Path
    columns: Columns
    names: tuple[str, ...] | None = None
    header: bool = True


def read_table(table: Table, labels: tuple[str, ...] | None) -> Iterator[Example]:
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


def _delimited_rows(table: Table) -> Iterator[Row]:
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


def _json_rows(table: Table) -> Iterator[Row]:
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
