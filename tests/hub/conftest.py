from __future__ import annotations

import pytest
from hubtest import T0, make_setup

from hub.app import Hub
from hub.store.sqlite import SqliteRepository
from protocol.clock import FakeClock


@pytest.fixture
def repo():
    """The in-memory store: the full schema, the same SQL as production."""
    r = SqliteRepository.memory()
    yield r
    r.close()


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
async def hub(tmp_path, clock):
    """A running hub (managed broker, receiver thread, web on a free port) on a fake clock."""
    h = Hub(make_setup(tmp_path), clock=clock, run_scheduler=False)
    await h.start()
    yield h
    await h.stop()
