"""``cityops-hub``: run and administer the hub.

::

    cityops-hub serve --config hub.yaml                  run broker (if managed), ingest, web
    cityops-hub check-config hub.yaml                    validate config, grids, routing (exit 0/1)
    cityops-hub enroll --config hub.yaml --agent-id ID [--grid G] [--ttl 1h]
                                                         print a single-use enrollment token
    cityops-hub scores --config hub.yaml --month 2026-07 [--by grid|department] [--csv]
    cityops-hub broker write-config --config hub.yaml    write mosquitto.conf, passwd, acl

Expected errors print one line (``cityops-hub: error: ...``) and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from protocol.cliutil import run_main
from protocol.clock import SystemClock
from protocol.errors import CityopsError
from protocol.logsetup import configure_logging

from .config import load_setup

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityops-hub", description="the cityops hub")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the hub")
    s.add_argument("--config", required=True, type=Path)

    c = sub.add_parser("check-config", help="validate a hub config and the files it names")
    c.add_argument("config", type=Path)

    e = sub.add_parser("enroll", help="issue a single-use enrollment token for an agent")
    e.add_argument("--config", required=True, type=Path)
    e.add_argument("--agent-id", required=True)
    e.add_argument("--grid", default=None)
    e.add_argument("--ttl", default=None, help="e.g. 30m, 1h, 2d (default from the config)")

    sc = sub.add_parser("scores", help="monthly grid evaluation")
    sc.add_argument("--config", required=True, type=Path)
    sc.add_argument("--month", required=True, help="YYYY-MM, district local time")
    sc.add_argument("--by", default="grid", choices=["grid", "department"])
    sc.add_argument("--csv", action="store_true", help="CSV instead of a table")

    b = sub.add_parser("broker", help="broker files for a Mosquitto run by systemd")
    bsub = b.add_subparsers(dest="broker_command", required=True)
    w = bsub.add_parser("write-config", help="write mosquitto.conf, passwd and acl")
    w.add_argument("--config", required=True, type=Path)
    return p


def _serve(args: argparse.Namespace) -> int:
    from .app import Hub

    setup = load_setup(args.config)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Hub(setup) as hub:
            print(f"cityops-hub: serving {hub.web_url} (broker {hub.broker_host}:{hub.broker_port})",
                  flush=True)
            await stop.wait()

    asyncio.run(run())
    return 0


def _check(args: argparse.Namespace) -> int:
    setup = load_setup(args.config)
    print(f"{args.config}: ok ({len(setup.grids)} grids, {len(setup.routing.routes)} routes, "
          f"{len(setup.config.screening.rules)} screening overrides)")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from .enroll import issue_token, parse_ttl
    from .store.sqlite import SqliteRepository

    setup = load_setup(args.config)
    if args.grid is not None and args.grid not in setup.grids:
        raise CityopsError(f"unknown grid {args.grid!r}; see {setup.config.grids}")
    ttl = parse_ttl(args.ttl) if args.ttl else parse_ttl(str(setup.config.enrollment.default_ttl_s))
    # A short second writer: it only inserts one token row (BEGIN IMMEDIATE waits for the hub).
    repo = SqliteRepository(setup.config.database, writer=True, take_lock=False)
    try:
        now = SystemClock().now()
        with repo.transaction():
            token = issue_token(repo, args.agent_id, args.grid, ttl, now)
    finally:
        repo.close()
    print(token)
    print(f"cityops-hub: token for {args.agent_id} expires {(now + ttl):%Y-%m-%d %H:%M} UTC; "
          f"on the agent: cityops-agent provision --hub URL --token TOKEN --out DIR",
          file=sys.stderr)
    return 0


def _scores(args: argparse.Namespace) -> int:
    from .scores import month_bounds, score_cases, to_csv
    from .store.sqlite import SqliteRepository

    setup = load_setup(args.config)
    try:
        start, end = month_bounds(args.month, setup.zone)
    except ValueError as exc:
        raise CityopsError(str(exc)) from None
    repo = SqliteRepository(setup.config.database, writer=False)
    try:
        scores = score_cases(args.month, repo.cases_accepted_between(start, end),
                             datetime.now(start.tzinfo), by=args.by)
    finally:
        repo.close()
    if args.csv:
        sys.stdout.write(to_csv(scores))
        return 0
    cols = ["key", "cases", "closed", "closure_rate", "on_time_rate", "auto_closure_share",
            "reopen_rate", "mean_hours_to_close", "p90_hours_to_close", "satisfaction"]
    print("  ".join(f"{c:>12}" for c in cols))
    for s in scores:
        row = asdict(s)
        print("  ".join(f"{'-' if row[c] is None else row[c]!s:>12}" for c in cols))
    return 0


def _broker_files(args: argparse.Namespace) -> int:
    from .broker import BrokerSettings, MosquittoBroker

    setup = load_setup(args.config)
    b = setup.config.broker
    if not b.password:
        raise CityopsError("set CITYOPS_HUB_BROKER_PASSWORD: the hub's broker password goes "
                           "into the password file")
    settings = BrokerSettings(data_dir=b.data_dir, host=b.host, port=b.port or 1883,
                              hub_user=b.username, hub_password=b.password)
    path = MosquittoBroker(settings, binary="mosquitto").write_files()
    print(json.dumps({"config": str(path), "passwd": str(settings.password_path),
                      "acl": str(settings.acl_path)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    handlers = {"serve": _serve, "check-config": _check, "enroll": _enroll, "scores": _scores,
                "broker": _broker_files}
    return run_main(lambda: handlers[args.command](args), "cityops-hub")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
