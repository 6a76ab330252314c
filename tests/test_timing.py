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
