"""Notification delivery: N notifications a minute through the hub's outbox to a local
signed-webhook sink; p50/p99 from enqueue (the writer's commit) to the sink verifying it.

Target (issue 19): 1,000 a minute with p99 enqueue → delivered < 5 s.

    ./dev bench notify_delivery [--per-minute 1000] [--seconds 60] [--json out.json]
    ./dev bench notify_delivery --quick      # 10 s, to check it runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from hub.app import Hub
from hub.config import HubConfig, build_setup
from hub.notify.channels.webhook import verify
from hub.notify.model import Message, Recipient

EXAMPLES = Path(__file__).resolve().parents[1] / "hub" / "examples"
SECRET = "bench-secret-0123456789"


async def run(per_minute: int, seconds: float) -> dict:
    received: dict[str, float] = {}
    refused = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal refused
        body = await request.read()
        if not verify(SECRET, request.headers.get("X-Cityops-Timestamp", ""), body,
                      request.headers.get("X-Cityops-Signature", ""), time.time()):
            refused += 1
            return web.Response(status=401)
        received.setdefault(request.headers["X-Cityops-Delivery"], time.monotonic())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "wh.key").write_text(SECRET)
        config = HubConfig.model_validate({
            "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0},
            "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snaps"),
            "web": {"port": 0, "access_log": False}, "grids": str(EXAMPLES / "grids.geojson"),
            "ingest": {"receivers": 0},
            "notify": {"poll_s": 1, "webhooks": {"sink": {
                "url": f"http://127.0.0.1:{port}/hook", "secret_file": str(tmp / "wh.key")}}},
        })
        hub = await Hub(build_setup(config), run_scheduler=False).start()
        outbox = hub.engine.outbox
        assert outbox is not None
        enqueued: dict[str, float] = {}
        total = max(1, int(per_minute * seconds / 60))
        gap = 60.0 / per_minute
        start = time.monotonic()
        try:
            for i in range(total):
                await asyncio.sleep(max(0.0, start + i * gap - time.monotonic()))
                msg = Message(f"bench {i}", f"notification {i}", {"kind": "bench", "i": i})

                def write(repo, i=i, msg=msg):
                    outbox.enqueue(repo, event_key=f"bench/{i}", kind="bench", message=msg,
                                   recipients=[Recipient("webhook", "sink")], now=hub.clock.now())
                    return repo.list_deliveries(after_id=i, limit=1)[0].wire_id

                wire = await hub.write(write)
                enqueued[wire] = time.monotonic()
            deadline = time.monotonic() + 30
            while len(received) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await hub.stop()
            await runner.cleanup()
    lat = sorted(received[k] - t for k, t in enqueued.items() if k in received)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None)  # noqa: E731
    return {"per_minute": per_minute, "seconds": seconds, "enqueued": total,
            "delivered": len(received), "refused": refused,
            "p50_s": p(0.5), "p99_s": p(0.99), "max_s": lat[-1] if lat else None,
            "mean_s": statistics.fmean(lat) if lat else None,
            "target_p99_s": 5.0, "ok": len(received) == total and bool(lat) and p(0.99) < 5.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-minute", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--quick", action="store_true", help="10 s at the same rate")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args.per_minute, 10 if args.quick else args.seconds))
    for k, v in result.items():
        print(f"{k:>14}: {v:.4f}" if isinstance(v, float) else f"{k:>14}: {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
