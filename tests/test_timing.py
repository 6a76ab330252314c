"""The shared timing function: interleaving, warm-up, medians, paired ratios."""
import itertools

import pytest

from power_bert_tf.serving.timing import Timing, paired_speedup, time_interleaved


def test_passes_alternate_after_warmup():
    calls = []
    ticks = itertools.count()
    timings = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=3, warmup=2, clock=lambda: float(next(ticks)))
    assert calls == ["a", "b"] * 5  # 2 warm-up rounds, then 3 timed ones
    assert set(timings) == {"a", "b"} and all(len(t.seconds) == 3 for t in timings.values())


def test_settle_waits_untimed_before_every_timed_pass():
    events, now = [], [0.0]

    def sleep(seconds):
        events.append(("sleep", seconds))
        now[0] += seconds

    def run():
        events.append("run")
        now[0] += 1.0

    timings = time_interleaved({"a": run, "b": run}, repeats=2, warmup=1, settle=0.5,
                               clock=lambda: now[0], sleep=sleep)
    assert events == ["run", "run"] + [("sleep", 0.5), "run"] * 4  # warm-up not settled
    assert all(t.seconds == (1.0, 1.0) for t in timings.values())  # the waits are untimed


def test_median_and_paired_speedup():
    base = Timing((10.0, 12.0, 30.0))  # the third round ran under load
    fast = Timing((2.0, 3.0, 6.0))
    assert base.median == 12.0
    speedup = paired_speedup(base, fast)
    assert speedup["median"] == 5.0 and speedup["min"] == 4.0 and speedup["max"] == 5.0
    assert speedup["rounds"] == 3
    assert base.to_dict()["max_seconds"] == 30.0


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)
