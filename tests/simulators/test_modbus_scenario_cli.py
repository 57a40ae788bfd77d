"""``cityops-sim modbus`` run for real (a child process) and read by the agent's own
Modbus component: a scenario's press, fault and recovery over TCP; a rising gauge over
RTU on a pty pair; command-line faults on plain devices."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from simtestlib import SimProcess, until

from edge_agent.config import load_agent_config
from edge_agent.emit import MemorySink
from edge_agent.modbus import ModbusComponent
from simulators.scenarios import load_scenario
from simulators.scenarios.agents import AgentWiring, agent_config_data

SCENARIO = """\
name: cli-test
duration: 1h
time_scale: 60
repeat: false
sites:
  - id: estate-t
    grid: g-01
    location: {lat: 31.2050, lon: 121.4050}
    poll: 15s
    modbus: {timeout_s: 0.3, retries: 0, down_after: 2, backoff_max_s: 0.5}
    devices:
      - id: call-1
        model: call_button
        behaviour: {idle: {}}
        rules:
          call_button: {register: status.call, counter: presses}
        incidents:
          - press: {at: 1m, reset_after: 2m}
      - id: wm-1
        model: water_meter
        behaviour: {vacant: {}}
        incidents:
          - fault: {at: 2m, for: 3m, kind: silent}
  - id: underpass-t
    grid: g-04
    location: {lat: 31.2150, lon: 121.4050}
    poll: 15s
    devices:
      - id: gauge-1
        model: water_level_gauge
        behaviour: {level: {base: 0.0, swing: 0.0}}
        rules:
          level: {subcategory: flood.underpass_water_level, high: 0.15, clear_below: 0.05}
        incidents:
          - rain: {at: 0s, rise_m: 0.5, rise_for: 1m, hold_for: 30m, fall_for: 1m}
"""


def agent_yaml(tmp_path, site_index: int, port: int, rtu: str | None = None):
    sc = load_scenario(tmp_path / "sc.yaml").scenario
    data = agent_config_data(sc.sites[site_index], sc, sc.time_scale,
                             AgentWiring(gateway_port=port, data_dir=str(tmp_path / "data")))
    if rtu is not None:
        for dev in data["devices"]:
            dev.pop("tcp")
            dev["rtu"] = {"port": rtu, "baudrate": 19200}
    path = tmp_path / f"agent-{site_index}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_agent_config(path)


async def test_scenario_gateway_read_by_the_agent_press_fault_and_recovery(tmp_path):
    (tmp_path / "sc.yaml").write_text(SCENARIO)
    async with SimProcess("modbus", "--scenario", str(tmp_path / "sc.yaml"), "--site", "estate-t",
                          "--port", "0", "--json", "--quiet") as sim:
        start = await sim.line()
        (gateway,) = start["serving"]
        assert gateway["site"] == "estate-t" and [d["model"] for d in gateway["devices"]] == ["call_button", "water_meter"]
        component = ModbusComponent(agent_yaml(tmp_path, 0, gateway["port"]))
        sink, stop = MemorySink(), asyncio.Event()
        task = asyncio.create_task(component.run(sink, stop))
        try:
            # press at 1 simulated minute = 1 s; the meter silent from 2 s to 5 s
            await until(lambda: [d for d in sink.drafts if d.subcategory == "device.offline"
                                 and d.kind == "end"], timeout=30, what="the meter down and back up")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        rc, _ = await sim.stop()
    got = [(d.subcategory, d.kind.value, d.source) for d in sink.drafts]
    assert ("elderly_care.call_button", "new", "call-1") in got
    assert ("device.offline", "new", "wm-1") in got and ("device.offline", "end", "wm-1") in got
    assert rc in (0, -15)


async def test_scenario_over_rtu_on_a_pty_pair(tmp_path):
    (tmp_path / "sc.yaml").write_text(SCENARIO)
    async with SimProcess("modbus", "--scenario", str(tmp_path / "sc.yaml"), "--site", "underpass-t",
                          "--rtu-pty", "--baudrate", "19200", "--json", "--quiet", "--duration", "6") as sim:
        (gateway,) = (await sim.line())["serving"]
        component = ModbusComponent(agent_yaml(tmp_path, 1, 0, rtu=gateway["rtu"]))
        sink, stop = MemorySink(), asyncio.Event()
        task = asyncio.create_task(component.run(sink, stop))
        try:
            await until(lambda: sink.drafts, timeout=20, what="the underpass alarm over RTU")
            readings = component.telemetry()["readings"]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        end = await sim.line(timeout=30)  # the summary when --duration ends
    assert sink.drafts[0].subcategory == "flood.underpass_water_level" and sink.drafts[0].kind == "new"
    assert readings["gauge-1.level"] >= 0.15
    assert end["requests"]["underpass-t/1"] > 0
    assert [p["subcategory"] for p in end["problems"]] == ["flood.underpass_water_level"]


async def test_command_line_faults_on_plain_devices():
    async with SimProcess("modbus", "--device", "water_meter:1-3", "--fault", "2:exception@0+2s",
                          "--fault", "3:slow=0.4", "--port", "0", "--json", "--quiet") as sim:
        (gateway,) = (await sim.line())["serving"]
        client = AsyncModbusTcpClient("127.0.0.1", port=gateway["port"], timeout=0.2, retries=0, reconnect_delay=0)
        await client.connect()
        try:
            assert not (await client.read_input_registers(0, count=6, device_id=1)).isError()
            rr = await client.read_input_registers(0, count=6, device_id=2)
            assert rr.isError() and rr.exception_code == 4
            with pytest.raises(Exception, match="No response"):  # 0.4 s late, past a 0.2 s timeout
                await client.read_input_registers(0, count=6, device_id=3)
            await asyncio.sleep(2.0)  # the exception fault ends 2 s after start
            assert not (await client.read_input_registers(0, count=6, device_id=2)).isError()
        finally:
            client.close()
        rc, out = await sim.stop()
    assert rc in (0, -15), out
