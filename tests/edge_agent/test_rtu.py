"""Modbus RTU over a serial line: two pseudo-terminals joined back to back stand in for
an RS-485 cable; the simulator serves on one end, the agent polls the other."""

from __future__ import annotations

import asyncio

import pytest
from agent_testlib import MAPS, until

from edge_agent.config import load_agent_config, load_register_map
from edge_agent.emit import MemorySink
from edge_agent.modbus import ModbusComponent
from simulators.modbus import ModbusSimServer, Mode, SimulatedDevice
from simulators.modbus.serial_line import pty_pair

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def serial_line():
    """(server_port, client_port): two ptys whose masters copy bytes to each other."""
    async with pty_pair() as ends:
        yield ends


async def test_rtu_devices_share_a_line_decode_and_go_down(serial_line, tmp_path, write_config):
    server_port, client_port = serial_line
    gauge_map = load_register_map(MAPS / "water_level_gauge.yaml")[0]
    gauges = [SimulatedDevice(1, gauge_map), SimulatedDevice(2, gauge_map)]
    gauges[0].set("level", 0.42)
    gauges[1].set("level", 3.5)
    async with ModbusSimServer(gauges, serial_port=server_port, baudrate=19200):
        config = write_config(tmp_path, f"""\
agent: {{id: cabinet-1, location: {{lat: 31.2, lon: 121.4}}}}
register_maps: {{gauge: @MAPS@/water_level_gauge.yaml}}
devices:
  - id: underpass
    model: gauge
    unit_id: 1
    rtu: {{port: {client_port}, baudrate: 19200}}
    poll_period_s: 0.1
    timeout_s: 0.3
    retries: 0
    down_after: 2
    backoff_max_s: 0.5
    rules:
      level: {{subcategory: flood.underpass_water_level, high: 0.3, clear_below: 0.1}}
  - id: river
    model: gauge
    unit_id: 2
    rtu: {{port: {client_port}, baudrate: 19200}}
    poll_period_s: 0.1
    timeout_s: 0.3
""")
        sink = MemorySink()
        component = ModbusComponent(load_agent_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(component.run(sink, stop))
        readings = await until(lambda: len(component.telemetry()["readings"]) >= 10 and
                               component.telemetry()["readings"], timeout=15)
        assert readings["underpass.level"] == pytest.approx(0.42)
        assert readings["river.level"] == pytest.approx(3.5)
        await until(lambda: sink.drafts, what="underpass alarm")
        assert sink.drafts[0].subcategory == "flood.underpass_water_level"
        gauges[0].mode = Mode.SILENT
        await until(lambda: component.telemetry()["devices"]["underpass"] == "down", timeout=15)
        assert component.telemetry()["devices"]["river"] == "up"
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [d.subcategory for d in sink.drafts] == ["flood.underpass_water_level", "device.offline"]
