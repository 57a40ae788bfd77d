"""Graded warning levels with hysteresis (pure).

A reading is graded against ascending thresholds: ``blue`` ≤ ``yellow`` ≤ ``orange`` ≤
``red`` (any may be left out). Two rules keep a level from flapping on noisy readings:

* **confirm** — a *higher* level is taken only after ``confirm`` readings in a row at or
  above its threshold (one spike is not a storm);
* **band** — a level is left downwards only when the reading falls below its threshold
  minus ``hysteresis`` (noise around a threshold does not toggle it).

:func:`step` is the whole decision: ``(state, value) -> state``. A falling reading may
drop several levels at once; a rising one jumps straight to the highest confirmed level.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pydantic import Field, model_validator

from protocol.base import StrictModel

__all__ = ["Grading", "GradeState", "Level", "raw_level", "step"]


class Level(IntEnum):
    NORMAL = 0
    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        return cls[text.upper()]


class Grading(StrictModel):
    """Thresholds of one indicator (same unit as its value)."""

    blue: float | None = Field(None, description="reading at or above: blue")
    yellow: float | None = Field(None, description="reading at or above: yellow")
    orange: float | None = Field(None, description="reading at or above: orange")
    red: float | None = Field(None, description="reading at or above: red")
    hysteresis: float = Field(0.0, ge=0, description="a level is left only below its threshold minus this")
    confirm: int = Field(2, ge=1, le=100, description="readings in a row needed to raise the level")

    @model_validator(mode="after")
    def _ascending(self) -> Grading:
        values = [(n, v) for n, v in self.thresholds() if v is not None]
        if not values:
            raise ValueError("give at least one threshold (blue, yellow, orange or red)")
        for (n1, v1), (n2, v2) in zip(values, values[1:], strict=False):
            if v2 < v1:
                raise ValueError(f"{n2} ({v2}) must not be below {n1} ({v1})")
        return self

    def thresholds(self) -> list[tuple[str, float | None]]:
        return [("blue", self.blue), ("yellow", self.yellow), ("orange", self.orange), ("red", self.red)]

    def threshold(self, level: Level) -> float | None:
        return None if level == Level.NORMAL else getattr(self, level.label)


@dataclass(frozen=True)
class GradeState:
    level: Level = Level.NORMAL
    pending: Level = Level.NORMAL  # a higher level being confirmed
    count: int = 0  # readings in a row at or above ``pending``


def raw_level(value: float, g: Grading) -> Level:
    """The level a single reading reaches, without hysteresis."""
    out = Level.NORMAL
    for level in (Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED):
        t = g.threshold(level)
        if t is not None and value >= t:
            out = level
    return out


def _held(value: float, level: Level, g: Grading) -> Level:
    """Walk down from ``level`` while the reading is below the level's band."""
    while level > Level.NORMAL:
        t = g.threshold(level)
        if t is not None and value >= t - g.hysteresis:
            return level
        level = Level(level - 1)
    return level


def step(state: GradeState, value: float, g: Grading) -> GradeState:
    """The state after one more reading."""
    raw = raw_level(value, g)
    if raw > state.level:
        # Rising: count readings in a row that reach at least the pending level.
        if state.pending > state.level and raw >= state.pending:
            count, pending = state.count + 1, state.pending  # the lowest level of the run
        else:
            count, pending = 1, raw
        if count >= g.confirm:
            return GradeState(pending)
        return GradeState(state.level, pending, count)
    return GradeState(_held(value, state.level, g))
