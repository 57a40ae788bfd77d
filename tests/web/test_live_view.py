"""Live view on demand, end to end with nothing stood in: the real hub (its LiveStreams and
web), its private Mosquitto with the generated ACL, and a real agent whose camera plays
the shipped test clip. A view delivers small JPEGs at most once a second, the first in
under 2 s, and stops on its own; two viewers share one stream; the agent sends nothing
unasked; a hostile agent can neither send frames for another agent's camera nor read its
requests."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from livetest import CAMERA, Probe, camera_agent, enrol, live_hub, until, worker
from webtest import Client

from hub.livestream import ENDED, LiveFrame
from protocol.codec import encode, encode_frame
from protocol.messages import FrameHeader, LiveRequest
from protocol.topics import Channel, agent_topic, subscription

pytestmark = pytest.mark.asyncio

AGENT = "cam-live-1"


async def collect(viewer, timeout: float = 20.0) -> list[tuple[float, LiveFrame]]:
    """(arrival time, frame) of every frame until the viewer's stream ends."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        item = await asyncio.wait_for(viewer.queue.get(), max(0.1, deadline - time.monotonic()))
        if item is ENDED:
            return out
        out.append((time.monotonic(), item))


def hub_probe(hub) -> Probe:
    return Probe(hub.broker.hub_host, hub.broker.hub_port, hub.broker.settings.hub_user,
                 hub.hub_password)


async def test_a_view_sends_capped_frames_the_first_within_2s_and_stops_on_its_own(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT) as app:
        probe = hub_probe(hub)
        probe.subscribe(subscription(Channel.FRAMES))
        try:
            opened = time.monotonic()
            viewer = hub.live_streams.open(AGENT, CAMERA, 4)
            got = await collect(viewer)
            ended = time.monotonic()
            assert got, "no frame arrived"
            assert got[0][0] - opened < 2.0, f"first frame after {got[0][0] - opened:.2f} s"
            assert 3.5 <= ended - opened < 5.5
            for _, frame in got:
                assert len(frame.jpeg) <= 50_000
                image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape[:2] == (frame.header.height, frame.header.width)
            # at most 1 frame/s: 4 s give at most 5 frames, consecutive frames ~1 s apart
            assert 2 <= len(got) <= 5, len(got)
            taken = [f.header.taken_at.timestamp() for _, f in got]
            assert all(b - a >= 0.9 for a, b in zip(taken, taken[1:], strict=False)), taken
            assert [f.header.n for _, f in got] == list(range(1, len(got) + 1))
            # the agent has stopped: the camera reads on, no frame follows
            tap = worker(app).live
            await until(lambda: tap.window is None, 5, "the agent's window closed")
            sent, read = tap.frames_sent, worker(app).frames
            await until(lambda: worker(app).frames >= read + 5, 10, "five more camera frames")
            await asyncio.sleep(0)
            assert tap.frames_sent == sent and tap.window is None
            assert len(probe.on(agent_topic(AGENT, Channel.FRAMES))) == sent
            assert hub.live_streams.streams == {}
        finally:
            probe.close()


async def test_the_agent_stops_on_its_own_when_the_hub_goes_silent(tmp_path):
    """A request for 2 s published once, nothing after it (no refresh, no stop): the
    frames stop by themselves after 2 s."""
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT) as app:
        probe = hub_probe(hub)
        topic = agent_topic(AGENT, Channel.FRAMES)
        probe.subscribe(topic)
        try:
            req = LiveRequest(agent_id=AGENT, camera=CAMERA, request_id="scripted-1", seconds=2,
                              issued_at=datetime.now(UTC))
            assert probe.publish(agent_topic(AGENT, Channel.LIVE), encode(req)).value == 0
            asked = time.monotonic()
            await until(lambda: probe.on(topic), 5, "a first frame")
            await until(lambda: worker(app).live.window is None and time.monotonic() - asked > 2.0,
                        10, "the window to close")
            n = len(probe.on(topic))
            read = worker(app).frames
            await until(lambda: worker(app).frames >= read + 4, 10, "four more camera frames")
            assert len(probe.on(topic)) == n and 2 <= n <= 3
            header = json.loads(probe.on(topic)[0].payload.split(b"\n", 1)[0])
            assert header["request_id"] == "scripted-1" and header["camera"] == CAMERA
        finally:
            probe.close()


async def test_two_viewers_share_one_stream_and_the_last_out_stops_it(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT) as app:
        streams = hub.live_streams
        v1 = streams.open(AGENT, CAMERA, 30)
        v2 = streams.open(AGENT, CAMERA, 30)
        first1 = await asyncio.wait_for(v1.queue.get(), 5)
        first2 = await asyncio.wait_for(v2.queue.get(), 5)
        assert streams.commands_sent == 1  # one request for both
        assert first1.header.request_id == first2.header.request_id
        (stream,) = streams.streams.values()
        assert len(stream.viewers) == 2
        await until(lambda: worker(app).live.frames_sent >= 2, 5, "a second frame")
        streams.close(v1)
        assert streams.commands_sent == 1  # v2 still watches
        streams.close(v2)
        assert streams.commands_sent == 2  # the last one out: seconds 0
        await until(lambda: worker(app).live.window is None, 5, "the agent stopping at once")
        sent = worker(app).live.frames_sent
        read = worker(app).frames
        await until(lambda: worker(app).frames >= read + 4, 10, "four more camera frames")
        assert worker(app).live.frames_sent == sent


async def test_the_agent_never_sends_frames_unasked(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT) as app:
        probe = hub_probe(hub)
        probe.subscribe(subscription(Channel.FRAMES))
        try:
            read = worker(app).frames
            await until(lambda: worker(app).frames >= read + 6, 10, "six camera frames")
            assert probe.on(agent_topic(AGENT, Channel.FRAMES)) == []
            assert worker(app).live.frames_sent == 0 and hub.live_streams.frames_in == 0
        finally:
            probe.close()


def _frame(agent_id: str, request_id: str, n: int = 1) -> bytes:
    ok, enc = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    header = FrameHeader(agent_id=agent_id, camera=CAMERA, request_id=request_id, n=n,
                         taken_at=datetime.now(UTC), width=64, height=48, remaining_s=1)
    return encode_frame(header, enc.tobytes())


async def test_another_agent_can_neither_send_frames_for_this_camera_nor_read_its_requests(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT):
        hostile = Probe(hub.broker_host, hub.broker_port, "intruder-1", enrol(hub, "intruder-1"))
        try:
            hostile.subscribe(agent_topic(AGENT, Channel.LIVE))  # granted, delivers nothing
            viewer = hub.live_streams.open(AGENT, CAMERA, 30)
            real = await asyncio.wait_for(viewer.queue.get(), 5)
            rid = real.header.request_id
            # on the camera's agent's topic: the broker refuses it (MQTT 5: 135)
            refused = hostile.publish(agent_topic(AGENT, Channel.FRAMES), _frame(AGENT, rid, 999))
            assert refused.value == 135
            # on its own topic, claiming to be the camera's agent: the hub refuses it
            bad = hub.live_streams.bad
            hostile.publish(agent_topic("intruder-1", Channel.FRAMES), _frame(AGENT, rid, 998))
            await until(lambda: hub.live_streams.bad > bad, 5, "the hub refusing the spoofed frame")
            # on its own topic as itself, for a camera of the same name: nobody asked it
            unasked = hub.live_streams.unasked
            hostile.publish(agent_topic("intruder-1", Channel.FRAMES), _frame("intruder-1", rid, 997))
            await until(lambda: hub.live_streams.unasked > unasked, 5, "the unasked frame dropped")
            for _ in range(2):
                frame = await asyncio.wait_for(viewer.queue.get(), 5)
                assert frame.header.agent_id == AGENT and frame.header.n < 990
            assert hostile.messages == []  # it never saw the hub's request for the other agent
            hub.live_streams.close(viewer)
        finally:
            hostile.close()


async def test_the_live_page_and_its_stream_for_signed_in_operators_only(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT):
        path = f"/cameras/{AGENT}/{CAMERA}/live"
        api = f"/api/v1/cameras/{AGENT}/{CAMERA}/live?seconds=3"
        anon = Client(hub)
        handler = Client(hub)
        op = Client(hub)
        try:
            assert (await anon.get(api)).status == 401
            await handler.login("drain")
            assert (await handler.get(api)).status == 403
            assert (await handler.get(path)).status == 403
            await op.login("op")
            page = await op.get(path)
            assert page.status == 200 and f"/api/v1/cameras/{AGENT}/{CAMERA}/live" in page.text
            assert (await op.get(f"/cameras/{AGENT}/nope/live")).status == 404
            assert (await op.get(api.replace("seconds=3", "seconds=100000"))).status == 400
            events = await sse_events(op, api)
            names = [e for e, _ in events]
            assert names[0] == "start" and names[-1] == "end" and "frame" in names
            frames = [d for e, d in events if e == "frame"]
            assert all(f["bytes"] <= 50_000 for f in frames) and len(frames) <= 4
            assert events[-1][1]["reason"] == "time"
        finally:
            for c in (anon, handler, op):
                await c.close()


async def sse_events(client: Client, path: str) -> list[tuple[str, dict]]:
    """Read a server-sent event stream to its end: (event name, data) pairs."""
    session = client.session
    out = []
    async with session.get(client.base + path, headers={"Accept-Language": "en"}) as resp:
        assert resp.status == 200, await resp.text()
        name, data = None, []
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name is not None:
                out.append((name, json.loads("".join(data))))
                name, data = None, []
    return out


WALL_PLAN = f"""\
name: wall-drill
title: Wall drill
kind: other
area: {{grids: [g-01]}}
points:
  - {{agent: {AGENT}, camera: {CAMERA}, purpose: test bench gate}}
  - {{agent: {AGENT}, camera: missing-cam, purpose: a camera it does not report}}
  - {{agent: nowhere-9, camera: c1, purpose: an agent never enrolled}}
  - {{agent: {AGENT}, device: meter-1, purpose: not a camera}}
actions: {{pin_board: false}}
"""


async def test_the_video_wall_shows_an_active_plans_cameras_together(tmp_path):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT):
        await hub.plans.save(WALL_PLAN, "admin")
        op = Client(hub)
        try:
            await op.login("op")
            idle = await op.get("/plans/wall-drill/wall")
            assert idle.status == 200 and "while the plan is active" in idle.text
            assert "data-live-src" not in idle.text
            board = await op.get("/plans/wall-drill")
            assert 'href="/plans/wall-drill/wall"' in board.text
            await hub.plans.activate("wall-drill", actor="op", reason="drill")
            wall = await op.get("/plans/wall-drill/wall")
            assert wall.status == 200
            assert wall.text.count("data-live-src=") == 1  # the one camera that can stream
            assert f"/api/v1/cameras/{AGENT}/{CAMERA}/live?seconds=600" in wall.text
            assert "the agent reports no such camera" in wall.text
            assert "agent not enrolled here" in wall.text and "not a camera" not in wall.text
            assert (await op.get("/plans/no-such-plan/wall")).status == 404
        finally:
            await op.close()


async def test_a_view_longer_than_one_request_is_refreshed_and_never_gaps(tmp_path):
    """request_s 4: a 9 s view needs the hub to refresh the agent's window before it ends;
    the frames run on through it in the same stream, about one a second."""
    async with live_hub(tmp_path, request_s=4, refresh_s=2) as hub, \
            camera_agent(tmp_path, hub, AGENT):
        opened = time.monotonic()
        viewer = hub.live_streams.open(AGENT, CAMERA, 9)
        got = await collect(viewer)
        assert hub.live_streams.commands_sent >= 3  # the start and at least two refreshes
        assert {f.header.request_id for _, f in got} == {got[0][1].header.request_id}
        arrivals = [t - opened for t, _ in got]
        assert arrivals[-1] > 7.0, arrivals  # past the first request's 4 s
        assert max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) < 2.5, arrivals
        assert 7 <= len(got) <= 10, arrivals
