"""Where an event's CPU goes in the hub, stage by stage, in one process (no broker).

    ./dev bench hub_costs [--events 40000] [--json PATH]

The same workload as ``hub_ingest`` (``_hubbench.workload``: per agent, lifecycles of
new → 2 updates → end; even agents cameras merged by hotspot, odd agents water meters),
as replay messages of 200 events and as single-event messages. Per event, best of
``--repeat`` runs:

* **decode**: the receiver's work — codec validation (pydantic) and the plain record the
  writer stores (``hub.ingest.decode.classify``); baseline in the same run: ``json.loads``
  of the same payloads, parsing without validating;
* **hand-over**: pickling the decoded batch in the receiver and unpickling it in the hub
  (the pipe between them);
* **engine**: the writer — dedupe, store, lifecycle and case placement, screening and
  dispatch of new cases, acks — in transactions of about 5,000 events on a file database
  with ``synchronous=FULL`` (``hub.engine.intake.Ingestor.apply``); baseline in the same
  run: the bare insert of the same message rows into a table with the same key.

The sum is the CPU one event costs the hub besides the network (paho, broker, publisher);
on N cores that bounds sustained ingest at N × 1e6 / sum events/s even before MQTT.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hubbench import build, messages, workload  # noqa: E402

from hub.engine.core import CaseEngine  # noqa: E402
from hub.engine.intake import Ingestor  # noqa: E402
from hub.ingest.decode import classify  # noqa: E402
from hub.store.files import SnapshotFiles  # noqa: E402
from hub.store.sqlite import SqliteRepository  # noqa: E402
from protocol.clock import SystemClock  # noqa: E402


class _NoBroker:
    """``build`` reads only where the broker would be; nothing connects here."""

    host, port = "127.0.0.1", 1
    settings = type("Settings", (), {"hub_password": "unused"})()


def best_us(fn: Callable[[], Any], events: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1e6 / events, 2)


def engine_us(msgs: list[tuple[str, bytes, int]], events: int, repeat: int) -> float:
    """Each run on a fresh database (a second run would only find duplicates)."""
    items = [classify(t, p) for t, p, _ in msgs]
    step = max(1, 5000 // max(1, events // len(msgs)))
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cityops-costs-") as tmp:
            setup = build(Path(tmp), _NoBroker())
            repo = SqliteRepository(Path(tmp) / "hub.sqlite", synchronous="FULL")
            ingestor = Ingestor(CaseEngine(setup, SystemClock()), SnapshotFiles(Path(tmp) / "snaps"))
            t0 = time.perf_counter()
            for i in range(0, len(items), step):
                with repo.transaction():
                    result = ingestor.apply(repo, items[i:i + step])
                ingestor.installed(result)
            best = min(best, time.perf_counter() - t0)
            repo.close()
    return round(best * 1e6 / events, 2)


def bare_insert_us(msgs: list[tuple[str, bytes, int]], events: int, repeat: int) -> float:
    rows = []
    for t, p, _ in msgs:
        item = classify(t, p)
        rows += [(r.agent_id, r.seq, r.event_id, r.kind, r.observed_at, r.observed_at, r.body)
                 for r in item.records]
    step = 5000
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cityops-costs-") as tmp:
            conn = sqlite3.connect(Path(tmp) / "bare.sqlite", isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE messages (agent_id TEXT, seq INTEGER, event_id TEXT, kind TEXT,"
                         " observed_at TEXT, received_at TEXT, body TEXT, PRIMARY KEY (agent_id, seq))")
            t0 = time.perf_counter()
            for i in range(0, len(rows), step):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", rows[i:i + step])
                conn.execute("COMMIT")
            best = min(best, time.perf_counter() - t0)
            conn.close()
    return round(best * 1e6 / events, 2)


def measure(shape: str, per_message: int, n_events: int, agents: int, repeat: int) -> dict[str, Any]:
    msgs = messages(workload(n_events, agents), per_message)
    events = sum(c for _, _, c in msgs)
    [classify(t, p) for t, p, _ in msgs[:50]]  # warm: taxonomy, validators
    decode = best_us(lambda: [classify(t, p) for t, p, _ in msgs], events, repeat)
    parse = best_us(lambda: [json.loads(p) for _, p, _ in msgs], events, repeat)
    items = [classify(t, p) for t, p, _ in msgs]
    chunks = [items[i:i + 50] for i in range(0, len(items), 50)]
    handover = best_us(lambda: [pickle.loads(pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL))
                                for c in chunks], events, repeat)
    engine = engine_us(msgs, events, repeat)
    bare = bare_insert_us(msgs, events, repeat)
    total = decode + handover + engine
    return {
        "shape": shape, "events": events, "messages": len(msgs),
        "decode_us": decode, "baseline_json_loads_us": parse,
        "handover_us": handover, "engine_us": engine, "baseline_bare_insert_us": bare,
        "total_us": round(total, 2),
        "ceiling_events_per_s": {"1_core": round(1e6 / total), "2_cores": round(2e6 / total)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = [measure("replay (200 events a message)", 200, args.events, args.agents, args.repeat),
            measure("single event a message", 1, args.events // 2, args.agents, args.repeat)]
    print(f"{'µs per event':32}{'decode':>8}{'(json)':>8}{'hand-over':>11}{'engine':>8}{'(bare)':>8}"
          f"{'sum':>8}{'2-core ceiling':>16}")
    for r in rows:
        print(f"{r['shape']:32}{r['decode_us']:>8}{r['baseline_json_loads_us']:>8}{r['handover_us']:>11}"
              f"{r['engine_us']:>8}{r['baseline_bare_insert_us']:>8}{r['total_us']:>8}"
              f"{r['ceiling_events_per_s']['2_cores']:>13,}/s")
    print("(json): json.loads of the same payloads; (bare): the message rows inserted alone; the ceiling "
          "leaves out paho, the broker and the publisher")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "machine": f"{platform.machine()}, "
                                         f"{platform.python_version()}"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
