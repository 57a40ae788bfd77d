"""A serial line without hardware: two pseudo-terminals joined back to back.

Stands in for an RS-485 cable between the simulator (Modbus RTU server on one end) and
the agent (RTU client on the other). Bytes written to either end come out of the other.
``cityops-sim modbus --rtu-pty`` serves on one end and prints the other end's path; the
RTU tests use the same pair.

::

    async with pty_pair() as (server_port, client_port):
        async with ModbusSimServer(devices, serial_port=server_port): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable

__all__ = ["pty_pair"]


def _pump(src: int, dst: int) -> Callable[[], None]:
    def copy() -> None:
        try:
            os.write(dst, os.read(src, 4096))
        except OSError:  # the other side closed: the line is cut, as a cable would be
            pass

    return copy


@contextlib.asynccontextmanager
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """(server end, client end): device paths of two ptys whose masters copy bytes to
    each other on the running event loop."""
    fds: list[int] = []
    ends: list[tuple[int, str]] = []
    try:
        for _ in range(2):
            master, slave = os.openpty()
            fds += [master, slave]
            tty.setraw(slave)
            ends.append((master, os.ttyname(slave)))
        loop = asyncio.get_running_loop()
        (ma, pa), (mb, pb) = ends
        loop.add_reader(ma, _pump(ma, mb))
        loop.add_reader(mb, _pump(mb, ma))
        try:
            yield pa, pb
        finally:
            loop.remove_reader(ma)
            loop.remove_reader(mb)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
