"""Fixtures for the edge agent's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


def _write_config(dir_: Path, body: str, name: str = "agent.yaml") -> Path:
    path = dir_ / name
    path.write_text(body.replace("@MAPS@", str(MAPS)))
    return path


@pytest.fixture
def write_config():
    """write_config(dir, yaml_text, name="agent.yaml"): an agent config file whose
    ``@MAPS@`` resolves to the shipped register maps."""
    return _write_config


@pytest.fixture
def maps_dir() -> Path:
    return MAPS
