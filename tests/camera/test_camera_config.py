"""The camera section of the firmware config: strict fields, cross-object checks, errors
at file:line:col."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.camera.config import CameraSection, load_camera_section
from protocol.errors import ConfigError

GOOD = """\
cameras:
  - id: gate
    url: rtsp://192.0.2.10/stream1
    fps: 2
    location: {lat: 31.2, lon: 121.4, grid_id: g07, place: North gate}
    masks: [[[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]]
    classes: {water: {min_score: 0.6, min_frames: 4}}
  - id: lane
    file: clip.avi
zones:
  - id: fire_lane_1
    camera: lane
    polygon: [[0.2, 0.5], [0.6, 0.5], [0.6, 1.0], [0.2, 1.0]]
    purpose: fire_lane
    dwell_s: 60
detector:
  threads: 2
  classes: {water: flood.road_waterlogging, flame: community_safety.fire, smoke: community_safety.smoke,
            fallen_tree: flood.fallen_tree, garbage: garbage.overflow, vehicle: null}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "clip.avi").write_bytes(b"not checked here")
    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    return path


def test_a_good_section_loads(tmp_path, bundled_model):
    section = load_camera_section(write(tmp_path, GOOD))
    assert [c.id for c in section.cameras] == ["gate", "lane"]
    assert section.cameras[1].file == tmp_path / "clip.avi"  # relative to the config file
    assert section.cameras[0].class_settings("water").min_frames == 4
    assert section.zones_for("lane")[0].reported_subcategory() == "roads.fire_lane_blocked"
    assert section.detector.class_map(["water", "vehicle"]) == {"water": "flood.road_waterlogging", "vehicle": None}


def test_every_field_documents_itself():
    schema = CameraSection.model_json_schema()
    camera = schema["$defs"]["CameraConfig"]["properties"]
    assert all("description" in v for k, v in camera.items() if k not in ("motion", "tracking", "location"))


def test_errors_point_at_the_place_and_all_at_once(tmp_path, bundled_model):
    bad = GOOD.replace("camera: lane", "camera: lame").replace("fps: 2", "fps: 0").replace(
        "garbage: garbage.overflow", "garbage: flood.river_level").replace("    dwell_s: 60", "    dwel_s: 60")
    with pytest.raises(ConfigError) as err:
        load_camera_section(write(tmp_path, bad))
    text = str(err.value)
    assert "cameras.yaml:4:5 cameras[0].fps: Input should be greater than 0" in text
    assert "zones[0].dwel_s: Extra inputs are not permitted; did you mean 'dwell_s'?" in text


def test_cross_checks_name_the_key_and_line(tmp_path, bundled_model):
    bad = GOOD.replace("camera: lane", "camera: lame").replace("garbage: garbage.overflow", "garbage: flood.river_level")
    with pytest.raises(ConfigError) as err:
        load_camera_section(write(tmp_path, bad))
    problems = {p.path: (p.line, p.message) for p in err.value.problems}
    assert problems["zones[0].camera"] == (12, "no camera 'lame' (cameras: gate, lane)")
    assert problems["detector.classes.garbage"][1] == "'flood.river_level' is a sensor subcategory, not one a camera reports"


def test_camera_source_must_be_exactly_one_and_safe(tmp_path, bundled_model):
    for source, message in (("url: rtsp://x/y\n    device: 0", "exactly one of url, file, device"),
                            ("url: 'file:///etc/passwd'", "url must start with"),
                            ("file: missing.avi", "not found")):
        text = f"cameras:\n  - id: c\n    {source}\n"
        with pytest.raises(ConfigError, match=message):
            load_camera_section(write(tmp_path, text))


def test_model_that_does_not_match_labels_fails_validation(tmp_path, bundled_model):
    model, _ = bundled_model
    shutil.copy(model, tmp_path / "m.tflite")
    (tmp_path / "l.txt").write_text("a\nb\n")
    text = "detector:\n  model: m.tflite\n  labels: l.txt\n"
    with pytest.raises(ConfigError, match=r"detector.model: .*match no known layout for 2 labels"):
        load_camera_section(write(tmp_path, text))
    (tmp_path / "l.txt").write_text("a\nb\nc\nd\ne\nf\n")
    text += "  classes: {water: flood.road_waterlogging}\n"
    with pytest.raises(ConfigError, match="detector.classes.water: not a label of l.txt"):
        load_camera_section(write(tmp_path, text))


def test_zone_labels_and_duplicate_ids(tmp_path, bundled_model):
    extra = "  - id: fire_lane_1\n    camera: gate\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    classes: [truck]\ndetector:"
    bad = GOOD.replace("detector:", extra)
    with pytest.raises(ConfigError) as err:
        load_camera_section(write(tmp_path, bad))
    paths = {p.path for p in err.value.problems}
    assert {"zones[0].id", "zones[1].classes"} <= paths


def test_bundled_class_defaults_apply_unless_the_camera_names_the_class(tmp_path):
    section = load_camera_section(write(tmp_path, GOOD))
    gate, lane = section.cameras
    assert gate.class_settings("water").min_score == 0.6  # the camera's own setting wins
    assert lane.class_settings("water").min_score == 0.35  # the bundled model's default
    assert lane.class_settings("smoke").min_score == 0.50
    assert lane.class_settings("flame").min_score == 0.50 and lane.class_settings("flame").min_frames == 3
    assert lane.class_settings("nonesuch").min_score == 0.45  # a label the bundled model has not: the general default
    assert lane.motion.idle_detect_s == 1.0
