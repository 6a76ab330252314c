"""The benchmark behind `make bench`: what it measures and the run that measures it.

Sections (`BenchConfig.sections`), each in this process unless said otherwise:

    runtimes     plain and PoWER-BERT in TF fp32 / bf16 (graph, XLA) and ONNX Runtime
                 fp32 / int8, side by side per case (`bench.runtimes`)
    onednn       XLA:CPU with and without oneDNN dots, against a child process
                 (`bench.onednn`); CPU only
    concurrency  exported SavedModels under concurrent clients (`bench.concurrency`)
    modes        plain vs. PoWER-BERT in eager / graph / XLA / SavedModel (`bench.modes`)
    padding      the SST-2 dev set padded vs. length-bucketed, file order and sorted,
                 each eliminated setting also over plain BERT batched alike (`bench.padding`)

Every timing goes through `serving.timing.time_interleaved`; `bench.report` writes the
JSON and markdown.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Any

from power_bert_tf.bench.cases import (CASES, MINILM_SST2_RETENTION, RUNTIME_CASES, Case,
                                       build_pair, resolve_cases, retrained_configurations,
                                       runtime_case)
from power_bert_tf.bench.concurrency import measure_concurrency
from power_bert_tf.bench.modes import MODES, PeakMemory, benchmark_cases
from power_bert_tf.bench.onednn import measure_onednn
from power_bert_tf.bench.padding import DEFAULT_PADDING_RETENTION, measure_padding, tokenize
from power_bert_tf.bench.report import (Report, check_new, default_output, detect_device,
                                        git_commit, machine_info, provenance, render,
                                        write_report)
from power_bert_tf.bench.runtimes import ONNX_MAX_PARAMETERS, measure_runtimes
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import RetentionConfig
from power_bert_tf.serving.precision import PRECISIONS, is_accelerator

SECTIONS = ("runtimes", "onednn", "concurrency", "modes", "padding")
# padding is a default: it gives the speed-up over plain BERT served with length buckets.
DEFAULT_SECTIONS = ("runtimes", "onednn", "concurrency", "padding")
DEFAULT_CASES = CASES[:3]
DEFAULT_RUNTIME_CASES = RUNTIME_CASES[:3]
# Sentences of the concurrency section when the SST-2 dev set is not found.
FALLBACK_TEXTS = ("a gripping , beautifully shot film", "flat and lifeless",
                  "the plot is thin but the actors carry it with charm and wit",
                  "one of the year 's most original and affecting dramas")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run measures and where it writes.

    Attributes:
        sections: from `SECTIONS`.
        runtime_cases: `bench.cases.RUNTIME_CASES` names of the runtimes and onednn sections.
        onnx: include the ONNX Runtime rows (skipped with a note if not installed).
        onnx_cache: folder keeping converted ONNX files between runs; None: none.
        onnx_max_parameters: larger models are not converted to ONNX (memory).
        peer_python: a Python with torch and transformers for the peer rows
            (`bench.peer`); None: this one if it has them, else no peer rows.
        repeats: interleaved timed rounds (runtimes, modes, onednn).
        heavy_gflops: GFLOP per batch of the plain model above which a row is heavy.
        heavy_repeats: timed rounds of a heavy case or row.
        cases, batch_sizes, modes, heavy_modes, warmup: the modes section (`bench.modes`).
        clients, requests, concurrency_precision, concurrency_repeats: the concurrency
            section (MiniLM, SST-2 configuration).
        padding_buckets, padding_batch_size, padding_repeats: the padding section.
        checkpoints_dir: run_glue.py output folder searched for `*/retrain/run.json`.
        data_dir: GLUE data folder (default: `get_task`'s).
        output: JSON path (markdown next to it); None: a new file in `results_dir`.
        results_dir: folder of the default output.
        device: device label for the file name and JSON; None: detected.
        seed: seed of random weights and inputs.
    """

    sections: tuple[str, ...] = DEFAULT_SECTIONS
    runtime_cases: tuple[str, ...] = DEFAULT_RUNTIME_CASES
    onnx: bool = True
    onnx_cache: Path | None = Path("checkpoints/onnx_cache")
    onnx_max_parameters: int = ONNX_MAX_PARAMETERS
    peer_python: str | None = None
    repeats: int = 5
    heavy_gflops: float = 100.0
    heavy_repeats: int = 3
    cases: tuple[str, ...] = DEFAULT_CASES
    batch_sizes: tuple[int, ...] = (1, 32)
    modes: tuple[str, ...] = MODES
    heavy_modes: tuple[str, ...] = ("graph", "xla", "saved_model")
    warmup: int = 2
    clients: int = 8
    requests: int = 16
    concurrency_precision: str = "fp32"
    concurrency_repeats: int = 3
    padding_buckets: tuple[int, ...] = (16, 32, 64)
    padding_batch_size: int = 32
    padding_repeats: int = 3
    checkpoints_dir: Path = Path("checkpoints/glue")
    data_dir: Path | None = None
    output: Path | None = None
    results_dir: Path = Path("experiments/results")
    device: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("sections", SECTIONS), ("runtime_cases", RUNTIME_CASES),
                              ("cases", CASES), ("modes", MODES), ("heavy_modes", MODES)):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            unknown = [value for value in values if value not in allowed]
            if unknown or not values:
                raise PowerBertError(f"--{name}: {','.join(unknown) or 'empty'}; choose from "
                                     f"{', '.join(allowed)}")
        for name in ("batch_sizes", "padding_buckets"):
            values = tuple(int(value) for value in getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or min(values) < 1:
                raise PowerBertError(f"--{name} must be positive integers, got {values}")
        if list(self.padding_buckets) != sorted(set(self.padding_buckets)):
            raise PowerBertError(f"--padding_buckets must be ascending, got {self.padding_buckets}")
        if self.warmup < 1:
            raise PowerBertError(f"--warmup must be >= 1, got {self.warmup}")
        for name in ("repeats", "heavy_repeats", "padding_batch_size", "padding_repeats",
                     "clients", "requests", "concurrency_repeats"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.heavy_gflops < 0:
            raise PowerBertError(f"--heavy_gflops must be >= 0, got {self.heavy_gflops}")
        if self.concurrency_precision not in PRECISIONS:
            raise PowerBertError(f"--concurrency_precision must be one of "
                                 f"{', '.join(PRECISIONS)}")
        for name in ("checkpoints_dir", "data_dir", "output", "results_dir", "onnx_cache"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in dataclasses.asdict(self).items()}


def _sst2_dev(config: BenchConfig) -> list[str] | None:
    from power_bert_tf.data.tasks import get_task

    try:
        return [example.text_a for example in get_task("SST-2", config.data_dir).read("dev")]
    except (OSError, PowerBertError):
        return None


def run(config: BenchConfig) -> tuple[Report, Path]:
    """Measures the sections `config` asks for, prints the tables and writes the JSON and
    markdown (checked first: an existing output is an error before anything runs)."""
    started, load_at_start, commit = time.time(), os.getloadavg(), git_commit()
    device = config.device or detect_device()
    output = config.output or default_output(config.results_dir, device)
    check_new(output)
    from power_bert_tf.weights.pretrained import load_pretrained

    needs_minilm = ({"concurrency", "padding"} & set(config.sections)
                    or "minilm" in config.cases
                    or any(name.startswith("minilm") for name in config.runtime_cases))
    pretrained = load_pretrained("embedded") if needs_minilm else None
    notes: list[str] = []
    runtimes, onednn, rows, padding, concurrency = [], [], [], None, None
    memory = PeakMemory()
    if "runtimes" in config.sections:
        for name in config.runtime_cases:
            print(f"runtimes: {name}", flush=True)
            runtimes.append(measure_runtimes(
                runtime_case(name, pretrained), heavy_gflops=config.heavy_gflops,
                repeats=_repeats(runtime_case(name, pretrained), config), seed=config.seed,
                use_onnx=config.onnx, onnx_cache=config.onnx_cache,
                onnx_max_parameters=config.onnx_max_parameters,
                peer_python=config.peer_python))
    if "onednn" in config.sections and is_accelerator():
        notes.append("onednn: skipped, XLA runs on the accelerator here")
    elif "onednn" in config.sections:
        for name in config.runtime_cases:
            chosen = runtime_case(name, pretrained)
            heavy = chosen.case.full_gflops(chosen.batch_size) > config.heavy_gflops
            print(f"onednn: {name}", flush=True)
            onednn.append(measure_onednn(
                name, chosen.batch_size, models=("power-bert",) if heavy
                else ("plain", "power-bert"), repeats=_repeats(chosen, config),
                seed=config.seed))
            if heavy:
                notes.append(f"onednn {name}: heavy, PoWER-BERT only")
    if "concurrency" in config.sections:
        texts = _sst2_dev(config)
        if texts is None:
            notes.append("concurrency: SST-2 dev set not found; a few fixed sentences instead")
        case = Case("minilm/SST-2", "minilm", pretrained.config, MINILM_SST2_RETENTION,
                    pretrained)
        full, pruned = build_pair(case, sequence_length=MINILM_SST2_RETENTION.sequence_length,
                                  seed=config.seed)
        print("concurrency: minilm/SST-2", flush=True)
        concurrency = measure_concurrency(
            {"plain": full, "power-bert": pruned},
            pretrained.tokenizer(MINILM_SST2_RETENTION.sequence_length),
            texts or FALLBACK_TEXTS, case=case.name, labels=("0", "1"),
            precision=config.concurrency_precision, clients=config.clients,
            requests=config.requests, repeats=config.concurrency_repeats)
    if "modes" in config.sections:
        cases, case_notes = resolve_cases(config.cases, config.checkpoints_dir, pretrained)
        rows, row_notes = benchmark_cases(
            cases, batch_sizes=config.batch_sizes, modes=config.modes, warmup=config.warmup,
            repeats=config.repeats, heavy_gflops=config.heavy_gflops,
            heavy_repeats=config.heavy_repeats, heavy_modes=config.heavy_modes,
            seed=config.seed, memory=memory)
        notes += case_notes + row_notes
    if "padding" in config.sections:
        case, features, source = _padding_inputs(pretrained, config)
        print(f"padding: {len(features['input_mask'])} SST-2 dev sentences, buckets "
              f"{config.padding_buckets}", flush=True)
        padding = measure_padding(
            case, features, buckets=config.padding_buckets,
            batch_size=config.padding_batch_size, repeats=config.padding_repeats,
            seed=config.seed, retention_source=source)
    settings = {**config.to_dict(), "device": device, "output": str(output)}
    report = Report(datetime.datetime.now().isoformat(timespec="seconds"), machine_info(device),
                    provenance(started, load_at_start, commit, time.time()),
                    settings, memory.description, tuple(runtimes), tuple(onednn), concurrency,
                    tuple(rows), padding, tuple(notes))
    print("\n" + render(report, markdown=False), flush=True)
    write_report(report, output)
    print(f"wrote {output} and {output.with_suffix('.md')}", flush=True)
    return report, output


def _repeats(chosen, config: BenchConfig) -> int:
    heavy = chosen.case.full_gflops(chosen.batch_size) > config.heavy_gflops
    return config.heavy_repeats if heavy else config.repeats


def _padding_inputs(pretrained, config: BenchConfig) -> tuple[Case, dict, str]:
    """The padding study's case (MiniLM with the SST-2 retrained configuration when there
    is one at this N, else the default), the tokenized SST-2 dev set and where the
    configuration came from."""
    n = config.padding_buckets[-1]
    found, _ = retrained_configurations(config.checkpoints_dir)
    retention = found.get("SST-2")
    if (retention is not None and retention.sequence_length == n
            and retention.num_layers == pretrained.config.num_layers):
        source = f"{config.checkpoints_dir}/SST-2/retrain/run.json"
    else:
        retention = RetentionConfig(tuple(min(count, n) for count in DEFAULT_PADDING_RETENTION), n)
        source = "default (no SST-2 retrain run at this N)"
    texts = _sst2_dev(config)
    if texts is None:
        raise PowerBertError("padding: the SST-2 dev set is not found (--data_dir or "
                             "$GLUE_DIR); run with --sections without padding")
    features = tokenize(pretrained.tokenizer(n), texts)
    return (Case("minilm/SST-2 dev", "minilm", pretrained.config, retention, pretrained),
            features, source)
