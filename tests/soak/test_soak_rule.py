"""The soak run's rule (`benchmarks/_soak_probe.py`): a quantity that keeps growing through the second half fails,
one that grew during warm-up and then held does not, and a capped one fails as soon as a sample passes its cap."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _soak_probe import Rule, Sample, judge, slope  # noqa: E402


def series(values: list[float], name: str = "rss_mb:gateway", step: float = 60.0) -> list[Sample]:
    return [Sample(i * step, {name: v}) for i, v in enumerate(values)]


def test_slope_is_least_squares_per_second() -> None:
    assert slope([(0, 1), (10, 2), (20, 3)]) == 0.1
    assert slope([(0, 5)]) == 0.0


def test_growth_through_the_second_half_fails_and_names_the_quantity() -> None:
    leak = series([100 + 3 * i for i in range(12)])  # 3 MB a minute, all along
    (v,) = judge({"rss_mb:*": Rule("flat", abs_tol=12, rel_tol=0.08)}, leak)
    assert not v.ok and "rss_mb:gateway grew" in v.reason
    assert round(v.slope_per_min, 6) == 3.0


def test_warm_up_then_flat_passes() -> None:
    warm = series([100, 130, 150, 160, 161, 160, 162, 161, 160, 161, 162, 161])
    (v,) = judge({"rss_mb:*": Rule("flat", abs_tol=12, rel_tol=0.08)}, warm)
    assert v.ok, v.reason


def test_a_cap_fails_on_the_first_sample_above_it() -> None:
    samples = series([10, 900, 1000, 1101, 1000], name="stream:events.private")
    (v,) = judge({"stream:events.private": Rule("cap", cap=1100)}, samples)
    assert not v.ok and v.peak == 1101
    (ok,) = judge({"stream:events.private": Rule("cap", cap=1101)}, samples)
    assert ok.ok


def test_an_exact_rule_wins_over_a_pattern_and_unruled_names_are_not_judged() -> None:
    samples = [
        Sample(i * 60.0, {"stream:a": float(i * 100), "rows:orders": float(i * 1000)}) for i in range(6)
    ]
    verdicts = judge({"stream:*": Rule("flat", abs_tol=1), "stream:a": Rule("cap", cap=10_000)}, samples)
    assert [(v.name, v.rule.kind, v.ok) for v in verdicts] == [("stream:a", "cap", True)]
