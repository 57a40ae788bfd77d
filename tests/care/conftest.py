"""Fixtures for the elderly-care tests: a real SMTP server and HTTP receivers (the
notification peers of tests/notify/peers.py) and the hub's fake clock. Helpers are in
caretest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "hub"))
sys.path.insert(0, str(HERE.parent / "notify"))

from hubtest import T0  # noqa: E402

from protocol.clock import FakeClock  # noqa: E402


@pytest.fixture
def clock():
    return FakeClock(T0)
