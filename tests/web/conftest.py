from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubtest import T0, TestAgent, make_setup  # noqa: E402
from webtest import Client, add_users  # noqa: E402

from hub.app import Hub  # noqa: E402
from protocol.clock import FakeClock  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
async def hub(tmp_path, clock):
    """A running hub (managed broker, web on a free port) on a fake clock, with users."""
    h = Hub(make_setup(tmp_path, web={"port": 0, "live_interval_s": 0.2, "access_log": False}),
            clock=clock, run_scheduler=False)
    await h.start()
    await add_users(h)
    yield h
    await h.stop()


@pytest.fixture
async def client(hub):
    c = Client(hub)
    yield c
    await c.close()


@pytest.fixture
async def agent(hub):
    a = await asyncio.to_thread(TestAgent, hub.broker)
    yield a
    a.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
