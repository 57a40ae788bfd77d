"""The Modbus device simulator: values set from code reach a real pymodbus client in the
register map's byte and word order; devices fail on demand; models move with time; the
command line serves the shipped maps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.config import load_register_map
from protocol.clock import FakeClock
from simulators.modbus import ModbusSimServer, Mode, SimulatedDevice, WaterMeterModel, encode_value
from simulators.modbus.cli import parse_units

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


def meter_map():
    return load_register_map(MAPS / "water_meter.yaml")[0]


def test_encode_follows_the_maps_orders():
    regmap = meter_map()
    # volume: uint32, scale 0.001, word order little -> 12.345 m3 = 12345 L = [0x3039, 0x0000]
    assert encode_value(regmap.registers["volume"], 12.345) == [0x3039, 0x0000]
    smoke = load_register_map(MAPS / "smoke_detector.yaml")[0]
    # battery: uint16, byte order little, scale 0.001 -> 3.0 V = 3000 = 0x0BB8 -> bytes swapped
    assert encode_value(smoke.registers["battery"], 3.0) == [0xB80B]
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(regmap.registers["battery"], 1000.0)


@pytest.mark.asyncio
async def test_many_units_one_server_with_failure_modes():
    regmap = meter_map()
    devices = [SimulatedDevice(u, regmap) for u in (1, 2, 3)]
    devices[0].set("volume", 1.5)
    devices[0].set_flag("status.low_battery", True)
    async with ModbusSimServer(devices) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=0.3, retries=0, reconnect_delay=0)
        await client.connect()
        rr = await client.read_input_registers(0, count=6, device_id=1)
        assert rr.registers[:2] == [1500, 0] and rr.registers[4] == 0b100
        devices[1].mode = Mode.EXCEPTION
        rr = await client.read_input_registers(0, count=6, device_id=2)
        assert rr.isError() and rr.exception_code == 4
        rr = await client.read_input_registers(0, count=7, device_id=3)  # past the map: refused
        assert rr.isError() and rr.exception_code == 2
        devices[2].mode = Mode.SILENT
        with pytest.raises(Exception, match="No response"):
            await client.read_input_registers(0, count=6, device_id=3)
        client.close()
    # The out-of-map read is refused by the server before it reaches the device.
    assert devices[0].requests == 1 and devices[2].requests == 1


@pytest.mark.asyncio
async def test_water_meter_model_integrates_flow_over_time():
    clock = FakeClock()
    model = WaterMeterModel(flow_m3h=0.6)
    meter = SimulatedDevice(1, meter_map(), model=model, clock=clock)
    async with ModbusSimServer([meter]) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0, reconnect_delay=0)
        await client.connect()
        await client.read_input_registers(0, count=2, device_id=1)
        clock.advance(minutes=30)
        rr = await client.read_input_registers(0, count=2, device_id=1)
        client.close()
    assert rr.registers == [300, 0]  # 0.3 m3 = 300 L after half an hour at 0.6 m3/h


def test_parse_units():
    assert parse_units("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(ValueError):
        parse_units("250-260")


def test_command_line_serves_and_stops():
    proc = subprocess.run(
        [sys.executable, "-m", "simulators.modbus", "--port", "0", "--device", "water_meter:1-4",
         "--device", "call_button:21", "--duration", "0.5"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "serving 5 simulated device(s)" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "simulators.modbus", "--device", "nope:1"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 1 and "file not found" in bad.stderr

