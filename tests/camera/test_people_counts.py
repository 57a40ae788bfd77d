"""People counts (issue 18): a camera counts the people its model sees, in total and per
``count`` zone, and sends the counts as telemetry readings that a hub vital-signs gauge of
kind ``people`` grades; the holiday-crowd plan's ``people`` trigger fires from them.

The bundled model has no person class yet, so the end-to-end test gives the real bundled
model a labels file whose ``vehicle`` line reads ``person`` (the runtime takes names from
the labels file): rendered cars are then "people" to the agent, and the ground truth of the
render says how many stand in each zone. Real detector, real agent, the hub's private
Mosquitto, the real hub with its vitals and plans."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest
import yaml

from edge_agent.app import AgentApp
from edge_agent.camera.component import CameraComponent
from edge_agent.camera.config import (
    BUNDLED_LABELS,
    BUNDLED_MODEL,
    CameraSection,
    TrackingConfig,
    ZoneConfig,
)
from edge_agent.camera.people import PeopleCounter, count_frame
from edge_agent.config import load_agent_config
from edge_agent.emit import MemorySink
from edge_agent.tracking import Tracker
from hub.app import Hub
from hub.config import HubConfig, build_setup
from protocol.errors import ConfigError
from protocol.ids import new_secret
from simulators.scenes import Clip, SceneObject, SceneSpec, render, write_clip
from simulators.scenes.spec import CameraPose, near_z
from vision.labels import read_labels
from vision.postprocess import Detection

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "hub" / "examples"
WEST = [[0.0, 0.4], [0.56, 0.4], [0.56, 1.0], [0.0, 1.0]]
EAST = [[0.56, 0.4], [1.0, 0.4], [1.0, 1.0], [0.56, 1.0]]


def person(x1: float, y1: float, x2: float, y2: float, score: float = 0.9, label: str = "person") -> Detection:
    return Detection(0, score, (x1, y1, x2, y2), label)


def zone(zid: str, polygon, purpose: str = "count", **extra) -> ZoneConfig:
    return ZoneConfig(id=zid, camera="square", polygon=polygon, purpose=purpose, **extra)


def camera_section(people: dict | None = None, zones: list[dict] | None = None, classes: dict | None = None,
                   labels: Path = BUNDLED_LABELS, model: Path = BUNDLED_MODEL) -> CameraSection:
    cam = {"id": "square", "url": "rtsp://192.0.2.10/stream1", "classes": classes or {}, "people": people or {}}
    return CameraSection.model_validate({"cameras": [cam], "zones": zones or [],
                                         "detector": {"model": str(model), "labels": str(labels)}})


# -- counting one frame, and the window ---------------------------------------------------------

def test_a_frame_counts_people_by_their_feet_per_count_zone_and_not_under_an_ignore_zone():
    zones = [zone("west", WEST), zone("east", EAST),
             zone("poster", [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3], [0.8, 0.3]], purpose="ignore")]
    dets = [person(0.10, 0.5, 0.20, 0.9),   # feet in the west
            person(0.50, 0.5, 0.60, 0.8),   # box across the line, feet at x 0.55: west
            person(0.60, 0.3, 0.70, 0.7),   # east
            person(0.85, 0.05, 0.95, 0.25),  # a person on a poster (ignore zone): not counted
            person(0.30, 0.1, 0.40, 0.3),   # feet above both zones: in the total only
            person(0.20, 0.5, 0.30, 0.9, score=0.5),  # below this camera's min_score for person
            person(0.70, 0.5, 0.90, 0.9, label="vehicle")]
    got = count_frame(dets, ["person"], lambda label: 0.6, zones)
    assert (got.total, got.zones) == (4, {"west": 2, "east": 1})


def test_the_count_sent_is_the_median_over_the_window_and_nothing_once_the_camera_is_silent():
    section = camera_section(people={"window_s": 3}, zones=[{"id": "west", "camera": "square", "polygon": WEST,
                                                             "purpose": "count"}])
    counter = PeopleCounter(section.cameras[0], section.zones, ["water", "person"])
    one = [person(0.1, 0.5, 0.2, 0.9)]
    three = [*one, person(0.3, 0.5, 0.4, 0.9), person(0.7, 0.5, 0.8, 0.9)]
    assert counter.note is None and counter.readings(0.0) == {}  # nothing analysed yet: no count
    for t, dets in ((0.0, three), (1.0, three), (2.0, one), (2.5, three)):  # one frame missed two
        counter.add(dets, t)
    assert counter.readings(2.5) == {"square.people": 3.0, "square.west.people": 2.0}
    for t in (3.0, 3.5, 4.0, 4.5):  # the square empties
        counter.add([], t)
    assert counter.readings(4.5) == {"square.people": 0.0, "square.west.people": 0.0}
    assert counter.readings(8.0) == {}  # no frame analysed for longer than the window: no count


def test_a_count_zone_makes_no_events_and_leaves_other_zones_alone():
    tracker = Tracker(TrackingConfig(), {"flame": "community_safety.fire"}, zones=[zone("west", WEST)])
    decisions = []
    for t in range(4):
        decisions += tracker.step([Detection(1, 0.9, (0.1, 0.5, 0.2, 0.9), "flame")], float(t))
    (new,) = decisions
    assert new.subcategory == "community_safety.fire" and new.zone is None  # as without the zone


# -- configuration --------------------------------------------------------------------------------

def test_counting_settings_are_checked_against_the_model_with_the_key_and_the_fix():
    with pytest.raises(ValueError) as info:
        camera_section(people={"labels": ["persn"]},
                       zones=[{"id": "west", "camera": "square", "polygon": WEST, "purpose": "count",
                               "classes": ["vehicle"]},
                              {"id": "z" * 60, "camera": "square", "polygon": EAST, "purpose": "count"}])
    text = str(info.value)
    assert "cameras[0].people.labels: 'persn' is not a detector label" in text
    assert "zones[0].classes: a count zone reports no events" in text
    assert "zones[1].id: its count would go out as reading 'square." in text and "shorten the zone id" in text


def test_an_agent_config_with_a_count_zone_loads_and_check_config_names_a_bad_one(tmp_path):
    path = tmp_path / "agent.yaml"
    body = ("agent: {id: a1, location: {lat: 31.2, lon: 121.4}}\n"
            "cameras:\n  - id: square\n    url: rtsp://192.0.2.10/s\n    people: {window_s: 5}\n"
            "zones:\n  - {id: west, camera: square, purpose: count, polygon: [[0, 0.4], [0.5, 0.4], [0.5, 1]]}\n")
    path.write_text(body)
    cam = load_agent_config(path).config.cameras[0]
    assert cam.people.window_s == 5 and cam.people.enabled
    path.write_text(body.replace("purpose: count,", "purpose: count, subcategory: roads.illegal_parking,"))
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    (problem,) = info.value.problems
    assert problem.path == "zones[0].subcategory" and problem.line == 7


# -- a model without people -----------------------------------------------------------------------

def labels_without(tmp_path: Path, rename: dict[str, str]) -> Path:
    """A copy of the bundled model and its labels with some names changed."""
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    shutil.copy(BUNDLED_MODEL, folder / "detector.tflite")
    (folder / "labels.txt").write_text("\n".join(rename.get(n, n) for n in read_labels(BUNDLED_LABELS)) + "\n")
    return folder


def vehicles_scene() -> tuple[SceneSpec, list]:
    """A road with three parked cars: two on the west side of the frame, one to the east."""
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    cars = tuple(SceneObject("vehicle", x=x, z=near_z(cam) * z, size=1.0, seed=5 + i, angle=0.0)
                 for i, (x, z) in enumerate(((-5.0, 1.5), (-1.5, 1.5), (4.0, 1.8))))
    spec = SceneSpec(seed=5, place="road", camera=cam, light="day", weather="clear", objects=cars)
    _, truth = render(spec, (640, 360))
    return spec, [b.box for b in truth if b.label == "vehicle"]


@pytest.fixture(scope="module")
def square_clip(tmp_path_factory) -> tuple[Path, list]:
    spec, boxes = vehicles_scene()
    path = tmp_path_factory.mktemp("clips") / "square.avi"
    write_clip(Clip(spec, (), 2.0, 5.0, (640, 360)), path)
    return path, boxes


async def test_a_model_without_person_sends_no_count_and_says_why_once(tmp_path, square_clip, caplog):
    folder = labels_without(tmp_path, {"person": "pedestrian"})  # whatever the bundled model becomes
    clip, _ = square_clip
    section = CameraSection.model_validate({
        "cameras": [{"id": "square", "file": str(clip), "fps": 2}],
        "zones": [{"id": "west", "camera": "square", "polygon": WEST, "purpose": "count"}],
        "detector": {"model": str(folder / "detector.tflite"), "labels": str(folder / "labels.txt")}})
    caplog.set_level(logging.INFO, logger="edge_agent.camera")
    comp = CameraComponent(section)
    stop = asyncio.Event()
    task = asyncio.create_task(comp.run(MemorySink(), stop))
    try:
        while comp.workers[0].detections < 3:
            assert not task.done()
            await asyncio.sleep(0.05)
        tel = comp.telemetry()
        assert tel["readings"] == {}
        note = tel["cameras"]["square"]["no_people_count"]
        assert "the model has no 'person' label" in note and "people.labels" in note
        assert f"its labels: {', '.join(read_labels(folder / 'labels.txt'))}" in note
        # A change made in place (a frame rate) keeps the camera; it does not say it again.
        changed = section.model_copy(update={"cameras": [section.cameras[0].model_copy(update={"fps": 3})]})
        assert comp.reconfigure(CameraComponent(changed, detector=comp.detector))
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    said = [r for r in caplog.records if "people count" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING and note in said[0].getMessage()


def test_counts_go_in_the_readings_only_while_telemetry_include_readings_is_on(tmp_path):
    folder = labels_without(tmp_path, {"vehicle": "person", "person": "pedestrian"})
    section = camera_section(model=folder / "detector.tflite", labels=folder / "labels.txt")
    for include, want in ((True, {"square.people": 1.0}), (False, {})):
        comp = CameraComponent(section, include_readings=include)
        comp.workers[0].people.add([person(0.1, 0.5, 0.2, 0.9)], time.monotonic())
        tel = comp.telemetry()
        assert tel["readings"] == want and tel["cameras"]["square"]["no_people_count"] is None


# -- end to end: rendered "people" → agent → broker → hub vitals → the holiday-crowd plan ----------

def hub_config(tmp: Path) -> HubConfig:
    (tmp / "plans").mkdir()
    shutil.copy(EXAMPLES / "plans" / "holiday-crowd.yaml", tmp / "plans")
    (tmp / "vitals.yaml").write_text(
        "sample_every_s: 1\n"
        "gradings:\n  people: {blue: 2, yellow: 3, orange: 10, hysteresis: 1, confirm: 2}\n"
        "gauges:\n"
        "  - {id: square, agent: square-cams, reading: square.people, kind: people, grid: g-01}\n"
        "  - {id: square-west, agent: square-cams, reading: square.west.people, kind: people, grid: g-01,\n"
        "     grading: {yellow: 50}}\n"
        "  - {id: square-east, agent: square-cams, reading: square.east.people, kind: people, grid: g-01,\n"
        "     grading: {yellow: 50}}\n")
    return HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0},
        "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snapshots"), "web": {"port": 0},
        "grids": str(EXAMPLES / "grids.geojson"), "routing": str(EXAMPLES / "routing.yaml"),
        "ingest": {"receivers": 0, "batch_wait_ms": 2},
        "vitals": str(tmp / "vitals.yaml"), "plans": str(tmp / "plans")})


def agent_config(tmp: Path, hub: Hub, clip: Path, model: Path):
    password = new_secret("mqp")
    hub.broker_auth.set_user("square-cams", password)
    hub.broker_auth.reload()
    (tmp / "credentials.yaml").write_text(f"username: square-cams\npassword: {password}\n")
    cfg = {
        "agent": {"id": "square-cams", "grid_id": "g-01", "data_dir": str(tmp / "agent-data"),
                  "location": {"lat": 31.2052, "lon": 121.4051, "place": "Xinqiao station square"}},
        "mqtt": {"host": "127.0.0.1", "port": hub.broker_port, "credentials_file": str(tmp / "credentials.yaml")},
        "telemetry": {"interval_s": 1},
        "cameras": [{"id": "square", "file": str(clip), "fps": 2,
                     "location": {"lat": 31.2052, "lon": 121.4051, "grid_id": "g-01", "place": "Station square"},
                     "classes": {"person": {"min_score": 0.6}}, "people": {"window_s": 3}}],
        "zones": [{"id": "west", "camera": "square", "purpose": "count", "polygon": WEST},
                  {"id": "east", "camera": "square", "purpose": "count", "polygon": EAST}],
        "detector": {"model": str(model / "detector.tflite"), "labels": str(model / "labels.txt")},
    }
    (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
    return load_agent_config(tmp / "agent.yaml")


async def until(what: str, check, timeout: float = 40.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_people_counts_reach_the_hub_raise_the_people_level_and_start_the_crowd_plan(tmp_path, square_clip):
    clip, boxes = square_clip
    west = sum(1 for b in boxes if (b[0] + b[2]) / 2 < 0.56)
    assert (len(boxes), west) == (3, 2)  # the render: two cars' feet in the west zone, one in the east
    model = labels_without(tmp_path, {"vehicle": "person", "person": "pedestrian"})
    hub = Hub(build_setup(hub_config(tmp_path)), run_scheduler=False)
    await hub.start()
    app = AgentApp(agent_config(tmp_path, hub, clip, model))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        async def levels():
            rows = await hub.read(lambda r: r.vital_levels())
            got = {r["indicator"]: (r["value"], r["level"]) for r in rows if r["indicator"].startswith("people.")}
            return got if got.get("people.square", (0, 0))[1] >= 2 else None

        got = await until("people.square at yellow", levels)
        assert got["people.square"] == (3.0, 2)  # three "people": yellow
        assert got["people.square-west"][0] == 2.0 and got["people.square-east"][0] == 1.0
        act = await until("the holiday-crowd plan to activate",
                          lambda: hub.read(lambda r: r.open_activation("holiday-crowd")))
        assert act["activated_by"] == "auto" and "people reached yellow" in act["reason"]
        cases = await hub.read(lambda r: r.list_cases(limit=50))
        assert any(c.subcategory == "vital_signs.crowd" and c.grid_id == "g-01" for c in cases)
        agent = await hub.read(lambda r: r.get_agent("square-cams"))
        assert agent.cameras["square"]["no_people_count"] is None and agent.cameras["square"]["state"] == "up"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await hub.stop()
