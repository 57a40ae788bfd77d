from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubtest import T0  # noqa: E402
from notifytest import notify_setup  # noqa: E402

from hub.app import Hub  # noqa: E402
from protocol.clock import FakeClock  # noqa: E402


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
async def hub(tmp_path, clock, smtp, http):
    h = Hub(notify_setup(tmp_path, smtp, http), clock=clock, run_scheduler=False)
    await h.start()
    yield h
    await h.stop()
