"""``cityops-hub``: run and administer the hub.

::

    cityops-hub serve --config hub.yaml                  run broker (if managed), ingest, web
    cityops-hub check-config hub.yaml                    validate config, grids, routing (exit 0/1)
    cityops-hub enroll --config hub.yaml --agent-id ID [--grid G] [--ttl 1h]
                                                         print a single-use enrollment token
    cityops-hub scores --config hub.yaml --month 2026-07 [--by grid|department] [--csv]
    cityops-hub broker write-config --config hub.yaml    write mosquitto.conf, passwd(.hub), acl(.hub)
    cityops-hub user add --config hub.yaml USER --role operator [--department D] [--name N]
                     [--level town|district|city --scope NAME[,NAME...]]
    cityops-hub user scope --config hub.yaml USER --level town --scope Xinqiao  (or --level none)
    cityops-hub user passwd|disable|enable --config hub.yaml USER
    cityops-hub user list --config hub.yaml
    cityops-hub token create --config hub.yaml --role handler --department D [--name N]
                     [--level town|district|city --scope NAME[,NAME...]]
    cityops-hub token list|revoke --config hub.yaml [ID]
    cityops-hub backup --config hub.yaml --to /backups [--json]
                                                         online copy of the store and snapshots
    cityops-hub release add --config hub.yaml --name detector PATH [--notes T] [--gate FILE.json] [--kind agent]
    cityops-hub release list --config hub.yaml [--json]
    cityops-hub release rollout --config hub.yaml RELEASE_ID --canary a1,a2 [--agents all|a,b,c]
                     [--canary-minutes N]
    cityops-hub release rollback --config hub.yaml ROLLOUT_ID [--reason TEXT]
    cityops-hub dataset export OUT_DIR --config hub.yaml [--since DATE] [--camera ID]
                                                         labelled examples: manifest.json + images
    cityops-hub dataset stats --config hub.yaml [--json] examples per camera, model, verdict
    cityops-hub dataset retrain --config hub.yaml --base MODEL_DIR [--camera ID] [--since DATE]
                     [--real DIR] [--epochs N] [--max-minutes N]   verdicts -> gated candidate -> release

Passwords are read from the terminal (twice), or from standard input with
``--password-stdin``. Tokens are printed once; only their hashes are stored.

Expected errors print one line (``cityops-hub: error: ...``) and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from protocol.cliutil import run_main
from protocol.clock import SystemClock
from protocol.errors import CityopsError
from protocol.logsetup import configure_logging

from .auth.roles import TOKEN_ROLES, USER_ROLES
from .config import load_setup
from .dataset.cli import add_dataset_parser, run_dataset
from .linkage import linkage_token_problem, partner_systems

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

    u = sub.add_parser("user", help="web accounts: add, scope, passwd, list, disable, enable")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add a user (asks for the password)")
    ua.add_argument("--config", required=True, type=Path)
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=[r.value for r in USER_ROLES])
    ua.add_argument("--department", default=None, help="handlers: their department")
    ua.add_argument("--name", default="", help="display name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _level_args(ua)
    us = usub.add_parser("scope", help="set a user's command level and scope (town, district, city)")
    us.add_argument("--config", required=True, type=Path)
    us.add_argument("username")
    _level_args(us, required=True)
    up = usub.add_parser("passwd", help="set a user's password (ends their sessions)")
    up.add_argument("--config", required=True, type=Path)
    up.add_argument("username")
    up.add_argument("--password-stdin", action="store_true")
    for name, text in (("disable", "disable a user (ends their sessions)"), ("enable", "enable a user")):
        ud = usub.add_parser(name, help=text)
        ud.add_argument("--config", required=True, type=Path)
        ud.add_argument("username")
    ul = usub.add_parser("list", help="list users")
    ul.add_argument("--config", required=True, type=Path)

    t = sub.add_parser("token", help="API tokens for departments, Open311 partners, monitoring")
    tsub = t.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="create a token (printed once)")
    tc.add_argument("--config", required=True, type=Path)
    tc.add_argument("--role", required=True, choices=[r.value for r in TOKEN_ROLES])
    tc.add_argument("--department", default=None, help="handler tokens: the department")
    tc.add_argument("--name", default=None, help="who uses it (default: role-department)")
    _level_args(tc)
    tl = tsub.add_parser("list", help="list tokens (never their values)")
    tl.add_argument("--config", required=True, type=Path)
    tr = tsub.add_parser("revoke", help="revoke a token by id")
    tr.add_argument("--config", required=True, type=Path)
    tr.add_argument("token_id", type=int)

    bk = sub.add_parser("backup", help="online backup of the store and snapshot files (hub may run)")
    bk.add_argument("--config", required=True, type=Path)
    bk.add_argument("--to", required=True, type=Path, help="backup folder (one sub-folder per backup)")
    bk.add_argument("--json", action="store_true", help="print the manifest as JSON")

    _release_args(sub)

    b = sub.add_parser("broker", help="broker files for a Mosquitto run by systemd")
    bsub = b.add_subparsers(dest="broker_command", required=True)
    w = bsub.add_parser("write-config", help="write mosquitto.conf (a listener for the hub at "
                        "broker.hub_host:hub_port, one for agents at broker.host:port), "
                        "passwd(.hub) and acl(.hub)")
    w.add_argument("--config", required=True, type=Path)
    add_dataset_parser(sub)  # cityops-hub dataset export|stats (hub/dataset/cli.py)
    return p


def _release_args(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action
    r = sub.add_parser("release", help="model releases and staged rollouts (docs/hub.md, Model releases)")
    rsub = r.add_subparsers(dest="release_command", required=True)
    ra = rsub.add_parser("add", help="check a model folder or .zip package and store it as the next version")
    ra.add_argument("--config", required=True, type=Path)
    ra.add_argument("--name", required=True, help="the model's family, e.g. detector")
    ra.add_argument("path", type=Path, help="a model folder (like vision/models/real) or a .zip package")
    ra.add_argument("--notes", default="", help="what changed")
    ra.add_argument("--gate", type=Path, default=None, help="a JSON file of a retrain gate's figures")
    ra.add_argument("--kind", choices=["model", "agent"], default="model",
                    help="model (default): a detector package; agent: a wheel of the agent software")
    rl = rsub.add_parser("list", help="releases and rollouts")
    rl.add_argument("--config", required=True, type=Path)
    rl.add_argument("--json", action="store_true")
    ro = rsub.add_parser("rollout", help="start a rollout: the canary agents first, then all in scope")
    ro.add_argument("--config", required=True, type=Path)
    ro.add_argument("release_id")
    ro.add_argument("--canary", required=True, help="canary agent ids, comma-separated")
    ro.add_argument("--agents", default="all", help="all (default) or agent ids, comma-separated")
    ro.add_argument("--canary-minutes", type=float, default=None,
                    help="how long the canary runs before promotion (default releases.canary_minutes)")
    rb = rsub.add_parser("rollback", help="give every agent in a rollout's scope its previous release")
    rb.add_argument("--config", required=True, type=Path)
    rb.add_argument("rollout_id", help="e.g. rollout-3 (or 3)")
    rb.add_argument("--reason", default="", help="kept with the rollout's history")


def _level_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--level", required=required,
                   choices=["town", "district", "city"] + (["none"] if required else []),
                   help="command level of an operator or dispatcher (docs/web.md, Supervision)")
    p.add_argument("--scope", action="append", default=[],
                   help="the grids it covers: town or district names or grid ids (repeat, or "
                        "comma-separated); town and district accounts need one")


def _scope_names(args: argparse.Namespace) -> list[str]:
    return [n.strip() for part in args.scope for n in part.split(",") if n.strip()]


STOP_GRACE_S = 20.0  # after SIGTERM/SIGINT: a clean stop takes longer than this only when stuck


def _serve(args: argparse.Namespace) -> int:
    from .app import Hub

    setup = load_setup(args.config)
    hub = Hub(setup)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():  # a second signal: the operator will not wait
                _hard_exit(hub, f"a second {sig.name}")
            stop.set()
            # A clean stop waits for the writer and the receivers; should one of them hang,
            # SIGTERM must still end the hub and its broker.
            timer = threading.Timer(STOP_GRACE_S, _hard_exit,
                                    (hub, f"no clean stop within {STOP_GRACE_S:.0f}s of {sig.name}"))
            timer.daemon = True
            timer.start()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        async with hub:
            describe = getattr(hub.verifier, "describe", None)
            verification = describe() if describe else "none: after-photos go to an operator"
            print(f"cityops-hub: serving {hub.web_url} (broker {hub.broker_host}:{hub.broker_port}; "
                  f"photo verification: {verification})", flush=True)
            await stop.wait()

    asyncio.run(run())
    return 0


def _hard_exit(hub, why: str) -> None:  # noqa: ANN001 - hub.app.Hub, imported lazily
    """Stop the managed broker and end the process now (exit status 1)."""
    logging.getLogger("hub.cli").error("%s: stopping the broker and exiting without a clean stop "
                                       "(events not yet stored stay in the agents' outboxes)", why)
    broker = hub.broker
    try:
        if broker is not None:
            broker.terminate_now()
    finally:
        os._exit(1)


def _check(args: argparse.Namespace) -> int:
    setup = load_setup(args.config)
    print(f"{args.config}: ok ({len(setup.grids)} grids, {len(setup.routing.routes)} routes, "
          f"{len(setup.config.screening.rules)} screening overrides, {len(setup.plans)} plans, "
          f"{len(setup.vitals.gauges)} vital-sign gauges)")
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
            token = issue_token(repo, args.agent_id, args.grid, ttl, now,
                                hub_user=setup.config.broker.username,
                                hub_client_prefix=setup.config.ingest.client_id)
    finally:
        repo.close()
    print(token)
    print(f"cityops-hub: token for {args.agent_id} expires {(now + ttl):%Y-%m-%d %H:%M} UTC; "
          f"on the agent: cityops-agent provision --hub https://HUB --token TOKEN --out DIR [--ca-file HUB-CA.pem]",
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
    if not b.hub_port:
        raise CityopsError(
            "set broker.hub_port in hub.yaml (e.g. 1884; broker.hub_host defaults to 127.0.0.1): "
            "write-config gives the hub a listener of its own there, where agents cannot log in "
            "nor take the hub's client ids, and the hub connects there")
    settings = BrokerSettings(data_dir=b.data_dir, host=b.host, port=b.port or 1883,
                              hub_user=b.username, hub_password=b.password,
                              internal_port=b.hub_port, internal_host=b.hub_host)
    path = MosquittoBroker(settings, binary="mosquitto").write_files()
    print(json.dumps({"config": str(path), "passwd": str(settings.password_path),
                      "acl": str(settings.acl_path), "passwd_hub": str(settings.hub_password_path),
                      "acl_hub": str(settings.hub_acl_path),
                      "agents_listener": f"{settings.host}:{settings.port}",
                      "hub_listener": f"{settings.internal_host}:{settings.internal_port}"}))
    return 0


@contextmanager
def _short_writer(args: argparse.Namespace):
    """A second, short writer (like ``enroll``): BEGIN IMMEDIATE waits for the hub."""
    from .store.sqlite import SqliteRepository

    setup = load_setup(args.config)
    repo = SqliteRepository(setup.config.database, writer=True, take_lock=False)
    try:
        yield setup, repo
    finally:
        repo.close()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CityopsError("the two passwords differ; nothing changed")
    return first


def _departments(setup) -> set[str]:
    return set(setup.taxonomy.departments) | set(setup.routing.departments)


def _user(args: argparse.Namespace) -> int:
    from .auth import accounts

    now = SystemClock().now()
    cmd = args.user_command
    password = _read_password(args) if cmd in ("add", "passwd") else ""
    with _short_writer(args) as (setup, repo):
        if cmd == "list":
            for u in repo.list_users():
                state = "disabled" if u.disabled else "active"
                last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
                scope = f"{u.level}:{','.join(u.scope or []) or '*'}" if u.level else "-"
                print(f"{u.username:<20} {u.role:<10} {u.department or '-':<18} {scope:<24} "
                      f"{state:<8} last sign-in {last}  {u.display_name}")
            return 0
        with repo.transaction():
            if cmd == "add":
                u = accounts.add_user(repo, args.username, args.role, password, now,
                                      departments=_departments(setup), department=args.department,
                                      display_name=args.name, level=args.level,
                                      scope=_scope_names(args), grids=setup.grids)
                print(f"cityops-hub: user {args.username} ({args.role}{_scope_text(u)}) added",
                      file=sys.stderr)
            elif cmd == "scope":
                level = None if args.level == "none" else args.level
                u = accounts.set_scope(repo, args.username, level, _scope_names(args), setup.grids)
                print(f"cityops-hub: {args.username} is now {_scope_text(u).lstrip(', ') or 'unscoped'}",
                      file=sys.stderr)
            elif cmd == "passwd":
                n = accounts.set_password(repo, args.username, password, now)
                print(f"cityops-hub: password of {args.username} changed; {n} session(s) ended",
                      file=sys.stderr)
            else:
                n = accounts.set_disabled(repo, args.username, cmd == "disable")
                print(f"cityops-hub: {args.username} {cmd}d; {n} session(s) ended", file=sys.stderr)
    return 0


def _scope_text(row) -> str:  # noqa: ANN001 - a UserRow
    if not row.level:
        return ""
    return f", {row.level} level, scope {', '.join(row.scope or []) or 'the whole city'}"


def _token(args: argparse.Namespace) -> int:
    from .auth import accounts

    now = SystemClock().now()
    cmd = args.token_command
    with _short_writer(args) as (setup, repo):
        if cmd == "list":
            for t in repo.list_api_tokens():
                state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                print(f"{t.id:>4}  {t.name:<24} {t.role:<10} {t.department or '-':<18} {state:<18} "
                      f"last used {used}")
            return 0
        with repo.transaction():
            if cmd == "create":
                name = args.name or "-".join(x for x in (args.role, args.department) if x)
                linkage = setup.config.web.linkage
                if args.role == "linkage" and (problem := linkage_token_problem(linkage, name)):
                    raise CityopsError(f"token {name!r}: {problem}")
                token_id, token = accounts.create_api_token(
                    repo, name, args.role, now, departments=_departments(setup),
                    department=args.department, created_by="cli", level=args.level,
                    scope=_scope_names(args), grids=setup.grids)
                print(token)
                print(f"cityops-hub: token {token_id} ({name}, {args.role}) created; it is shown "
                      "only now: send it as 'Authorization: Bearer TOKEN'", file=sys.stderr)
                if args.role == "linkage":
                    print(f"cityops-hub: it files incidents under source_system "
                          f"{', '.join(partner_systems(linkage, name))} only (web.linkage.partners."
                          f"{name}.systems)", file=sys.stderr)
            else:
                accounts.revoke_api_token(repo, args.token_id, now)
                print(f"cityops-hub: token {args.token_id} revoked", file=sys.stderr)
    return 0


def _backup(args: argparse.Namespace) -> int:
    from .backup import backup_hub
    from .dataset.config import dataset_dir

    config = load_setup(args.config).config
    trees = {"clips": config.clips_dir or config.snapshots_dir.with_name("clips"),
             "releases": config.releases.dir, "dataset": dataset_dir(config.dataset.dir, config.snapshots_dir)}
    report = backup_hub(config.database, config.snapshots_dir, args.to, SystemClock().now(), trees)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(f"cityops-hub: backup in {report.folder}: database {report.database_bytes // 1024} KiB "
              f"(integrity {report.integrity}, {report.counts.get('cases', 0)} cases), "
              f"{report.snapshots_copied} new snapshot file(s), {report.snapshots_skipped} already there; "
              + ", ".join(f"{name} {row['copied']} new" for name, row in report.files.items() if name != "snapshots"))
    return 0


def _release(args: argparse.Namespace) -> int:
    from .releases import plan
    from .releases.package import add_release, build_package

    now = SystemClock().now()
    cmd = args.release_command
    if cmd == "add":
        package = build_package(args.path, args.kind)  # checked before anything is written
        gate = None
        if args.gate is not None:
            try:
                gate = json.loads(args.gate.read_text())
            except (OSError, ValueError) as exc:
                raise CityopsError(f"--gate {args.gate}: not a readable JSON file ({exc})") from None
            if not isinstance(gate, dict):
                raise CityopsError(f"--gate {args.gate}: a JSON object of figures, not {type(gate).__name__}")
            if gate.get("passed") is False:  # training.retrain's gate refused this candidate
                raise CityopsError(f"--gate {args.gate}: the gate refused this candidate ("
                                   + "; ".join(map(str, gate.get("reasons", []))) + "); it cannot become a release")
    with _short_writer(args) as (setup, repo):
        if cmd == "list":
            releases, rollouts = repo.release_list(), repo.rollout_list()
            if args.json:
                print(json.dumps({"releases": [asdict(r) for r in releases],
                                  "rollouts": [asdict(r) for r in rollouts]}, default=str))
                return 0
            for r in releases:
                print(f"{r.release_id:<24} {r.bytes:>10} B {r.chunks:>4} chunks  sha256 {r.sha256[:12]}  "
                      f"{r.created_at:%Y-%m-%d %H:%M} by {r.created_by}"
                      f"{'  gate' if r.gate else ''}{'  ' + r.notes if r.notes else ''}")
            for ro in rollouts:
                print(f"{ro.rollout_id:<14} {ro.release_id:<24} {ro.stage:<12} since "
                      f"{ro.stage_at:%Y-%m-%d %H:%M}  {ro.reason or ''}")
            return 0
        with repo.transaction():
            if cmd == "add":
                row = add_release(repo, setup.config.releases.dir, package, name=args.name, now=now,
                                  by="cli", notes=args.notes, gate=gate, kind=args.kind)
                print(row.release_id)
                print(f"cityops-hub: release {row.release_id} stored ({row.bytes} bytes, {row.chunks} "
                      f"chunks, sha256 {row.sha256[:12]}); roll it out with: cityops-hub release rollout "
                      f"--config {args.config} {row.release_id} --canary AGENT[,AGENT]", file=sys.stderr)
            elif cmd == "rollout":
                minutes = args.canary_minutes or setup.config.releases.canary_minutes
                ro = plan.start_rollout(repo, args.release_id, canary=plan.parse_agents(args.canary),
                                        agents="all" if args.agents == "all" else plan.parse_agents(args.agents),
                                        canary_minutes=minutes, now=now, by="cli")
                print(ro.rollout_id)
                print(f"cityops-hub: {ro.rollout_id} started: {ro.release_id} to canary {', '.join(ro.canary)} "
                      f"for {minutes:g} min, then {ro.scope if ro.scope == 'all' else ', '.join(ro.scope)}; "
                      f"the running hub publishes it within releases.tick_s", file=sys.stderr)
            else:
                ro = plan.roll_back(repo, args.rollout_id, now,
                                    "manual, by cli" + (f": {args.reason}" if args.reason else ""))
                print(f"cityops-hub: {ro.rollout_id} rolled back: every agent it reached gets its previous "
                      "release from the running hub", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    handlers = {"serve": _serve, "check-config": _check, "enroll": _enroll, "scores": _scores,
                "broker": _broker_files, "user": _user, "token": _token, "backup": _backup,
                "release": _release, "dataset": run_dataset}
    return run_main(lambda: handlers[args.command](args), "cityops-hub")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
