"""A camera stream dies and comes back, end to end: the camera component (real detector,
the camera simulator's MJPEG stream) reports ``device.camera_down`` through the agent's
real outbox and session; the hub opens one case and closes it once the stream is back."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from faultlib import Agent
from hubtest import G01, await_for, make_setup

from edge_agent.camera.component import CameraComponent
from edge_agent.camera.config import CameraSection
from hub.app import Hub
from simulators.camera import CameraStream, serve
from simulators.scenes import Clip, SceneObject, SceneSpec
from simulators.scenes.spec import CameraPose, near_z

pytestmark = pytest.mark.asyncio


def quiet_street(duration: float = 60.0) -> Clip:
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    bench = SceneObject("bench", x=-3.0, z=near_z(cam) * 1.6, seed=2)
    scene = SceneSpec(seed=3, place="road", camera=cam, light="day", weather="clear", objects=(bench,))
    return Clip(scene, (), duration, 5.0, (320, 180))


async def test_a_dead_camera_stream_is_one_case_closed_when_it_returns(tmp_path, unused_tcp_port):
    port = unused_tcp_port
    sim_stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve({"cam1": CameraStream("cam1", quiet_street())}, "127.0.0.1", port,
                                       None, sim_stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    hub = Hub(make_setup(tmp_path, screening={"clear_hold_s": 0}, sla={"tick_s": 0.2}))
    await hub.start()
    agent = await Agent(hub.broker, tmp_path, ack_timeout_s=3).start()
    section = CameraSection.model_validate({"cameras": [{
        "id": "cam1", "url": f"http://127.0.0.1:{port}/cameras/cam1.mjpg", "fps": 2,
        "stall_timeout_s": 1.0, "down_after_s": 1.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0,
        "location": {"lat": G01[0], "lon": G01[1], "grid_id": "g-01", "place": "Test road"}}]})
    comp = CameraComponent(section)
    stop = asyncio.Event()
    task = asyncio.create_task(comp.run(agent.outbox, stop))

    async def down_cases():
        return await hub.read(lambda r: [c for c in r.list_cases(limit=50)
                                         if c.subcategory == "device.camera_down"])

    try:
        await await_for(lambda: comp.telemetry()["cameras"]["cam1"]["state"] == "up", timeout=40,
                        what="the stream up")
        async with aiohttp.ClientSession() as http, \
                http.post(f"http://127.0.0.1:{port}/cameras/cam1/outage?seconds=4") as resp:
            assert resp.status == 200
        await await_for(down_cases, timeout=30, what="a case for the dead stream")
        await await_for(lambda: comp.telemetry()["cameras"]["cam1"]["state"] == "up", timeout=30,
                        what="the stream back")

        async def closed():
            cases = await down_cases()
            return cases and all(c.state == "closed" for c in cases)

        await await_for(closed, timeout=30, what="the case closed once the stream returned")
        assert len(await down_cases()) == 1
        await agent.drained(20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await agent.stop()
        await hub.stop()
        sim_stop.set()
        await server
