"""What each simulated device reads at a simulated moment: pure functions of time.

Times are simulated seconds since the scenario's start. ``day0_s`` is how far into its
local day the scenario starts (06:00 → 21,600), so daily patterns fall at the right hours.
Incidents repeat every ``period`` seconds when the scenario repeats (``None``: once).

The same functions feed the devices (what the agent reads) and the ground truth (when a
problem began), so both tell one story.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

from .model import Household, LevelBehaviour, Rain

__all__ = [
    "DAY_S",
    "Draw",
    "GaugeTimeline",
    "MeterTimeline",
    "Recurring",
    "SwitchTimeline",
    "household_draws",
    "rain_length",
]

DAY_S = 86400.0
T = TypeVar("T")


class Recurring(Generic[T]):
    """Intervals ``(start, end, payload)`` within one period, repeated every ``period``."""

    def __init__(self, items: Sequence[tuple[float, float, T]], period: float | None) -> None:
        self.items = sorted(items, key=lambda it: it[0])
        self.period = period

    def _cycles(self, a: float, b: float) -> range:
        if self.period is None:
            return range(1)
        return range(max(0, math.floor(a / self.period) - 1), math.floor(b / self.period) + 1)

    def overlapping(self, a: float, b: float) -> Iterator[tuple[float, float, T]]:
        """Every occurrence that overlaps ``[a, b]``, in absolute times."""
        for k in self._cycles(a, b):
            shift = k * (self.period or 0.0)
            for start, end, payload in self.items:
                s, e = start + shift, end + shift
                if s <= b and e >= a:
                    yield s, e, payload

    def active(self, t: float) -> list[T]:
        return [p for s, e, p in self.overlapping(t, t) if s <= t < e]

    def started(self, t: float) -> int:
        """How many occurrences have started by ``t``."""
        if t < 0:
            return 0
        if self.period is None:
            return sum(1 for s, _, _ in self.items if s <= t)
        full, rest = divmod(t, self.period)
        return int(full) * len(self.items) + sum(1 for s, _, _ in self.items if s <= rest)


# -- water meters ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Draw:
    start: float  # seconds into the local day
    end: float
    flow: float  # m3/h


# Every day: on waking, at lunch, at dinner, before bed (local hours). The longest
# ordinary gap is the night: at most 9.5 h (21:30 to 07:00).
_ANCHORS = ((5.5, 7.0), (11.5, 13.0), (17.5, 19.0), (21.5, 23.0))
_SLOTS = ((7 * 3600, 9 * 3600, 0.30), (11 * 3600, 13.5 * 3600, 0.25), (17 * 3600, 21.5 * 3600, 0.45))


def household_draws(h: Household, day: int) -> tuple[Draw, ...]:
    """The draws of one local day: on waking, at lunch, at dinner and before bed, maybe
    one at night, the rest spread over morning, midday and evening. Deterministic in
    (seed, day)."""
    return _draws((h.seed, h.draws_per_day, h.flow_m3h, h.draw_minutes, h.night_use), day)


@lru_cache(maxsize=4096)
def _draws(key: tuple, day: int) -> tuple[Draw, ...]:
    seed, per_day, flow_m3h, draw_minutes, night_use = key
    rng = random.Random(f"{seed}:{day}")

    def draw(lo: float, hi: float) -> Draw:
        start = rng.uniform(lo, hi)
        minutes = rng.uniform(*draw_minutes)
        return Draw(start, start + minutes * 60.0, rng.uniform(*flow_m3h))

    out = [draw(lo * 3600, hi * 3600) for lo, hi in _ANCHORS]
    if rng.random() < night_use:
        out.append(draw(1 * 3600, 4.5 * 3600))
    weights = [w for _, _, w in _SLOTS]
    for _ in range(per_day - len(_ANCHORS)):
        lo, hi, _ = rng.choices(_SLOTS, weights)[0]
        out.append(draw(lo, hi))
    return tuple(sorted(out, key=lambda d: d.start))


_FOUND_DRAW_S = 300.0  # the resident, found, runs the tap: the first use after an absence
_FOUND_FLOW = 0.4


@dataclass
class MeterTimeline:
    """Flow and cumulative volume of one meter: household draws (none while the
    resident does not use water), plus leaks."""

    household: Household | None
    day0_s: float
    no_use: Recurring[None] = field(default_factory=lambda: Recurring([], None))
    leaks: Recurring[float] = field(default_factory=lambda: Recurring([], None))
    volume0: float = 0.0

    def __post_init__(self) -> None:
        if self.household is not None:
            self.volume0 = self.household.volume_m3
        self._found = Recurring([(e, e + _FOUND_DRAW_S, _FOUND_FLOW) for _, e, _ in self.no_use.items],
                                self.no_use.period)

    def draws(self, a: float, b: float) -> Iterator[tuple[float, float, float]]:
        """(start, end, flow) of the resident's draws overlapping ``[a, b]``."""
        if self.household is not None:
            first = math.floor((a + self.day0_s) / DAY_S) - 1
            last = math.floor((b + self.day0_s) / DAY_S)
            absent = [(s, e) for s, e, _ in self.no_use.overlapping(a - DAY_S, b + DAY_S)]
            for day in range(first, last + 1):
                base = day * DAY_S - self.day0_s
                for d in household_draws(self.household, day):
                    s, e = base + d.start, base + d.end
                    if s > b or e < a:
                        continue
                    for ns, ne in absent:
                        if ns <= s < ne:
                            break  # no water used while absent
                        if s < ns < e:
                            e = ns  # the draw stops when the absence starts
                    else:
                        yield s, e, d.flow
        yield from self._found.overlapping(a, b)

    def flow(self, t: float) -> float:
        total = sum(f for s, e, f in self.draws(t, t) if s <= t < e)
        return total + sum(self.leaks.active(t))

    def volume(self, t: float) -> float:
        return self.volume0 + self.used(0.0, t)

    def used(self, a: float, b: float) -> float:
        """m3 through the meter between ``a`` and ``b``."""
        if b <= a:
            return 0.0
        total = 0.0
        for s, e, f in list(self.draws(a, b)) + list(self.leaks.overlapping(a, b)):
            overlap = min(e, b) - max(s, a)
            if overlap > 0:
                total += f * overlap / 3600.0
        return total

    def last_use_before(self, t: float) -> float | None:
        """When the resident's last draw before ``t`` ended (``None``: none in two days)."""
        ends = [min(e, t) for s, e, _ in self.draws(t - 2 * DAY_S, t) if s < t]
        return max(ends) if ends else None


# -- level gauges ------------------------------------------------------------------------------

@dataclass
class GaugeTimeline:
    behaviour: LevelBehaviour
    day0_s: float
    rains: Recurring[Rain] = field(default_factory=lambda: Recurring([], None))

    def level(self, t: float) -> float:
        b = self.behaviour
        swing = b.swing * math.sin(2 * math.pi * (self.day0_s + t) / DAY_S)
        return b.base + swing + sum(_rain_rise(r, s, t) for s, _, r in self.rains.overlapping(t, t))

    def first_time(self, a: float, b: float, predicate: Callable[[float], bool],
                   step: float = 60.0) -> float | None:
        """First sampled time in ``[a, b]`` where ``predicate(level)`` holds."""
        t = a
        while t <= b:
            if predicate(self.level(t)):
                return t
            t += step
        return None


def _rain_rise(rain: Rain, start: float, t: float) -> float:
    x = t - start
    if x <= 0:
        return 0.0
    if x < rain.rise_for:
        return rain.rise_m * x / rain.rise_for
    x -= rain.rise_for
    if x < rain.hold_for:
        return rain.rise_m
    x -= rain.hold_for
    if x < rain.fall_for:
        return rain.rise_m * (1 - x / rain.fall_for)
    return 0.0


def rain_length(rain: Rain) -> float:
    return rain.rise_for + rain.hold_for + rain.fall_for


# -- alarms: smoke detectors, call buttons ----------------------------------------------------------

@dataclass
class SwitchTimeline:
    """A flag that is on during intervals, and a counter of how many have started."""

    on: Recurring[float]  # payload: an analogue value while on (smoke density), or 0

    def flag(self, t: float) -> bool:
        return bool(self.on.active(t))

    def count(self, t: float) -> int:
        return self.on.started(t)

    def value(self, t: float, rest: float) -> float:
        active = self.on.active(t)
        return max(active) if active else rest
