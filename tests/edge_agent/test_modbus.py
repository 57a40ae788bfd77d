"""Modbus polling against real pymodbus servers (the simulator): every data type and
order end to end, batching, range rejection, DOWN/UP with backoff, rules on live
readings, state across restarts."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from agent_testlib import MAPS, until

from edge_agent.config import load_agent_config, load_register_map
from edge_agent.emit import MemorySink
from edge_agent.modbus import ModbusComponent
from edge_agent.outbox import Outbox
from protocol.codec import decode_events
from simulators.modbus import ModbusSimServer, Mode, SimulatedDevice

pytestmark = pytest.mark.asyncio

TYPES = {"int16": 1, "uint16": 1, "bitfield": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
VALUES = {"int16": -1234, "uint16": 54321, "bitfield": 0b1010_0000_0101, "int32": -98765432,
          "uint32": 3_000_000_001, "float32": -273.15, "float64": 6.02214076e23}


def every_type_map() -> tuple[str, dict[str, float]]:
    """A register map with every type in every possible byte/word order, contiguous."""
    lines = ["model: all_types", "poll_period_s: 0.05", "registers:"]
    expected = {}
    address = 0
    for (t, width), bo in itertools.product(TYPES.items(), ("big", "little")):
        for wo in (("big", "little") if width > 1 else (None,)):
            name = f"{t}_{bo}_{wo or 'na'}"
            extra = f", word_order: {wo}" if wo else ""
            bits = ", bits: {a: 0, b: 2, c: 11}" if t == "bitfield" else ""
            lines.append(f"  {name}: {{address: {address}, type: {t}, byte_order: {bo}{extra}{bits}}}")
            expected[name] = VALUES[t]
            address += width
    return "\n".join(lines) + "\n", expected


def agent_yaml(port: int, devices: str, maps: str = "") -> str:
    return f"""\
agent: {{id: agent-1, location: {{lat: 31.2, lon: 121.4}}, data_dir: data}}
outbox: {{state_flush_s: 0.05}}
register_maps:
  water_meter: {MAPS}/water_meter.yaml
  smoke: {MAPS}/smoke_detector.yaml
  gauge: {MAPS}/water_level_gauge.yaml
{maps}
devices:
{devices}""".replace("@PORT@", str(port))


async def run_component(component, sink):
    stop = asyncio.Event()
    task = asyncio.create_task(component.run(sink, stop))
    return stop, task


async def stop_component(stop, task):
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_every_type_and_order_through_a_real_server(tmp_path, write_config):
    map_text, expected = every_type_map()
    (tmp_path / "all.yaml").write_text(map_text)
    device = SimulatedDevice(7, load_register_map(tmp_path / "all.yaml")[0])
    for name, value in expected.items():
        device.set(name, value)
    async with ModbusSimServer([device]) as server:
        loaded = load_agent_config(write_config(tmp_path, agent_yaml(server.port, """\
  - {id: dev-1, model: all_types, unit_id: 7, tcp: {host: 127.0.0.1, port: @PORT@}}
""", maps=f"  all_types: {tmp_path}/all.yaml")))
        component = ModbusComponent(loaded)
        stop, task = await run_component(component, MemorySink())
        readings = await until(lambda: component.telemetry()["readings"], what="first poll")
        await stop_component(stop, task)
    assert len(expected) == 22  # 3 one-word types x 2 byte orders + 4 wider types x 4 orders
    for name, value in expected.items():
        got = readings[f"dev-1.{name}"]
        if name.startswith("float32"):
            assert math.isclose(got, value, rel_tol=1e-6), name
        else:
            assert got == value, name
    # 22 registers, 46 contiguous words: one request per poll.
    assert device.requests == component.polls


async def test_out_of_range_readings_are_rejected_counted_and_never_alarm(tmp_path, write_config):
    async with ModbusSimServer([SimulatedDevice(1, load_map("water_level_gauge"))]) as server:
        gauge = server[1]
        gauge.set("level", 1.0)
        gauge.set_words("level_mm", [0x7FFF, 0xFFFF])  # garbage: 2147483 m
        loaded = load_agent_config(write_config(tmp_path, agent_yaml(server.port, """\
  - id: g-1
    model: gauge
    unit_id: 1
    tcp: {host: 127.0.0.1, port: @PORT@}
    poll_period_s: 0.05
    rules:
      level: {register: level_mm, high: 2, clear_below: 1}
""")))
        sink = MemorySink()
        component = ModbusComponent(loaded)
        stop, task = await run_component(component, sink)
        await until(lambda: component.rejected_readings >= 3)
        tele = component.telemetry()
        assert "g-1.level_mm" not in tele["readings"] and tele["readings"]["g-1.level"] == 1.0
        assert sink.drafts == []  # the garbage never reached the level rule
        gauge.set("level_mm", 2.5)
        await until(lambda: sink.drafts, what="a real high level alarms")
        await stop_component(stop, task)
    assert sink.drafts[0].subcategory == "flood.river_level"
    assert tele["rejected_readings"] >= 3


def load_map(name):
    return load_register_map(MAPS / f"{name}.yaml")[0]


@pytest.mark.parametrize("mode", [Mode.SILENT, Mode.EXCEPTION])
async def test_device_goes_down_backs_off_and_comes_up(tmp_path, write_config, mode):
    meter = SimulatedDevice(3, load_map("water_meter"))
    other = SimulatedDevice(4, load_map("water_meter"))
    async with ModbusSimServer([meter, other]) as server:
        loaded = load_agent_config(write_config(tmp_path, agent_yaml(server.port, """\
  - {id: wm-3, model: water_meter, unit_id: 3, tcp: {host: 127.0.0.1, port: @PORT@},
     poll_period_s: 0.05, timeout_s: 0.1, retries: 0, down_after: 3, backoff_max_s: 0.4}
  - {id: wm-4, model: water_meter, unit_id: 4, tcp: {host: 127.0.0.1, port: @PORT@},
     poll_period_s: 0.05, timeout_s: 0.1}
""")))
        outbox = Outbox(tmp_path / "o.sqlite", "agent-1")
        component = ModbusComponent(loaded)
        stop, task = await run_component(component, outbox)
        await until(lambda: component.telemetry()["devices"] == {"wm-3": "up", "wm-4": "up"})
        meter.mode = mode
        await until(lambda: component.telemetry()["devices"]["wm-3"] == "down", what="DOWN")
        down_at = meter.requests
        await asyncio.sleep(1.0)
        # Backoff: 0.05 * 2^k capped at 0.4 s -> a handful of probes in a second, not 20.
        assert meter.requests - down_at <= 8
        assert component.telemetry()["devices"]["wm-4"] == "up"  # its neighbour is fine
        meter.mode = Mode.OK
        await until(lambda: component.telemetry()["devices"]["wm-3"] == "up", what="UP")
        await stop_component(stop, task)
    events = [decode_events(r.payload)[0] for r in outbox.take_backlog(100, 1 << 20)]
    outbox.close()
    assert [(e.subcategory, e.kind.value, e.source) for e in events] == [
        ("device.offline", "new", "wm-3"), ("device.offline", "end", "wm-3")]
    assert events[0].event_id == events[1].event_id
    reason = "no answer within 0.1 s" if mode == Mode.SILENT else "Modbus exception 4 (device failure)"
    assert reason in events[0].attributes["error"]
    assert events[1].attributes["down_for_s"] >= 1.0


async def test_down_device_survives_restart_and_ends_its_event(tmp_path, write_config):
    meter = SimulatedDevice(1, load_map("water_meter"))
    meter.mode = Mode.SILENT
    async with ModbusSimServer([meter]) as server:
        loaded = load_agent_config(write_config(tmp_path, agent_yaml(server.port, """\
  - {id: wm-1, model: water_meter, unit_id: 1, tcp: {host: 127.0.0.1, port: @PORT@},
     poll_period_s: 0.05, timeout_s: 0.05, retries: 0, down_after: 2, backoff_max_s: 0.1}
""")))
        outbox = Outbox(tmp_path / "o.sqlite", "agent-1")
        component = ModbusComponent(loaded)
        stop, task = await run_component(component, outbox)
        await until(lambda: outbox.depth == 1, what="offline event")
        await stop_component(stop, task)
        outbox.close()
        meter.mode = Mode.OK
        outbox = Outbox(tmp_path / "o.sqlite", "agent-1")
        component = ModbusComponent(loaded)
        assert component.devices == {}
        stop, task = await run_component(component, outbox)
        await until(lambda: outbox.depth == 2, what="the same event ends after the restart")
        await stop_component(stop, task)
    first, second = (decode_events(r.payload)[0] for r in outbox.take_backlog(10, 1 << 20))
    outbox.close()
    assert (first.kind.value, second.kind.value) == ("new", "end")
    assert first.event_id == second.event_id


async def test_smoke_alarm_and_call_button_from_live_registers(tmp_path, write_config):
    smoke = SimulatedDevice(11, load_map("smoke_detector"))
    async with ModbusSimServer([smoke]) as server:
        loaded = load_agent_config(write_config(tmp_path, agent_yaml(server.port, """\
  - id: smoke-1
    model: smoke
    unit_id: 11
    tcp: {host: 127.0.0.1, port: @PORT@}
    poll_period_s: 0.05
    rules:
      smoke_alarm: {register: status.alarm, counter: alarm_count, clear_after_s: 0.2}
""")))
        outbox = Outbox(tmp_path / "o.sqlite", "agent-1")
        component = ModbusComponent(loaded)
        stop, task = await run_component(component, outbox)
        await until(lambda: component.polls >= 2)
        smoke.set_flag("status.alarm", True)
        smoke.set("alarm_count", 1)
        await until(lambda: outbox.depth == 1, what="alarm opens")
        smoke.set("alarm_count", 2)
        await until(lambda: outbox.depth == 2, what="second alarm counted")
        smoke.set_flag("status.alarm", False)
        await until(lambda: outbox.depth == 3, what="alarm clears")
        await stop_component(stop, task)
    events = [decode_events(r.payload)[0] for r in outbox.take_backlog(10, 1 << 20)]
    outbox.close()
    assert [e.kind.value for e in events] == ["new", "update", "end"]
    assert len({e.event_id for e in events}) == 1
    assert events[0].subcategory == "fire_alarm.smoke_detector"
    assert events[0].evidence.reading.name == "status.alarm" and events[0].evidence.reading.value == 1


async def test_unreachable_gateway_marks_its_devices_down(tmp_path, write_config):
    from hub.broker import free_port

    port = free_port()  # nothing listens there
    loaded = load_agent_config(write_config(tmp_path, agent_yaml(port, """\
  - {id: wm-1, model: water_meter, unit_id: 1, tcp: {host: 127.0.0.1, port: @PORT@},
     poll_period_s: 0.05, timeout_s: 0.1, retries: 1, down_after: 2}
""")))
    sink = MemorySink()
    component = ModbusComponent(loaded)
    stop, task = await run_component(component, sink)
    await until(lambda: sink.drafts, what="offline event")
    await stop_component(stop, task)
    assert sink.drafts[0].subcategory == "device.offline"
    assert "cannot connect" in sink.drafts[0].attributes["error"]
