"""Token buckets per key: how often one API token may post (Open311 ``POST requests``).

Each key holds at most ``per_min`` tokens and gets them back at ``per_min`` a minute, so
a partner can send a burst of ``per_min`` reports and then one every ``60 / per_min``
seconds. Pure bookkeeping over a clock passed in (monotonic seconds); bounded: at most
``max_keys`` buckets are kept, full ones are forgotten first (a full bucket is the same as
no bucket).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        if per_min < 1:
            raise ValueError("per_min must be at least 1")
        self.size = float(per_min)
        self.rate = per_min / 60.0  # tokens a second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key: (tokens, at)

    def _level(self, key: Hashable, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.size, now))
        return min(self.size, tokens + max(0.0, now - at) * self.rate)

    def take(self, key: Hashable) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is back (the
        caller answers 429 with that as ``Retry-After``)."""
        now = self.clock()
        level = self._level(key, now)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        if len(self._buckets) > self.max_keys:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        for k in [k for k in self._buckets if self._level(k, now) >= self.size]:
            del self._buckets[k]
        while len(self._buckets) > self.max_keys:  # all busy: drop the oldest entries
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def retry_after(seconds: float) -> str:
        """An HTTP ``Retry-After`` value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(seconds)))
