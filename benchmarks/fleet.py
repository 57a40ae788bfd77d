"""A fleet of virtual agents against a private Mosquitto and hub: the connect storm, the
hub's cost of holding the fleet, and the status page while it does.

Two phases in one run, each on a fresh broker: (A) the baseline, the same fleet against
Mosquitto alone; (B) Mosquitto plus the hub as ``cityops-hub serve`` runs it (a child
process with one receiver process). Each phase ramps ``--agents`` connections over
``--ramp`` seconds (jittered), then holds them for ``--hold`` seconds with heartbeats
every ``--heartbeat`` seconds and ``--rate`` events/s across the fleet (water no-use
lifecycles: every event is stored, opens or closes a case, and is acked). Reported:
connect latency (TCP + CONNACK + birth PUBACK + SUBACK) and the storm's length, events
published/acked and publish → hub-ack latency (B), CPU (% of one core) and RSS of the
broker, the hub (with its receiver) and the fleet process while holding, and the status
page (``GET /`` and ``GET /api/v1/agents``) latency with the whole fleet registered.

    ./dev bench fleet --agents 1000 --json benchmarks/results/fleet-1000.json
    ./dev bench fleet --agents 10000 --ramp 60 --hold 60        # the proof-suite size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.fleet import Fleet, FleetOptions, provision  # noqa: E402
from simulators.privatehub import PrivateHub  # noqa: E402
from simulators.scoring import percentile  # noqa: E402


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _self_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _get_ms(url: str, token: str) -> float:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own loopback hub
        r.read()
    return (time.perf_counter() - t0) * 1000


def page_latency(base: str, n: int, token: str) -> dict[str, Any]:
    out = {}
    for name, path in (("status_page", ""), ("agents_json", "api/v1/agents")):
        samples = [_get_ms(base + path, token) for _ in range(n)]
        out[name] = {"p50_ms": round(percentile(samples, 50), 1), "p95_ms": round(percentile(samples, 95), 1),
                     "max_ms": round(max(samples), 1)}
    return out


def phase(args: argparse.Namespace, with_hub: bool) -> dict[str, Any]:
    with PrivateHub(hub=with_hub, receivers=1) as ph:
        creds = provision(ph.broker.auth, args.agents, "bench")
        ph.broker.reload()
        fleet = Fleet(FleetOptions(ph.broker.host, ph.broker.port, creds, event_rate=args.rate if with_hub else 0,
                                   heartbeat_s=args.heartbeat, ramp_s=args.ramp, loops=args.loops))
        fleet.start()
        try:
            deadline = time.monotonic() + args.ramp + 120
            while fleet.stats()["connected"] < args.agents and time.monotonic() < deadline:
                time.sleep(0.2)
            storm = fleet.stats()
            time.sleep(2.0)  # let births settle before measuring the hold
            u0, f0, t0 = ph.usage(), _self_cpu(), time.monotonic()
            time.sleep(args.hold)
            u1, f1, t1 = ph.usage(), _self_cpu(), time.monotonic()
            pages = (page_latency(ph.web_url, args.page_samples, ph.create_token())
                 if with_hub and ph.web_url else None)
            fleet.quiesce(30)
            held = fleet.stats()
        finally:
            fleet.stop()
    wall = t1 - t0
    procs = {name: {"cpu_pct": round(100 * (u1[name]["cpu_s"] - u0[name]["cpu_s"]) / wall, 1),
                    "rss_mib": round(u1[name]["rss_mib"], 1)} for name in u1}
    procs["fleet"] = {"cpu_pct": round(100 * (f1 - f0) / wall, 1), "rss_mib": round(_self_rss_mib(), 1)}
    return {"connected": storm["connected"], "connect_ms": storm["connect_ms"],
            "connect_storm_s": storm["connect_storm_s"], "errors": held["errors"],
            "events_published": held["events_published"], "events_acked": held["events_acked"],
            "ack_ms": held["ack_ms"], "heartbeats": held["heartbeats"], "reconnects": held["reconnects"],
            "hold_s": round(wall, 1), "processes": procs, "pages": pages}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--ramp", type=float, default=10.0, help="seconds over which connects are spread")
    p.add_argument("--hold", type=float, default=30.0, help="seconds held after the storm, measured")
    p.add_argument("--heartbeat", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=50.0, help="events/s across the fleet (phase B)")
    p.add_argument("--loops", type=int, default=2)
    p.add_argument("--page-samples", type=int, default=40)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    load = os.getloadavg()
    base = phase(args, with_hub=False)
    full = phase(args, with_hub=True)
    result = {"agents": args.agents, "ramp_s": args.ramp, "heartbeat_s": args.heartbeat,
              "event_rate": args.rate, "loops": args.loops, "loadavg_before": [round(x, 2) for x in load],
              "baseline_broker_only": base, "with_hub": full,
              "connect_p99_ratio": (round(full["connect_ms"]["p99"] / base["connect_ms"]["p99"], 2)
                                    if base["connect_ms"]["p99"] else None)}
    print(f"{args.agents} agents, ramp {args.ramp:g} s, heartbeat {args.heartbeat:g} s, "
          f"{args.rate:g} events/s (load avg before {load[0]:.2f})")
    print(f"{'':24}{'broker only':>14}{'broker + hub':>14}")
    for label, key in (("connected", "connected"), ("connect storm s", "connect_storm_s")):
        print(f"{label:24}{base[key]!s:>14}{full[key]!s:>14}")
    for q in ("p50", "p95", "p99", "max"):
        print(f"{'connect ms ' + q:24}{base['connect_ms'][q]!s:>14}{full['connect_ms'][q]!s:>14}")
    for name in ("broker", "hub", "fleet"):
        for what in ("cpu_pct", "rss_mib"):
            b = base["processes"].get(name, {}).get(what, "-")
            f = full["processes"].get(name, {}).get(what, "-")
            print(f"{name + ' ' + what:24}{b!s:>14}{f!s:>14}")
    print(f"events published/acked (B): {full['events_published']}/{full['events_acked']}, "
          f"publish → hub ack ms p50 {full['ack_ms']['p50']} p99 {full['ack_ms']['p99']}")
    if full["pages"]:
        for name, v in full["pages"].items():
            print(f"{name}: p50 {v['p50_ms']} ms, p95 {v['p95_ms']} ms, max {v['max_ms']} ms")
    print(f"errors: A {base['errors'] or 0}, B {full['errors'] or 0}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
