"""A Modbus TCP (or RTU serial) server holding many simulated devices, one per unit id.

Serves the agent's Modbus client (:mod:`edge_agent.modbus`) in tests, benchmarks and the
demo. Each device's registers come from a register map in
``firmware_configs/register_maps/``; its values from the device (set from code) or its
model (moved with time). Built on pymodbus's ``SimDevice`` with an action hook that
renders the current values on every request and makes a device silent or failing on
demand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, MutableSequence
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from .device import Mode, SimulatedDevice

__all__ = ["ModbusSimServer"]

log = logging.getLogger(__name__)


async def _action(
    device: SimulatedDevice, function_code: int, start_address: int, _address: int, _count: int,
    current_registers: MutableSequence[int], _set_values: object,
) -> ExcCodes | None:
    device.requests += 1
    device.refresh()  # a scenario model may change the mode with time
    if device.mode == Mode.SILENT:
        # The server is started with ignore_missing_devices: no answer at all.
        raise NoSuchIdException(f"device {device.unit_id} is silent")
    if device.mode == Mode.EXCEPTION:
        return ExcCodes.DEVICE_FAILURE
    if device.mode == Mode.SLOW and device.delay_s > 0:
        await asyncio.sleep(device.delay_s)
    table = 3 if function_code in (3, 6, 16, 22, 23) else 4
    device.render(table, start_address, current_registers)
    return None


def _blocks(device: SimulatedDevice, function: int) -> list[SimData]:
    specs = [s for s in device.regmap.registers.values() if s.function == function]
    if not specs:
        return [SimData(address=0, datatype=SimType.INVALID)]
    # One block per register: the addresses between registers stay invalid, as on a
    # real device that refuses reads of unmapped addresses.
    return [SimData(address=s.address, count=s.width, values=0, datatype=SimType.REGISTERS)
            for s in sorted(specs, key=lambda s: s.address)]


def _sim_device(device: SimulatedDevice) -> SimDevice:
    bits = [SimData(address=0, values=[False] * 16, datatype=SimType.BITS)]
    return SimDevice(
        id=device.unit_id,
        simdata=(bits, list(bits), _blocks(device, 3), _blocks(device, 4)),
        action=partial(_action, device),
    )


class ModbusSimServer:
    """``async with ModbusSimServer(devices, port=0) as server:`` … ``server.port``."""

    def __init__(
        self, devices: Iterable[SimulatedDevice], *, host: str = "127.0.0.1", port: int = 0,
        serial_port: str | None = None, baudrate: int = 9600,
    ) -> None:
        self.devices = {d.unit_id: d for d in devices}
        if not self.devices:
            raise ValueError("a server needs at least one device")
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    def __getitem__(self, unit_id: int) -> SimulatedDevice:
        return self.devices[unit_id]

    async def start(self) -> ModbusSimServer:
        sims = [_sim_device(d) for d in self.devices.values()]
        if self.serial_port is not None:
            self._server = ModbusSerialServer(
                sims, port=self.serial_port, baudrate=self.baudrate, ignore_missing_devices=True
            )
        else:
            self._server = ModbusTcpServer(
                sims, address=(self.host, self.port), ignore_missing_devices=True
            )
        await self._server.serve_forever(background=True)
        if self.serial_port is None and self.port == 0:  # the OS picked a free port
            self.port = self._server.transport.sockets[0].getsockname()[1]
        log.info("modbus simulator serving %d devices on %s", len(self.devices),
                 self.serial_port or f"{self.host}:{self.port}")
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
            await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusSimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

