"""power_bert_tf.data.tasks: GLUE and custom tasks, and the row checks' one-line errors."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from power_bert_tf.data.tasks import (CustomTaskSpec, Example, TASK_NAMES, default_glue_dir,
                                      get_task)
from power_bert_tf.errors import PowerBertError

# Row counts of /work/shared/glue/README.md (MRPC: full MSR train, MSR test as dev).
GLUE_COUNTS = {"SST-2": (67_349, 872), "CoLA": (8_551, 1_043), "RTE": (2_490, 277),
               "WNLI": (635, 71), "STS-B": (5_749, 1_500), "MRPC": (4_076, 1_725)}
PAIR_TASKS = {"RTE", "WNLI", "STS-B", "MRPC"}


def write_rows(path: Path, rows: list[list[str]], delimiter: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(delimiter.join(row) + "\n" for row in rows), encoding="utf-8")
    return path


@contextlib.contextmanager
def raises_one_line(*fragments: str):
    """Expects a PowerBertError whose message is one line containing all `fragments`."""
    with pytest.raises(PowerBertError) as info:
        yield
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- the local GLUE data ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GLUE_COUNTS))
def test_reads_local_glue(name: str) -> None:
    glue_dir = default_glue_dir()
    if glue_dir is None or not (glue_dir / name).is_dir():
        pytest.skip(f"no {name} folder in the GLUE data ($GLUE_DIR or ../shared/glue)")
    task = get_task(name.lower(), glue_dir)
    assert task.name == name
    assert task.is_pair == (name in PAIR_TASKS)
    for split, count in zip(("train", "dev"), GLUE_COUNTS[name]):
        examples = task.read(split)
        assert len(examples) == count
        assert all(example.text_a.strip() for example in examples)
        assert all((example.text_b is not None) == task.is_pair for example in examples)
        labels = [example.label for example in examples]
        if task.labels is None:
            assert task.num_classes == 1
            assert all(isinstance(label, float) and 0 <= label <= 5 for label in labels)
        else:
            assert set(labels) == set(range(task.num_classes))


def test_glue_metadata(tmp_path: Path) -> None:
    expected = {"CoLA": ("matthews", 2), "SST-2": ("accuracy", 2), "MRPC": ("f1", 2),
                "STS-B": ("spearman", 1), "QQP": ("f1", 2), "MNLI-m": ("accuracy", 3),
                "MNLI-mm": ("accuracy", 3), "QNLI": ("accuracy", 2), "RTE": ("accuracy", 2),
                "WNLI": ("accuracy", 2)}
    assert set(TASK_NAMES) == set(expected) | {"custom"}
    for folder in ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"):
        (tmp_path / folder).mkdir()
    for name, (metric, num_classes) in expected.items():
        task = get_task(name.upper(), tmp_path)
        assert (task.name, task.metric, task.num_classes) == (name, metric, num_classes)
    assert get_task("MNLI", tmp_path).name == "MNLI-m"
    assert get_task("mnli-mm", tmp_path).labels == ("contradiction", "entailment", "neutral")
    assert get_task("rte", tmp_path).labels == ("entailment", "not_entailment")
    assert get_task("wnli", tmp_path).labels == ("0", "1")
    assert get_task("sts-b", tmp_path).labels is None


def test_default_glue_dir_follows_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLUE_DIR", str(tmp_path))
    assert default_glue_dir() == tmp_path
    monkeypatch.delenv("GLUE_DIR")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "glue"
    assert default_glue_dir() == (shared if shared.is_dir() else None)


# --- GLUE formats not in the local data -----------------------------------------------------

def test_qqp(tmp_path: Path) -> None:
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write_rows(tmp_path / "QQP" / "train.tsv", [header, ["0", "1", "2", "How?", "Why?", "0"],
                                                ["1", "3", "4", 'A "quote', "B", "1"]])
    write_rows(tmp_path / "QQP" / "dev.tsv", [header, ["5", "6", "7", "C?", "D?", "1"]])
    write_rows(tmp_path / "QQP" / "test.tsv", [["id", "question1", "question2"],
                                               ["0", "E?", "F?"]])
    task = get_task("QQP", tmp_path)
    assert task.read("train") == [Example("How?", "Why?", 0), Example('A "quote', "B", 1)]
    assert task.read("dev") == [Example("C?", "D?", 1)]
    assert task.read("test") == [Example("E?", "F?", None)]


def mnli_row(index: int, premise: str, hypothesis: str, *labels: str) -> list[str]:
    return [str(index), "p", "q", "fiction", "(a)", "(b)", "(A)", "(B)", premise, hypothesis,
            *labels]


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    folder = tmp_path / "MNLI"
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
            "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
            "sentence2"]
    dev_head = head + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    write_rows(folder / "train.tsv", [head + ["label1", "gold_label"],
                                      mnli_row(0, "P0", "H0", "neutral", "neutral"),
                                      mnli_row(1, "P1", "H1", "entailment", "contradiction")])
    write_rows(folder / "dev_matched.tsv",
               [dev_head, mnli_row(0, "M", "m", *["entailment"] * 6)])
    write_rows(folder / "dev_mismatched.tsv",
               [dev_head, mnli_row(0, "X", "x", *["neutral"] * 5, "contradiction")])
    write_rows(folder / "test_matched.tsv", [head, mnli_row(0, "T", "t")])
    matched, mismatched = get_task("mnli", tmp_path), get_task("MNLI-mm", tmp_path)
    assert matched.name == "MNLI-m"
    assert matched.read("train") == [Example("P0", "H0", 2), Example("P1", "H1", 0)]
    assert matched.read("dev") == [Example("M", "m", 1)]
    assert mismatched.read("dev") == [Example("X", "x", 0)]
    assert matched.read("test") == [Example("T", "t", None)]
    with raises_one_line("test_mismatched.tsv: no such file"):
        mismatched.read("test")


def test_qnli(tmp_path: Path) -> None:
    header = ["index", "question", "sentence", "label"]
    write_rows(tmp_path / "QNLI" / "train.tsv",
               [header, ["0", "Who?", "Him.", "entailment"], ["1", "Q", "S", "not_entailment"]])
    write_rows(tmp_path / "QNLI" / "dev.tsv", [header, ["0", "When?", "Now.", "entailment"]])
    task = get_task("qnli", tmp_path)
    assert task.is_pair and task.num_classes == 2
    assert task.read("train") == [Example("Who?", "Him.", 0), Example("Q", "S", 1)]
    assert task.read("dev") == [Example("When?", "Now.", 0)]


# --- custom tasks -------------------------------------------------------------------------

def custom_spec(tmp_path: Path, suffix: str = ".tsv", **overrides) -> CustomTaskSpec:
    fields = dict(train_file=f"train{suffix}", dev_file=f"dev{suffix}", text_a_column="text",
                  label_column="label", labels=("neg", "pos"))
    return CustomTaskSpec(**(fields | overrides))


def test_custom_tsv_classification(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.tsv", [["id", "text", "label"], ["1", "good", "pos"],
                                        ["2", 'say "no', "neg"]])
    write_rows(tmp_path / "dev.tsv", [["label", "text", "id"], ["neg", "bad", "3"]])
    task = get_task("Custom", tmp_path, custom=custom_spec(tmp_path))
    assert (task.name, task.labels, task.metric, task.is_pair) == (
        "custom", ("neg", "pos"), "accuracy", False)
    assert task.read("train") == [Example("good", None, 1), Example('say "no', None, 0)]
    assert task.read("dev") == [Example("bad", None, 0)]
    with raises_one_line("no split 'test'"):
        task.read("test")


def test_custom_csv_pair_regression(tmp_path: Path) -> None:
    rows = [["a", "b", "score"], ['"x, with comma"', "y", "1.5"], ['"say ""hi"""', "z", "-2"]]
    write_rows(tmp_path / "train.csv", rows, delimiter=",")
    write_rows(tmp_path / "dev.csv", rows[:2], delimiter=",")
    write_rows(tmp_path / "test.csv", [["b", "a"], ["q", "p"]], delimiter=",")
    spec = CustomTaskSpec(train_file=tmp_path / "train.csv", dev_file="dev.csv",
                          test_file="test.csv", text_a_column="a", text_b_column="b",
                          label_column="score", labels=None)
    task = get_task("custom", tmp_path, custom=spec)
    assert (task.labels, task.metric, task.num_classes, task.is_pair) == (None, "spearman", 1, True)
    assert task.read("train") == [Example("x, with comma", "y", 1.5),
                                  Example('say "hi"', "z", -2.0)]
    assert task.read("dev") == [Example("x, with comma", "y", 1.5)]
    assert task.read("test") == [Example("p", "q", None)]


def test_custom_csv_classification_with_metric(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.csv", [["text", "label"], ["fine", "pos"]], delimiter=",")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".csv", metric="f1"))
    assert task.metric == "f1"
    assert task.read("train") == [Example("fine", None, 1)]


# --- the error catalogue ------------------------------------------------------------------

def test_unknown_task() -> None:
    with raises_one_line("unknown task 'SST-3'", "SST-2", "MNLI-mm", "custom"):
        get_task("SST-3", None)


def test_unknown_source_and_split(tmp_path: Path) -> None:
    with raises_one_line("--data_source='hub'"):
        get_task("RTE", tmp_path, source="hub")
    (tmp_path / "RTE").mkdir()
    with raises_one_line("no split 'validation'", "train, dev, test"):
        get_task("RTE", tmp_path).read("validation")


def test_missing_glue_folder(tmp_path: Path) -> None:
    with raises_one_line(str(tmp_path / "CoLA"), "does not exist"):
        get_task("CoLA", tmp_path)


def test_missing_custom_folder_and_file(tmp_path: Path) -> None:
    with raises_one_line(str(tmp_path / "nowhere"), "does not exist"):
        get_task("custom", tmp_path / "nowhere", custom=custom_spec(tmp_path))
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path))
    with raises_one_line(f"{tmp_path / 'train.tsv'}: no such file"):
        task.read("train")


def test_custom_spec_checks(tmp_path: Path) -> None:
    with raises_one_line("task 'custom' needs"):
        get_task("custom", tmp_path)
    with raises_one_line("train.json", ".tsv, .csv, .jsonl"):
        get_task("custom", tmp_path, custom=custom_spec(tmp_path, train_file="train.json"))
    with raises_one_line("'spearman'", "classification", "accuracy, f1, matthews"):
        get_task("custom", tmp_path, custom=custom_spec(tmp_path, metric="spearman"))
    with raises_one_line("'f1' needs two labels"):
        get_task("custom", tmp_path, custom=custom_spec(tmp_path, labels=("a", "b", "c"),
                                                        metric="f1"))
    with raises_one_line("distinct"):
        get_task("custom", tmp_path, custom=custom_spec(tmp_path, labels=("a", "a")))


TSV_ERRORS = {  # train.tsv contents -> the error's message after the file name
    "column_absent": ("txt\tlabel\nhi\tpos\n", ": no column 'text' in the header (txt, label)"),
    "too_few_columns": ("text\tlabel\nhi\tpos\nlonely\n", ":3: expected 2 columns, found 1"),
    "too_many_columns": ("text\tlabel\na\tb\tpos\n", ":2: expected 2 columns, found 3"),
    "label_outside_set": ("text\tlabel\nhi\tpos\n\nhm\tmaybe\n",  # blank lines count
                          ":4: label 'maybe' is not one of neg, pos"),
    "empty_text": ("text\tlabel\nhi\tpos\n  \tneg\n", ":3: empty text in column 'text'"),
    "empty_file": ("", ": empty file"),
}


@pytest.mark.parametrize("case", sorted(TSV_ERRORS))
def test_custom_row_errors(tmp_path: Path, case: str) -> None:
    content, error = TSV_ERRORS[case]
    path = tmp_path / "train.tsv"
    path.write_text(content, encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path))
    with raises_one_line(f"{path}{error}"):
        task.read("train")


def test_regression_label_not_a_number(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "train.csv", [["text", "label"], ["a", "1"], ["b", "high"]],
                      delimiter=",")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".csv", labels=None))
    with raises_one_line(f"{path}:3: label 'high' is not a number"):
        task.read("train")


def test_csv_quote_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"unterminated,pos\n', encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".csv"))
    with raises_one_line(f"{path}:"):
        task.read("train")


def test_glue_rows_are_checked(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "CoLA" / "train.tsv", [["gj04", "1", "", "Fine."],
                                                         ["gj04", "2", "*", "Bad."]])
    write_rows(tmp_path / "CoLA" / "dev.tsv", [["gj04", "0", "*", "Fine"], ["gj04", "1", ""]])
    task = get_task("CoLA", tmp_path)
    with raises_one_line(f"{path}:2: label '2' is not one of 0, 1"):
        task.read("train")
    with raises_one_line("dev.tsv:2: expected 4 columns, found 3"):
        task.read("dev")
    sts = write_rows(tmp_path / "STS-B" / "train.tsv",
                     [["index", "genre", "filename", "year", "old_index", "source1", "source2",
                       "sentence1", "sentence2", "score"],
                      ["0", "g", "f", "y", "0", "s", "s", "A", "B", "n/a"]])
    with raises_one_line(f"{sts}:2: label 'n/a' is not a number"):
        get_task("STS-B", tmp_path).read("train")


def test_tfds_offline_error(tmp_path: Path) -> None:
    task = get_task("SST-2", tmp_path, source="tfds", download=False)
    with raises_one_line("glue/sst2", "--data_source=files"):
        task.read("dev")



# --- data as users have it: headerless files, quoted CSV, JSON Lines, labels as strings ----

def test_headerless_tsv_and_csv_by_column_index(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.tsv", [["1", "a fine film"], ["0", "dull"]])
    (tmp_path / "dev.csv").write_text('0,"bad, really",x\n1,good,y\n', encoding="utf-8")
    spec = CustomTaskSpec(train_file="train.tsv", dev_file="dev.csv", text_a_column=1,
                          text_b_column=-1, label_column=0, labels=("0", "1"), header=False)
    task = get_task("custom", tmp_path, custom=spec)
    assert task.read("dev") == [Example("bad, really", "x", 0), Example("good", "y", 1)]
    single = CustomTaskSpec(train_file="train.tsv", dev_file="dev.csv", text_a_column=1,
                            label_column=0, labels=("0", "1"), header=False)
    assert get_task("custom", tmp_path, custom=single).read("train") == [
        Example("a fine film", None, 1), Example("dull", None, 0)]


def test_headerless_needs_indices_and_names_short_rows(tmp_path: Path) -> None:
    with raises_one_line("without a header row need column indices", "'text'"):
        get_task("custom", tmp_path, custom=custom_spec(tmp_path, header=False))
    write_rows(tmp_path / "train.tsv", [["1", "fine"], ["0"]])
    spec = custom_spec(tmp_path, header=False, text_a_column=1, label_column=0,
                       labels=("0", "1"))
    with raises_one_line(f"{tmp_path / 'train.tsv'}:2: no column 1 in a row of 1 columns"):
        get_task("custom", tmp_path, custom=spec).read("train")


def test_quoted_csv_fields_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(
        'text,label\n"one, two",pos\n"line one\nline two ""quoted""",neg\n"three",maybe\n',
        encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".csv"))
    with raises_one_line(f"{tmp_path / 'train.csv'}:5: label 'maybe'"):  # physical line 5
        task.read("train")
    (tmp_path / "train.csv").write_text(
        'text,label\n"one, two",pos\n"line one\nline two ""quoted""",neg\n', encoding="utf-8")
    assert task.read("train") == [Example("one, two", None, 1),
                                  Example('line one\nline two "quoted"', None, 0)]


def test_json_lines(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        '{"text": "a fine film", "label": "pos", "id": 1}\n\n'
        '{"label": "neg", "text": "dull, \\"very\\" dull\\nindeed"}\n', encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".jsonl"))
    assert task.read("train") == [Example("a fine film", None, 1),
                                  Example('dull, "very" dull\nindeed', None, 0)]
    numbers = CustomTaskSpec(train_file="n.jsonl", dev_file="n.jsonl", text_a_column="q",
                             label_column="score", labels=None)
    (tmp_path / "n.jsonl").write_text('{"q": "x", "score": 2.5}\n{"q": "y", "score": 3}\n')
    assert get_task("custom", tmp_path, custom=numbers).read("train") == [
        Example("x", None, 2.5), Example("y", None, 3.0)]


@pytest.mark.parametrize("content, error", [
    ('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"\n', ":2: not JSON"),
    ('["a", "pos"]\n', ":1: expected a JSON object, found list"),
    ('{"txt": "a", "label": "pos"}\n', ":1: no key 'text' (keys: txt, label)"),
    ('{"text": "", "label": "pos"}\n', ":1: empty text in key 'text'"),
    ('{"text": 3.5, "label": "pos"}\n', ":1: no text in key 'text'"),
    ('{"text": "a", "label": null}\n', ":1: label None is not a string or number"),
])
def test_json_lines_errors(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(content, encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, ".jsonl"))
    with raises_one_line(f"{path}{error}"):
        task.read("train")


@pytest.mark.parametrize("suffix, content", [
    (".tsv", "text\tlabel\ngood\t1\nbad\t1.0\n"),
    (".jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 1.0}\n'),
])
def test_labels_are_compared_as_the_strings_given(tmp_path: Path, suffix: str,
                                                  content: str) -> None:
    path = tmp_path / f"train{suffix}"
    path.write_text(content, encoding="utf-8")
    task = get_task("custom", tmp_path, custom=custom_spec(tmp_path, suffix, labels=("0", "1")))
    with raises_one_line(f"{path}:", "label '1.0' is not one of 0, 1",
                         "compared as the strings given: '1.0' is not '1'"):
        task.read("train")


def test_rows_are_read_lazily(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.tsv", [["text", "label"], ["good", "pos"], ["bad", "nope"]])
    rows = get_task("custom", tmp_path, custom=custom_spec(tmp_path)).stream("train")
    assert next(rows) == Example("good", None, 1)  # the bad row is not read yet
    with raises_one_line("train.tsv:3: label 'nope'"):
        next(rows)
