"""``cityops-agent detect``: the installer's look at what a camera's model sees in a frame.
The real bundled model on a rendered street, through the agent's own CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from edge_agent.camera.config import ClassSettings, ZoneConfig
from edge_agent.camera.operating import OperatingPoint
from edge_agent.cli import main
from simulators.scenes import SceneObject, SceneSpec, render
from simulators.scenes.spec import CameraPose, near_z
from vision.postprocess import Detection, iou

FIELDS = {"image", "width", "height", "ms", "detections"}
# A rectangle around where the scene below parks its car: a fire lane drawn under it.
LANE = [[0.45, 0.5], [0.8, 0.5], [0.8, 0.75], [0.45, 0.75]]


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A 720p JPEG of a road with a flame in front and a car parked to its right, and the
    ground-truth boxes."""
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    objects = (SceneObject("flame", x=0.0, z=near_z(cam) * 1.4, size=1.2, seed=5, angle=0.0),
               SceneObject("vehicle", x=2.5, z=near_z(cam) * 2, size=1.0, seed=5, angle=0.0))
    image, truth = render(SceneSpec(seed=3, place="road", camera=cam, light="day", weather="clear",
                                    objects=objects), (1280, 720))
    path = tmp_path_factory.mktemp("frames") / "street.jpg"
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path, {b.label: b.box for b in truth}


def _lines(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_jsonl_gives_every_image_a_line_and_carries_on_past_bad_ones(street, tmp_path, capsys):
    frame, truth = street
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a whole JPEG")
    missing = tmp_path / "missing.jpg"
    assert main(["detect", str(corrupt), str(frame), str(missing), "--jsonl"]) == 1  # one failed: non-zero
    bad, good, gone = _lines(capsys)
    assert bad == {"image": str(corrupt), "error": bad["error"]} and "cannot decode" in bad["error"]
    assert gone == {"image": str(missing), "error": "file not found"}
    assert set(good) == FIELDS and (good["width"], good["height"]) == (1280, 720) and good["ms"] > 0
    for d in good["detections"]:
        assert set(d) == {"label", "subcategory", "score", "box", "event"}
        assert 0 <= d["box"][0] < d["box"][2] <= 1 and 0 <= d["box"][1] < d["box"][3] <= 1
    flame = max((d for d in good["detections"] if d["label"] == "flame"), key=lambda d: d["score"])
    assert flame["event"] is True and flame["subcategory"] == "community_safety.fire"
    assert flame["score"] >= 0.5 and iou(flame["box"], truth["flame"]) > 0.5
    car = max((d for d in good["detections"] if d["label"] == "vehicle"), key=lambda d: d["score"])
    assert car["event"] is False and car["subcategory"] is None  # a parked car is no event by itself
    assert main(["detect", str(frame), "--jsonl"]) == 0 and len(_lines(capsys)) == 1


def test_a_bad_model_gives_each_image_an_error_line(street, tmp_path, capsys):
    frame, _ = street
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    for model, says in ((tmp_path / "nope.tflite", "nope.tflite: file not found"), (broken, "not a TFLite model")):
        assert main(["detect", str(frame), str(frame), "--model", str(model), "--jsonl"]) == 1
        lines = _lines(capsys)
        assert len(lines) == 2 and all(set(line) == {"image", "error"} and says in line["error"] for line in lines)


def test_a_camera_config_decides_event_with_its_thresholds_and_zones(street, tmp_path, capsys):
    frame, _ = street
    config = tmp_path / "cameras.yaml"
    config.write_text(
        "cameras:\n"
        "  - id: gate\n"
        "    url: rtsp://192.0.2.10/stream1\n"
        "    classes: {flame: {min_score: 0.99}}\n"
        "  - id: other\n"
        "    url: rtsp://192.0.2.11/stream1\n"
        "zones:\n"
        f"  - {{id: lane, camera: gate, purpose: fire_lane, dwell_s: 120, polygon: {LANE}}}\n")
    assert main(["detect", str(frame), "--camera-config", str(config), "--camera", "gate", "--jsonl"]) == 0
    (line,) = _lines(capsys)
    events = {d["label"]: (d["event"], d["subcategory"]) for d in line["detections"] if d["score"] >= 0.5}
    # the camera's flame threshold is out of reach; its fire lane makes the parked car an event
    assert events == {"flame": (False, "community_safety.fire"), "vehicle": (True, "roads.fire_lane_blocked")}
    assert main(["detect", str(frame), "--camera-config", str(config), "--camera", "other", "--jsonl"]) == 0
    events = {d["label"]: d["event"] for d in _lines(capsys)[0]["detections"] if d["score"] >= 0.5}
    assert events == {"flame": True, "vehicle": False}
    assert main(["detect", str(frame), "--camera-config", str(config), "--jsonl"]) == 1  # which camera?
    assert "name one with --camera" in capsys.readouterr().err
    agent_config = Path(__file__).resolve().parents[2] / "firmware_configs" / "agents" / "camera-file-test.yaml"
    assert main(["detect", str(frame), "--camera-config", str(agent_config), "--jsonl"]) == 0  # a whole agent config
    assert {d["label"]: d["event"] for d in _lines(capsys)[0]["detections"] if d["score"] >= 0.5}["flame"] is True


def test_without_jsonl_a_readable_table(street, tmp_path, capsys):
    frame, _ = street
    assert main(["detect", str(frame), str(tmp_path / "gone.jpg")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{frame}  1280x720  ")
    flame_row = next(row for row in captured.out.splitlines() if row.strip().startswith("flame"))
    assert "community_safety.fire" in flame_row and " yes " in flame_row
    assert f"{tmp_path / 'gone.jpg'}: error: file not found" in captured.err


def test_the_operating_point_follows_the_tracker_rules_on_one_frame():
    flame = Detection(1, 0.6, (0.4, 0.5, 0.5, 0.8), "flame")
    car = Detection(5, 0.9, (0.5, 0.55, 0.7, 0.7), "vehicle")
    shipped = OperatingPoint()
    assert shipped.judge(flame).event and not shipped.judge(car).event
    assert not shipped.judge(Detection(1, 0.45, flame.box, "flame")).event  # under flame's 0.50
    off = OperatingPoint(class_settings=lambda label: ClassSettings(enabled=label != "flame"))
    assert off.judge(flame).event is False and off.judge(flame).subcategory == "community_safety.fire"
    ignore = ZoneConfig(id="sky", camera="c", purpose="ignore", polygon=[[0, 0], [1, 0], [1, 1], [0, 1]])
    assert not OperatingPoint(zones=[ignore]).judge(flame).event
    watch = ZoneConfig(id="w", camera="c", purpose="watch", classes=["flame"], polygon=[[0, 0], [0.2, 0], [0.2, 0.2]])
    assert not OperatingPoint(zones=[watch]).judge(flame).event  # watched classes count only inside
    lane = ZoneConfig(id="lane", camera="c", purpose="no_parking", dwell_s=600, polygon=LANE)
    judged = OperatingPoint(zones=[lane]).judge(car)
    assert judged.event and judged.subcategory == "roads.illegal_parking" and judged.zone == "lane"


def test_a_model_folder_ships_its_own_operating_point(street, tmp_path, capsys):
    """``detect --model`` judges ``event`` by the thresholds.json beside that model, the way
    the bundled model's defaults come from its own; a broken file names itself and the fix."""
    import shutil

    from vision.models import BUNDLED_LABELS, BUNDLED_MODEL

    frame, _ = street
    folder = tmp_path / "candidate"
    folder.mkdir()
    shutil.copy(BUNDLED_MODEL, folder / BUNDLED_MODEL.name)
    shutil.copy(BUNDLED_LABELS, folder / "labels.txt")
    model = folder / BUNDLED_MODEL.name
    assert main(["detect", str(frame), "--model", str(model), "--jsonl"]) == 0  # no file: bundled defaults
    assert {d["label"]: d["event"] for d in _lines(capsys)[0]["detections"] if d["score"] >= 0.5}["flame"] is True
    (folder / "thresholds.json").write_text(json.dumps({"min_score": {"flame": 0.999}}))
    assert main(["detect", str(frame), "--model", str(model), "--jsonl"]) == 0
    flames = [d for d in _lines(capsys)[0]["detections"] if d["label"] == "flame" and d["score"] >= 0.5]
    assert flames and not any(d["event"] for d in flames)
    (folder / "thresholds.json").write_text('{"min_score": {"flame": 7}}')
    assert main(["detect", str(frame), "--model", str(model), "--jsonl"]) == 1
    err = capsys.readouterr()
    assert "thresholds.json" in err.out + err.err and "(0, 1]" in err.out + err.err


def test_the_real_photo_model_is_named_not_pathed_and_brings_its_own_thresholds(street, tmp_path, capsys):
    """``bundled:real`` (the model trained on real photos, vision/models/real/) works as a
    config value and a ``--model``: its labels and thresholds.json come with it, for the
    detector, for every camera of the section, and for ``detect``."""
    from edge_agent.camera.config import CameraSection, DetectorConfig
    from vision.labels import read_labels
    from vision.models import REAL_MODEL, read_thresholds
    from vision.runtime import Detector

    shipped = read_thresholds(REAL_MODEL)
    assert shipped and set(shipped) >= {"water", "flame", "smoke", "garbage"}
    cfg = DetectorConfig(model="bundled:real")
    assert cfg.model == REAL_MODEL and cfg.labels == REAL_MODEL.with_name("labels.txt")
    assert Detector(cfg.model, read_labels(cfg.labels)).info.input_dtype == "int8"
    frame, _ = street
    section = CameraSection.model_validate({"detector": {"model": "bundled:real"},
                                            "cameras": [{"id": "gate", "file": str(frame)},
                                                        {"id": "yard", "file": str(frame),
                                                         "classes": {"water": {"min_score": 0.9}}}]})
    gate, yard = section.cameras
    assert gate.class_settings("water").min_score == shipped["water"]  # the model's, not the rendered model's
    assert yard.class_settings("water").min_score == 0.9  # the camera's own still wins
    assert main(["detect", str(frame), "--model", "bundled:real", "--jsonl"]) == 0
    line = _lines(capsys)[0]
    assert line["width"] == 1280 and isinstance(line["detections"], list)
