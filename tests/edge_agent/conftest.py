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


def make_draft(kind="new", event_id="ev-1", *, source="dev-1", jpeg: bytes | None = None, **attrs):
    """An EventDraft for outbox and session tests."""
    from datetime import UTC, datetime

    from edge_agent.emit import EventDraft
    from protocol.messages import EventKind, Evidence, Location, Reading

    return EventDraft(
        event_id=event_id, kind=EventKind(kind), category="elderly_care",
        subcategory="elderly_care.water_no_use", source=source,
        observed_at=datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
        location=Location(lat=31.2, lon=121.4, grid_id="grid-1"),
        evidence=Evidence(reading=Reading(name="volume", value=12.5, unit="m3")),
        attributes=attrs, snapshot_jpeg=jpeg,
    )


@pytest.fixture
def draft():
    return make_draft


def tiny_jpeg(width: int = 8, height: int = 6) -> bytes:
    """A real JPEG (OpenCV encodes it)."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def jpeg():
    return tiny_jpeg
