"""Vital signs: what grading telemetry costs the hub (pure monitor, no I/O).

A district of ``--agents`` agents sends heartbeats with readings; ``--gauges`` of them carry
a watched water-level gauge (each also graded for its rate of rise). The table shows
heartbeats graded per second and the cost per heartbeat, against a same-run baseline
that only walks the readings (what any consumer of telemetry must do).

    python benchmarks/vitals.py [--agents 10000] [--gauges 500] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.config import load_setup
from hub.vitals.config import Gauge, VitalsConfig
from hub.vitals.monitor import VitalsMonitor

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--gauges", type=int, default=500)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    setup = load_setup(ROOT / "hub" / "examples" / "hub.yaml")
    grids = [g.grid_id for g in setup.grids.grids]
    gauges = [Gauge(id=f"g{i}", agent=f"agent-{i}", reading="gauge.level", grid=grids[i % len(grids)])
              for i in range(args.gauges)]
    config = VitalsConfig(gradings=setup.vitals.gradings, gauges=gauges)
    monitor = VitalsMonitor(config, setup.grids)
    rnd = random.Random(7)
    beats = [(f"agent-{i}", {"gauge.level": 0.0, "gauge.temperature": 21.0, "meter.flow": 1.0})
             for i in range(args.agents)]

    def run(grade: bool) -> float:
        start = time.perf_counter()
        n = 0
        for r in range(args.rounds):
            at = T0 + timedelta(minutes=5 * r)
            for agent, readings in beats:
                readings["gauge.level"] = 0.1 * r + rnd.uniform(-0.01, 0.01)
                if grade:
                    monitor.observe_readings(agent, readings, at)
                else:
                    sum(readings.values())
                n += 1
        return n / (time.perf_counter() - start)

    baseline = run(False)
    graded = run(True)
    rows = [("walk readings only (baseline)", baseline), ("grade with VitalsMonitor", graded)]
    print(f"{'':34} {'heartbeats/s':>14} {'µs/heartbeat':>14}")
    for name, rate in rows:
        print(f"{name:34} {rate:14,.0f} {1e6 / rate:14.2f}")
    print(f"ratio graded/baseline: {graded / baseline:.3f}  ({args.agents} agents, {args.gauges} gauges, "
          f"{len(monitor.indicators)} indicators)")
    if args.json:
        args.json.write_text(json.dumps({"agents": args.agents, "gauges": args.gauges,
                                         "baseline_per_s": baseline, "graded_per_s": graded,
                                         "indicators": len(monitor.indicators)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
