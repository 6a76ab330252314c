"""The trade-off sweep's summary (experiments/tradeoff.py): issue 47's question, the
largest speed-up of PoWER-BERT within one point of the fine-tuned baseline, per
comparison (padded to N, and each setting served in length buckets)."""
from __future__ import annotations

ATTENTION = "PoWER-BERT (Attn-WS)"  # the points the summary ranks (not the ablations)
ONE_POINT = 0.01  # dev metrics are fractions: one point is 0.01
PADDED = "padded"  # the comparison of both models padded to N (a point's "speedup")


def within_one_point(points: list[dict]) -> dict[str, dict | None]:
    """Per comparison, the fastest PoWER-BERT (Attn-WS) point within one point.

    Comparisons: "padded" (each point's `speedup`) and every setting in the points'
    `served_speedups` (over plain BERT served in the same length buckets), in the order
    they first appear. A point qualifies when its `dev` is >= its `baseline_dev` - 0.01.

    Returns:
        comparison -> {"label", "speedup", "dev"} of the qualifying point with the
        largest speed-up (the first of equals), or None where no point qualifies.
    """
    attention = [p for p in points if p["kind"] == ATTENTION]
    settings = list(dict.fromkeys(setting for p in attention
                                  for setting in p.get("served_speedups") or {}))
    qualifying = [p for p in attention
                  if p["dev"] >= p["baseline_dev"] - ONE_POINT - 1e-9]  # 1e-9: float rounding
    summary = {}
    for comparison in (PADDED, *settings):
        best = None
        for p in qualifying:
            speedup = (p["speedup"] if comparison == PADDED
                       else (p.get("served_speedups") or {}).get(comparison))
            if speedup is not None and (best is None or speedup > best["speedup"]):
                best = {"label": p["label"], "speedup": speedup, "dev": p["dev"]}
        summary[comparison] = best
    return summary


def summary_lines(summary: dict[str, dict | None]) -> list[str]:
    """`within_one_point`'s summary as lines to print."""
    return [f"largest speed-up within 1 point of BERT, {comparison}: "
            + (f"{best['speedup']:.2f}x ({best['label']}, dev {best['dev']:.4f})" if best
               else "none")
            for comparison, best in summary.items()]
