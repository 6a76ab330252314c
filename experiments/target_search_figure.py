"""Speed-up on demand: the FLOP bound of the read-out configuration at every search step.

    python experiments/target_search_figure.py

Reads every `experiments/results/target_search_<task>.json` (written by the Table 2
study's PoWER-BERT runs, `reproduce_table2.py --stages=power`) and draws, per task, the
FLOP bound of the configuration retrain would use (floor, at least 1, non-increasing)
and the controller's budget (the bound it steers towards, ramped up to the target over
the first part of the search) against the share of search steps done, with the target
and its 5% band. Prints one line per task and writes `target_search.png` beside the
JSON files (a new figure replaces the old one: it is rebuilt from them).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from power_bert_tf.cli import exit_on_user_error, quiet_native_logs  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

TOLERANCE = 0.05


def load_searches(results_dir: Path) -> dict[str, dict]:
    """Task -> its target search record, for every target_search_<task>.json."""
    searches = {}
    for path in sorted(Path(results_dir).glob("target_search_*.json")):
        try:
            record = json.loads(path.read_text())
            searches[record["task"]] = record
        except (OSError, ValueError, KeyError) as error:
            raise PowerBertError(f"{path}: unreadable target search record ({error})")
    return searches


def summary_line(record: dict) -> str:
    target, bound = record["target_speedup"], record["flop_bound"]
    verdict = "within 5%" if abs(bound / target - 1) <= TOLERANCE else "MISSED"
    return (f"{record['task']:<6} target {target:g}x, reached {bound:.3f}x ({verdict}) in "
            f"{record['search_epochs']} epochs ({record['total_steps']} steps, "
            f"{record['search_wall_seconds']:.0f} s); retention "
            f"{','.join(map(str, record['retention']))} of {record['sequence_length']}")


def plot(searches: dict[str, dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (task, record) in enumerate(sorted(searches.items())):
        color = f"C{index}"
        total = record["total_steps"]
        steps = [point["step"] / total for point in record["trajectory"]]
        axis.plot(steps, [point["bound"] for point in record["trajectory"]], color=color,
                  label=f"{task} (target {record['target_speedup']:g}x)")
        axis.plot(steps, [point["budget"] for point in record["trajectory"]], color=color,
                  linestyle=":", linewidth=1)
        target = record["target_speedup"]
        axis.axhspan(target * (1 - TOLERANCE), target * (1 + TOLERANCE), color=color,
                     alpha=0.12)
    axis.set_xlabel("share of search steps done")
    axis.set_ylabel("FLOP bound of the read-out configuration (x)")
    axis.set_title("Search to a target speed-up (dotted: the controller's budget)")
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_figure(results_dir: Path) -> Path | None:
    """Prints a line per task and writes `<results_dir>/target_search.png`; None (and
    nothing written) when there is no target search record yet."""
    searches = load_searches(results_dir)
    for record in searches.values():
        print(summary_line(record))
    if not searches:
        return None
    path = Path(results_dir) / "target_search.png"
    plot(searches, path)
    print(f"figure: {path}")
    return path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    if write_figure(Path(flags.FLAGS.results_dir)) is None:
        raise PowerBertError(f"no target_search_<task>.json in {flags.FLAGS.results_dir}")


if __name__ == "__main__":
    quiet_native_logs()  # TensorFlow's C++ records, here and in the runs it starts
    flags.DEFINE_string("results_dir", "experiments/results", "Folder with the "
                        "target_search_<task>.json files; the figure goes there.")
    app.run(exit_on_user_error(main))
