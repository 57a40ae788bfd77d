"""The camera component end to end, with the real detector: a rendered clip played as a
file and as an MJPEG stream from the camera simulator yields the expected drafts; a
killed stream is reported DOWN and then UP; a camera that never connects is DOWN, not a
crash. Drafts are checked against the protocol codec, as the outbox will send them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from edge_agent.camera.component import CameraComponent
from edge_agent.camera.config import CameraSection
from edge_agent.emit import EventDraft, MemorySink
from edge_agent.tracking import box_in_polygon
from protocol import limits
from protocol.codec import decode_events, encode_events
from protocol.messages import Event, EventKind
from simulators.camera import CameraStream, serve
from simulators.scenes import Clip, ClipEvent, SceneObject, SceneSpec, write_clip
from simulators.scenes.spec import CameraPose, near_z
from vision.runtime import ModelError

FIRE = "community_safety.fire"


def flame_clip(duration: float = 12.0, appear: float = 2.0, gone: float = 7.0) -> Clip:
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    flame = SceneObject("flame", x=0.5, z=near_z(cam) * 1.4, size=1.3, seed=5)
    bench = SceneObject("bench", x=-3.0, z=near_z(cam) * 1.6, seed=2)
    scene = SceneSpec(seed=21, place="road", camera=cam, light="day", weather="clear", objects=(bench, flame))
    return Clip(scene, (ClipEvent(1, "flame", "flame", appear, gone),), duration, 5.0, (640, 360))


def section(**camera) -> CameraSection:
    cam = {"id": "cam1", "fps": 2, "tracking": {"end_after_s": 2.0}, "classes": {"flame": {"min_frames": 2}},
           "stall_timeout_s": 1.5, "down_after_s": 1.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0,
           "location": {"lat": 31.2, "lon": 121.5, "grid_id": "g01", "place": "Test road"}, **camera}
    return CameraSection.model_validate({"cameras": [cam]})


def as_event(draft: EventDraft, seq: int) -> Event:
    """What the outbox will make of a draft: the codec must accept it."""
    event = Event(event_id=draft.event_id, agent_id="agent1", seq=seq, kind=draft.kind, category=draft.category,
                  subcategory=draft.subcategory, source=draft.source, observed_at=draft.observed_at,
                  started_at=draft.started_at, location=draft.location, confidence=draft.confidence,
                  evidence=draft.evidence, attributes=draft.attributes)
    (decoded,) = decode_events(encode_events([event]))
    return decoded


async def run_until(component: CameraComponent, sink: MemorySink, done, timeout: float) -> asyncio.Task:
    stop = asyncio.Event()
    task = asyncio.create_task(component.run(sink, stop))
    deadline = time.monotonic() + timeout
    try:
        while not done(sink.drafts):
            assert time.monotonic() < deadline, f"timed out; drafts: {[(d.kind, d.subcategory) for d in sink.drafts]}"
            assert not task.done(), task.exception() if task.done() else ""
            await asyncio.sleep(0.05)
    except BaseException:
        stop.set()
        await task
        raise
    return stop, task


def kinds(drafts, sub):
    return [d.kind for d in drafts if d.subcategory == sub]


async def test_rendered_clip_as_a_file_yields_new_then_end(tmp_path: Path):
    clip = flame_clip()
    video = write_clip(clip, tmp_path / "flame.avi")
    comp = CameraComponent(section(file=str(video), realtime=False, loop=False))
    sink = MemorySink()
    stop, task = await run_until(comp, sink, lambda ds: EventKind.END in kinds(ds, FIRE), 60)
    stop.set()
    await task
    fire = [d for d in sink.drafts if d.subcategory == FIRE]
    assert [d.kind for d in fire] == [EventKind.NEW, EventKind.END]
    new, end = fire
    assert new.event_id == end.event_id and new.source == "cam1" and new.location.grid_id == "g01"
    assert new.snapshot_jpeg[:2] == b"\xff\xd8" and len(new.snapshot_jpeg) <= limits.MAX_SNAPSHOT_BYTES
    assert max(new.snapshot_size) <= 320 and end.snapshot_jpeg is None
    x1, y1, x2, y2 = new.evidence.bbox
    assert 0.3 < (x1 + x2) / 2 < 0.8 and new.evidence.frames >= 2 and new.confidence >= 0.45
    assert [e.kind for e in (as_event(new, 1), as_event(end, 2))] == [EventKind.NEW, EventKind.END]
    assert not [d for d in sink.drafts if d.subcategory == "device.camera_down"]
    tel = comp.telemetry()["cameras"]["cam1"]
    assert tel["inference_ms"] > 0 and set(tel) == {"state", "fps", "inference_ms", "motion_ratio", "no_people_count",
                                                    "clips"}
    # The fire's clip was recorded and, once the camera stopped, encoded into the sink.
    (clip,) = sink.clips
    assert clip.event_id == new.event_id and clip.data[4:8] == b"ftyp" and clip.frames >= 2
    assert tel["clips"]["recorded"] == 1 and tel["clips"]["busy"] == 0


async def test_mjpeg_stream_detects_and_a_killed_stream_reconnects(unused_tcp_port):
    port = unused_tcp_port
    sim_stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve({"cam1": CameraStream("cam1", flame_clip(duration=10, appear=1.0, gone=9.5))},
                                       "127.0.0.1", port, None, sim_stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    comp = CameraComponent(section(url=f"http://127.0.0.1:{port}/cameras/cam1.mjpg"))
    sink = MemorySink()
    try:
        stop, task = await run_until(comp, sink, lambda ds: EventKind.NEW in kinds(ds, FIRE), 40)
        assert comp.telemetry()["cameras"]["cam1"]["state"] == "up"
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"http://127.0.0.1:{port}/cameras/cam1/outage?seconds=4")
            assert resp.status == 200
        deadline = time.monotonic() + 30
        while kinds(sink.drafts, "device.camera_down") != [EventKind.NEW, EventKind.END]:
            assert time.monotonic() < deadline, [(d.kind, d.subcategory) for d in sink.drafts]
            await asyncio.sleep(0.05)
        down = [d for d in sink.drafts if d.subcategory == "device.camera_down"]
        assert down[0].event_id == down[1].event_id and down[0].attributes["reason"]
        as_event(down[0], 10)
        stop.set()
        await task
    finally:
        sim_stop.set()
        await server


async def test_camera_that_never_connects_is_down_not_a_crash(unused_tcp_port):
    comp = CameraComponent(section(url=f"http://127.0.0.1:{unused_tcp_port}/nothing.mjpg", down_after_s=0.5))
    sink = MemorySink()
    stop, task = await run_until(comp, sink, lambda ds: ds, 10)
    assert [(d.kind, d.subcategory) for d in sink.drafts] == [(EventKind.NEW, "device.camera_down")]
    assert "cannot connect" in sink.drafts[0].attributes["reason"]
    assert comp.telemetry()["cameras"]["cam1"]["state"] == "down"
    stop.set()
    await asyncio.wait_for(task, 5)


def test_a_bad_model_fails_at_start(tmp_path):
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"garbage")
    sec = CameraSection.model_validate({"detector": {"model": str(bad), "check_model": False}})
    with pytest.raises(ModelError, match="not a TFLite model"):
        CameraComponent(sec)


def test_fire_lane_clip_reports_a_blocked_lane(tmp_path):
    """A parked car in a marked fire lane (rendered clip) → roads.fire_lane_blocked."""
    from simulators.scenes import random_clip

    clip = random_clip(11, duration_s=20, fps=5, size=(640, 360), problems=1, kinds=("vehicle",))
    video = write_clip(clip, tmp_path / "lane.avi")
    sec = CameraSection.model_validate({
        "cameras": [{"id": "lane", "file": str(video), "realtime": False, "loop": False, "fps": 2}],
        "zones": [{"id": "lane1", "camera": "lane", "polygon": [list(p) for p in clip.fire_lane], "purpose": "fire_lane", "dwell_s": 2}],
    })
    comp = CameraComponent(sec)
    sink = MemorySink()

    async def go():
        stop, task = await run_until(comp, sink, lambda ds: ds, 60)
        stop.set()
        await task

    asyncio.run(go())
    (new,) = [d for d in sink.drafts if d.kind == EventKind.NEW]
    assert new.subcategory == "roads.fire_lane_blocked" and new.evidence.zone == "lane1"
    assert box_in_polygon(new.evidence.bbox, clip.fire_lane, 0.3)
