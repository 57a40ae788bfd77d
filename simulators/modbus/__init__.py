"""Simulated Modbus devices for tests, benchmarks and the demo: a pymodbus server with
many unit ids, each a device built from a register map in ``firmware_configs/``, with
values set from code or moved by a behaviour model.

Serves :mod:`edge_agent.modbus` (the agent's poller). Run one with
``python -m simulators.modbus --help``.
"""

from .device import DeviceModel, Mode, SimulatedDevice
from .encode import encode_raw, encode_value
from .models import WaterMeterModel
from .server import ModbusSimServer

__all__ = [
    "DeviceModel",
    "ModbusSimServer",
    "Mode",
    "SimulatedDevice",
    "WaterMeterModel",
    "encode_raw",
    "encode_value",
]
