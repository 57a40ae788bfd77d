"""The agent half of the first end-to-end slice (issue 3): the shipped demo config, a
simulated water meter, the no-use rule on a fake clock, the outbox, MQTT QoS 1 with a
will, and a stand-in hub that acks, so the outbox empties."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import yaml
from agent_testlib import MAPS, ROOT, PahoHub, until

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config, load_register_map
from protocol.clock import FakeClock
from simulators.modbus import ModbusSimServer, SimulatedDevice, WaterMeterModel

pytestmark = pytest.mark.asyncio


async def test_demo_config_raises_tiers_and_clears_the_no_use_alarm(tmp_path, broker):
    clock = FakeClock()
    model = WaterMeterModel(flow_m3h=0.0, volume_m3=12.0)
    meter = SimulatedDevice(1, load_register_map(MAPS / "water_meter.yaml")[0], model=model, clock=clock)
    async with ModbusSimServer([meter]) as server:
        demo = yaml.safe_load((ROOT / "firmware_configs" / "agents" / "demo-water-meter.yaml").read_text())
        password = secrets.token_urlsafe(18)
        broker.auth.set_user(demo["agent"]["id"], password)
        broker.reload()
        (tmp_path / "credentials.yaml").write_text(f"username: {demo['agent']['id']}\npassword: {password}\n")
        demo["agent"]["data_dir"] = str(tmp_path / "data")
        demo["mqtt"].update(port=broker.port, credentials_file=str(tmp_path / "credentials.yaml"))
        demo["register_maps"]["water_meter"] = str(MAPS / "water_meter.yaml")
        demo["devices"][0]["tcp"]["port"] = server.port
        demo["devices"][0]["poll_period_s"] = 0.05
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(demo))
        loaded = load_agent_config(tmp_path / "agent.yaml")
        hub = PahoHub(broker)
        stop = asyncio.Event()
        app = AgentApp(loaded, clock=clock)
        task = asyncio.create_task(app.run(stop))
        try:
            await until(lambda: meter.requests > 3, what="polling")
            clock.advance(20)  # 18 s without water use (the demo's shortened 8 h)
            await until(lambda: len(hub.events) == 1, what="no-use alarm")
            clock.advance(31)  # the second tier after half a minute
            await until(lambda: len(hub.events) == 2, what="escalation")
            model.flow_m3h = 1.0  # the resident uses water
            clock.advance(10)
            await until(lambda: [e.kind.value for e in hub.events if e.subcategory.endswith("no_use")]
                        == ["new", "update", "end"], what="cleared")
            await until(lambda: app.outbox.depth == 0, what="acked and deleted")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            hub.close()
    no_use = [e for e in hub.events if e.subcategory == "elderly_care.water_no_use"]
    assert len({e.event_id for e in no_use}) == 1
    assert [e.attributes["notify"] for e in no_use[:2]] == ["grid_worker", "family"]
    assert no_use[0].attributes["resident"] == "1-101"
    assert no_use[0].location.grid_id == "g-01"
    assert [s.state for s in hub.status] == ["online", "offline"]
