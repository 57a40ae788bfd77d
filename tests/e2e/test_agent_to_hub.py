"""The first end-to-end slice with nothing stood in: a simulated water meter (pymodbus) →
the real agent (rules, outbox, MQTT session) → the hub's managed Mosquitto → the real hub
(ingest, store, case engine) → acks back → the agent's outbox empties.

These tests hold the agent and the hub to the same reading of protocol v1; each side's
own tests hold it to the contract alone.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest
import yaml

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config, load_register_map
from edge_agent.emit import EventDraft
from hub.app import Hub
from protocol.clock import FakeClock
from protocol.ids import new_event_id, new_secret
from protocol.messages import EventKind, Location
from simulators.modbus import ModbusSimServer, SimulatedDevice, WaterMeterModel

pytestmark = pytest.mark.asyncio

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


async def until(cond, timeout: float = 15.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def agent_config(tmp, hub: Hub, meter_port: int):
    """The shipped demo agent config, pointed at this test's broker and meter."""
    demo = yaml.safe_load((ROOT / "firmware_configs" / "agents" / "demo-water-meter.yaml").read_text())
    agent_id = demo["agent"]["id"]
    password = new_secret("mqp")
    hub.broker_auth.set_user(agent_id, password)
    hub.broker_auth.reload()
    (tmp / "credentials.yaml").write_text(f"username: {agent_id}\npassword: {password}\n")
    demo["agent"]["data_dir"] = str(tmp / "agent-data")
    demo["mqtt"].update(port=hub.broker_port, credentials_file=str(tmp / "credentials.yaml"))
    demo["register_maps"]["water_meter"] = str(MAPS / "water_meter.yaml")
    demo["devices"][0]["tcp"]["port"] = meter_port
    demo["devices"][0]["poll_period_s"] = 0.05
    (tmp / "agent.yaml").write_text(yaml.safe_dump(demo))
    return load_agent_config(tmp / "agent.yaml")


async def test_water_meter_no_use_becomes_a_dispatched_case_and_the_outbox_empties(tmp_path, hub):
    agent_clock = FakeClock(datetime.now(UTC))
    model = WaterMeterModel(flow_m3h=0.0, volume_m3=40.0)
    meter = SimulatedDevice(1, load_register_map(MAPS / "water_meter.yaml")[0], model=model,
                            clock=agent_clock)
    async with ModbusSimServer([meter]) as server:
        app = AgentApp(agent_config(tmp_path, hub, server.port), clock=agent_clock)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await until(lambda: meter.requests > 3, what="the agent polling the meter")
            agent_clock.advance(20)  # past the demo's shortened no-use window
            cases = await until(
                lambda: hub.read(lambda r: r.list_cases(category="elderly_care")), what="a case")
            agent_clock.advance(31)  # second tier: an update of the same lifecycle
            await until(lambda: hub.counts()["messages_stored"] >= 2, what="the tier-2 update")
            model.flow_m3h = 0.8  # the resident uses water again: the rule ends the alarm
            agent_clock.advance(10)
            await until(lambda: app.outbox.depth == 0 and hub.counts()["messages_stored"] >= 3,
                        what="new, update and end stored and acked")
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    (case,) = cases
    assert case.subcategory == "elderly_care.water_no_use"
    assert case.grid_id == "g-01"
    assert case.department is not None
    final = await hub.read(lambda r: r.get_case(case.id))
    lifecycles = await hub.read(lambda r: r.lifecycles_for_case(case.id))
    assert len(lifecycles) == 1, "new/update/end of one alarm belong to one lifecycle"
    assert final.state in ("dispatched", "in_progress", "resolved", "closed")
    counts = hub.counts()
    assert counts["cases_total"] == 1
    assert counts["dead_letters"] == 0
    assert counts["seq_gaps"] == 0
    agents = await hub.read(lambda r: r.list_agents())
    assert [a.agent_id for a in agents] == ["demo-agent-1"]


async def test_a_snapshot_and_its_event_are_both_acknowledged(tmp_path, hub):
    """The snapshot travels as its own outbox row with its own seq; the hub must ack that
    seq too, or the agent would resend it forever and the hub would see a gap."""
    agent_clock = FakeClock(datetime.now(UTC))
    meter = SimulatedDevice(1, load_register_map(MAPS / "water_meter.yaml")[0],
                            model=WaterMeterModel(flow_m3h=0.5, volume_m3=1.0), clock=agent_clock)
    async with ModbusSimServer([meter]) as server:
        app = AgentApp(agent_config(tmp_path, hub, server.port), clock=agent_clock)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await until(lambda: hub.counts()["agents_online"] == 1, what="the agent online")
            jpeg = _tiny_jpeg()
            app.outbox.emit(EventDraft(
                event_id=new_event_id(), kind=EventKind.NEW, category="garbage",
                subcategory="garbage.overflow", source="cam-1", observed_at=agent_clock.now(),
                location=Location(lat=31.2052, lon=121.4051, grid_id="g-01"), confidence=0.9,
                evidence=__import__("protocol.messages", fromlist=["Evidence"]).Evidence(
                    bbox=(0.1, 0.1, 0.4, 0.5)),
                snapshot_jpeg=jpeg, snapshot_size=(16, 16)))
            await until(lambda: app.outbox.depth == 0, what="both rows acknowledged and deleted")
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    counts = hub.counts()
    assert counts["snapshots"] == 1
    assert counts["seq_gaps"] == 0
    cases = await hub.read(lambda r: r.list_cases(category="garbage"))
    snaps = await hub.read(lambda r: r.snapshots_for_case(cases[0].id))
    assert [s.sha256 for s in snaps] == [hashlib.sha256(jpeg).hexdigest()]


def _tiny_jpeg() -> bytes:
    import cv2
    import numpy as np

    img = np.zeros((16, 16, 3), np.uint8)
    img[4:12, 4:12] = (0, 200, 0)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()
