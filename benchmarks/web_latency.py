"""Status page and list API latency with a district-sized store.

The store is filled directly (fast, no ingest): ``--agents`` agents (90 % online, some
stale or offline, outbox depths, a few devices down) and ``--cases`` cases over 65 grids
(a 13 × 5 grid of polygons), about 5 % of them open in every working state, the rest
closed, rejected or merged, spread over the last 60 days. Then the hub starts (managed
broker, web) and one signed-in operator client asks each page or API ``--n`` times in a
row (after a warm-up), measuring wall time per request: p50 / p95 / p99. ``GET /healthz``
is the same-run baseline (an answer with no database work).

    ./dev bench web_latency --json benchmarks/results/web_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from hub.app import Hub  # noqa: E402
from hub.auth.passwords import hash_password  # noqa: E402
from hub.config import HubConfig, build_setup  # noqa: E402
from hub.store.sqlite import SqliteRepository  # noqa: E402
from protocol.taxonomy import taxonomy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark-password"
OPEN = ["accepted", "dispatched", "in_progress", "escalated", "resolved", "reopened"]


def grids_file(path: Path, cols: int = 13, rows: int = 5) -> None:
    features = []
    for r in range(rows):
        for c in range(cols):
            x, y = 121.30 + c * 0.01, 31.15 + r * 0.01
            ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
            n = r * cols + c + 1
            features.append({"type": "Feature", "properties": {
                "grid_id": f"g-{n:02d}", "name": f"grid {n}", "town": f"Town{r + 1}",
                "district": "Songjiang"}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def fill(db: Path, agents: int, cases: int, now: datetime) -> None:
    SqliteRepository(db).close()  # schema
    rng = random.Random(7)
    subs = [s for s in taxonomy().subcategories() if not s.retired]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")

    def t(d: datetime) -> str:
        return d.isoformat(timespec="microseconds")

    rows = []
    for i in range(agents):
        roll = rng.random()
        state = "online" if roll < 0.9 else "offline"
        seen = now - timedelta(seconds=rng.randint(1, 120) if roll < 0.87 else rng.randint(400, 90000))
        devices = json.dumps({f"meter-{k}": ("down" if rng.random() < 0.01 else "up") for k in range(4)})
        rows.append((f"agent-{i:05d}", state, t(seen), rng.choice([0, 0, 0, 3, 40]), devices,
                     f"g-{rng.randint(1, 65):02d}", rng.randint(1, 5000)))
    conn.executemany("INSERT INTO agents (agent_id, state, last_seen, outbox_depth, devices, grid_id,"
                     " seq_upto) VALUES (?,?,?,?,?,?,?)", rows)
    rows = []
    for i in range(cases):
        sub = rng.choice(subs)
        created = now - timedelta(minutes=rng.randint(1, 60 * 24 * 60))
        roll = rng.random()
        if roll < 0.05:
            state = rng.choice(OPEN)
        else:
            state = rng.choices(["closed", "rejected", "merged"], [85, 12, 3])[0]
        g = rng.randint(1, 65)
        lat, lon = 31.155 + (g - 1) // 13 * 0.01, 121.305 + (g - 1) % 13 * 0.01
        deadline = created + timedelta(minutes=sub.deadline_min)
        closed = created + timedelta(minutes=rng.randint(10, 600)) if state == "closed" else None
        key = f"bench:{i}" if state in OPEN else f"bench-closed:{i}"
        rows.append((state, sub.category, sub.code, key, lat, lon, f"g-{g:02d}", f"Town{(g - 1) // 13 + 1}",
                     "Songjiang", f"Road {rng.randint(1, 400)}", sub.department,
                     f"agent-{rng.randint(0, agents - 1):05d}", "cam-1", f"e{i}", sub.close.value,
                     t(created), t(closed or created), t(created), t(created), t(created),
                     t(deadline), t(closed) if closed else None, rng.randint(0, 1) if state in OPEN else 0,
                     "[]"))
    conn.executemany(
        "INSERT INTO cases (state, category, subcategory, group_key, lat, lon, grid_id, town, district,"
        " place, department, origin_agent, origin_source, origin_event, close_mode, created_at,"
        " updated_at, first_event_at, last_event_at, accepted_at, deadline_at, closed_at,"
        " escalation_level, screen_reasons) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows)
    conn.execute("INSERT INTO users (username, role, display_name, password_hash, created_at)"
                 " VALUES ('bench', 'operator', 'Bench', ?, ?)", (hash_password(PASSWORD), t(now)))
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def measure(session: aiohttp.ClientSession, url: str, n: int, warm: int = 10) -> list[float]:
    for _ in range(warm):
        async with session.get(url) as r:
            await r.read()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
            assert r.status == 200, (url, r.status)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1)]


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="cityops-web-bench-"))
    grids_file(tmp / "grids.geojson")
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    fill(tmp / "hub.sqlite", args.agents, args.cases, now)
    fill_s = time.perf_counter() - t0
    cfg = HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0},
        "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snaps"),
        "web": {"port": 0, "access_log": False}, "grids": str(tmp / "grids.geojson"),
        "ingest": {"receivers": 0}})
    hub = Hub(build_setup(cfg), run_scheduler=False)
    await hub.start()
    results = {}
    try:
        base = hub.web_url.rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(base + "/login") as r:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
            async with s.post(base + "/login", data={"username": "bench", "password": PASSWORD,
                                                     "csrf_token": token}) as r:
                assert r.status == 200, r.status
            targets = {
                "GET /healthz (baseline)": "/healthz",
                "GET / (status page)": "/",
                "GET /?wall=1": "/?wall=1",
                "GET /api/v1/overview": "/api/v1/overview",
                "GET /api/v1/cases": "/api/v1/cases",
                "GET /api/v1/cases?open=1": "/api/v1/cases?open=1",
                "GET /api/v1/cases?grid=g-07&open=1": "/api/v1/cases?grid=g-07&open=1",
                "GET /api/v1/cases?q=Road 12": "/api/v1/cases?q=Road%2012",
                "GET /cases?open=1 (page)": "/cases?open=1",
                "GET /api/v1/agents?limit=100": "/api/v1/agents?limit=100",
                "GET /api/v1/agents?state=stale": "/api/v1/agents?state=stale&limit=100",
            }
            for name, path in targets.items():
                ms = await measure(s, base + path, args.n)
                results[name] = {"p50_ms": round(statistics.median(ms), 1),
                                 "p95_ms": round(pct(ms, 95), 1), "p99_ms": round(pct(ms, 99), 1),
                                 "n": len(ms)}
    finally:
        await hub.stop()
    return {"agents": args.agents, "cases": args.cases, "fill_s": round(fill_s, 1), "results": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--n", type=int, default=200, help="requests per target")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    out = asyncio.run(run(args))
    base = out["results"]["GET /healthz (baseline)"]["p95_ms"]
    print(f"{out['agents']} agents, {out['cases']} cases (store filled in {out['fill_s']} s); "
          f"{args.n} sequential requests each")
    print(f"{'request':<38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p95/baseline':>13}")
    for name, r in out["results"].items():
        print(f"{name:<38} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} "
              f"{r['p95_ms'] / base if base else 0:>13.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
