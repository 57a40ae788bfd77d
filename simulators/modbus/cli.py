"""``cityops-sim modbus``: simulated Modbus devices over TCP or RTU, for the agent's poller.

Serves ``cityops-agent run`` (and any Modbus master) with devices built from the register
maps in ``firmware_configs/register_maps/``, many unit ids per server (a gateway):

* ``--device MODEL:UNITS`` — plain devices (water meters integrate ``--flow`` m3/h);
  ``--fault UNITS:KIND[@START][+FOR]`` makes some of them fail on a real-time schedule
  (``silent``, ``exception``, ``slow=DELAY_S``, ``garbage``), e.g. ``3:silent@30s+1m``:
  unit 3 stops answering 30 s after start and comes back a minute later.
* ``--scenario NAME|FILE`` — every site of a scenario, one gateway each, following its
  timeline on a simulated clock (``--time-scale``): daily water use, residents who stop
  using water, leaks, rain, smoke, call-button presses, and the scenario's faults.

``--rtu-pty`` serves RTU on one end of a pseudo-terminal pair and prints the other end
for the agent (``rtu: {port: ...}``); ``--rtu DEVICE`` serves RTU on a real serial port.
``--json`` prints one JSON line with the endpoints when serving starts and one with what
was served (and, for a scenario, the problems injected) at the end. Progress lines
(requests served, rate, simulated time, elapsed/remaining) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.config import load_register_map
from protocol.cliutil import run_main
from protocol.errors import CityopsError

from ..clock import ScaledClock
from ..progress import Progress
from .device import SimulatedDevice
from .models import WaterMeterModel
from .serial_line import pty_pair
from .server import ModbusSimServer

__all__ = ["build_devices", "main", "parse_fault", "parse_units"]

DEFAULT_MAPS = Path(__file__).resolve().parents[2] / "firmware_configs" / "register_maps"


def parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        units.extend(range(int(lo), int(hi or lo) + 1))
    if not units or any(not 0 <= u <= 255 for u in units):
        raise ValueError(f"unit ids must be within 0..255: {text!r}")
    return units


@dataclass(frozen=True)
class FaultSpec:
    units: list[int]
    fault: Any  # scenarios.model.Fault


def parse_fault(text: str) -> FaultSpec:
    """``UNITS:KIND[@START][+FOR]``; KIND is silent, exception, garbage or slow=DELAY_S;
    START and FOR are durations (``30``, ``30s``, ``2m``), real time from start-up."""
    from ..scenarios.model import Fault, parse_duration

    units_text, _, rest = text.partition(":")
    if not rest:
        raise ValueError(f"--fault {text!r}: use UNITS:KIND[@START][+FOR], e.g. 3:silent@30s+1m")
    kind_text, _, when = rest.partition("@")
    if "+" in kind_text:  # no @START: KIND+FOR
        kind_text, _, length = kind_text.partition("+")
        start_text = "0"
    else:
        start_text, _, length = when.partition("+")
    kind, _, delay = kind_text.partition("=")
    try:
        fault = Fault.model_validate({
            "at": parse_duration(start_text or "0"), "for": parse_duration(length) if length else 10 * 365 * 86400,
            "kind": kind, **({"delay_s": float(delay)} if delay else {})})
    except ValidationError as exc:
        why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"--fault {text!r}: {why}") from None
    except ValueError as exc:
        raise ValueError(f"--fault {text!r}: {exc}") from None
    return FaultSpec(parse_units(units_text), fault)


def build_devices(specs: Sequence[str], maps_dir: Path, flow: float,
                  faults: Sequence[FaultSpec] = (), clock: ScaledClock | None = None) -> list[SimulatedDevice]:
    from ..scenarios.devices import FaultOverlay
    from ..scenarios.physics import Recurring

    clock = clock or ScaledClock()
    devices: list[SimulatedDevice] = []
    for spec in specs:
        model, _, units = spec.partition(":")
        if not units:
            raise ValueError(f"--device {spec!r}: use MODEL:UNITS, e.g. water_meter:1-64")
        regmap, _ = load_register_map(maps_dir / f"{model}.yaml")
        for unit in parse_units(units):
            sim_model = WaterMeterModel(flow_m3h=flow) if "volume" in regmap.registers and "flow" in regmap.registers else None
            mine = [(f.fault.at, f.fault.at + f.fault.for_, f.fault) for f in faults if unit in f.units]
            if mine:
                sim_model = FaultOverlay(sim_model, Recurring(mine, None), regmap, clock)
            devices.append(SimulatedDevice(unit, regmap, model=sim_model, clock=clock))
    known = {d.unit_id for d in devices}
    for f in faults:
        if missing := sorted(set(f.units) - known):
            raise ValueError(f"--fault names unit(s) {missing} that no --device serves")
    return devices


@dataclass
class _Gateway:
    name: str
    devices: list[SimulatedDevice]
    server: ModbusSimServer | None = None
    client_end: str | None = None  # the agent's end of an RTU line

    def endpoint(self) -> dict[str, Any]:
        assert self.server is not None
        out: dict[str, Any] = {"site": self.name, "devices": [
            {"unit_id": d.unit_id, "model": d.regmap.model} for d in self.devices]}
        if self.server.serial_port is not None:
            out["rtu"] = self.client_end or self.server.serial_port
        else:
            out.update(host=self.server.host, port=self.server.port)
        return out


async def serve(gateways: list[_Gateway], args: argparse.Namespace, clock: ScaledClock,
                scenario: Any = None, day0_s: float = 0.0) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for i, gw in enumerate(gateways):
            if args.rtu_pty:
                server_end, gw.client_end = await stack.enter_async_context(pty_pair())
                gw.server = ModbusSimServer(gw.devices, serial_port=server_end, baudrate=args.baudrate)
            elif args.rtu:
                gw.server = ModbusSimServer(gw.devices, serial_port=args.rtu, baudrate=args.baudrate)
            else:
                port = 0 if args.port == 0 else args.port + i
                gw.server = ModbusSimServer(gw.devices, host=args.host, port=port)
            await stack.enter_async_context(gw.server)
        clock.restart()
        endpoints = [gw.endpoint() for gw in gateways]
        if args.json:
            print(json.dumps({"serving": endpoints, "time_scale": clock.scale}), flush=True)
        else:
            for e in endpoints:
                where = f"RTU {e['rtu']}" if "rtu" in e else f"{e['host']}:{e['port']}"
                print(f"serving {len(e['devices'])} simulated device(s) on {where}", flush=True)
        progress = Progress("modbus", args.duration, every_s=args.progress_every, quiet=args.quiet)
        deadline = None if args.duration is None else loop.time() + args.duration
        while not stop.is_set():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(progress.every_s, left) if left else progress.every_s)
            if progress.due() and not stop.is_set():
                served = sum(d.requests for g in gateways for d in g.devices)
                faulty = [f"{g.name}/{d.unit_id}:{d.mode}" for g in gateways for d in g.devices if d.mode != "ok"]
                fields = {"requests": f"{served} ({progress.rate('req', served):.1f}/s)",
                          "faults": ", ".join(faulty) or "none"}
                if scenario is not None:
                    fields["sim"] = f"+{clock.elapsed() / 3600:.2f} h (x{clock.scale:g})"
                progress.report(fields)
        summary: dict[str, Any] = {
            "requests": {f"{g.name}/{d.unit_id}": d.requests for g in gateways for d in g.devices},
            "simulated_s": round(clock.elapsed(), 1), "real_s": round(progress.elapsed(), 1),
        }
        if scenario is not None:
            from ..scenarios.truth import ground_truth

            truth = ground_truth(scenario, clock.scale, clock.elapsed(), day0_s)
            served = {g.name for g in gateways}
            summary["problems"] = [{"id": p.id, "subcategory": p.subcategory, "start_s": round(p.start, 1),
                                    "end_s": None if p.end is None else round(p.end, 1)}
                                   for p in truth.problems if p.agent_id in served]
            summary["notes"] = truth.notes
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityops-sim modbus", description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--device", action="append", metavar="MODEL:UNITS",
                      help="e.g. water_meter:1-64 (repeatable)")
    what.add_argument("--scenario", metavar="NAME|FILE", help="serve every site of a scenario")
    p.add_argument("--site", action="append", metavar="ID", help="with --scenario: only these sites")
    p.add_argument("--fault", action="append", default=[], metavar="UNITS:KIND[@START][+FOR]",
                   help="with --device: e.g. 3:silent@30s+1m, 1-4:slow=0.5, 2:garbage@10s (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020,
                   help="TCP port (0: a free port; with several sites, consecutive ports from here)")
    p.add_argument("--rtu", metavar="DEVICE", help="serve Modbus RTU on this serial port instead of TCP")
    p.add_argument("--rtu-pty", action="store_true",
                   help="serve RTU on a pseudo-terminal pair and print the agent's end")
    p.add_argument("--baudrate", type=int, default=9600)
    p.add_argument("--maps-dir", type=Path, default=DEFAULT_MAPS)
    p.add_argument("--flow", type=float, default=0.0, help="with --device: flow of every water meter, m3/h")
    p.add_argument("--time-scale", type=float, default=None, metavar="X",
                   help="with --scenario: simulated seconds per real second (default: the scenario's)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="JSON lines: endpoints at start, a summary at the end")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="S")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        try:
            gateways, clock, scenario, day0 = _gateways(args)
        except ValueError as exc:
            raise CityopsError(str(exc)) from None
        summary = asyncio.run(serve(gateways, args, clock, scenario, day0))
        if args.json:
            print(json.dumps(summary), flush=True)
        return 0

    return run_main(run, "cityops-sim modbus")


def _gateways(args: argparse.Namespace) -> tuple[list[_Gateway], ScaledClock, Any, float]:
    if args.rtu and args.rtu_pty:
        raise ValueError("choose one of --rtu and --rtu-pty")
    if args.device:
        if args.site or args.time_scale:
            raise ValueError("--site and --time-scale go with --scenario")
        clock = ScaledClock()
        faults = [parse_fault(f) for f in args.fault]
        return [_Gateway("gateway", build_devices(args.device, args.maps_dir, args.flow, faults, clock))], clock, None, 0.0
    if args.fault:
        raise ValueError("with --scenario, faults come from the scenario file (incidents: - fault: ...)")
    from ..scenarios import load_scenario
    from ..scenarios.devices import build_site_devices
    from ..stack import scenario_start

    loaded = load_scenario(args.scenario, maps_dir=args.maps_dir)
    sc = loaded.scenario
    sites = [s for s in sc.sites if not args.site or s.id in args.site]
    if args.site and (unknown := sorted(set(args.site) - {s.id for s in sc.sites})):
        raise ValueError(
            f"--site {', '.join(unknown)}: not in {loaded.path}; sites: {', '.join(s.id for s in sc.sites)}")
    if (args.rtu or args.rtu_pty) and len(sites) != 1:
        raise ValueError(f"RTU serves one line: pick one site with --site ({', '.join(s.id for s in sites)})")
    start, day0 = scenario_start(sc.start, sc.timezone)
    clock = ScaledClock(start, args.time_scale or sc.time_scale)
    gateways = [_Gateway(s.id, build_site_devices(s, sc, day0, clock, args.maps_dir)) for s in sites]
    return gateways, clock, sc, day0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
