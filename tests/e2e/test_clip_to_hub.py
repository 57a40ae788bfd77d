"""An event's clip end to end with nothing stood in: the shipped test video (a flame at
1.7-6.2 s) played once by the real agent (detector, tracker, ring buffer, PyAV encoder,
outbox, paho session) → the hub's private Mosquitto → the real hub, which reassembles the
chunks into a stored MP4 on the fire's case; the outbox empties (every chunk acked)."""

from __future__ import annotations

import asyncio
import hashlib
import io

import av
import pytest
import yaml
from test_agent_to_hub import ROOT, until

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from protocol.ids import new_secret

pytestmark = pytest.mark.asyncio

EXAMPLE = ROOT / "firmware_configs" / "agents" / "camera-file-test.yaml"


def agent_config(tmp, hub, clip: dict):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    agent_id = cfg["agent"]["id"]
    password = new_secret("mqp")
    hub.broker_auth.set_user(agent_id, password)
    hub.broker_auth.reload()
    (tmp / "credentials.yaml").write_text(f"username: {agent_id}\npassword: {password}\n")
    cfg["agent"].update(data_dir=str(tmp / "agent-data"), grid_id="g-01")
    cfg["mqtt"].update(port=hub.broker_port, credentials_file=str(tmp / "credentials.yaml"))
    (cam,) = cfg["cameras"]
    cam.update(file=str(EXAMPLE.parent / cam["file"]), loop=False, realtime=False, clip=clip,
               location={"lat": 31.2052, "lon": 121.4051, "grid_id": "g-01", "place": "Test bench"},
               classes={"flame": {"min_score": 0.5}})
    (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
    return load_agent_config(tmp / "agent.yaml")


async def fire_clip(hub):
    cases = await hub.read(lambda r: r.list_cases(category="community_safety", limit=10))
    for case in cases:
        clips = await hub.read(lambda r, cid=case.id: r.clips_for_case(cid))
        if clips and clips[0].state != "partial":
            return case, clips[0]
    return None


async def test_a_camera_events_clip_reaches_the_hub_as_a_stored_playable_mp4(tmp_path, hub):
    # 2 s before and 3 s after the fire (~1.7 s into the 10 s video): the clip completes
    # by its own post window, before the file ends.
    app = AgentApp(agent_config(tmp_path, hub, {"pre_s": 2, "post_s": 3}))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        case, clip = await until(lambda: fire_clip(hub), timeout=60, what="the fire's clip stored")
        await until(lambda: app.outbox.depth == 0, timeout=20, what="every event and chunk acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert clip.state == "stored", clip.error
    data = hub.clip_files.get(clip.clip_sha256)
    assert data is not None and hashlib.sha256(data).hexdigest() == clip.clip_sha256
    lifecycles = await hub.read(lambda r: r.lifecycles_for_case(case.id))
    assert clip.event_id in {lc.event_id for lc in lifecycles}
    assert 0 < clip.event_offset_s <= 2.0 + 1e-6  # the event is 2 s (or less, at the start) in
    with av.open(io.BytesIO(data)) as f:
        frames = list(f.decode(video=0))
    # pre 2 s + post 3 s at the camera's 2 fps: 11 frames (fewer when the fire starts < 2 s in)
    assert 8 <= len(frames) == clip.frames <= 11
    assert clip.duration_s == pytest.approx(clip.frames / 2.0, abs=0.01)
    counts = hub.counts()
    assert counts["dead_letters"] == 0 and counts["seq_gaps"] == 0
    assert counts["ingest"]["clips_stored"] == 1 and counts["ingest"]["clips_failed"] == 0
