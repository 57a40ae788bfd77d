"""The agent app running the real camera component (real detector, a rendered clip played
as a file, the real outbox) with the hub's side played by the stand-in over the in-memory
broker: camera events with snapshots are delivered, camera states are in the heartbeat,
and a desired config changes frame rate and classes while the camera runs, keeping its
tracks (an event started before a change ends with the same id after it), also across a
change that replaces the component."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from edge_agent.transport import MemoryBroker, MemoryTransport
from protocol.messages import DesiredConfig, EventKind
from simulators.scenes import Clip, SceneObject, SceneSpec, write_clip
from simulators.scenes.spec import CameraPose, near_z

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edge_agent"))
from agent_testlib import StandInHub, until  # noqa: E402

pytestmark = pytest.mark.asyncio

FIRE = "community_safety.fire"

CONFIG = """\
agent: {id: cam-agent, location: {lat: 31.2, lon: 121.4}, data_dir: data}
telemetry: {interval_s: 1}
cameras:
  - id: cam1
    file: flame.avi
    fps: 1
    location: {lat: 31.2, lon: 121.5, grid_id: g01, place: Test road}
    tracking: {end_after_s: 1.5}
    classes: {flame: {min_frames: 2}}
"""


def steady_flame_clip() -> Clip:
    """A flame that is always there (the clip loops seamlessly), 10 frames/s."""
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    flame = SceneObject("flame", x=0.5, z=near_z(cam) * 1.4, size=1.3, seed=5)
    scene = SceneSpec(seed=21, place="road", camera=cam, light="day", weather="clear", objects=(flame,))
    return Clip(scene, (), 3.0, 10.0, (640, 360))


def desired(version: int, config: dict) -> DesiredConfig:
    return DesiredConfig(agent_id="cam-agent", version=version, config=config, issued_at=datetime.now(UTC))


def camera_fps(hub: StandInHub, after: int) -> float:
    beats = [t for t in hub.telemetry[after:] if "cam1" in t.cameras]
    return beats[-1].cameras["cam1"].fps if beats else 0.0


async def test_camera_events_telemetry_and_changes_at_run_time(tmp_path, bundled_model):
    write_clip(steady_flame_clip(), tmp_path / "flame.avi")
    (tmp_path / "agent.yaml").write_text(CONFIG)
    loaded = load_agent_config(tmp_path / "agent.yaml")
    broker = MemoryBroker()
    hub = StandInHub(broker.publish)
    broker.subscribe("cityops/v1/agents/#", hub.on_message)
    app = AgentApp(loaded, transport_factory=lambda will: MemoryTransport(broker, will))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        fire = lambda: [e for e in hub.events if e.subcategory == FIRE]  # noqa: E731
        (new,) = await until(fire, timeout=30, what="the fire reported")
        assert new.kind == EventKind.NEW and new.source == "cam1" and new.location.grid_id == "g01"
        assert new.attributes["model"] == "bundled:rendered"  # which model saw it (edge_agent/ota.py)
        await until(lambda: any(h.sha256 == new.evidence.snapshot.sha256 for h, _ in hub.snapshots),
                    timeout=10, what="its snapshot delivered")
        await until(lambda: camera_fps(hub, 0) > 0, timeout=10, what="camera state in the heartbeat")
        assert hub.telemetry[-1].cameras["cam1"].state == "up" and camera_fps(hub, 0) < 1.6
        assert "camera" in hub.status[-1].capabilities
        (component,) = app.components

        # A plan raises the frame rate: same component, same stream, faster.
        await app.apply_desired(desired(2, {"cameras": {"cam1": {"fps": 4}}}))
        assert app.config_version == 2 and app.config_error is None
        assert app.components == [component] and component.workers[0].camera.fps == 4
        beats = len(hub.telemetry)
        await until(lambda: camera_fps(hub, beats) >= 3.0, timeout=20, what="the camera at the new rate")

        # A change of source (here: the frame size) replaces the component; the new one
        # carries the open fire track on, so no second `new` is sent for the same fire.
        v3 = {"cam1": {"fps": 4, "resolution": [320, 180]}}
        await app.apply_desired(desired(3, {"cameras": v3}))
        assert app.config_version == 3 and app.components[0] is not component
        (component,) = app.components
        await until(lambda: component.workers[0].frames >= 4, timeout=20, what="the new component reading")
        assert [e.kind for e in fire()] == [EventKind.NEW]

        # Turning the flame class off ends the event opened three configs ago, in place.
        v4 = {"cam1": {**v3["cam1"], "classes": {"flame": {"enabled": False}}}}
        await app.apply_desired(desired(4, {"cameras": v4}))
        assert app.components == [component]
        await until(lambda: [e.kind for e in fire()] == [EventKind.NEW, EventKind.END], timeout=20,
                    what="the fire event ended")
        assert {e.event_id for e in fire()} == {new.event_id}

        # A bad push is refused with its reason; the camera runs on.
        await app.apply_desired(desired(5, {"detector": {"model": "missing.tflite"}}))
        assert app.config_version == 4 and "detector.model" in app.config_error
        assert "file not found" in app.config_error and app.components == [component]
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
