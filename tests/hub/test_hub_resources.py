"""A hub that stops gives back every file descriptor it took: read connections of every
thread, paho's wake-up socket pairs and the verifier's model file. A process that starts
hubs over and over (the test suite, a supervisor restarting the web) would otherwise run
past select()'s 1,024-descriptor limit, and paho's loop dies without a word."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hubtest import T0, make_setup

from hub.app import Hub
from protocol.clock import FakeClock

pytestmark = pytest.mark.asyncio


def open_fds() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue
    return out


async def run_once(tmp: Path) -> None:
    tmp.mkdir()
    hub = Hub(make_setup(tmp, web={"port": 0, "access_log": False}), clock=FakeClock(T0), run_scheduler=False)
    await hub.start()
    try:
        await hub.read(lambda repo: repo.change_marker())  # a reader connection on a worker thread
        assert hub.verifier.region_detector() is not None  # the model file opened
    finally:
        await hub.stop()


async def test_stopping_a_hub_closes_its_connections_sockets_and_model(tmp_path):
    await run_once(tmp_path / "warm-up")
    before = open_fds()
    for i in range(3):
        await run_once(tmp_path / f"run{i}")
    after = open_fds()
    leaked = sorted(set(after) - set(before)) if len(after) > len(before) else []
    assert len(after) <= len(before), f"{len(after) - len(before)} descriptors leaked: {leaked[:10]}"
