"""cityops-sim handlers: departments working their cases through the hub's handler API.

Serves the hub's handler API (``/api/v1/handler/...``) the way departments' own systems
would: each department polls with its own API token (``cityops-hub token create --role
handler --department DEPT``), accepts its dispatched cases, takes (simulated) time to
work, and resolves them — photo cases with an after-photo rendered by the scene
renderer. Most fix the problem; some do not (the after-photo still shows it), some miss
the deadline, some return wrongly dispatched cases. Shares and seed are options; every
action goes to a JSON-lines log, and a summary is printed at the end::

    cityops-sim handlers --hub http://127.0.0.1:8080/ --departments departments.yaml \\
        --fixed 0.7 --not-fixed 0.15 --late 0.1 --reject 0.05 --seed 7 --log handlers.jsonl

``departments.yaml``::

    departments:
      fire_brigade:
        token: cot_...                       # or token_file: /path/to/token
      drainage:
        token_file: drainage.token
        handles: [flood.road_waterlogging]  # anything else is returned as wrongly dispatched

``--time-scale`` must match the hub's clock (1 for a hub on real time; the demo's scale
when the hub runs a scenario), because work times are fractions of each case's deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.cliutil import run_main
from protocol.clock import Clock, SystemClock
from protocol.config import load_model_file
from protocol.errors import CityopsError
from protocol.logsetup import configure_logging

from ..clock import ScaledClock
from ..progress import Progress
from .client import HandlerClient
from .department import Department, HandlerLog, HandlerRun, SceneLookup
from .policy import Shares

__all__ = ["DepartmentEntry", "DepartmentsFile", "build_parser", "build_run", "main"]


class DepartmentEntry(StrictModel):
    token: str | None = Field(None, min_length=8, description="the department's handler API token")
    token_file: Path | None = Field(None, description="a file holding the token (first line)")
    handles: list[str] | None = Field(None, description="subcategories it handles; others are returned")

    @model_validator(mode="after")
    def _one_token(self) -> DepartmentEntry:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token or token_file")
        return self

    def read_token(self, base: Path) -> str:
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        path = self.token_file if self.token_file.is_absolute() else base / self.token_file
        try:
            token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise CityopsError(f"cannot read a token from {path}; write the token printed by "
                               "`cityops-hub token create` into it") from None
        return token


class DepartmentsFile(StrictModel):
    departments: dict[str, DepartmentEntry] = Field(min_length=1)


def build_run(hub_url: str, departments: dict[str, tuple[str, list[str] | None]], *, clock: Clock,
              shares: Shares, seed: int, poll_s: float = 1.0, log_path: Path | None = None,
              scenes: SceneLookup | None = None) -> HandlerRun:
    """A run of departments: name -> (token, handles or None)."""
    hlog = HandlerLog(clock, log_path)
    deps = [Department(name, HandlerClient(hub_url, token, name), clock, hlog, shares=shares,
                       seed=seed + i, handles=None if handles is None else frozenset(handles),
                       poll_s=poll_s, scenes=scenes)
            for i, (name, (token, handles)) in enumerate(sorted(departments.items()))]
    return HandlerRun(deps, hlog)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a share cannot be negative (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityops-sim handlers", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hub", required=True, metavar="URL", help="the hub's web address (e.g. http://127.0.0.1:8080/)")
    p.add_argument("--departments", type=Path, required=True, metavar="FILE",
                   help="YAML: departments -> {token | token_file, handles}")
    d = Shares()
    p.add_argument("--fixed", type=_share, default=d.fixed, help=f"share fixed in time (default {d.fixed})")
    p.add_argument("--not-fixed", type=_share, default=d.not_fixed,
                   help=f"share whose after-photo still shows the problem (default {d.not_fixed})")
    p.add_argument("--late", type=_share, default=d.late, help=f"share fixed after the deadline (default {d.late})")
    p.add_argument("--reject", type=_share, default=d.reject,
                   help=f"share returned as wrongly dispatched (default {d.reject})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                   help="simulated seconds per real second; must match the hub's clock (default 1)")
    p.add_argument("--poll", type=float, default=2.0, metavar="S", help="real seconds between polls (default 2)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S real seconds")
    p.add_argument("--log", type=Path, default=None, metavar="FILE", help="append every action here (JSON lines)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="S")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


async def _run(run: HandlerRun, duration: float | None, progress: Progress) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, run.stop.set)
    run.start()
    waiter = asyncio.ensure_future(run.wait())
    deadline = None if duration is None else loop.time() + duration
    try:
        while not waiter.done():
            if deadline is not None and loop.time() >= deadline:
                run.stop.set()
            await asyncio.wait([waiter], timeout=min(progress.every_s, 0.5))
            if progress.due() and not waiter.done():
                s = run.summary()
                progress.report({"cases": f"{s['cases_seen']} seen, {s['resolved']} resolved, "
                                          f"{s['returned']} returned",
                                 "errors": f"{s['errors']} ({s['conflicts']} conflicts)"})
        waiter.result()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, "text")

    def run() -> int:
        if args.time_scale <= 0:
            raise CityopsError(f"--time-scale must be positive (got {args.time_scale:g})")
        if args.poll <= 0:
            raise CityopsError(f"--poll must be positive (got {args.poll:g})")
        if args.fixed + args.not_fixed + args.late + args.reject <= 0:
            raise CityopsError("every share is 0; give at least one of --fixed/--not-fixed/--late/--reject above 0")
        shares = Shares(fixed=args.fixed, not_fixed=args.not_fixed, late=args.late, reject=args.reject)
        spec = load_model_file(args.departments, DepartmentsFile)
        base = args.departments.resolve().parent
        deps = {name: (e.read_token(base), e.handles) for name, e in spec.departments.items()}
        clock: Clock = SystemClock() if args.time_scale == 1 else ScaledClock(scale=args.time_scale)
        handler_run = build_run(args.hub, deps, clock=clock, shares=shares, seed=args.seed,
                                poll_s=args.poll, log_path=args.log)
        progress = Progress("handlers", args.duration, every_s=args.progress_every, quiet=args.quiet)
        progress.say(f"{len(deps)} department(s) polling {args.hub} every {args.poll:g} s"
                     + (f"; log {args.log}" if args.log else ""))
        asyncio.run(_run(handler_run, args.duration, progress))
        summary = handler_run.summary()
        if args.json:
            print(json.dumps(summary, separators=(",", ":")), flush=True)
        else:
            print(format_summary(summary), flush=True)
        return 0

    return run_main(run, "cityops-sim handlers")


def format_summary(summary: dict) -> str:
    lines = [f"handlers: {summary['cases_seen']} case(s) seen, {summary['accepted']} accepted, "
             f"{summary['returned']} returned, {summary['resolved']} resolved "
             f"({summary['resolved_late']} late), after-photos {summary['photos_fixed']} fixed / "
             f"{summary['photos_not_fixed']} not fixed, {summary['sent_back']} sent back, "
             f"{summary['conflicts']} conflicts, {summary['errors']} errors"]
    for name, d in summary["departments"].items():
        lines.append(f"  {name:<20} seen {d['cases_seen']}, resolved {d['resolved']}, returned {d['returned']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
