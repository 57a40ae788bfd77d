"""One Modbus bus: a TCP connection (a device or a gateway) or an RTU serial line, shared
by every device on it. pymodbus's async client serialises the requests; this wrapper
adds per-device timeouts and retries and keeps "could not reach the device" apart from
"the device answered with an exception"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.config.devices import DeviceConfig
from edge_agent.errors import DeviceError, DeviceException, DeviceTimeout

from .plan import Read

__all__ = ["ClientFactory", "ModbusLink", "make_client"]

log = logging.getLogger(__name__)

ClientFactory = Callable[[DeviceConfig, float], AsyncModbusTcpClient | AsyncModbusSerialClient]

_EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address (check the register map)",
    3: "illegal data value", 4: "device failure", 5: "acknowledge", 6: "device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def make_client(device: DeviceConfig, timeout_s: float) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """A pymodbus client for the device's bus. No automatic reconnect and no retries of
    its own: the link decides when to reconnect and how often to retry."""
    if device.tcp is not None:
        return AsyncModbusTcpClient(device.tcp.host, port=device.tcp.port, timeout=timeout_s,
                                    retries=0, reconnect_delay=0, name=device.link_key)
    assert device.rtu is not None
    rtu = device.rtu
    return AsyncModbusSerialClient(rtu.port, baudrate=rtu.baudrate, parity=rtu.parity,
                                   stopbits=rtu.stopbits, bytesize=rtu.bytesize, timeout=timeout_s,
                                   retries=0, reconnect_delay=0, name=device.link_key)


class ModbusLink:
    def __init__(self, key: str, devices: list[DeviceConfig], factory: ClientFactory = make_client):
        self.key = key
        timeout = max(d.timeout_s for d in devices)
        self._client = factory(devices[0], timeout)
        self._connect_lock = asyncio.Lock()
        self.requests = 0
        self.failures = 0

    async def _ensure_connected(self, device: DeviceConfig) -> None:
        if self._client.connected:
            return
        async with self._connect_lock:
            if self._client.connected:
                return
            try:
                ok = await asyncio.wait_for(self._client.connect(), timeout=device.timeout_s + 1)
            except (TimeoutError, OSError, ModbusException) as exc:
                raise DeviceError(device.id, f"cannot connect to {self.key}: {exc or 'timed out'}") from exc
            if not ok:
                raise DeviceError(device.id, f"cannot connect to {self.key}")

    async def read(self, device: DeviceConfig, read: Read) -> list[int]:
        """The words of one read request, after up to ``device.retries`` retries."""
        last: DeviceError | None = None
        for _attempt in range(device.retries + 1):
            try:
                return await self._read_once(device, read)
            except DeviceException:
                raise  # the device answered: asking again gives the same answer
            except DeviceError as exc:
                last = exc
        assert last is not None
        raise last

    async def _read_once(self, device: DeviceConfig, read: Read) -> list[int]:
        self.requests += 1
        await self._ensure_connected(device)
        call = (self._client.read_holding_registers if read.function == 3
                else self._client.read_input_registers)
        try:
            rr = await asyncio.wait_for(
                call(read.address, count=read.count, device_id=device.unit_id),
                timeout=device.timeout_s,
            )
        except (TimeoutError, ModbusException, ConnectionException) as exc:
            self.failures += 1
            if isinstance(exc, TimeoutError) or "No response" in str(exc):
                raise DeviceTimeout(device.id, f"no answer within {device.timeout_s:g} s "
                                               f"(unit {device.unit_id} on {self.key})") from exc
            raise DeviceError(device.id, f"{self.key}: {exc}") from exc
        if rr.isError():
            self.failures += 1
            code = int(getattr(rr, "exception_code", 0) or 0)
            name = _EXCEPTION_NAMES.get(code, "exception")
            raise DeviceException(device.id, code, f"answered with Modbus exception {code} ({name}) "
                                  f"to function {read.function} at {read.address}+{read.count}")
        words = list(rr.registers)
        if len(words) < read.count:
            self.failures += 1
            raise DeviceError(device.id, f"short answer: {len(words)} of {read.count} registers")
        return words[: read.count]

    async def close(self) -> None:
        self._client.close()
