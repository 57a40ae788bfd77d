"""Soak: a fleet, the hub and web readers at moderate load for an hour; is memory flat?

One private Mosquitto and the hub as ``cityops-hub serve`` runs it (child process, one
receiver process), a fleet of virtual agents in a third process (``--agents`` real MQTT
clients: births, heartbeats every ``--heartbeat`` s, ``--rate`` water no-use events/s
across the fleet, each stored, merged into a case and acked), and a signed-in web reader
in this process asking for the status page, the agent list and the open-case list every
``--web-every`` s. Every ``--sample-every`` s it samples RSS and CPU of the broker, the
hub (with its receiver) and the fleet process, the fleet's counters and the hub's
database size.

Reported per process: RSS at the end of the warm-up and at the end, the least-squares
slope of RSS over the samples after the warm-up (MiB per hour) and a verdict: memory is
*flat* when the slope is within ``--max-slope`` MiB/h (default 8) — the growth an hour
of the run would add is smaller than that. Also CPU (% of one core), events
published/acked (0 lost after the drain), the web's p50/p95/p99 per 10-minute window,
and the load average along the way (the machine is shared: read the figures with it).

    ./dev bench soak --json benchmarks/results/soak.json            # one hour
    ./dev bench soak --minutes 5                                     # a short check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from simulators.privatehub import PrivateHub, process_tree_usage  # noqa: E402
from simulators.scoring import percentile  # noqa: E402

WEB_PATHS = {"status_page": "", "agents_api": "api/v1/agents?limit=100", "open_cases_api": "api/v1/cases?open=1"}


# -- the fleet, in its own process so its memory is its own -------------------------------------

def fleet_child(args: argparse.Namespace) -> int:
    """``soak.py --fleet-child``: run the fleet, print its counters as one JSON line every
    ``--sample-every`` s, drain at the end and print the final counters."""
    from simulators.fleet import Fleet, FleetOptions

    creds = yaml.safe_load(Path(args.credentials).read_text())
    fleet = Fleet(FleetOptions(args.host, args.port, creds, event_rate=args.rate, heartbeat_s=args.heartbeat,
                               ramp_s=args.ramp, loops=2)).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    end = time.monotonic() + args.seconds
    acks: list[float] = []
    try:
        while time.monotonic() < end and not stopping.is_set():
            stopping.wait(min(args.sample_every, max(0.0, end - time.monotonic())))
            # The fleet keeps every ack latency; take this window's and drop them, so the
            # fleet's own memory measures the agents, not the benchmark's bookkeeping.
            acks = []
            for w in fleet.workers:
                window, w.stats.ack_s = w.stats.ack_s, []
                acks += window
            s = fleet.stats()
            s["ack_ms"] = {"p50": _ms(percentile(acks, 50)), "p99": _ms(percentile(acks, 99)), "n": len(acks)}
            print(json.dumps({"t": time.time(), "stats": s}), flush=True)
        drained = fleet.quiesce(60)
        s = fleet.stats()
        s["drained"] = drained
        print(json.dumps({"t": time.time(), "final": True, "stats": s}), flush=True)
    finally:
        fleet.stop()
    return 0


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


# -- the web reader --------------------------------------------------------------------------------

class WebReader(threading.Thread):
    def __init__(self, base: str, token: str, every: float) -> None:
        super().__init__(name="soak-web", daemon=True)
        self.base, self.every = base, every
        self.headers = {"Authorization": f"Bearer {token}"}
        self.samples: list[tuple[float, str, float, int]] = []  # (time, name, ms, status)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            for name, path in WEB_PATHS.items():
                t0 = time.perf_counter()
                try:
                    req = urllib.request.Request(self.base + path, headers=self.headers)
                    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our loopback hub
                        r.read()
                        status = r.status
                except OSError as exc:
                    status = getattr(exc, "code", 0) or 0
                self.samples.append((time.time(), name, (time.perf_counter() - t0) * 1000, status))


def hub_memory(base: str, token: str) -> dict[str, float]:
    """The hub's ``cityops_hub_memory_bytes`` (its process's RSS and SQLite's share), MiB."""
    req = urllib.request.Request(base + "metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our loopback hub
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("cityops_hub_memory_bytes{"):
            part = line.split('"')[1]
            out[part] = round(float(line.rsplit(" ", 1)[1]) / 2**20, 2)
    return out


# -- analysis --------------------------------------------------------------------------------------

def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (unix time, MiB) points, in MiB per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 3600


def analyse(samples: list[dict[str, Any]], warm_until: float, max_slope: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("broker", "hub", "fleet"):
        pts = [(s["t"], s["procs"][name]["rss_mib"]) for s in samples if name in s["procs"]]
        after = [p for p in pts if p[0] >= warm_until]
        if not after:
            continue
        slope = slope_per_hour(after)
        cpu = [s["procs"][name] for s in samples if name in s["procs"]]
        wall = cpu[-1]["t"] - cpu[0]["t"] if len(cpu) > 1 else 0
        out[name] = {
            "rss_start_mib": round(pts[0][1], 1), "rss_after_warmup_mib": round(after[0][1], 1),
            "rss_end_mib": round(after[-1][1], 1), "rss_max_mib": round(max(v for _, v in pts), 1),
            "slope_mib_per_h": None if slope is None else round(slope, 2),
            "flat": None if slope is None else abs(slope) <= max_slope,
            "cpu_pct": round(100 * (cpu[-1]["cpu_s"] - cpu[0]["cpu_s"]) / wall, 1) if wall else None,
        }
    return out


def hub_breakdown(samples: list[dict[str, Any]], warm_until: float) -> dict[str, Any]:
    """Where the hub's growth is (reported, not judged): SQLite's allocations — page caches,
    bounded per connection — and the rest of the hub process."""
    parts: dict[str, list[tuple[float, float]]] = {"hub sqlite": [], "hub other": []}
    for smp in samples:
        mem = smp.get("hub_memory_mib") or {}
        if "sqlite" in mem and "rss" in mem:
            parts["hub sqlite"].append((smp["t"], mem["sqlite"]))
            parts["hub other"].append((smp["t"], mem["rss"] - mem["sqlite"]))
    breakdown = {}
    for name, pts in parts.items():
        after = [p for p in pts if p[0] >= warm_until]
        slope = slope_per_hour(after)
        if after and slope is not None:
            breakdown[name] = {"start_mib": round(pts[0][1], 1), "after_warmup_mib": round(after[0][1], 1),
                               "end_mib": round(after[-1][1], 1), "slope_mib_per_h": round(slope, 2)}
    return breakdown


def web_windows(samples: list[tuple[float, str, float, int]], t0: float, window_s: float) -> list[dict[str, Any]]:
    rows = []
    if not samples:
        return rows
    end = samples[-1][0]
    k = 0
    while t0 + k * window_s <= end:
        lo, hi = t0 + k * window_s, t0 + (k + 1) * window_s
        row: dict[str, Any] = {"from_min": round(k * window_s / 60, 1)}
        for name in WEB_PATHS:
            ms = [m for t, n, m, _ in samples if n == name and lo <= t < hi]
            row[name] = {"n": len(ms), "p50": _r(percentile(ms, 50)), "p95": _r(percentile(ms, 95)),
                         "p99": _r(percentile(ms, 99))}
        row["errors"] = sum(1 for t, _, _, st in samples if lo <= t < hi and st != 200)
        rows.append(row)
        k += 1
    return rows


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# -- the run ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    warm_s = args.warmup_minutes * 60 if args.warmup_minutes is not None else max(60.0, seconds * 0.15)
    with PrivateHub(hub=True, receivers=1) as ph:
        from simulators.fleet import provision

        creds = provision(ph.broker.auth, args.agents, "soak")
        ph.broker.reload()
        cred_file = ph.work / "fleet-credentials.yaml"
        cred_file.write_text(yaml.safe_dump(creds))
        token = ph.operator_token("soak")
        fleet = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, __file__, "--fleet-child", "--host", ph.broker.host, "--port", str(ph.broker.port),
             "--credentials", str(cred_file), "--rate", str(args.rate), "--heartbeat", str(args.heartbeat),
             "--ramp", str(args.ramp), "--seconds", str(seconds), "--sample-every", str(args.sample_every)],
            stdout=subprocess.PIPE, text=True)
        fleet_lines: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: [fleet_lines.append(json.loads(x)) for x in fleet.stdout  # type: ignore[union-attr]
                                                  if x.startswith("{")], daemon=True)
        reader.start()
        web = WebReader(ph.web_url or "", token, args.web_every)
        t_start = time.time()
        web.start()
        samples: list[dict[str, Any]] = []
        db = ph.work / "hub.sqlite"
        try:
            while fleet.poll() is None:
                now = time.time()
                procs = {name: {**u, "t": now} for name, u in ph.usage().items()}
                procs["fleet"] = {**process_tree_usage(fleet.pid), "t": now}
                db_mib = sum(p.stat().st_size for p in db.parent.glob("hub.sqlite*")) / 2**20
                hub_mem = hub_memory(ph.web_url or "", token)
                last = fleet_lines[-1]["stats"] if fleet_lines else {}
                samples.append({"t": now, "min": round((now - t_start) / 60, 2), "loadavg": os.getloadavg()[0],
                                "procs": procs, "db_mib": round(db_mib, 1), "hub_memory_mib": hub_mem,
                                "connected": last.get("connected"), "published": last.get("events_published"),
                                "acked": last.get("events_acked")})
                if not args.quiet:
                    p = procs
                    print(f"[soak {samples[-1]['min']:6.1f} min] load {samples[-1]['loadavg']:.2f}  RSS MiB broker "
                          f"{p['broker']['rss_mib']:.1f} hub {p['hub']['rss_mib']:.1f} fleet {p['fleet']['rss_mib']:.1f}"
                          f"  connected {last.get('connected')}  events {last.get('events_published')}/"
                          f"{last.get('events_acked')}  db {db_mib:.0f} MiB", file=sys.stderr, flush=True)
                deadline = time.monotonic() + args.sample_every
                while fleet.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            web.stop_event.set()
            if fleet.poll() is None:
                fleet.terminate()
                fleet.wait(120)
            reader.join(10)
        final = next((x["stats"] for x in reversed(fleet_lines) if x.get("final")), None)
        hub_alive = ph.hub_proc is not None and ph.hub_proc.poll() is None
    mem = analyse(samples, t_start + warm_s, args.max_slope)
    loads = [s["loadavg"] for s in samples]
    web_all = {name: {"n": len(ms), "p50": _r(percentile(ms, 50)), "p95": _r(percentile(ms, 95)),
                      "p99": _r(percentile(ms, 99)), "max": _r(max(ms) if ms else None)}
               for name in WEB_PATHS for ms in [[m for _, n, m, _ in web.samples if n == name]]}
    ack_p99 = [x["stats"]["ack_ms"]["p99"] for x in fleet_lines if not x.get("final") and x["stats"]["ack_ms"]["p99"]]
    return {
        "minutes": args.minutes, "warmup_minutes": round(warm_s / 60, 1), "agents": args.agents,
        "event_rate": args.rate, "heartbeat_s": args.heartbeat, "web_every_s": args.web_every,
        "sample_every_s": args.sample_every, "max_slope_mib_per_h": args.max_slope,
        "loadavg": {"min": round(min(loads), 2), "mean": round(sum(loads) / len(loads), 2),
                    "max": round(max(loads), 2)} if loads else None,
        "memory": mem, "memory_flat": all(v["flat"] for v in mem.values()) if mem else None,
        "hub_breakdown": hub_breakdown(samples, t_start + warm_s),
        "fleet_final": final, "hub_alive_at_end": hub_alive,
        "lost": None if final is None else final["events_published"] - final["events_acked"],
        "ack_p99_ms_per_sample": {"max": max(ack_p99) if ack_p99 else None,
                                  "median": percentile(ack_p99, 50) if ack_p99 else None},
        "db_mib_end": samples[-1]["db_mib"] if samples else None,
        "web": web_all, "web_windows": web_windows(web.samples, t_start, 600.0),
        "web_errors": sum(1 for s in web.samples if s[3] != 200),
        "samples": samples,
    }


def report(r: dict[str, Any]) -> None:
    la = r["loadavg"] or {}
    print(f"soak {r['minutes']:g} min (warm-up {r['warmup_minutes']:g} min): {r['agents']} agents, "
          f"heartbeat {r['heartbeat_s']:g} s, {r['event_rate']:g} events/s, web every {r['web_every_s']:g} s; "
          f"load average min/mean/max {la.get('min')}/{la.get('mean')}/{la.get('max')}")
    print(f"{'process':10}{'RSS start':>11}{'after warm':>12}{'end':>9}{'max':>9}{'MiB/h':>9}{'CPU %':>8}  flat "
          f"(|slope| <= {r['max_slope_mib_per_h']:g})")
    for name, m in r["memory"].items():
        print(f"{name:10}{m['rss_start_mib']:>11}{m['rss_after_warmup_mib']:>12}{m['rss_end_mib']:>9}"
              f"{m['rss_max_mib']:>9}{m['slope_mib_per_h']!s:>9}{m['cpu_pct']!s:>8}  {m['flat']}")
    for name, m in r["hub_breakdown"].items():
        print(f"  {name:12}{m['start_mib']:>7}{m['after_warmup_mib']:>12}{m['end_mib']:>9}"
              f"{'':>9}{m['slope_mib_per_h']!s:>9}   (hub process only, from its /metrics)")
    f = r["fleet_final"] or {}
    print(f"events published {f.get('events_published')}, acked {f.get('events_acked')} (lost {r['lost']}), "
          f"re-sent {f.get('events_resent')}, heartbeats {f.get('heartbeats')}, reconnects {f.get('reconnects')}, "
          f"errors {f.get('errors_total')}; ack p99 per sample: median {r['ack_p99_ms_per_sample']['median']} ms, "
          f"worst {r['ack_p99_ms_per_sample']['max']} ms; hub alive {r['hub_alive_at_end']}; db {r['db_mib_end']} MiB")
    print(f"{'web (ms)':18}{'n':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for name, w in r["web"].items():
        print(f"{name:18}{w['n']:>7}{w['p50']!s:>8}{w['p95']!s:>8}{w['p99']!s:>8}{w['max']!s:>8}")
    print(f"web errors {r['web_errors']}; p95 by 10-minute window (status page): "
          + ", ".join(f"{w['status_page']['p95']}" for w in r["web_windows"]))
    print(f"memory flat: {r['memory_flat']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--warmup-minutes", type=float, default=None,
                   help="samples before this are left out of the slope (default 15%% of the run, at least 1)")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="events/s across the fleet")
    p.add_argument("--heartbeat", type=float, default=10.0)
    p.add_argument("--ramp", type=float, default=20.0)
    p.add_argument("--web-every", type=float, default=1.0, help="seconds between rounds of web requests")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--max-slope", type=float, default=8.0, help="MiB per hour that still counts as flat")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", type=Path)
    # the fleet child
    p.add_argument("--fleet-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--host", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--credentials", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fleet_child:
        return fleet_child(args)
    # A stopped soak (kill, Ctrl-C) stops its broker, hub and fleet too: SystemExit runs
    # the private hub's clean-up; the default SIGTERM would leave them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["memory_flat"] and result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
