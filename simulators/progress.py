"""Progress lines for long simulator runs: what runs, how fast, elapsed and remaining.

Lines go to stderr, so ``--json`` output on stdout stays one clean JSON object::

    [demo mixed-day] 12s of 60s, 48s left | sim 2026-07-01 11:48 (x1440) | events 41 (3.2/s) ...
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    def __init__(self, what: str, total_s: float | None = None, *, every_s: float = 5.0,
                 stream: TextIO | None = None, quiet: bool = False) -> None:
        self.what = what
        self.total_s = total_s
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()
        self._last_report = self.started
        self._last_values: dict[str, tuple[float, float]] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.what}] {text}", file=self.stream, flush=True)

    def due(self) -> bool:
        return time.monotonic() - self._last_report >= self.every_s

    def rate(self, name: str, value: float) -> float:
        """Change of ``value`` per real second since the last call for ``name``."""
        now = time.monotonic()
        last = self._last_values.get(name)
        self._last_values[name] = (now, value)
        if last is None:
            dt = now - self.started
            return value / dt if dt > 0 else 0.0
        dt = now - last[0]
        return (value - last[1]) / dt if dt > 0 else 0.0

    def report(self, fields: dict[str, Any]) -> None:
        self._last_report = time.monotonic()
        elapsed = self.elapsed()
        if self.total_s is None:
            head = f"{format_duration(elapsed)} (until Ctrl-C)"
        else:
            head = (f"{format_duration(elapsed)} of {format_duration(self.total_s)}, "
                    f"{format_duration(self.total_s - elapsed)} left")
        body = " | ".join(f"{k} {v}" for k, v in fields.items())
        self.say(f"{head} | {body}")
