"""The agent's own vital signs for telemetry: resident memory and CPU use (Linux /proc)."""

from __future__ import annotations

import os
import time

__all__ = ["CpuMeter", "rss_mb"]


def rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU use of this process since the previous reading, in percent of one core."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), self._cpu())

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def percent(self) -> float:
        now, cpu = time.monotonic(), self._cpu()
        wall = now - self._last[0]
        used = cpu - self._last[1]
        self._last = (now, cpu)
        return round(100.0 * used / wall, 1) if wall > 0 else 0.0
