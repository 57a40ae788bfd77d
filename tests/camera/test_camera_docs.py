"""docs/camera.md stays honest: its example config loads, and every config field and the
simulator's commands are documented."""

from __future__ import annotations

import re
from pathlib import Path

from edge_agent.camera.config import CameraConfig, DetectorConfig, ZoneConfig, load_camera_section
from simulators.camera import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "camera.md"


def test_the_example_config_loads(tmp_path, bundled_model):
    text = DOC.read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "cameras.yaml"
    path.write_text(example)
    section = load_camera_section(path)
    assert section.cameras[0].id == "north-gate" and section.zones[0].purpose == "fire_lane"


def test_every_field_is_documented():
    text = DOC.read_text()
    for model in (CameraConfig, ZoneConfig, DetectorConfig):
        for name in model.model_fields:
            assert f"`{name}`" in text, f"{model.__name__}.{name} is not in docs/camera.md"


def test_every_simulator_command_is_documented():
    text = DOC.read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:
        assert f"camera {command}" in text
