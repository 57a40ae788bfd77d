"""Cameras in the agent's own config file: ``cameras:``, ``zones:`` and ``detector:`` are
sections of the agent config, checked at load (and by ``check-config``) with the model
opened against its labels; a bad model, labels file or zone fails at start-up with
file:line key and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.app import COMPONENT_FACTORIES, camera_components
from edge_agent.cli import main
from edge_agent.config import apply_overlay, load_agent_config
from protocol.clock import SystemClock
from protocol.errors import ConfigError

AGENT = """\
agent:
  id: cam-agent
  location: {lat: 31.2, lon: 121.4}
cameras:
  - id: gate
    url: rtsp://192.0.2.10/stream1
    fps: 2
    classes: {water: {min_score: 0.6}}
  - id: lane
    file: clip.avi
    enabled: false
zones:
  - id: fire_lane_1
    camera: lane
    polygon: [[0.2, 0.5], [0.6, 0.5], [0.6, 1.0], [0.2, 1.0]]
    purpose: fire_lane
detector:
  threads: 1
"""


def write(tmp_path: Path, text: str = AGENT) -> Path:
    (tmp_path / "clip.avi").write_bytes(b"a video file (not decoded by the checks)")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    return {p.path: str(p) for p in info.value.problems}


def test_cameras_are_sections_of_the_agent_config(tmp_path, bundled_model):
    loaded = load_agent_config(write(tmp_path))
    cfg = loaded.config
    assert [c.id for c in cfg.cameras] == ["gate", "lane"]
    assert cfg.cameras[1].file == tmp_path / "clip.avi"  # relative to the config file
    section = cfg.camera_section()
    assert section.zones_for("lane")[0].reported_subcategory() == "roads.fire_lane_blocked"
    assert section.detector.model == bundled_model[0]
    assert camera_components in COMPONENT_FACTORIES


def test_the_camera_factory_builds_one_component_for_the_enabled_cameras(tmp_path, bundled_model):
    loaded = load_agent_config(write(tmp_path))
    (component,) = camera_components(loaded, SystemClock())
    assert component.name == "camera" and [w.camera.id for w in component.workers] == ["gate"]
    sensors_only = load_agent_config(write(tmp_path, AGENT.split("cameras:")[0]))
    assert camera_components(sensors_only, SystemClock()) == []


def test_a_missing_model_fails_at_load_with_the_line_and_the_fix(tmp_path, bundled_model):
    path = write(tmp_path, AGENT + "  model: models/nope.tflite\n")
    got = problems(path)
    msg = got["detector.model"]
    assert msg.startswith(f"{path}:19:3 detector.model:")
    assert "file not found; check detector.model" in msg


def test_a_corrupt_model_fails_with_the_reason(tmp_path, bundled_model):
    (tmp_path / "broken.tflite").write_bytes(b"\x00" * 64)
    msg = problems(write(tmp_path, AGENT + "  model: broken.tflite\n"))["detector.model"]
    assert "is not a TFLite model" in msg and "TFLite converter" in msg
    truncated = bundled_model[0].read_bytes()[:5000]
    (tmp_path / "truncated.tflite").write_bytes(truncated)
    msg = problems(write(tmp_path, AGENT + "  model: truncated.tflite\n"))["detector.model"]
    assert "cannot load it" in msg or "is not a TFLite model" in msg


def test_a_model_of_an_unknown_layout_fails(tmp_path, tiny_models):
    shutil.copy(tiny_models["bad"], tmp_path / "bad.tflite")
    shutil.copy(tiny_models["labels"], tmp_path / "labels.txt")
    body = AGENT.replace("classes: {water: {min_score: 0.6}}", "fps: 1").replace("    fps: 2\n", "")
    msg = problems(write(tmp_path, body + "  model: bad.tflite\n  labels: labels.txt\n"))["detector.model"]
    assert "match no known layout for 3 labels" in msg and "set detector.layout" in msg


def test_labels_that_do_not_match_the_model_fail(tmp_path, bundled_model):
    (tmp_path / "labels.txt").write_text("water\nflame\nsmoke\n")
    body = AGENT.replace("{water: {min_score: 0.6}}", "{}") + "  labels: labels.txt\n"
    got = problems(write(tmp_path, body))
    assert "match no known layout for 3 labels" in got["detector.model"]
    assert "check that detector.labels belongs to this model" in got["detector.model"]
    got = problems(write(tmp_path, body + "  layout: centernet\n"))
    assert "predicts 6 classes but the labels file has 3" in got["detector.model"]
    assert "use the labels file that came with the model" in got["detector.model"]


def test_camera_cross_checks_point_at_their_keys(tmp_path, bundled_model):
    body = AGENT.replace("camera: lane", "camera: lame").replace("{water: {min_score", "{wter: {min_score")
    body = body.replace("  - id: lane\n", "  - id: gate\n")
    path = write(tmp_path, body)
    got = problems(path)
    assert got["zones[0].camera"].startswith(f"{path}:14:5 zones[0].camera: no camera 'lame'")
    assert "not a detector label" in got["cameras[0].classes.wter"]
    assert "'gate' is already used by cameras[0]" in got["cameras[1].id"]


def test_cross_checks_still_run_when_another_part_is_invalid(tmp_path, bundled_model):
    body = AGENT.replace("camera: lane", "camera: lame").replace("fps: 2", "fps: -1")
    got = problems(write(tmp_path, body))
    assert "greater than 0" in got["cameras[0].fps"]
    assert "no camera 'lame'" in got["zones[0].camera"]


def test_check_config_reports_a_bad_model_in_one_line(tmp_path, capsys, bundled_model):
    path = write(tmp_path, AGENT + "  model: nope.tflite\n")
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:19:3 detector.model: file not found" in err and "Traceback" not in err
    assert main(["check-config", str(write(tmp_path))]) == 0
    assert "2 camera(s)" in capsys.readouterr().out


def test_a_desired_overlay_can_change_camera_settings_and_is_checked(tmp_path, bundled_model):
    loaded = load_agent_config(write(tmp_path))
    overlay = {"cameras": [{"id": "gate", "url": "rtsp://192.0.2.10/stream1", "fps": 5,
                            "classes": {"water": {"min_score": 0.4}}}],
               "zones": [], "detector": {"score_threshold": 0.2}}
    merged = apply_overlay(loaded, overlay, 3)
    assert merged.config.cameras[0].fps == 5 and merged.config.detector.score_threshold == 0.2
    with pytest.raises(ConfigError) as info:
        apply_overlay(loaded, {"zones": [{"id": "z", "camera": "nowhere", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, 4)
    assert "zones[0].camera: no camera 'nowhere'" in str(info.value)


def test_an_overlay_patches_cameras_and_zones_by_id(tmp_path, bundled_model):
    loaded = load_agent_config(write(tmp_path))
    zone = {"camera": "gate", "polygon": [[0, 0.5], [1, 0.5], [1, 1]], "purpose": "no_parking"}
    merged = apply_overlay(loaded, {"cameras": {"gate": {"fps": 5, "classes": {"garbage": {"enabled": False}}}},
                                    "zones": {"fire_lane_1": None, "kerb": zone}}, 7)
    gate = merged.config.cameras[0]
    assert gate.url == "rtsp://192.0.2.10/stream1" and gate.fps == 5  # the URL stays where it was
    assert gate.classes["water"].min_score == 0.6 and gate.class_settings("garbage").enabled is False
    assert [z.id for z in merged.config.zones] == ["kerb"]
    assert [c.fps for c in load_agent_config(write(tmp_path)).config.cameras] == [2, 2]  # the file is untouched
    with pytest.raises(ConfigError) as info:
        apply_overlay(loaded, {"cameras": {"gate": 5, "porch": {"fps": 1}, "lane": {"id": "other"}}}, 8)
    got = {p.path: p.message for p in info.value.problems}
    assert "expected a mapping of settings for camera 'gate'" in got["cameras.gate"]
    assert "an id cannot be changed" in got["cameras.lane.id"]
    with pytest.raises(ConfigError) as info:
        apply_overlay(loaded, {"cameras": {"porch": {"fps": 1}}}, 9)  # a new camera needs a source
    assert "exactly one of url, file, device" in str(info.value)
