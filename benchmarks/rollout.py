"""A model rollout to a fleet of virtual agents through the real hub, and what it costs
ingest while it runs (issue 22: 1,000 agents in under 10 minutes without slowing ingest).

One private Mosquitto and ``cityops-hub serve`` (a child process); ``--agents`` virtual
agents (simulators/fleet.py) connect and publish ``--rate`` events/s across the fleet
(water no-use lifecycles: each one stored, merged into a case and acked by the hub) for
the whole run. The fleet's agents follow model releases on the wire as real agents do
(simulators/fleetrelease.py: pull in windows of four chunks, re-ask, check every chunk,
the package's SHA-256 and contents, report).

Three windows of ingest, measured the same way (events acked per second, publish → hub
ack p50/p99): **before** (``--window`` seconds, no rollout), **during** the rollout, and
**after** it (``--window`` seconds again): before and after give the noise of this
machine, during is compared with them. The rollout is what an operator runs:
``cityops-hub release add --name detector vision/models/real`` then ``cityops-hub release
rollout RELEASE --canary`` (the first ``--canary`` agents) ``--agents all
--canary-minutes`` ``--canary-minutes``; reported: the canary active, promotion, and
every agent active, each in seconds from the rollout command.

    ./dev bench rollout --agents 1000 --json benchmarks/results/rollout-1000.json
    ./dev bench rollout --agents 50 --window 10 --canary-minutes 0.2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.fleet import Fleet, FleetOptions, provision  # noqa: E402
from simulators.privatehub import PrivateHub  # noqa: E402
from simulators.scoring import percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "vision" / "models" / "real"


def hub_cli(ph: PrivateHub, *args: str) -> str:
    env = {**os.environ, "CITYOPS_HUB_BROKER_PASSWORD": ph.broker.settings.hub_password}
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cityops-hub {' '.join(args[:2])} failed: {done.stderr.strip()[-800:]}")
    return done.stdout.strip()


class Window:
    """Ingest seen by the fleet between two moments: events acked and their ack latency."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.t0 = time.monotonic()
        first = fleet.stats()
        self.acked0, self.published0 = first["events_acked"], first["events_published"]
        self.marks = [len(w.stats.ack_s) for w in fleet.workers]

    def close(self) -> dict[str, Any]:
        took = time.monotonic() - self.t0
        now = self.fleet.stats()
        acked, published = now["events_acked"] - self.acked0, now["events_published"] - self.published0
        lat = [x for w, m in zip(self.fleet.workers, self.marks, strict=True) for x in w.stats.ack_s[m:]]

        def ms(q: float) -> float | None:
            v = percentile(lat, q)
            return None if v is None else round(v * 1000, 1)

        # published: what the fleet offered (its own loop also serves the download); acked: what the
        # hub confirmed; a hub that kept up acks about what was published
        return {"seconds": round(took, 1), "events_published": published, "events_acked": acked,
                "published_per_s": round(published / took, 1), "acked_per_s": round(acked / took, 1),
                "ack_ms": {"p50": ms(50), "p99": ms(99), "n": len(lat)}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with PrivateHub(receivers=1) as ph:
        creds = provision(ph.broker.auth, args.agents, "fleet")
        ph.broker.reload()
        config = str(ph.work / "hub.yaml")
        fleet = Fleet(FleetOptions(ph.broker.host, ph.broker.port, creds, event_rate=args.rate,
                                   heartbeat_s=args.heartbeat, ramp_s=args.ramp, loops=args.loops)).start()
        try:
            deadline = time.monotonic() + args.ramp + 120
            while fleet.stats()["connected"] < args.agents:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {fleet.stats()['connected']} of {args.agents} agents connected")
                time.sleep(0.5)
            time.sleep(5)  # the ramp's backlog acked before measuring
            before = Window(fleet)
            time.sleep(args.window)
            result: dict[str, Any] = {"before": before.close()}

            release_id = hub_cli(ph, "release", "add", "--config", config, "--name", "detector",
                                 str(MODEL_DIR)).splitlines()[0]
            canary = sorted(creds)[:args.canary]
            during = Window(fleet)
            t0 = time.monotonic()
            hub_cli(ph, "release", "rollout", "--config", config, release_id, "--canary", ",".join(canary),
                    "--agents", "all", "--canary-minutes", str(args.canary_minutes))
            marks: dict[str, float] = {}
            limit = t0 + args.timeout
            while True:
                activated = fleet.stats()["releases"]["activated"]
                now = time.monotonic() - t0
                if activated >= len(canary):
                    marks.setdefault("canary_active_s", round(now, 1))
                if activated > len(canary):
                    marks.setdefault("promoted_s", round(now, 1))  # the first agent beyond the canary
                if activated >= args.agents:
                    marks["all_active_s"] = round(now, 1)
                    break
                if time.monotonic() > limit:
                    marks["all_active_s"] = None
                    break
                time.sleep(0.25)
            result["during"] = during.close()
            after = Window(fleet)
            time.sleep(args.window)
            result["after"] = after.close()
            listing = json.loads(hub_cli(ph, "release", "list", "--config", config, "--json"))
            stats = fleet.stats()
        finally:
            fleet.stop()
        usage = ph.usage()
    release = next(r for r in listing["releases"] if r["release_id"] == release_id)
    rollout = listing["rollouts"][-1]
    noise = [result["before"]["acked_per_s"], result["after"]["acked_per_s"]]
    return {
        "agents": args.agents, "rate": args.rate, "canary": args.canary, "canary_minutes": args.canary_minutes,
        "release": {"release_id": release_id, "bytes": release["bytes"], "chunks": release["chunks"]},
        "rollout": {**marks, "stage": rollout["stage"], "within_10_min": marks.get("all_active_s") is not None
                    and marks["all_active_s"] < 600},
        "fleet_releases": stats["releases"],
        "ingest": result,
        "ingest_during_vs_outside": round(result["during"]["acked_per_s"] / max(1e-9, sum(noise) / 2), 3),
        "acked_of_published": {k: round(v["events_acked"] / max(1, v["events_published"]), 3) for k, v in result.items()},
        "processes": {k: {"cpu_s": round(v["cpu_s"], 1), "rss_mib": round(v["rss_mib"], 1)} for k, v in usage.items()},
        "errors": stats["errors"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0, help="events/s across the fleet, all run long")
    p.add_argument("--heartbeat", type=float, default=60.0)
    p.add_argument("--ramp", type=float, default=20.0)
    p.add_argument("--loops", type=int, default=2)
    p.add_argument("--window", type=float, default=60.0, help="seconds of ingest measured before and after")
    p.add_argument("--canary", type=int, default=10)
    p.add_argument("--canary-minutes", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=900.0, help="give up on the rollout after this many seconds")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    out = run(args)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if out["rollout"]["within_10_min"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
