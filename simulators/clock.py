"""Simulated time that runs faster than real time.

A :class:`ScaledClock` implements :class:`protocol.clock.Clock`: ``now()`` starts at a
chosen simulated moment and advances ``scale`` simulated seconds per real second. The
demo hands one instance to the simulated devices, the agents (sample times, rule
windows) and the hub (case times, deadlines, closure holds), so all three agree on what
time it is while a simulated day passes in a minute.

What stays in real seconds: network and device timeouts, poll periods, heartbeats and
the hub's scheduler tick (they are about machines, not about the day being simulated).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["ScaledClock"]


class ScaledClock:
    """``now() = start + (real seconds since creation) * scale``.

    ``freeze()`` stops simulated time (a run that is draining); ``monotonic()`` is the
    simulated seconds since ``start``, so it never goes backwards either.
    """

    def __init__(self, start: datetime | None = None, scale: float = 1.0, *,
                 real: Callable[[], float] = time.monotonic) -> None:
        if scale <= 0:
            raise ValueError(f"the time scale must be positive (got {scale})")
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start time")
        self.start = start
        self.scale = float(scale)
        self._real = real
        self._real0 = real()
        self._frozen_at: float | None = None

    def elapsed(self) -> float:
        """Simulated seconds since ``start``."""
        if self._frozen_at is not None:
            return self._frozen_at
        return (self._real() - self._real0) * self.scale

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    def monotonic(self) -> float:
        return self.elapsed()

    def at(self, sim_offset_s: float) -> datetime:
        """The simulated moment ``sim_offset_s`` after ``start``."""
        return self.start + timedelta(seconds=sim_offset_s)

    def real_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of simulated time take in real time."""
        return sim_seconds / self.scale

    def restart(self) -> None:
        """Make ``start`` be now again (real time spent setting up does not count); only
        before anything has acted on the time."""
        self._real0 = self._real()
        self._frozen_at = None

    def freeze(self) -> None:
        if self._frozen_at is None:
            self._frozen_at = self.elapsed()

    def advance_frozen(self, elapsed: float) -> None:
        """Move a frozen clock forward to ``elapsed`` simulated seconds since ``start``
        (never back): a drained run lets time reach a notification's next retry."""
        if self._frozen_at is None:
            raise RuntimeError("advance_frozen() is for a frozen clock; freeze() it first")
        self._frozen_at = max(self._frozen_at, elapsed)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None
