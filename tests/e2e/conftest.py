"""Fixtures of the end-to-end tests: the real hub with its own private Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app import Hub
from hub.config import HubConfig, build_setup

EXAMPLES = Path(__file__).resolve().parents[2] / "hub" / "examples"


def hub_config(tmp) -> HubConfig:
    return HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0},
        "database": str(tmp / "hub.sqlite"),
        "snapshots_dir": str(tmp / "snapshots"),
        "web": {"port": 0},
        "grids": str(EXAMPLES / "grids.geojson"),
        "routing": str(EXAMPLES / "routing.yaml"),
        "ingest": {"receivers": 0, "batch_wait_ms": 2},
        "screening": {"rules": {"elderly_care": {"merge_scope": "source"}}},
    })


@pytest.fixture
async def hub(tmp_path):
    h = Hub(build_setup(hub_config(tmp_path)), run_scheduler=False)
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def releasing_hub(tmp_path):
    """The same hub with its release loop ticking fast (model rollouts end to end)."""
    data = hub_config(tmp_path).model_dump()
    data["releases"] = {"dir": str(tmp_path / "releases"), "tick_s": 0.2, "offline_grace_s": 60}
    h = Hub(build_setup(HubConfig.model_validate(data)), run_scheduler=False)
    await h.start()
    yield h
    await h.stop()

