"""Modbus polling: decoding (pure), read batching (pure), device health (pure), the bus
link (pymodbus TCP/RTU) and the :class:`ModbusComponent` that runs it all."""

from .decode import Decoded, check_valid, decode, decode_raw
from .health import Health, HealthState, Transition
from .link import ModbusLink, make_client
from .plan import Read, plan_by_period, plan_reads
from .poller import ModbusComponent

__all__ = [
    "Decoded",
    "Health",
    "HealthState",
    "ModbusComponent",
    "ModbusLink",
    "Read",
    "Transition",
    "check_valid",
    "decode",
    "decode_raw",
    "make_client",
    "plan_by_period",
    "plan_reads",
]
