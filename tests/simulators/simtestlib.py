"""Helpers for the simulators' tests (importable: this directory is on sys.path)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


async def until(cond: Callable[[], object], timeout: float = 15.0, what: str = "") -> Any:
    """Await ``cond()`` becoming truthy (polling, with a deadline); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.02)


class SimProcess:
    """``cityops-sim ARGS`` as a child process whose stdout is JSON lines."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())", *args]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SimProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self

    async def line(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"the simulator printed nothing; stderr: {err.decode()[-2000:]}")
        return json.loads(raw)

    async def stop(self) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        return self.proc.returncode or 0, out.decode() + err.decode()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
