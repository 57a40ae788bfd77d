"""Model releases on the agent: fetch the release the hub wants, check it, switch the
cameras to it, and report each step (protocol/releases.py has the wire contract).

On disk, under ``<data_dir>/releases/``::

    <release_id>.part       the chunks received so far, whole chunks only, in order
    <release_id>/           a package that was complete, matched its SHA-256 and passed
                            the package check, unpacked (written to <release_id>.staging/,
                            synced, then renamed: a directory here is always whole)
    active.json             the release the cameras run: its id and its model file's
                            SHA-256; replaced atomically after the cameras switched

A power cut can leave a ``.part`` (the download resumes from its last whole chunk), a
``.staging`` directory (removed and unpacked again) or nothing new; it can never leave a
half-written model that runs, because the cameras only ever load from a whole directory,
and at start the model file's SHA-256 is checked against ``active.json`` before use.

The agent pulls: it asks for ``FETCH_WINDOW`` chunks at a time (protocol/releases.py,
``wanted_runs``) and asks again for those not answered within ``FETCH_RESEND_S``, so a
lost message, a hub restart or a reconnect costs a few seconds, never the download.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.durable import fsync_dir, write_atomic
from protocol.codec import encode
from protocol.ids import is_safe_id
from protocol.releases import (
    FETCH_RESEND_S,
    MODEL_FILE,
    ChunkRequest,
    DesiredRelease,
    PackageProblem,
    ReleaseChunkHeader,
    ReleaseKind,
    ReleaseRef,
    ReleaseReport,
    ReleaseState,
    check_model_package,
    wanted_runs,
)
from protocol.topics import Channel

from .selfupdate import Software, site_of, unpack_wheel

__all__ = ["ACTIVE_FILE", "RELEASE_FILE", "ActiveRelease", "ReleaseKeeper", "read_active"]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 8  # a downloading report every this many chunks
ACTIVE_FILE = "active.json"
RELEASE_FILE = "release.json"  # inside an unpacked release: its reference (vision.models.model_tag reads it)

# publish(channel, payload, qos, retain) -> sent (False: not connected now)
Publish = Callable[[Channel, bytes, int, bool], bool]
# activate(model file or None for the config's own model) -> None, or why it could not
Activate = Callable[[Path | None], Awaitable[str | None]]


@dataclass(frozen=True)
class ActiveRelease:
    release_id: str
    model: Path  # the model file inside the unpacked release


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded_release(root: Path) -> str | None:
    """The release id ``active.json`` names, if it can be read at all (for the report)."""
    try:
        value = json.loads((root / ACTIVE_FILE).read_text(encoding="utf-8"))["release_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) and is_safe_id(value) else None


def read_active(root: Path) -> tuple[ActiveRelease | None, str | None]:
    """The release recorded as running, checked: (release, None), (None, None) when there
    is none, or (None, why) when the record or its model cannot be trusted (the caller
    falls back to the config's model and reports why)."""
    path = root / ACTIVE_FILE
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        release_id, want = str(data["release_id"]), str(data["model_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path} is unreadable ({exc}); running the config's model"
    model = root / release_id / MODEL_FILE
    try:
        got = _sha256_file(model)
    except OSError as exc:
        return None, f"release {release_id}: {exc}; running the config's model"
    if got != want:
        return None, f"release {release_id}: {model} does not match its recorded SHA-256; running the config's model"
    return ActiveRelease(release_id, model), None


@dataclass
class _Download:
    ref: ReleaseRef
    rollout_id: str | None
    done: int  # whole chunks in the .part file
    asked: dict[int, float] = field(default_factory=dict)  # index -> when asked
    early: dict[int, bytes] = field(default_factory=dict)  # arrived ahead of ``done``


class ReleaseKeeper:
    """Follows the hub's desired release for one agent. Every method runs on the agent's
    event loop. Appending an arrived chunk (at most 128 KiB, one fsync) is done there;
    checking, hashing and unpacking the whole package, and recording it active, in a thread."""

    def __init__(self, root: Path, agent_id: str, publish: Publish, activate: Activate, *,
                 software: Software | None = None, restart: Callable[[], None] | None = None) -> None:
        """``software`` and ``restart`` (stop cleanly, then start again on what the software
        record says) make agent releases possible (``edge_agent/selfupdate.py``)."""
        self.root = root
        self.software = software
        self.restart = restart
        self.agent_id = agent_id
        self.publish = publish
        self.activate = activate
        self.active: ActiveRelease | None = None
        self.startup_problem: str | None = None
        self.startup_release: str | None = None  # the release the startup problem is about
        self.desired: DesiredRelease | None = None
        self._download: _Download | None = None
        self._report: ReleaseReport | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self.resend_s = FETCH_RESEND_S
        self.stats = {"chunks": 0, "stale_chunks": 0, "requests": 0, "failed": 0, "activations": 0}

    # -- start -------------------------------------------------------------------------
    def load(self) -> ActiveRelease | None:
        """At start, before the cameras are built: the checked active release (or None), and
        leftovers of an interrupted unpack removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        for staging in self.root.glob("*.staging"):
            shutil.rmtree(staging, ignore_errors=True)
        self.active, self.startup_problem = read_active(self.root)
        if self.startup_problem:
            log.error("%s", self.startup_problem)
            self.startup_release = _recorded_release(self.root)
            with contextlib.suppress(OSError):
                (self.root / ACTIVE_FILE).unlink()
        elif self.active:
            log.info("running release %s (%s)", self.active.release_id, self.active.model)
        return self.active

    def drop_active(self, reason: str) -> None:
        """The recorded release cannot run (the agent found out at start): forget it, keep
        the reason for the hub."""
        log.error("%s", reason)
        self.startup_problem = reason
        self.startup_release = self.active.release_id if self.active else _recorded_release(self.root)
        self.active = None
        with contextlib.suppress(OSError):
            (self.root / ACTIVE_FILE).unlink()

    def on_connected(self) -> None:
        """After every (re)connect: say where we stand again and re-ask for what is missing
        (the retained desired release arrives by itself)."""
        if self.software is not None and self._software_connected():
            pass
        elif self._report is not None:
            self._send_report(self._report)
        elif self.startup_problem:
            # about the release that failed, so the hub counts it against that release's rollout
            self._report_state(ReleaseState.FAILED, None, reason=self.startup_problem,
                               release_id=self.startup_release)
        if self._download is not None:
            self._download.asked.clear()
            self._ask()

    # -- the hub's wishes ----------------------------------------------------------------
    async def on_desired(self, desired: DesiredRelease) -> None:
        async with self._lock:
            self.desired = desired
            ref = desired.release
            if self.software is not None and self._software_desired(desired):
                return
            if ref is None:
                await self._revert(desired)
                return
            if self.active is not None and self.active.release_id == ref.release_id:
                self._report_state(ReleaseState.ACTIVE, ref, rollout=desired.rollout_id)
                return
            if (self.root / ref.release_id / MODEL_FILE).is_file():
                await self._activate(ref, desired.rollout_id)
                return
            if self._download is not None and self._download.ref == ref:
                self._ask()
                return
            self._start_download(ref, desired.rollout_id)

    async def _revert(self, desired: DesiredRelease) -> None:
        self._download = None
        if self.active is None:
            self._report_state(ReleaseState.REVERTED, None, rollout=desired.rollout_id)
            return
        reason = await self.activate(None)
        if reason is not None:
            self.stats["failed"] += 1
            self._report_state(ReleaseState.FAILED, None, rollout=desired.rollout_id,
                               reason=f"could not go back to the config's model: {reason}")
            return
        previous = self.active.release_id
        with contextlib.suppress(OSError):
            (self.root / ACTIVE_FILE).unlink()
            fsync_dir(self.root)
        self.active = None
        log.info("release %s withdrawn: the cameras run the config's model again", previous)
        self._report_state(ReleaseState.REVERTED, None, rollout=desired.rollout_id)

    # -- download ------------------------------------------------------------------------
    def _part(self, ref: ReleaseRef) -> Path:
        return self.root / f"{ref.release_id}.part"

    def _start_download(self, ref: ReleaseRef, rollout_id: str | None) -> None:
        for stale in self.root.glob("*.part"):  # one download at a time: an older wish is gone
            if stale != self._part(ref):
                stale.unlink(missing_ok=True)
        part = self._part(ref)
        have = part.stat().st_size if part.exists() else 0
        done = min(have // ref.chunk_bytes, ref.chunks)
        if have != done * ref.chunk_bytes:  # a chunk half-written when the power went
            with part.open("r+b") as f:
                f.truncate(done * ref.chunk_bytes)
        if done:
            log.info("release %s: resuming at chunk %d of %d", ref.release_id, done + 1, ref.chunks)
        else:
            log.info("release %s: downloading %d bytes in %d chunk(s)", ref.release_id, ref.bytes, ref.chunks)
        self._download = _Download(ref, rollout_id, done)
        self._report_state(ReleaseState.DOWNLOADING, ref, rollout=rollout_id, done=done)
        if done == ref.chunks:
            self._spawn(self._finish())
        else:
            self._ask()

    def _ask(self) -> None:
        d = self._download
        if d is None:
            return
        now = time.monotonic()
        for i in [i for i, t in d.asked.items() if now - t > self.resend_s]:
            del d.asked[i]
        for first, count in wanted_runs(d.ref.chunks, d.done, d.asked.keys() | d.early.keys()):
            req = ChunkRequest(agent_id=self.agent_id, release_id=d.ref.release_id, first=first, count=count,
                               at=datetime.now(UTC))
            if not self.publish(Channel.FETCH, encode(req), 1, False):
                return  # not connected: on_connected asks again
            self.stats["requests"] += 1
            for i in range(first, first + count):
                d.asked[i] = now

    def tick(self) -> None:
        """Called every second or two: re-ask for chunks that never came."""
        self._ask()

    def on_chunk(self, header: ReleaseChunkHeader, data: bytes) -> None:
        d = self._download
        if d is None or header.release_id != d.ref.release_id or header.index < d.done:
            self.stats["stale_chunks"] += 1
            return
        if header.release_sha256 != d.ref.sha256 or header.count != d.ref.chunks or (
                len(data) != d.ref.chunk_bytes and header.index != d.ref.chunks - 1):
            self._fail(d, f"chunk {header.index + 1} does not belong to release {d.ref.release_id} "
                          "as announced (hash, count or size differ)")
            return
        self.stats["chunks"] += 1
        d.asked.pop(header.index, None)
        d.early[header.index] = data
        written = 0
        with self._part(d.ref).open("ab") as f:
            while d.done in d.early:
                f.write(d.early.pop(d.done))
                d.done += 1
                written += 1
            if written:
                f.flush()
                os.fsync(f.fileno())
        if d.done == d.ref.chunks:
            self._spawn(self._finish())
            return
        if written and d.done % PROGRESS_EVERY < written:
            self._report_state(ReleaseState.DOWNLOADING, d.ref, rollout=d.rollout_id, done=d.done)
        self._ask()

    def _fail(self, d: _Download, reason: str) -> None:
        log.error("release %s failed: %s", d.ref.release_id, reason)
        self.stats["failed"] += 1
        self._part(d.ref).unlink(missing_ok=True)
        if self._download is d:
            self._download = None
        self._report_state(ReleaseState.FAILED, d.ref, rollout=d.rollout_id, done=0, reason=reason)

    async def _finish(self) -> None:
        async with self._lock:
            d = self._download
            if d is None or d.done != d.ref.chunks:
                return
            problem = await asyncio.to_thread(self._verify_and_unpack, d.ref)
            if problem is not None:
                self._fail(d, problem)
                return
            self._download = None
            self._report_state(ReleaseState.VERIFIED, d.ref, rollout=d.rollout_id, done=d.ref.chunks)
            await self._activate(d.ref, d.rollout_id)

    def _verify_and_unpack(self, ref: ReleaseRef) -> str | None:
        """The whole package against its SHA-256 and the package check, then unpacked into
        a staging directory that becomes ``<release_id>/`` by one rename. None, or why not."""
        part = self._part(ref)
        package = part.read_bytes()
        if len(package) != ref.bytes or hashlib.sha256(package).hexdigest() != ref.sha256:
            return (f"the downloaded package ({len(package)} bytes) does not match the release's SHA-256 "
                    f"({ref.bytes} bytes expected); it is fetched again if the hub asks again")
        if ref.kind == ReleaseKind.AGENT:
            problem = unpack_wheel(self.root, ref, package)
            if problem is None:
                part.unlink(missing_ok=True)
            return problem
        try:
            files = check_model_package(package)
        except PackageProblem as exc:
            return f"the package is not a usable model: {exc}"
        staging = self.root / f"{ref.release_id}.staging"
        final = self.root / ref.release_id
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        files[RELEASE_FILE] = ref.model_dump_json().encode()
        for name, data in files.items():
            with (staging / name).open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        fsync_dir(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staging, final)
        fsync_dir(self.root)
        part.unlink(missing_ok=True)
        return None

    # -- activation ----------------------------------------------------------------------
    async def _activate(self, ref: ReleaseRef, rollout_id: str | None) -> None:
        if ref.kind == ReleaseKind.AGENT:
            self._switch_software(ref, rollout_id, verified_now=False)
            return
        model = self.root / ref.release_id / MODEL_FILE
        reason = await self.activate(model)
        if reason is not None:
            self.stats["failed"] += 1
            log.error("release %s not activated, the running model stays: %s", ref.release_id, reason)
            self._report_state(ReleaseState.FAILED, ref, rollout=rollout_id, done=ref.chunks,
                               reason=f"the cameras could not start with it: {reason}")
            return
        record = {"release_id": ref.release_id, "model_sha256": await asyncio.to_thread(_sha256_file, model),
                  "activated_at": datetime.now(UTC).isoformat()}
        await asyncio.to_thread(write_atomic, self.root / ACTIVE_FILE, json.dumps(record).encode())
        previous = self.active.release_id if self.active else None
        self.active = ActiveRelease(ref.release_id, model)
        self.stats["activations"] += 1
        self._prune(keep={ref.release_id, previous})
        log.info("release %s active (was %s)", ref.release_id, previous or "the config's model")
        self._report_state(ReleaseState.ACTIVE, ref, rollout=rollout_id, done=ref.chunks)

    def _prune(self, keep: set[str | None]) -> None:
        """Unpacked releases other than the running one and the one before it are removed
        (and the agent software running or chosen)."""
        keep = keep | (self.software.keep() if self.software is not None else set())
        for path in self.root.iterdir():
            if path.is_dir() and not path.name.endswith(".staging") and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    # -- agent software (edge_agent/selfupdate.py) ---------------------------------------------
    def _software_connected(self) -> bool:
        """On connect: a shipped version on trial is confirmed (it reached the broker with
        its components built) and reported active; one that did not start is reported
        failed. True when a report went."""
        sw = self.software
        assert sw is not None
        record = sw.record
        if record is None or "ref" not in record:
            return False
        try:
            ref = ReleaseRef.model_validate(record["ref"])
        except ValueError:
            return False
        if sw.needs_confirm():
            self._confirm_software()
        elif sw.running == ref.release_id:
            pass
        elif sw.failed is not None:
            self.stats["failed"] += 1
            self._report_state(ReleaseState.FAILED, ref, rollout=record.get("rollout_id"),
                               reason=str(record.get("reason") or "it did not start"))
            return True
        else:
            return False
        self._report_state(ReleaseState.ACTIVE, ref, rollout=record.get("rollout_id"))
        return True

    def _software_desired(self, desired: DesiredRelease) -> bool:
        """The software side of a desired release; True when it is dealt with (else the
        model side goes on, downloading an agent release like a model's)."""
        sw = self.software
        assert sw is not None
        ref = desired.release
        if ref is not None and ref.kind == ReleaseKind.AGENT:
            if sw.running == ref.release_id:
                if sw.needs_confirm():
                    self._confirm_software()
                self._report_state(ReleaseState.ACTIVE, ref, rollout=desired.rollout_id)
                return True
            failed = sw.failed
            if failed is not None and failed["release_id"] == ref.release_id:
                self._report_state(ReleaseState.FAILED, ref, rollout=desired.rollout_id,
                                   reason=str(failed.get("reason") or "it did not start"))
                return True
            if (site_of(self.root, ref.release_id) / "edge_agent" / "__init__.py").is_file():
                self._switch_software(ref, desired.rollout_id, verified_now=True)
                return True
            return False
        # a model release or none: it runs on the installed software
        if sw.running is not None:
            log.info("the hub no longer wants agent release %s: restarting on the installed version", sw.running)
            sw.clear()
            self._request_restart()
            return True
        if sw.failed is not None:
            sw.clear()
        return False

    def _confirm_software(self) -> None:
        assert self.software is not None and self.software.record is not None
        self.software.confirm()
        log.info("agent version %s (release %s) confirmed: connected with its components built",
                 self.software.record.get("version"), self.software.record["release_id"])

    def _switch_software(self, ref: ReleaseRef, rollout_id: str | None, *, verified_now: bool) -> None:
        """Record ``ref`` as the software to try and restart into it."""
        if self.software is None or self.restart is None:
            self._download = None
            self._report_state(ReleaseState.FAILED, ref, rollout=rollout_id,
                               reason="this agent process cannot restart itself (not run by cityops-agent run)")
            return
        self._download = None
        self.software.choose(ref, rollout_id)
        if verified_now:
            self._report_state(ReleaseState.VERIFIED, ref, rollout=rollout_id, done=ref.chunks)
        log.info("agent release %s (version %s) unpacked: restarting into it", ref.release_id,
                 self.software.record["version"] if self.software.record else "?")
        self._request_restart()

    def _request_restart(self) -> None:
        if self.restart is not None:
            self.restart()

    # -- reports -------------------------------------------------------------------------
    def _report_state(self, state: ReleaseState, ref: ReleaseRef | None, *, rollout: str | None = None,
                      done: int | None = None, reason: str | None = None, release_id: str | None = None) -> None:
        report = ReleaseReport(
            agent_id=self.agent_id, release_id=ref.release_id if ref else release_id, rollout_id=rollout, state=state,
            chunks_done=done if done is not None else (ref.chunks if ref else 0),
            chunks=ref.chunks if ref else 0, active=self.active.release_id if self.active else None,
            reason=reason[:500] if reason else None, at=datetime.now(UTC))
        self._report = report
        self._send_report(report)

    def _send_report(self, report: ReleaseReport) -> None:
        if not self.publish(Channel.RELEASE_STATE, encode(report), 1, True):
            log.debug("release report not sent now (not connected); it goes on the next connect")

    @property
    def last_report(self) -> ReleaseReport | None:
        return self._report

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("release work failed: %r", task.exception())
