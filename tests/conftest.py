"""Fixtures shared by the whole suite. Package-specific fixtures live in the conftest.py
of tests/<package>/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.broker import BrokerSettings, MosquittoBroker

# The real notification peers' fixtures (``smtp``, ``http``: tests/notify/sinkfixtures.py),
# for the notify, care and web tests alike.
sys.path.insert(0, str(Path(__file__).resolve().parent / "notify"))
pytest_plugins = ["sinkfixtures"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free loopback port, with generated config, password and
    ACL files, stopped after the test."""
    b = MosquittoBroker(BrokerSettings(data_dir=tmp_path / "broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def project_root() -> Path:
    return ROOT
