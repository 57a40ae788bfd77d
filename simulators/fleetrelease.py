"""Model releases for the fleet's virtual agents (simulators/fleet.py): each follows the
hub's desired release as a real agent does on the wire (edge_agent/ota.py): it pulls the
package in windows of chunks, asks again for what did not come, checks every chunk, the
whole package's SHA-256 and its contents, and reports downloading, verified and active
(or failed, with the reason). Nothing is written to disk and no model is loaded: a
thousand of them measure the hub's side of a rollout, not a camera."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocol.codec import encode
from protocol.releases import (
    FETCH_RESEND_S,
    ChunkRequest,
    DesiredRelease,
    PackageProblem,
    ReleaseChunkHeader,
    ReleaseKind,
    ReleaseRef,
    ReleaseReport,
    ReleaseState,
    check_agent_package,
    check_model_package,
    sha256_hex,
    wanted_runs,
)
from protocol.topics import Channel

__all__ = ["ReleaseFollower", "ReleaseStats"]

# send(channel, payload, retain) -> sent
Send = Callable[[Channel, bytes, bool], bool]


@dataclass
class ReleaseStats:
    """Counters of one loop thread's followers (merged by the fleet's stats)."""

    chunks: int = 0
    requests: int = 0
    re_requests: int = 0
    activated: int = 0
    failed: int = 0
    reverted: int = 0
    download_s: list[float] = field(default_factory=list)  # wish received → active


class ReleaseFollower:
    def __init__(self, agent_id: str, send: Send, stats: ReleaseStats) -> None:
        self.agent_id = agent_id
        self.send = send
        self.stats = stats
        self.active: str | None = None
        self.ref: ReleaseRef | None = None
        self.rollout: str | None = None
        self.parts: dict[int, bytes] = {}
        self.asked: dict[int, float] = {}
        self.began = 0.0
        self.report: ReleaseReport | None = None

    def on_desired(self, desired: DesiredRelease) -> None:
        ref, self.rollout = desired.release, desired.rollout_id
        if ref is None:
            self.ref, self.parts, self.asked, self.active = None, {}, {}, None
            self.stats.reverted += 1
            self._report(ReleaseState.REVERTED, None)
            return
        if ref.release_id == self.active:
            self._report(ReleaseState.ACTIVE, ref)
            return
        if self.ref != ref:
            self.ref, self.parts, self.asked, self.began = ref, {}, {}, time.monotonic()
            self._report(ReleaseState.DOWNLOADING, ref, done=0)
        self.ask(time.monotonic())

    def ask(self, now: float) -> None:
        """Ask for the next window, as the agent does (:func:`protocol.releases.wanted_runs`;
        again for chunks not answered within ``FETCH_RESEND_S``)."""
        ref = self.ref
        if ref is None:
            return
        stale = [i for i, t in self.asked.items() if now - t > FETCH_RESEND_S]
        for i in stale:
            del self.asked[i]
        self.stats.re_requests += len(stale)
        first_missing = next((i for i in range(ref.chunks) if i not in self.parts), ref.chunks)
        for first, count in wanted_runs(ref.chunks, first_missing, self.parts.keys() | self.asked.keys()):
            req = ChunkRequest(agent_id=self.agent_id, release_id=ref.release_id, first=first, count=count,
                               at=datetime.now(UTC))
            if not self.send(Channel.FETCH, encode(req), False):
                return  # not connected: asked again on connect
            self.stats.requests += 1
            for i in range(first, first + count):
                self.asked[i] = now

    def on_chunk(self, header: ReleaseChunkHeader, data: bytes) -> None:
        ref = self.ref
        if ref is None or header.release_id != ref.release_id or header.index in self.parts:
            return
        self.stats.chunks += 1
        self.asked.pop(header.index, None)
        self.parts[header.index] = data
        if len(self.parts) < ref.chunks:
            self.ask(time.monotonic())
            return
        package = b"".join(self.parts[i] for i in range(ref.chunks))
        self.parts, self.asked, self.ref = {}, {}, None
        if sha256_hex(package) != ref.sha256:
            self._fail(ref, "the package does not match the release's SHA-256")
            return
        try:  # a virtual agent loads no model and restarts into no software: it checks what it got
            if ref.kind == ReleaseKind.AGENT:
                check_agent_package(package)
            else:
                check_model_package(package)
        except PackageProblem as exc:
            self._fail(ref, f"the package is not usable: {exc}")
            return
        self._report(ReleaseState.VERIFIED, ref)
        self.active = ref.release_id
        self.stats.activated += 1
        self.stats.download_s.append(time.monotonic() - self.began)
        self._report(ReleaseState.ACTIVE, ref)

    def on_connected(self) -> None:
        if self.report is not None:
            self.send(Channel.RELEASE_STATE, encode(self.report), True)
        self.asked.clear()
        self.ask(time.monotonic())

    def _fail(self, ref: ReleaseRef, reason: str) -> None:
        self.stats.failed += 1
        self._report(ReleaseState.FAILED, ref, reason=reason)

    def _report(self, state: ReleaseState, ref: ReleaseRef | None, *, done: int | None = None,
                reason: str | None = None) -> None:
        self.report = ReleaseReport(
            agent_id=self.agent_id, release_id=ref.release_id if ref else None, rollout_id=self.rollout,
            state=state, chunks_done=done if done is not None else (ref.chunks if ref else 0),
            chunks=ref.chunks if ref else 0, active=self.active, reason=reason, at=datetime.now(UTC))
        self.send(Channel.RELEASE_STATE, encode(self.report), True)
