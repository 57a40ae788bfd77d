"""Modbus devices drop out and return, end to end: the agent marks a device DOWN (a
``device.offline`` event), the hub opens one case for it, the device answers again (the
event ends) and the hub closes the case once the source cleared; the next drop-out is
again one case. Nothing is stored twice and the neighbouring device never opens a case.
(Component-level DOWN/UP and backoff: tests/edge_agent/test_modbus.py; a camera stream
that dies: tests/camera/test_camera_component.py.)"""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest
from hubtest import G01, await_for, make_setup

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config, load_register_map
from hub.app import Hub
from simulators.modbus import ModbusSimServer, SimulatedDevice
from simulators.modbus.device import Mode

pytestmark = pytest.mark.asyncio
MAPS = __import__("pathlib").Path(__file__).resolve().parents[2] / "firmware_configs" / "register_maps"


def agent_yaml(tmp, broker, port: int) -> str:
    devices = "\n".join(f"""\
  - {{id: wm-{u}, model: water_meter, unit_id: {u}, tcp: {{host: 127.0.0.1, port: {port}}},
     poll_period_s: 0.05, timeout_s: 0.1, retries: 0, down_after: 2, backoff_max_s: 0.2}}""" for u in (1, 2))
    return f"""\
agent: {{id: agent-1, grid_id: g-01, location: {{lat: {G01[0]}, lon: {G01[1]}}}, data_dir: {tmp / 'data'}}}
mqtt: {{host: {broker.host}, port: {broker.port}, credentials_file: {tmp / 'creds.yaml'},
       reconnect: {{initial_s: 0.1, max_s: 0.5}}}}
outbox: {{ack_timeout_s: 5, state_flush_s: 0.1}}
telemetry: {{interval_s: 1}}
register_maps:
  water_meter: {MAPS}/water_meter.yaml
devices:
{devices}
"""


async def test_modbus_devices_drop_out_and_return(tmp_path, scale):
    hub = Hub(make_setup(tmp_path, screening={"clear_hold_s": 0}, sla={"tick_s": 0.2}))
    await hub.start()
    wm = load_register_map(MAPS / "water_meter.yaml")[0]
    meters = {u: SimulatedDevice(u, wm) for u in (1, 2)}
    stop = asyncio.Event()
    try:
        async with ModbusSimServer(list(meters.values())) as server:
            hub.broker_auth.set_user("agent-1", "agent-1-password-0123")
            await asyncio.to_thread(hub.broker_auth.reload)
            (tmp_path / "creds.yaml").write_text("username: agent-1\npassword: agent-1-password-0123\n")
            os.chmod(tmp_path / "creds.yaml", 0o600)
            (tmp_path / "agent.yaml").write_text(agent_yaml(tmp_path, hub.broker, server.port))
            app = AgentApp(load_agent_config(tmp_path / "agent.yaml"))
            task = asyncio.create_task(app.run(stop))

            async def offline_cases(states=None):
                return await hub.read(lambda r: [c for c in r.list_cases(states=states, limit=100)
                                                 if c.subcategory == "device.offline"])

            for _ in range(2 * scale):
                await await_for(lambda: app.session and app.session.stats.connects, timeout=20)
                meters[1].mode = Mode.SILENT  # the cable is cut
                await await_for(lambda: offline_cases(["new", "accepted", "dispatched", "in_progress",
                                                       "escalated", "reopened"]), timeout=20,
                                what="an open case for DOWN")
                meters[1].mode = Mode.OK  # repaired
                await await_for(lambda: _all_closed(offline_cases), timeout=30, what="closed after UP")
                # One case for the device, never two: a recurrence reopens it (DESIGN §1.6).
                assert len(await offline_cases()) == 1
            stop.set()
            await asyncio.wait_for(task, 20)
    finally:
        stop.set()
        await hub.stop()
    with sqlite3.connect(tmp_path / "hub.sqlite") as db:
        rows = db.execute("SELECT seq, count(*) FROM messages GROUP BY agent_id, seq HAVING count(*) > 1").fetchall()
        assert rows == []
        lives = db.execute("SELECT source, ended_at IS NOT NULL, case_id FROM events"
                           " WHERE subcategory = 'device.offline' ORDER BY id").fetchall()
        kinds = [k for (k,) in db.execute(
            "SELECT kind FROM messages WHERE event_id IN (SELECT event_id FROM events"
            " WHERE subcategory = 'device.offline') ORDER BY seq")]
    assert [(src, ended) for src, ended, _ in lives] == [("wm-1", 1)] * (2 * scale)  # never wm-2
    assert len({case for _, _, case in lives}) == 1  # every drop-out joined (reopened) one case
    assert kinds == ["new", "end"] * (2 * scale)
    with sqlite3.connect(tmp_path / "hub.sqlite") as db:
        actions = [a for (a,) in db.execute("SELECT action FROM case_audit ORDER BY id")]
    assert actions.count("reopened") == 2 * scale - 1, actions


async def _all_closed(get) -> bool:
    cases = await get()
    return bool(cases) and all(c.state == "closed" for c in cases)
