"""Agent software releases: unpack a shipped wheel beside the installed agent, restart into
it, keep it once it works, fall back to the installed version when it does not start.

On disk, under ``<data_dir>/releases/`` (beside the model releases of ``ota.py``)::

    <release_id>/site/      the wheel unpacked (written to <release_id>.staging/, synced,
                            then renamed: a directory here is always whole)
    software.json           the software to run: {release_id, version, state, attempts,
                            previous, ref, rollout_id, reason}; replaced atomically

``state`` is ``trial`` (restarted into it, not yet confirmed), ``active`` (it reached the
broker and built its components) or ``failed`` (it did not start: the installed version
runs, and the reason is reported once connected). No file: the installed version runs.

Every start of ``cityops-agent run`` first calls :func:`boot` (before the heavy imports):
it reads the record and, when a release is recorded and this process does not run from
it, re-executes itself as ``python -P -m edge_agent ARGS`` with ``PYTHONPATH`` pointing at
the release's ``site/`` (so a restart by systemd runs the shipped version too). Each such
start counts an attempt; the running version confirms by resetting the count. A version
started :data:`MAX_ATTEMPTS` times without confirming is given up: the record says
``failed`` and the installed code runs. A crash of the shipped version at start exits the
process; the service manager (``Restart=on-failure``) starts it again, which is what makes
the second attempt and the fall-back happen. A version on trial that starts but never
reaches the broker is ended the same way: an alarm (``SIGALRM``, kept across the exec, so
the new code need not be sound for it to work) is set for :func:`trial_seconds` before the
exec into a trial and cleared by the confirmation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_agent
from edge_agent.durable import fsync_dir, write_atomic
from protocol.releases import PackageProblem, ReleaseRef, check_agent_package

__all__ = ["MAX_ATTEMPTS", "SOFTWARE_FILE", "Plan", "Software", "boot", "plan_start", "read_record",
           "restart", "running_from", "unpack_wheel"]

SOFTWARE_FILE = "software.json"
SITE = "site"
MAX_ATTEMPTS = 2  # starts of a shipped version without it confirming, then the installed version runs
TRIAL, ACTIVE, FAILED = "trial", "active", "failed"
TRIAL_ENV = "CITYOPS_AGENT_TRIAL_S"  # seconds a version on trial has to confirm (default 180)


def trial_seconds() -> int:
    try:
        return max(1, int(os.environ.get(TRIAL_ENV, "180")))
    except ValueError:
        return 180


# -- files -------------------------------------------------------------------------------
def read_record(root: Path) -> dict[str, Any] | None:
    """``software.json``, or None when there is none or it is unreadable (the installed
    version then runs; a torn file cannot happen: it is only ever replaced whole)."""
    try:
        data = json.loads((root / SOFTWARE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("release_id"), str) or data.get("state") not in (
            TRIAL, ACTIVE, FAILED):
        return None
    return data


def write_record(root: Path, record: dict[str, Any] | None) -> None:
    if record is None:
        try:
            (root / SOFTWARE_FILE).unlink()
        except FileNotFoundError:
            return
        fsync_dir(root)
        return
    write_atomic(root / SOFTWARE_FILE, json.dumps(record, sort_keys=True).encode())


def site_of(root: Path, release_id: str) -> Path:
    return root / release_id / SITE


def unpack_wheel(root: Path, ref: ReleaseRef, package: bytes) -> str | None:
    """Check the wheel and unpack it into ``<release_id>/site/`` by way of a staging
    directory renamed in one step. None, or why not."""
    try:
        wheel = check_agent_package(package)
    except PackageProblem as exc:
        return f"the package is not a usable agent wheel: {exc}"
    staging = root / f"{ref.release_id}.staging"
    final = root / ref.release_id
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / SITE
    site.mkdir(parents=True)
    folders: set[Path] = {staging, site}
    for name, data in wheel.files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        folders.add(path.parent)
        with path.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    (staging / "release.json").write_text(json.dumps({**ref.model_dump(mode="json"), "software": wheel.version}))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(staging, final)
    fsync_dir(root)
    return None


def wheel_version(root: Path, release_id: str) -> str:
    try:
        return str(json.loads((root / release_id / "release.json").read_text())["software"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def running_from(root: Path, module_file: str | None = None) -> str | None:
    """The release whose ``site/`` this process's ``edge_agent`` was imported from, or None
    (the installed version)."""
    here = Path(module_file or edge_agent.__file__).resolve()
    try:
        parts = here.relative_to(root.resolve()).parts
    except ValueError:
        return None
    return parts[0] if len(parts) >= 3 and parts[1] == SITE else None


# -- the start decision (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    action: str  # "run": go on in this process; "site": exec into the release; "installed": exec without it
    release_id: str | None
    record: dict[str, Any] | None  # the record to write first (unchanged: the same object)
    message: str = ""


def plan_start(record: dict[str, Any] | None, running: str | None, site_ok: bool) -> Plan:
    """What a starting ``cityops-agent run`` does, from the record, the release this
    process runs from (None: installed) and whether the recorded release's site is whole."""
    if record is None or record["state"] == FAILED:
        if running is None:
            return Plan("run", None, record)
        return Plan("installed", None, record, f"release {running} is no longer the software to run")
    rid = record["release_id"]
    if running == rid:
        return Plan("run", rid, record)
    version = record.get("version", "?")
    if not site_ok:
        failed = {**record, "state": FAILED, "reason": f"version {version} (release {rid}): its unpacked files "
                  "are missing; running the installed version"}
        return Plan("run" if running is None else "installed", None, failed, failed["reason"])
    attempts = int(record.get("attempts", 0))
    if attempts >= MAX_ATTEMPTS:
        failed = {**record, "state": FAILED,
                  "reason": f"version {version} (release {rid}) did not start: started {attempts} times "
                            "without reaching the broker; running the installed version (its log says why)"}
        return Plan("run" if running is None else "installed", None, failed, failed["reason"])
    return Plan("site", rid, {**record, "attempts": attempts + 1},
                f"starting version {version} (release {rid}), attempt {attempts + 1} of {MAX_ATTEMPTS}")


# -- the shell ------------------------------------------------------------------------------
def _clean_pythonpath(root: Path) -> list[str]:
    """PYTHONPATH without any release's site (the installed version sees none of them)."""
    marker = str(root.resolve()) + os.sep
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and not str(Path(p).resolve()).startswith(marker)]


def _exec(root: Path, argv: Sequence[str], site: Path | None) -> None:
    env = dict(os.environ)
    paths = _clean_pythonpath(root)
    if site is not None:
        paths.insert(0, str(site))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    # -P: the working directory is not put in front of the path, so the site always wins
    flags = ["-P"] if site is not None else []
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *flags, "-m", "edge_agent", *argv], env)


def _say(message: str) -> None:
    print(f"cityops-agent: {message}", file=sys.stderr, flush=True)


def boot(root: Path, argv: Sequence[str], *, forced: bool = False) -> None:
    """At the start of ``cityops-agent run`` (``forced``: after a clean stop asked for by a
    release, when this process must be replaced whatever the plan): follow the record.
    Returns only when this process is the one to run."""
    if not root.is_dir():
        return
    record = read_record(root)
    running = running_from(root)
    rid = record["release_id"] if record else None
    site_ok = bool(rid) and (site_of(root, str(rid)) / "edge_agent" / "__init__.py").is_file()
    plan = plan_start(record, running, site_ok)
    if plan.record is not record:
        write_record(root, plan.record)
    if plan.message:
        _say(plan.message)
    if plan.action == "run" and not forced:
        return
    site = site_of(root, plan.release_id) if plan.release_id else None  # "run" when forced: the same release
    if plan.action == "site" and plan.record is not None and plan.record["state"] == TRIAL:
        signal.alarm(trial_seconds())  # kept across the exec: a trial that never confirms is ended
    try:
        _exec(root, argv, site)
    except OSError as exc:  # the interpreter cannot be started again: carry on as we are
        signal.alarm(0)
        if site is not None and plan.record is not None:
            write_record(root, {**plan.record, "state": FAILED,
                                "reason": f"could not restart into release {plan.release_id}: {exc}"})
        _say(f"could not restart ({exc}); going on with this process")


def restart(root: Path, argv: Sequence[str]) -> None:
    """After a clean stop for a software change: start again on what the record says."""
    boot(root, argv, forced=True)


def argv_config(argv: Sequence[str]) -> str | None:
    """The ``--config`` of a ``run`` command line, else None (only ``run`` boots)."""
    args = list(argv)
    if "run" not in args:
        return None
    for i, arg in enumerate(args[args.index("run") + 1:], start=args.index("run") + 1):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def boot_from_argv(argv: Sequence[str]) -> None:
    """``cityops-agent run --config FILE``: find the data directory and :func:`boot`. Any
    problem reading the config is left to the ``run`` command to report."""
    config = argv_config(argv)
    if config is None:
        return
    from edge_agent.config import load_agent_config
    from protocol.errors import ConfigError

    try:
        root = load_agent_config(config).data_dir / "releases"
    except (ConfigError, OSError):
        return
    boot(root, argv)


# -- the running agent's view ----------------------------------------------------------------
class Software:
    """The software record as the running agent sees it: which release it runs from, and
    what to confirm or report (used by ``ota.ReleaseKeeper``)."""

    def __init__(self, root: Path, module_file: str | None = None) -> None:
        self.root = root
        self.running = running_from(root, module_file)
        self.record = read_record(root)

    @property
    def failed(self) -> dict[str, Any] | None:
        return self.record if self.record is not None and self.record["state"] == FAILED else None

    def needs_confirm(self) -> bool:
        r = self.record
        return r is not None and r["state"] == TRIAL and self.running == r["release_id"]

    def confirm(self) -> None:
        """This version reached the broker with its components built: it is kept."""
        assert self.record is not None
        self.record = {**self.record, "state": ACTIVE, "attempts": 0, "reason": None}
        write_record(self.root, self.record)
        signal.alarm(0)  # the trial's deadline (set before the exec into it) is met

    def choose(self, ref: ReleaseRef, rollout_id: str | None) -> None:
        """Record ``ref`` (unpacked) as the software to try next."""
        self.record = {"release_id": ref.release_id, "version": wheel_version(self.root, ref.release_id),
                       "state": TRIAL, "attempts": 0, "previous": self.running,
                       "ref": ref.model_dump(mode="json"), "rollout_id": rollout_id, "reason": None}
        write_record(self.root, self.record)

    def clear(self) -> None:
        """The installed version is the one to run."""
        self.record = None
        write_record(self.root, None)

    def keep(self) -> set[str]:
        """Release directories the model pruning must leave alone."""
        return {r for r in (self.running, self.record["release_id"] if self.record else None) if r}
