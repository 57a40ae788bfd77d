"""Is a device answering? A pure state machine: UP/DOWN with a failure count and backoff.

``down_after`` failed polls in a row make a device DOWN (once: one ``device.offline``
event); while DOWN it is polled with exponential backoff up to ``backoff_max_s``; the
first answer makes it UP again (the event ends). A device that never answered since
start-up is ``unknown`` until its first poll decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Health", "HealthState", "Transition"]


class HealthState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Transition(StrEnum):
    WENT_DOWN = "down"
    CAME_UP = "up"


@dataclass
class Health:
    down_after: int
    backoff_max_s: float
    state: HealthState = HealthState.UNKNOWN
    failures: int = 0  # in a row
    last_error: str | None = None
    down_since: float | None = None

    def success(self, now: float) -> Transition | None:
        was = self.state
        self.state, self.failures, self.last_error = HealthState.UP, 0, None
        if was == HealthState.DOWN:
            self.down_since = None
            return Transition.CAME_UP
        return None

    def failure(self, now: float, error: str) -> Transition | None:
        self.failures += 1
        self.last_error = error
        if self.state != HealthState.DOWN and self.failures >= self.down_after:
            self.state = HealthState.DOWN
            self.down_since = now
            return Transition.WENT_DOWN
        return None

    def delay(self, period: float) -> float:
        """Seconds until the next poll: the period, or backoff while DOWN."""
        if self.state != HealthState.DOWN:
            return period
        extra = self.failures - self.down_after
        return min(period * (2 ** min(extra, 20)), max(self.backoff_max_s, period))
