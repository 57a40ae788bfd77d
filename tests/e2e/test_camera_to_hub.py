"""Cameras end to end with nothing stood in: rendered clips (the shipped test clip played
as a file, and a clip served as a live MJPEG stream by the camera simulator) → the real
agent (motion gate, the bundled int8 detector, tracker, outbox, paho MQTT session) → the
hub's private Mosquitto → the real hub (ingest, screening, case engine, snapshot store).

Each fire becomes a dispatched case with its snapshot attached; killing the stream makes
the hub see the camera DOWN (a ``device.camera_down`` case, the camera's state in the
heartbeat) and then UP again once the watchdog has reconnected.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import cv2
import numpy as np
import pytest
import yaml
from test_agent_to_hub import ROOT, until

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from hub.app import Hub
from protocol.ids import new_secret
from simulators.camera import CameraStream, serve
from simulators.scenes import Clip, ClipEvent, SceneObject, SceneSpec
from simulators.scenes.spec import CameraPose, near_z

pytestmark = pytest.mark.asyncio

FIRE = "community_safety.fire"
DOWN = "device.camera_down"
EXAMPLE = ROOT / "firmware_configs" / "agents" / "camera-file-test.yaml"


def street_flame_clip() -> Clip:
    """8 s of road at 5 frames/s; a flame burns from 1 s to 7.5 s."""
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    flame = SceneObject("flame", x=0.5, z=near_z(cam) * 1.4, size=1.3, seed=5)
    bench = SceneObject("bench", x=-3.0, z=near_z(cam) * 1.6, seed=2)
    scene = SceneSpec(seed=21, place="road", camera=cam, light="day", weather="clear", objects=(bench, flame))
    return Clip(scene, (ClipEvent(1, "flame", "flame", 1.0, 7.5),), 8.0, 5.0, (640, 360))


def agent_config(tmp, hub: Hub, stream_url: str):
    """The shipped looped-file example, pointed at this test's broker, with its clip
    played once as fast as it decodes, plus a second camera reading the MJPEG stream
    (2 km away, in grid g-03, so the two fires are two cases)."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    agent_id = cfg["agent"]["id"]
    password = new_secret("mqp")
    hub.broker_auth.set_user(agent_id, password)
    hub.broker_auth.reload()
    (tmp / "credentials.yaml").write_text(f"username: {agent_id}\npassword: {password}\n")
    cfg["agent"].update(data_dir=str(tmp / "agent-data"), grid_id="g-01")
    cfg["mqtt"].update(port=hub.broker_port, credentials_file=str(tmp / "credentials.yaml"))
    cfg["telemetry"] = {"interval_s": 1}
    (file_cam,) = cfg["cameras"]
    file_cam.update(file=str(EXAMPLE.parent / file_cam["file"]), loop=False, realtime=False,
                    location={"lat": 31.2052, "lon": 121.4051, "grid_id": "g-01", "place": "Test bench"},
                    classes={"flame": {"min_score": 0.5}})
    cfg["cameras"].append({
        "id": "street-mjpeg", "url": stream_url, "fps": 2,
        "location": {"lat": 31.2052, "lon": 121.4251, "grid_id": "g-03", "place": "Test street"},
        "classes": {"flame": {"min_score": 0.5, "min_frames": 2}},
        "tracking": {"end_after_s": 2.0},
        "stall_timeout_s": 1.5, "down_after_s": 1.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0,
    })
    (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
    return load_agent_config(tmp / "agent.yaml")


@pytest.fixture
async def stream(unused_tcp_port):
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve({"street": CameraStream("street", street_flame_clip())},
                                       "127.0.0.1", unused_tcp_port, None, stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    yield f"http://127.0.0.1:{unused_tcp_port}"
    stop.set()
    await server


async def cases_of(hub: Hub, subcategory: str):
    cases = await hub.read(lambda r: r.list_cases(category=subcategory.split(".")[0], limit=50))
    return [c for c in cases if c.subcategory == subcategory]


async def camera_state(hub: Hub, agent_id: str, camera: str) -> str | None:
    agent = await hub.read(lambda r: r.get_agent(agent_id))
    return (agent.cameras.get(camera) or {}).get("state") if agent else None


async def test_rendered_clips_as_a_file_and_a_stream_become_cases_and_a_killed_stream_comes_back(
        tmp_path, hub, stream):
    loaded = agent_config(tmp_path, hub, f"{stream}/cameras/street.mjpg")
    agent_id = loaded.config.agent.id
    app = AgentApp(loaded)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        fires = await until(lambda: _two(cases_of(hub, FIRE)), timeout=40, what="a fire case from each camera")
        await until(lambda: _is(camera_state(hub, agent_id, "street-mjpeg"), "up"), what="the stream camera up")

        async with aiohttp.ClientSession() as http:  # kill the stream for 3 s
            resp = await http.post(f"{stream}/cameras/street/outage?seconds=3")
            assert resp.status == 200
        await until(lambda: _is(camera_state(hub, agent_id, "street-mjpeg"), "down"), timeout=15,
                    what="the hub seeing the camera down in the heartbeat")
        (down_case,) = await until(lambda: cases_of(hub, DOWN), timeout=15, what="a camera-down case")
        await until(lambda: _ended(hub, down_case.id), timeout=20, what="the camera-down lifecycle ended (UP again)")
        await until(lambda: _is(camera_state(hub, agent_id, "street-mjpeg"), "up"), timeout=15,
                    what="the camera up again in the heartbeat")
        await until(lambda: app.outbox.depth == 0, timeout=15, what="every event and snapshot acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)

    assert {c.grid_id for c in fires} == {"g-01", "g-03"}
    for case in fires:
        final = await hub.read(lambda r, cid=case.id: r.get_case(cid))
        assert final.state in ("dispatched", "in_progress", "resolved", "closed"), final.state
        assert final.department == "fire_brigade"
        (snap, *_) = await hub.read(lambda r, cid=case.id: r.snapshots_for_case(cid))
        jpeg = hub.files.get(snap.sha256)
        assert jpeg is not None and hashlib.sha256(jpeg).hexdigest() == snap.sha256
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 320 and snap.agent_id == agent_id
    lifecycles = await hub.read(lambda r: r.lifecycles_for_case(down_case.id))
    assert [lc.source for lc in lifecycles] == ["street-mjpeg"]
    counts = hub.counts()
    assert counts["dead_letters"] == 0 and counts["seq_gaps"] == 0


async def _two(cases):
    found = await cases
    return found if len(found) >= 2 else None


async def _is(value, expected):
    return await value == expected


async def _ended(hub: Hub, case_id: int) -> bool:
    lifecycles = await hub.read(lambda r: r.lifecycles_for_case(case_id))
    return bool(lifecycles) and all(lc.ended_at is not None for lc in lifecycles)
