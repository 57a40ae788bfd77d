"""Plain helpers for the edge agent's tests (importable: this directory is on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


async def until(cond: Callable[[], object], timeout: float = 10.0, every: float = 0.01, what: str = ""):
    """Await ``cond()`` becoming truthy (polling, with a deadline); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(every)


def wait_until(cond: Callable[[], object], timeout: float = 10.0, every: float = 0.01, what: str = ""):
    """The same, for threads and synchronous tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(every)
