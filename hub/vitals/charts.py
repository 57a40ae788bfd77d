"""Small inline SVG time-series charts of the vital signs (pure geometry; the template
draws what these return): the value as a polyline, each threshold as a coloured line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .levels import Grading, Level

__all__ = ["Chart", "level_chart"]


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    points: str  # "x,y x,y ..." for <polyline>
    thresholds: list[tuple[str, float]]  # (level label, y) inside the chart
    lo: float
    hi: float


def level_chart(samples: list[tuple[datetime, float]], grading: Grading | None,
                width: float = 160.0, height: float = 40.0) -> Chart:
    """A chart of ``(time, value)`` samples, scaled to include the thresholds that matter
    (the lowest, and any the values come near)."""
    values = [v for _, v in samples]
    levels = [(lv.label, grading.threshold(lv)) for lv in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED)] \
        if grading else []
    marks = [(name, t) for name, t in levels if t is not None]
    lo = min(values + [m[1] for m in marks[:1]], default=0.0)
    top = max(values, default=1.0)
    shown = [(n, t) for n, t in marks if t <= top * 1.25 or t == marks[0][1]]
    hi = max([top] + [t for _, t in shown])
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pad = 2.0

    def y(v: float) -> float:
        return round(height - pad - (v - lo) / (hi - lo) * (height - 2 * pad), 1)

    if len(samples) >= 2:
        t0 = samples[0][0].timestamp()
        span = (samples[-1][0].timestamp() - t0) or 1.0
        pts = " ".join(f"{round((t.timestamp() - t0) / span * width, 1)},{y(v)}" for t, v in samples)
    elif samples:
        pts = f"0,{y(values[0])} {width},{y(values[0])}"
    else:
        pts = ""
    return Chart(width, height, pts, [(n, y(t)) for n, t in shown], round(lo, 3), round(hi, 3))
