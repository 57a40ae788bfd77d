"""Graded levels with hysteresis, the rate of rise, and the vital-signs monitor (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from hub.config import load_setup
from hub.vitals.config import Gauge, Kind, VitalsConfig
from hub.vitals.levels import GradeState, Grading, Level, raw_level, step
from hub.vitals.monitor import VitalsMonitor
from hub.vitals.series import Series, slope_per_hour

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "hub" / "examples"
G = Grading(blue=0.05, yellow=0.15, orange=0.25, red=0.40, hysteresis=0.03, confirm=2)
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def run(values: list[float], g: Grading = G) -> list[Level]:
    state, out = GradeState(), []
    for v in values:
        state = step(state, v, g)
        out.append(state.level)
    return out


def changes(levels: list[Level]) -> int:
    return sum(1 for a, b in zip(levels, levels[1:], strict=False) if a != b)


def test_raw_level_is_the_highest_threshold_reached():
    assert [raw_level(v, G) for v in (0.0, 0.05, 0.2, 0.25, 0.9)] == [0, 1, 2, 3, 4]
    only = Grading(yellow=1, red=3)
    assert [raw_level(v, only) for v in (0.5, 1, 2.9, 3)] == [0, 2, 2, 4]


def test_a_steady_rise_passes_every_level_in_order_and_a_fall_comes_back_down():
    up = [i * 0.01 for i in range(50)]
    levels = run(up + up[::-1])
    seen = [lv for i, lv in enumerate(levels) if i == 0 or lv != levels[i - 1]]
    assert seen == [0, 1, 2, 3, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_noise_around_a_threshold_does_not_flap(seed):
    rnd = random.Random(seed)
    # Hovering at the yellow line, noise ±0.025 (less than the 0.03 band).
    noisy = [0.15 + rnd.uniform(-0.025, 0.025) for _ in range(500)]
    levels = run(noisy)
    assert changes(levels) <= 2  # up to blue, then yellow at most once, never back and forth
    assert levels[-1] in (Level.BLUE, Level.YELLOW)
    # Without the band and confirmation the same series flaps dozens of times.
    bare = Grading(blue=0.05, yellow=0.15, orange=0.25, red=0.40, hysteresis=0, confirm=1)
    assert changes(run(noisy, bare)) > 20


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_rise_still_raises_levels_in_order(seed):
    rnd = random.Random(seed)
    series = [0.005 * i + rnd.gauss(0, 0.01) for i in range(100)]  # 0 → 0.5 m with noise
    levels = run(series)
    seen = [lv for i, lv in enumerate(levels) if i == 0 or lv != levels[i - 1]]
    assert seen == sorted(seen), seen  # never a step back down while it rises
    assert seen[-1] == Level.RED
    assert changes(levels) == 4


def test_one_spike_is_not_a_storm():
    assert run([0.0, 0.0, 0.9, 0.0, 0.0]) == [0, 0, 0, 0, 0]
    assert run([0.0, 0.9, 0.9])[-1] == Level.RED


def test_the_band_holds_a_level_until_the_reading_falls_below_it():
    levels = run([0.3, 0.3, 0.23, 0.225, 0.219, 0.1])
    assert levels == [0, 3, 3, 3, 2, 1]


def test_grading_must_ascend_and_name_a_threshold():
    with pytest.raises(ValueError, match="orange"):
        Grading(yellow=2, orange=1)
    with pytest.raises(ValueError, match="at least one threshold"):
        Grading()


def test_slope_is_least_squares_per_hour():
    assert slope_per_hour([(0, 1.0), (1800, 1.5), (3600, 2.0)]) == pytest.approx(1.0)
    assert slope_per_hour([(0, 1.0)]) is None
    s = Series(window_s=600)
    for t in range(0, 1200, 60):
        s.add(t, t / 3600)
    assert s.samples[0][0] >= 1140 - 600
    assert s.rate_per_hour(300) == pytest.approx(1.0)
    s.add(100, 9.0)  # an older heartbeat is ignored
    assert s.rate_per_hour(300) == pytest.approx(1.0)


def _monitor() -> VitalsMonitor:
    setup = load_setup(EXAMPLES / "hub.yaml")
    return VitalsMonitor(setup.vitals, setup.grids)


def test_monitor_grades_gauges_areas_and_rates_from_telemetry_readings():
    m = _monitor()
    changes_seen = []
    for i in range(40):
        at = T0 + timedelta(minutes=3 * i)
        obs = m.observe_readings("underpass-jt1", {"underpass-gauge.level": 0.015 * i,
                                                   "underpass-gauge.temperature": 20.0}, at)
        changes_seen += [(c.indicator, c.after) for c in obs.changes]
    levels = [lv for ind, lv in changes_seen if ind == "water_level.jt1-underpass"]
    assert levels == [Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED]
    assert any(ind == "water_rise.jt1-underpass" for ind, _ in changes_seen)  # 0.3 m/h: yellow
    assert m.indicators["water_rise.jt1-underpass"].value == pytest.approx(0.3, abs=0.01)
    assert m.area_levels()["g-04"] == Level.RED and m.area_levels().get("g-05", 0) == 0
    assert m.highest({Kind.WATER_LEVEL}, {"g-04", "g-05"}) == Level.RED
    assert m.highest({Kind.WATER_LEVEL}, {"g-03"}) == Level.NORMAL
    # Another agent's reading of the same name is not this gauge.
    assert not m.observe_readings("someone-else", {"underpass-gauge.level": 9.0}, T0).changes


def test_monitor_counts_per_grid_and_samples_at_most_every_interval():
    m = _monitor()
    out = m.observe_counts(Kind.CASE_PRESSURE, {"g-01": 12}, T0)
    assert [(c.indicator, c.after) for c in out.changes] == [("case_pressure.g-01", Level.YELLOW)]
    assert len(out.samples) == 6  # one per grid, the first time
    again = m.observe_counts(Kind.CASE_PRESSURE, {"g-01": 12}, T0 + timedelta(seconds=10))
    assert not again.samples and not again.changes


def test_a_gauge_reads_water_rainfall_or_people_only():
    with pytest.raises(ValueError, match="water_level, rainfall or people"):
        Gauge(id="x", agent="a", reading="d.r", grid="g-01", kind=Kind.CASE_PRESSURE)
    assert VitalsConfig().grading(Kind.CASE_PRESSURE) is None  # not watched unless graded
