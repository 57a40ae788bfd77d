"""Time series of one indicator (pure): a bounded window of ``(t, value)`` samples and
the rate of rise over it.

The rate is the least-squares slope over the window (per hour), not last-minus-first,
so one noisy reading at either end does not make a storm; it needs ``min_span_s`` of
samples to say anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["Series", "slope_per_hour"]


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(t seconds, value)`` samples, in value units per hour."""
    n = len(samples)
    if n < 2:
        return None
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den <= 0:
        return None
    num = sum((t - mt) * (v - mv) for t, v in samples)
    return num / den * 3600.0


@dataclass
class Series:
    window_s: float
    samples: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, t: float, value: float) -> None:
        if self.samples and t <= self.samples[-1][0]:
            return  # an older or repeated heartbeat: the series only moves forward
        self.samples.append((t, value))
        while self.samples and self.samples[0][0] < t - self.window_s:
            self.samples.popleft()

    def rate_per_hour(self, min_span_s: float) -> float | None:
        if len(self.samples) < 2 or self.samples[-1][0] - self.samples[0][0] < min_span_s:
            return None
        return slope_per_hour(list(self.samples))
