"""Releases in the running hub: one MQTT client of their own (the agents' chunk requests,
their retained state reports, the chunks and the retained desired releases), and one
loop that stores reports, publishes desired releases and advances rollouts.

The decisions are in :mod:`.rollout` and :mod:`.plan`; this module reads, writes and
publishes. Desired releases live in the store (``agent_releases``): the CLI and the web
page only write them, and this loop publishes what is not yet published, so a rollout
started from a shell reaches the agents within ``releases.tick_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from protocol.codec import decode_chunk_request, decode_release_report, encode
from protocol.errors import ProtocolError, TopicError
from protocol.messages import AgentState
from protocol.releases import DesiredRelease, ReleaseRef, ReleaseReport
from protocol.topics import QOS, Channel, agent_topic, parse_topic, subscription

from ..ingest.mqtt import MqttClient
from . import plan
from .model import ReleaseRow, RolloutRow, Stage
from .package import ReleaseError, read_package
from .rollout import Action, AgentFigures, Decision, Policy, RolloutFigures, decide
from .serve import ChunkJob, ChunkServer, chunk_indices

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["ReleaseService"]

log = logging.getLogger(__name__)


def _short(payload: bytes, n: int = 200) -> str:
    return payload[:n].decode("utf-8", "replace")


class ReleaseService:
    MAX_QUEUED_CHUNKS = 1000  # messages paho may hold for the broker (128 MiB of chunks at most)
    PUBLISH_BATCH = 1000  # desired releases published (and marked) per transaction
    GATHER_S = 0.5  # after a report wakes the loop, wait this long for others (one pass for many)

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        cfg = hub.config.releases
        self.folder = cfg.dir
        self.policy = Policy(offline_grace=timedelta(seconds=cfg.offline_grace_s),
                             false_alarm_factor=cfg.false_alarm_factor,
                             false_alarm_margin=cfg.false_alarm_margin,
                             max_failed_share=cfg.max_failed_share)
        self.stats: Counter = Counter()
        # agent → the release published to it as desired: the only one it may fetch
        self.desired: dict[str, str | None] = {}
        self._packages: dict[str, tuple[ReleaseRef, bytes]] = {}
        self._lock = threading.Lock()
        self.client: MqttClient | None = None
        self.server = ChunkServer(self._publish, cfg.max_chunks_per_s, stats=self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._reports: list[ReleaseReport] = []
        self._tick_lock = asyncio.Lock()  # one pass at a time (the loop's, or one called directly)
        self.decisions: dict[str, Decision] = {}  # rollout → its latest decision (shown on the page)

    # -- life -----------------------------------------------------------------------------------
    def start_client(self) -> None:
        """Connect (in a worker thread, like the hub's other clients). Release state is
        retained, so this is a plain subscription, not a shared one."""
        subs = [(subscription(Channel.FETCH), QOS[Channel.FETCH]),
                (subscription(Channel.RELEASE_STATE), QOS[Channel.RELEASE_STATE])]
        # A short paho queue: chunks are up to 128 KiB each, and one the broker cannot take
        # now is refused (counted) rather than held; the agent asks for it again.
        self.client = MqttClient(self.hub._mqtt_settings("releases"), subscriptions=subs,  # noqa: SLF001
                                 on_message=self.on_message, max_queued=self.MAX_QUEUED_CHUNKS)
        self.server.start()
        self.client.start()

    def stop_client(self) -> None:
        self.server.stop()
        if self.client is not None:
            try:
                self.client.stop()
            finally:
                self.client = None

    async def start(self) -> list[asyncio.Task]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        rows = await self.hub.read(lambda repo: repo.agent_releases())
        with self._lock:
            for a in rows.values():
                if a.published_at is not None:
                    self.desired[a.agent_id] = a.desired_release
        self._wake.set()
        return [asyncio.create_task(self._run(), name="hub-releases")]

    def wake(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool:
        return self.client is not None and self.client.publish(topic, payload, qos, retain=retain)

    # -- messages (paho's thread: never raises) -------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            parsed = parse_topic(topic)
        except TopicError as exc:
            self.stats["bad_messages"] += 1
            log.warning("release message on a bad topic %r: %s", topic, exc)
            return
        if parsed.channel is Channel.RELEASE_STATE:
            if not payload:
                return  # a cleared retained report
            try:
                report = decode_release_report(payload, agent_id=parsed.agent_id)
            except ProtocolError as exc:
                self.stats["bad_messages"] += 1
                log.warning("release report on %s refused: %s (payload %r)", topic, exc, _short(payload))
                return
            loop = self._loop
            if loop is not None:
                loop.call_soon_threadsafe(self._take_report, report)
            return
        if parsed.channel is Channel.FETCH:
            self._on_fetch(topic, parsed.agent_id, payload)

    def _take_report(self, report: ReleaseReport) -> None:
        self._reports.append(report)
        self.stats["reports"] += 1  # counted here: once counted, the next pass stores it
        if self._wake is not None:
            self._wake.set()

    def _on_fetch(self, topic: str, agent_id: str, payload: bytes) -> None:
        try:
            request = decode_chunk_request(payload, agent_id=agent_id)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            log.warning("chunk request on %s refused: %s (payload %r)", topic, exc, _short(payload))
            return
        with self._lock:
            desired = self.desired.get(agent_id)
        if desired != request.release_id:
            self.stats["requests_refused"] += 1
            log.warning("chunk request of %s for release %s refused: the release desired for it is %s",
                        agent_id, request.release_id, desired or "none (its config's model)")
            return
        try:
            ref, package = self._package(request.release_id)
        except ReleaseError as exc:
            self.stats["requests_refused"] += 1
            log.error("chunk request of %s cannot be served: %s", agent_id, exc)
            return
        indices = chunk_indices(request, ref)
        if not indices:
            self.stats["requests_refused"] += 1
            log.warning("chunk request of %s for %s refused: chunks %d.. do not exist (it has %d)",
                        agent_id, ref.release_id, request.first, ref.chunks)
            return
        self.stats["requests"] += 1
        self.server.submit(ChunkJob(agent_id, ref, package, indices))

    def _package(self, release_id: str) -> tuple[ReleaseRef, bytes]:
        with self._lock:
            cached = self._packages.get(release_id)
        if cached is not None:
            return cached
        row: ReleaseRow | None = self.hub._reader().use(lambda repo: repo.release_get(release_id))  # noqa: SLF001
        if row is None:
            raise ReleaseError(f"release {release_id} is not in the store")
        loaded = (row.ref(), read_package(self.folder, row))
        with self._lock:
            self._packages[release_id] = loaded
        return loaded

    # -- the loop ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.hub.config.releases.tick_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await asyncio.sleep(min(self.GATHER_S, self.hub.config.releases.tick_s))
            try:
                await self.tick()
            except Exception:
                log.exception("release loop pass failed")

    async def tick(self) -> None:
        """Store the reports that came in, advance every rollout in progress, publish the
        desired releases not yet published."""
        async with self._tick_lock:
            await self.store_reports()
            for rollout in await self.hub.read(lambda repo: repo.rollouts_in_progress()):
                await self.advance(rollout)
            while await self.publish_desired() == self.PUBLISH_BATCH:
                pass  # a promotion to many agents: all of them in this pass

    async def store_reports(self) -> int:
        reports, self._reports = self._reports, []
        if not reports:
            return 0
        latest = {r.agent_id: r for r in sorted(reports, key=lambda r: r.at)}
        now = self.hub.clock.now()

        def store(repo: Any) -> None:
            for r in latest.values():
                repo.agent_release_report(r.agent_id, r.model_dump(), now)

        await self.hub.write(store)
        return len(latest)

    async def publish_desired(self) -> int:
        """Publish (retained) every desired release not yet published; mark each one."""
        rows = await self.hub.read(lambda repo: repo.agent_releases_unpublished(self.PUBLISH_BATCH))
        if not rows:
            return 0
        refs: dict[str, ReleaseRef] = {}
        for rid in {a.desired_release for a in rows if a.desired_release}:
            row = await self.hub.read(lambda repo, r=rid: repo.release_get(r))
            if row is not None:
                refs[rid] = row.ref()
        now = self.hub.clock.now()
        done = []
        for a in rows:
            if a.desired_release and a.desired_release not in refs:
                log.error("agent %s: desired release %s is not in the store; not published",
                          a.agent_id, a.desired_release)
                continue
            msg = DesiredRelease(agent_id=a.agent_id, release=refs.get(a.desired_release or ""),
                                 rollout_id=a.rollout_id, issued_at=now)
            with self._lock:  # may fetch it from now on (before the agent can see it)
                self.desired[a.agent_id] = a.desired_release
            # on the hub's link, like desired configs (small; the chunks have their own client)
            if self.hub.publish_retained(agent_topic(a.agent_id, Channel.RELEASE), encode(msg)):
                done.append(a)
        if len(done) < len(rows):
            log.warning("desired release not published for %d agent(s) (%s ...): no broker connection or "
                        "a full queue; retried on the next pass", len(rows) - len(done),
                        ", ".join(sorted({a.agent_id for a in rows} - {a.agent_id for a in done}))[:200])
        if done:
            def mark(repo: Any) -> None:
                for a in done:
                    repo.agent_release_published(a.agent_id, a.desired_at, now)

            await self.hub.write(mark)
            self.stats["desired_published"] += len(done)
        return len(done)

    async def figures(self, rollout: RolloutRow) -> RolloutFigures:
        now = self.hub.clock.now()
        window = timedelta(minutes=rollout.canary_minutes)

        def load(repo: Any) -> RolloutFigures:
            members = repo.rollout_agents(rollout.rollout_id)
            ids = [m.agent_id for m in members]
            reports = repo.agent_releases(ids)
            statuses = repo.agent_last_status(ids)
            agents = []
            for m in members:
                r = reports.get(m.agent_id)
                about = r is not None and r.report_release == rollout.release_id
                state, seen = statuses.get(m.agent_id, ("unknown", None))
                agents.append(AgentFigures(
                    m.agent_id, m.canary, r.state if about and r is not None else None,
                    r.reason if about and r is not None else None,
                    online=state != AgentState.OFFLINE, offline_since=seen))
            canary = [m.agent_id for m in members if m.canary]
            before = after = 0
            if rollout.stage == Stage.CANARY:
                before = repo.false_alarms_closed(canary, rollout.started_at - window, rollout.started_at)
                after = repo.false_alarms_closed(canary, rollout.started_at, now + timedelta(microseconds=1))
            return RolloutFigures(Stage(rollout.stage), rollout.started_at, window, now, tuple(agents),
                                  before, after)

        return await self.hub.read(load)

    async def advance(self, rollout: RolloutRow) -> Decision:
        f = await self.figures(rollout)
        decision = decide(f, self.policy)
        self.decisions[rollout.rollout_id] = decision
        now = f.now

        figures_changed = rollout.stage == Stage.CANARY and (
            (rollout.false_alarms_before, rollout.false_alarms_after) != (f.false_alarms_before, f.false_alarms_after))
        if decision.action is Action.WAIT and not figures_changed:
            return decision  # nothing to write

        def apply(repo: Any) -> None:
            current = repo.rollout_get(rollout.rollout_id)
            if current is None or current.stage != rollout.stage:
                return  # changed meanwhile (a manual rollback): decide again next pass
            if rollout.stage == Stage.CANARY:
                repo.rollout_set_false_alarms(rollout.rollout_id, f.false_alarms_before, f.false_alarms_after)
            if decision.action is Action.PROMOTE:
                plan.promote(repo, current, now, decision.reason)
            elif decision.action is Action.DONE:
                plan.finish(repo, current, now, decision.reason)
            elif decision.action is Action.ROLLBACK:
                plan.roll_back(repo, current.rollout_id, now, f"automatic: {decision.reason}")

        await self.hub.write(apply)
        if decision.action is not Action.WAIT:
            log.info("%s (%s): %s: %s", rollout.rollout_id, rollout.release_id, decision.action,
                     decision.reason)
        return decision

    def counts(self) -> dict[str, int]:
        """For the hub's summary: releases, rollouts by stage, and this run's serving counters
        (chunks served, requests refused or dropped, reports taken, bad messages)."""
        out = dict(self.hub._reader().use(lambda repo: repo.release_counts()))  # noqa: SLF001
        out.update(self.stats)
        return out

    # -- operator actions (CLI and web do the same through the store) ------------------------------
    async def start_rollout(self, release_id: str, *, canary: Any, agents: Any, canary_minutes: float | None,
                            by: str) -> RolloutRow:
        minutes = canary_minutes if canary_minutes is not None else self.hub.config.releases.canary_minutes
        row = await self.hub.write(lambda repo: plan.start_rollout(
            repo, release_id, canary=plan.parse_agents(canary), agents=agents, canary_minutes=minutes,
            now=self.hub.clock.now(), by=by))
        log.info("%s of %s started by %s: canary %s", row.rollout_id, release_id, by, ", ".join(row.canary))
        self.wake()
        return row

    async def roll_back(self, rollout_id: str, *, by: str, reason: str = "") -> RolloutRow:
        text = f"manual, by {by}" + (f": {reason}" if reason else "")
        row = await self.hub.write(lambda repo: plan.roll_back(repo, rollout_id, self.hub.clock.now(), text))
        log.info("%s rolled back (%s)", row.rollout_id, text)
        self.wake()
        return row
