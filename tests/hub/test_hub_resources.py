"""A hub that stops gives back every file descriptor it took: read connections of every
thread, paho's wake-up socket pairs and the verifier's model file. A process that starts
hubs over and over (the test suite, a supervisor restarting the web) would otherwise run
past select()'s 1,024-descriptor limit, and paho's loop dies without a word."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hubtest import T0, make_setup

from hub.app import Hub
from hub.errors import StoreError
from hub.store.sqlite import SharedReader, SqliteRepository
from protocol.clock import FakeClock


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


@pytest.mark.asyncio
async def test_stopping_a_hub_closes_its_connections_sockets_and_model(tmp_path):
    await run_once(tmp_path / "warm-up")
    before = open_fds()
    for i in range(3):
        await run_once(tmp_path / f"run{i}")
    after = open_fds()
    leaked = sorted(set(after) - set(before)) if len(after) > len(before) else []
    assert len(after) <= len(before), f"{len(after) - len(before)} descriptors leaked: {leaked[:10]}"


def test_a_read_connection_is_closed_only_between_reads(tmp_path):
    """Closing a connection while another thread is still inside SQLite with it (a
    cancelled ``to_thread`` read at shutdown) crashed the hub: ``close()`` must wait for
    the read, and every later use must be refused with a reason."""
    SqliteRepository(tmp_path / "hub.sqlite").close()  # the schema
    reader = SharedReader(tmp_path / "hub.sqlite")
    inside, release = threading.Event(), threading.Event()
    result: list[int] = []

    def slow_read(repo: SqliteRepository) -> int:
        inside.set()
        release.wait(10)
        return repo.change_marker()

    reading = threading.Thread(target=lambda: result.append(reader.use(slow_read)))
    reading.start()
    assert inside.wait(10)
    closing = threading.Thread(target=reader.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive(), "close() did not wait for the read in flight"
    release.set()
    reading.join(10)
    closing.join(10)
    assert not closing.is_alive() and len(result) == 1
    with pytest.raises(StoreError, match="closed"):
        reader.use(lambda repo: repo.change_marker())
