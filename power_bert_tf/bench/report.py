"""The benchmark's record: machine, provenance, every table, as JSON and markdown.

Every JSON records the command, the git commit (and whether the tree was dirty), the
wall time, the XLA flags, the CPU's matrix extensions (AMX, AVX-512 BF16 / VNNI) and
the load average at the start and the end, since other jobs share the CPU.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from power_bert_tf.errors import PowerBertError
from power_bert_tf.serving.precision import cpu_features


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one run measured, with the machine, the provenance and the settings."""

    created: str
    machine: dict[str, Any]
    provenance: dict[str, Any]  # command, git commit, wall time, load average
    settings: dict[str, Any]
    memory: str
    runtimes: tuple  # RuntimeResult per case
    onednn: tuple  # OnednnResult per case
    concurrency: Any  # ConcurrencyResult or None
    rows: tuple  # mode-table Row per case, batch size and mode
    padding: Any  # PaddingResult or None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def detect_device() -> str:
    """A file-name-safe label: the first GPU's name, else "cpu<usable cores>"."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"cpu{usable_cpus()}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else `platform.processor()`."""
    cpuinfo = Path("/proc/cpuinfo")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text() if cpuinfo.is_file() else "",
                      re.MULTILINE)
    return match.group(1) if match else platform.processor()


def machine_info(device: str) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "device": device, "platform": platform.platform(), "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
        "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "onnxruntime": _version("onnxruntime"),
        "tf2onnx": _version("tf2onnx"), "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def git_commit() -> dict[str, Any]:
    """The checkout's HEAD and whether tracked files differ from it (None outside git)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}


def provenance(started: float, load_at_start: Sequence[float], commit: dict[str, Any],
               ended: float, module: str = "power_bert_tf.bench") -> dict[str, Any]:
    """The command (`python -m module ...`), the git state at the start (`git_commit()`),
    wall time and load average."""
    return {"command": " ".join([Path(sys.executable).name, "-m", module, *sys.argv[1:]]),
            **commit, "wall_seconds": round(ended - started, 1),
            "load_average_start": [round(x, 2) for x in load_at_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()]}


def default_output(results_dir: Path, device: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(results_dir) / f"bench_{re.sub(r'[^A-Za-z0-9._-]+', '-', device)}_{stamp}.json"


def check_new(path: Path) -> None:
    """Refuses to run when the JSON or its markdown table already exists."""
    for existing in (path, path.with_suffix(".md")):
        if existing.exists():
            raise PowerBertError(f"{existing} exists; choose another --output "
                                 f"(results are never overwritten)")


def write_report(report: Report, path: Path) -> None:
    """Writes the JSON to `path` and the tables to `path` with suffix .md, both new files."""
    check_new(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x") as file:
        json.dump(report.to_dict(), file, indent=2)
        file.write("\n")
    with path.with_suffix(".md").open("x") as file:
        file.write(render(report, markdown=True))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ratio(speedup: dict) -> str:
    return f"{speedup['median']:.2f}x [{speedup['min']:.2f}-{speedup['max']:.2f}]"


def _spread_ms(timing: dict) -> str:
    return (f"{_ms(1000 * timing['median_seconds'])} [{_ms(1000 * timing['min_seconds'])}-"
            f"{_ms(1000 * timing['max_seconds'])}]")


def _table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in (header, *body)]
        lines.insert(1, "|" + "---|" * len(header))
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
             for cells in (header, *body)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _runtime_lines(result, markdown: bool) -> list[str]:
    lines = [f"Runtimes: {result.case} (batch {result.batch_size}, N={result.sequence_length}, "
             f"retention {','.join(map(str, result.retention))}, FLOP bound "
             f"{result.flop_bound:.2f}x, {result.weights} weights, {result.repeats} "
             f"interleaved rounds); speed-up over {result.reference}.", ""]
    body = [(row.name, _spread_ms(row.timing), _ratio(row.speedup_vs_plain_fp32),
             f"{row.max_abs_logit_diff:.2g}", f"{row.argmax_agreement:.2f}")
            for row in sorted(result.rows, key=lambda row: -row.median_ms)]
    lines += [_table(("row", "ms/batch (median [min-max])", "speed-up", "max |logit diff|",
                      "argmax agree"), body, markdown), ""]
    speedup = result.speedup_vs_fastest_plain
    lines.append(f"speedup_vs_fastest_plain: {_ratio(speedup)} ({speedup['power_bert_row']} "
                 f"over {speedup['plain_row']}); faster TF path: " + ", ".join(
                     f"{key} {value}" for key, value in result.chosen_tf_path.items()))
    for name, counts in result.fused_operators.items():
        if name.endswith("fp32"):
            fused = ", ".join(f"{op} {count}" for op, count in counts.items()
                              if count and op != "nodes")
            lines.append(f"fused operators, {name}: {fused or 'none'} ({counts['nodes']} nodes)")
    if result.stacking is not None:
        s = result.stacking
        lines.append(f"stacking: {s['stacked']:.2f}x stacked vs {s['elimination']:.2f}x "
                     f"elimination x {s['precision']:.2f}x precision = ratio {s['ratio']:.2f} "
                     f"({'passes' if s['passes'] else 'fails'} >= {s['threshold']})")
    return lines + [("- " if markdown else "note: ") + note for note in result.notes] + [""]


def render(report: Report, markdown: bool) -> str:
    """Every table and the notes, as text or markdown."""
    machine, prov = report.machine, report.provenance
    lines = [("# " if markdown else "") + f"PoWER-BERT inference benchmark, {machine['device']}",
             "", f"{report.created}; {machine['cpu']} ({machine['usable_cpus']} usable CPUs; "
             f"{', '.join(machine['cpu_features']['flags']) or 'no flags read'}"
             + (f"; {', '.join(machine['gpus'])}" if machine["gpus"] else "")
             + f"); TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
             f"ONNX Runtime {machine['onnxruntime'] or 'not installed'}.",
             f"Command: `{prov['command']}` at {prov['commit']}"
             + (" (dirty)" if prov["dirty"] else "") + f"; {prov['wall_seconds']} s; load "
             f"average {prov['load_average_start'][0]} -> {prov['load_average_end'][0]}.",
             f"XLA_FLAGS: {machine.get('xla_flags') or '(none)'}.", ""]
    for result in report.runtimes:
        lines += _runtime_lines(result, markdown)
    if report.onednn:
        body = [(r.case, name, _spread_ms(r.timings[f"{name} xla"]),
                 _spread_ms(r.timings[f"{name} xla+onednn"]), _ratio(r.speedup_with_onednn[name]),
                 "keep" if r.keep else "drop")
                for r in report.onednn for name in r.models]
        lines += [f"XLA:CPU oneDNN dots ({report.onednn[0].child_xla_flags}), interleaved "
                  "across two processes:", "",
                  _table(("case", "model", "ms xla", "ms xla+onednn", "speed-up", "verdict"),
                         body, markdown), ""]
    if report.concurrency is not None:
        c = report.concurrency
        body = [(load.model, f"{load.latency_p50_ms:.1f}", f"{load.latency_p99_ms:.1f}",
                 f"{load.throughput_rps:.1f}") for load in c.models]
        lines += [f"SavedModel under {c.clients} concurrent clients ({c.case}, {c.precision}, "
                  f"{c.requests_per_client} one-sentence requests each, {c.repeats} "
                  f"interleaved rounds); throughput ratio {_ratio(c.throughput_speedup)}:", "",
                  _table(("model", "p50 ms", "p99 ms", "requests/s"), body, markdown), ""]
    if report.rows:
        body = [(row.case, str(row.batch_size), row.mode, _spread_ms(row.full.timing),
                 _spread_ms(row.pruned.timing), _ratio(row.speedup), f"{row.flop_bound:.2f}x",
                 f"{row.efficiency:.2f}", f"{row.full.peak_mib:.0f} / {row.pruned.peak_mib:.0f}")
                for row in report.rows]
        lines += [f"Modes (peak memory: {report.memory}):", "",
                  _table(("case", "batch", "mode", "ms full", "ms pruned", "speed-up",
                          "FLOP bound", "efficiency", "peak MiB"), body, markdown), ""]
    padding = report.padding
    if padding is not None:
        sizes = ", ".join(f"{count} <= {bucket}"
                          for count, bucket in zip(padding.bucket_sentences, padding.buckets))
        body = [(s.name, str(s.batches), f"{s.seconds:.3g}", _ratio(s.speedup),
                 _ratio(s.over_plain) if s.over_plain else "-", f"{s.flop_bound:.2f}x")
                for s in padding.settings]
        lines += [f"Padding: {padding.sentences} sentences (mean {padding.mean_length:.1f} "
                  f"tokens; {sizes}), batch {padding.batch_size}, {padding.case}, retention "
                  f"{','.join(map(str, padding.retention))} ({padding.retention_source}), XLA.",
                  "", _table(("setting", "batches", "s (median pass)", "speed-up over padded",
                              "over plain BERT batched alike", "FLOP bound over padded"),
                             body, markdown), ""]
    lines += [("- " if markdown else "note: ") + note for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"
