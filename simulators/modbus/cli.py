"""``python -m simulators.modbus``: serve simulated Modbus devices over TCP.

Serves the agent's poller (``cityops-agent run`` with a config pointing at this port).
Each ``--device MODEL:UNITS`` adds devices built from
``firmware_configs/register_maps/MODEL.yaml`` (``UNITS`` like ``1-64`` or ``3,5,9``);
water meters integrate ``--flow`` m3/h into their volume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_agent.config import load_register_map
from protocol.errors import ConfigError

from .device import SimulatedDevice
from .models import WaterMeterModel
from .server import ModbusSimServer

__all__ = ["main", "parse_units"]

DEFAULT_MAPS = Path(__file__).resolve().parents[2] / "firmware_configs" / "register_maps"


def parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        units.extend(range(int(lo), int(hi or lo) + 1))
    if not units or any(not 0 <= u <= 255 for u in units):
        raise ValueError(f"unit ids must be within 0..255: {text!r}")
    return units


def build_devices(specs: Sequence[str], maps_dir: Path, flow: float) -> list[SimulatedDevice]:
    devices: list[SimulatedDevice] = []
    for spec in specs:
        model, _, units = spec.partition(":")
        if not units:
            raise SystemExit(f"--device {spec!r}: use MODEL:UNITS, e.g. water_meter:1-64")
        regmap, _ = load_register_map(maps_dir / f"{model}.yaml")
        for unit in parse_units(units):
            sim_model = WaterMeterModel(flow_m3h=flow) if "volume" in regmap.registers and "flow" in regmap.registers else None
            devices.append(SimulatedDevice(unit, regmap, model=sim_model))
    return devices


async def serve(devices: list[SimulatedDevice], host: str, port: int, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ModbusSimServer(devices, host=host, port=port) as server:
        print(f"serving {len(devices)} simulated device(s) on {server.host}:{server.port}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.modbus", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020)
    p.add_argument("--device", action="append", required=True, metavar="MODEL:UNITS",
                   help="e.g. water_meter:1-64 (repeatable)")
    p.add_argument("--maps-dir", type=Path, default=DEFAULT_MAPS)
    p.add_argument("--flow", type=float, default=0.0, help="flow of every water meter, m3/h")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = p.parse_args(argv)
    try:
        devices = build_devices(args.device, args.maps_dir, args.flow)
    except (ConfigError, ValueError) as exc:
        print(f"simulators.modbus: error: {exc}", file=sys.stderr)
        return 1
    asyncio.run(serve(devices, args.host, args.port, args.duration))
    return 0
