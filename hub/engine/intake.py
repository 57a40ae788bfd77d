"""Apply one batch of classified messages inside the writer's transaction.

For every event message: store it once (``(agent_id, seq)`` unique; the same message
again is a duplicate, the same seq with other content a ``conflict`` dead letter), keep
the lifecycle row ``(agent_id, event_id)`` at its latest state, and for a lifecycle seen
for the first time find its case: join an open one, reopen a recently closed one, or
open, screen, accept and dispatch a new one. Refused messages (and the refused events of
a batch) become dead letters and rejections in the ack. Status and telemetry update the
agent registry (telemetry coalesced to the latest per agent). The caller commits, then
publishes the acks.

Only what is stored moves an agent's sequence state. A refused seq is acknowledged by
the ack's ``rejected`` list (the agent drops that outbox row); it enters the state only
where it cannot open a gap — at most one past the highest seq handled so far — so that
a real agent's refused event does not hold ``upto`` back, while a hostile seq far ahead
opens nothing.

Accounting (``IngestStats``): every message the writer applies is exactly one of
``event_messages + refused + statuses + telemetry + snapshots + clip_chunks == messages``
(a refused clip chunk whose header reads counts as a clip chunk, and a dead letter), and every
event of an events message one of ``events_stored + duplicates + conflicts +
seq_out_of_window + events_refused == events_received``. Each refusal is a dead letter.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from protocol.errors import Refusal
from protocol.messages import Ack, AgentState, Rejection, Status, Telemetry

from ..clips import apply_chunk, clip_files
from ..ingest.decode import (
    ClipChunkItem,
    EventRecord,
    EventsItem,
    Item,
    RefusedItem,
    SnapshotItem,
    StatusItem,
    TelemetryItem,
    record_from_body,
    safe_text,
)
from ..ingest.seqs import SeqState, build_acks
from ..store.files import SnapshotFiles
from ..store.repo import InsertOutcome, Repository
from .core import CaseEngine
from .lifecycles import LifecyclePlacer

__all__ = ["BatchResult", "IngestStats", "Ingestor", "store_unavailable"]

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Running counters since the hub started (the demo's summary, /api/v1/stats and
    /metrics read them). See the module's docstring for how they add up."""

    received: int = 0  # messages handed to the writer (by the receivers and the link)
    messages: int = 0  # messages applied in a committed batch
    event_messages: int = 0  # events messages with at least one good event
    events_received: int = 0  # events in those messages
    events_stored: int = 0
    duplicates: int = 0
    conflicts: int = 0  # a stored seq sent again with other content (dead letter)
    events_refused: int = 0  # bad events of an otherwise good batch (dead letter each)
    refused: int = 0  # messages refused whole (dead letter each)
    dead_letter_failures: int = 0  # refusals that could not be written as given
    writer_restarts: int = 0  # the writer loop failed unexpectedly and went on
    statuses: int = 0
    telemetry: int = 0
    snapshots: int = 0
    clip_chunks: int = 0  # chunk messages of event clips (hub/clips.py)
    clips_stored: int = 0  # clips complete, checked and written
    clips_failed: int = 0  # clips given up: a refused chunk, chunks that do not add up
    cases_opened: int = 0
    cases_joined: int = 0
    cases_reopened: int = 0
    gaps_opened: int = 0
    seq_out_of_window: int = 0  # events refused: seq far above the agent's highest (a dead letter)
    seqs_given_up: int = 0  # seqs of the oldest gaps given up under the range cap (acked as lost)
    batches: int = 0
    batch_failures: int = 0
    acks_sent: int = 0
    acks_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class BatchResult:
    acks: list[Ack] = field(default_factory=list)
    seq_states: dict[str, SeqState] = field(default_factory=dict)
    verify_cases: set[int] = field(default_factory=set)
    snapshot_arrived: bool = False
    telemetry: list[Telemetry] = field(default_factory=list)  # the latest per agent (vital signs)
    counts: IngestStats = field(default_factory=IngestStats)


class Ingestor:
    """Holds the per-agent sequence states between batches (the writer is the only user)."""

    def __init__(self, engine: CaseEngine, files: SnapshotFiles,
                 clips: SnapshotFiles | None = None) -> None:
        self.engine = engine
        self.files = files
        # Event clips (MP4) beside the snapshots unless the hub names their folder.
        self.clips = clips or clip_files(files.root.with_name("clips"))
        self.setup = engine.setup
        self.clock = engine.clock
        self._seqs: dict[str, SeqState] = {}
        self.placer = LifecyclePlacer(engine)

    def forget(self) -> None:
        """Drop cached state (after a rolled-back batch, or a command that moved events)."""
        self._seqs.clear()
        self.placer.forget()

    def installed(self, result: BatchResult) -> None:
        """Called after the batch committed."""
        self._seqs.update(result.seq_states)

    def _seq(self, repo: Repository, result: BatchResult, agent_id: str) -> SeqState:
        state = result.seq_states.get(agent_id)
        if state is not None:
            return state
        cached = self._seqs.get(agent_id)
        if cached is None:
            row = repo.get_agent(agent_id)
            cached = (SeqState(row.seq_upto, [list(r) for r in row.seq_ranges], row.seq_highest,
                               row.seq_gaps) if row else SeqState())
        state = cached.copy()
        result.seq_states[agent_id] = state
        return state

    # -- the batch -------------------------------------------------------------------------------
    def apply(self, repo: Repository, items: list[Item]) -> BatchResult:
        now = self.clock.now()
        result = BatchResult()
        c = result.counts
        rejections: dict[str, list[Rejection]] = {}
        handled: dict[str, list[int]] = {}  # stored seqs (and their duplicates), per agent
        refused_seqs: dict[str, list[int]] = {}  # seqs of refused events, per agent
        batch = self.placer.begin()
        new_rows: list[tuple] = []
        pending: dict[tuple[str, int], EventRecord] = {}  # stored in this batch, not yet written
        telemetry: dict[str, Telemetry] = {}
        seen: set[str] = set()
        for item in items:
            c.messages += 1
            if isinstance(item, EventsItem):
                c.event_messages += 1
                seen.add(item.agent_id)
                seqs = handled.setdefault(item.agent_id, [])
                tracker = self._seq(repo, result, item.agent_id)
                for rec in item.records:
                    c.events_received += 1
                    if not tracker.admits(rec.seq):  # far beyond anything the agent sent before
                        c.seq_out_of_window += 1
                        detail = tracker.refusal(rec.seq)
                        self._dead_letter(repo, item.agent_id, Refusal.SEQ_OUT_OF_WINDOW.value,
                                          detail, rec.body, now, c)
                        rejections.setdefault(item.agent_id, []).append(Rejection(
                            seq=rec.seq, event_id=rec.event_id,
                            reason=f"{Refusal.SEQ_OUT_OF_WINDOW.value}: {detail}"[:200]))
                        continue
                    seqs.append(rec.seq)
                    key = (rec.agent_id, rec.seq)
                    earlier = pending.get(key)
                    if earlier is None and not tracker.covers(rec.seq):
                        # New for sure (the sequence state says so): written in bulk below.
                        pending[key] = rec
                        new_rows.append((rec.agent_id, rec.seq, rec.event_id, rec.kind,
                                         rec.observed_at, now, rec.body))
                        c.events_stored += 1
                        self.placer.apply(repo, rec, now, batch, result)
                        continue
                    if earlier is not None:
                        outcome = InsertOutcome("duplicate" if earlier.same_content(rec) else "conflict",
                                                earlier.event_id, earlier.body)
                    else:
                        outcome = repo.insert_message(rec.agent_id, rec.seq, rec.event_id,
                                                      rec.kind, rec.observed_at, now, rec.body)
                    if outcome.status == "stored":  # handled before (refused), now valid
                        c.events_stored += 1
                        self.placer.apply(repo, rec, now, batch, result)
                    elif outcome.existing_event_id == rec.event_id and (
                        outcome.status == "duplicate" or _same_event(outcome.existing_body, rec)
                    ):
                        c.duplicates += 1
                    else:
                        c.conflicts += 1
                        detail = (f"seq {rec.seq} is already stored as event "
                                  f"{outcome.existing_event_id} with other content")
                        self._dead_letter(repo, item.agent_id, "conflict", detail, rec.body, now, c)
                        rejections.setdefault(item.agent_id, []).append(
                            Rejection(seq=rec.seq, event_id=rec.event_id, reason=f"conflict: {detail}"[:200]))
                for bad in item.refused:
                    c.events_received += 1
                    c.events_refused += 1
                    self._refusal(repo, bad, now, c, rejections, refused_seqs)
            elif isinstance(item, RefusedItem):
                c.refused += 1
                self._refusal(repo, item, now, c, rejections, refused_seqs)
            elif isinstance(item, StatusItem):
                c.statuses += 1
                self.placer.settle_care(repo, batch, now)  # the status reads care alarms
                self._apply_status(repo, item.status, now)
            elif isinstance(item, TelemetryItem):
                c.telemetry += 1
                seen.add(item.agent_id)
                last = telemetry.get(item.agent_id)
                if last is None or item.telemetry.at >= last.at:
                    telemetry[item.agent_id] = item.telemetry
            elif isinstance(item, SnapshotItem):
                c.snapshots += 1
                seen.add(item.agent_id)
                self._apply_snapshot(repo, item, now)
                result.snapshot_arrived = True
                # A snapshot is its own outbox row with its own seq: acknowledge it with
                # the batch, or the agent resends it forever and its seq reads as a gap.
                handled.setdefault(item.agent_id, []).append(item.header.seq)
            elif isinstance(item, ClipChunkItem):
                c.clip_chunks += 1
                seen.add(item.agent_id)
                outcome = apply_chunk(repo, self.clips, item, now)
                c.clips_stored += outcome.state == "stored"
                c.clips_failed += outcome.state == "failed"
                if item.refusal is not None:  # dead letter, and its seq rejected in the ack
                    self._refusal(repo, item.refusal, now, c, rejections, refused_seqs)
                else:  # acknowledged like a snapshot (a late chunk too: it is not needed)
                    handled.setdefault(item.agent_id, []).append(item.header.seq)
        if new_rows:
            repo.insert_messages(new_rows)
        self.placer.finish(repo, batch, now)
        for t in telemetry.values():
            self._apply_telemetry(repo, t, now)
        result.telemetry = list(telemetry.values())
        seq_rows = []
        acked = list(dict.fromkeys([*handled, *refused_seqs]))
        for agent_id in acked:
            state = self._seq(repo, result, agent_id)
            given_up = state.given_up
            opened = _add_seqs(state, handled.get(agent_id, ()), refused_seqs.get(agent_id, ()))
            if state.given_up > given_up:
                c.seqs_given_up += state.given_up - given_up
                log.warning("agent %s: over %s open sequence gaps; gave up waiting for the oldest "
                            "(%s seqs, now acked up to %s)", agent_id, state.max_ranges,
                            state.given_up - given_up, state.upto)
            if opened:
                c.gaps_opened += opened
                log.warning("agent %s: sequence gap (have up to %s, now %s; %s missing)",
                            agent_id, state.upto, state.highest, state.missing())
            seq_rows.append((agent_id, state.upto, state.ranges, state.highest, state.gaps))
        repo.note_agents_seen([a for a in seen if a not in result.seq_states], seq_rows, now)
        for agent_id in acked:
            result.acks.extend(build_acks(agent_id, result.seq_states[agent_id],
                                          rejections.get(agent_id, []), now))
        return result

    def _refusal(self, repo: Repository, item: RefusedItem, now: datetime, c: IngestStats,
                 rejections: dict[str, list[Rejection]], refused_seqs: dict[str, list[int]]) -> None:
        """A refused message or event: its dead letter, and its rejection for the ack."""
        self._store_dead_letter(repo, item.fingerprint, item.topic, item.agent_id, item.reason,
                                item.detail, item.payload_preview, item.payload_bytes, now, c)
        log.warning("refused %s on %s: %s", item.reason, item.topic, item.detail,
                    extra={"payload": item.payload_preview[:120]})
        if item.agent_id and item.rejections:
            rejections.setdefault(item.agent_id, []).extend(item.rejections)
            refused_seqs.setdefault(item.agent_id, []).extend(r.seq for r in item.rejections)

    def _dead_letter(self, repo: Repository, agent_id: str, reason: str, detail: str,
                     body: str, now: datetime, c: IngestStats | None = None) -> None:
        fp = hashlib.sha256(f"{agent_id}\0{reason}\0{body}".encode("utf-8", "backslashreplace")).hexdigest()
        self._store_dead_letter(repo, fp, f"agent {agent_id} events", agent_id, reason, detail,
                                safe_text(body, 1024), len(body), now, c)

    def _store_dead_letter(self, repo: Repository, fingerprint: str, topic: str,
                           agent_id: str | None, reason: str, detail: str, payload: str,
                           payload_bytes: int, now: datetime, c: IngestStats | None) -> None:
        """Write a dead letter; never raises for what the message holds. When the row as
        given cannot be written, a minimal one (escaped text, no payload) is; only a store
        that cannot write at all (disk full, I/O error) raises, so the batch is held."""
        try:
            repo.add_dead_letter(fingerprint, topic, agent_id, reason, detail, payload,
                                 payload_bytes, now)
            return
        except Exception as exc:  # noqa: BLE001 - whatever the payload made the store say
            if store_unavailable(exc):
                raise
            first = exc
        if c is not None:
            c.dead_letter_failures += 1
        log.error("dead letter on %s could not be written as given (%r); writing a minimal one",
                  safe_text(topic, 300), first)
        try:
            repo.add_dead_letter(
                hashlib.sha256(f"{fingerprint}|minimal".encode("ascii", "replace")).hexdigest(),
                safe_text(topic, 300), agent_id if isinstance(agent_id, str) else None,
                safe_text(reason, 40),
                safe_text(f"{detail} (the full refusal could not be stored: {first!r})", 1000),
                "", payload_bytes if isinstance(payload_bytes, int) else 0, now)
        except Exception as again:  # noqa: BLE001
            if store_unavailable(again):
                raise
            log.error("minimal dead letter failed too (%r); the refusal of %s is in this log only: "
                      "%s: %s", again, safe_text(topic, 300), safe_text(reason, 40),
                      safe_text(detail, 300))

    # -- agents and snapshots ---------------------------------------------------------------------
    def _apply_status(self, repo: Repository, status: Status, now: datetime) -> None:
        row = repo.get_agent(status.agent_id)
        if row is not None and row.status_at is not None and status.at < row.status_at:
            return  # an older status (a late LWT of a previous session)
        repo.upsert_agent(
            status.agent_id, state=status.state.value, boot_id=status.boot_id,
            version=status.version, config_version=status.config_version,
            config_error=status.config_error, capabilities=list(status.capabilities),
            status_at=status.at, status_reason=status.reason, last_seen=now,
        )
        if status.state is AgentState.ONLINE and repo.care_acknowledged_open(status.agent_id):
            self.engine.care.mark(status.agent_id)  # its care state again, in case it was lost

    def _apply_telemetry(self, repo: Repository, t: Telemetry, now: datetime) -> None:
        fields: dict = dict(
            uptime_s=t.uptime_s, outbox_depth=t.outbox.depth,
            outbox_oldest_age_s=t.outbox.oldest_age_s, outbox_dropped=t.outbox.dropped,
            devices=dict(t.devices), cameras={k: v.model_dump() for k, v in t.cameras.items()},
            rss_mb=t.rss_mb, cpu_percent=t.cpu_percent, telemetry_at=t.at, last_seen=now,
        )
        if t.config_version is not None:
            fields["config_version"] = t.config_version
        repo.upsert_agent(t.agent_id, **fields)

    def _apply_snapshot(self, repo: Repository, item: SnapshotItem, now: datetime) -> None:
        sha = self.files.put(item.jpeg)  # the hub's own hash names the file
        h = item.header
        repo.add_snapshot(item.agent_id, h.event_id, h.seq, sha, len(item.jpeg), h.width,
                          h.height, h.taken_at if h.taken_at and h.taken_at.tzinfo else None, now)


def _add_seqs(state: SeqState, stored: list[int] | tuple[int, ...],
              refused: list[int] | tuple[int, ...]) -> int:
    """Add a batch's stored seqs to ``state`` (returns the gaps this opened), letting its
    refused seqs in only where they cannot open a gap: taken in seq order with the stored
    ones, a refused seq enters when it is at most one past the highest seq held then (so
    a refused event among or right after stored ones leaves no hole). A refused seq
    further ahead moves nothing: the ack's ``rejected`` list tells the agent to drop it."""
    if not refused:
        return state.add(stored)
    kept = set(stored)
    opened = 0
    run: list[int] = []
    for seq in sorted(kept.union(refused)):
        if seq in kept:
            run.append(seq)
            continue
        if run:
            opened += state.add(run)
            run = []
        if seq <= state.highest + 1 and not state.covers(seq):
            state.add([seq])
    if run:
        opened += state.add(run)
    return opened


_STORE_UNAVAILABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
                      sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def store_unavailable(exc: BaseException) -> bool:
    """The database cannot write right now, whatever the message (not a poison message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None \
        and (code & 0xFF) in _STORE_UNAVAILABLE


def _same_event(existing_body: str | None, rec: EventRecord) -> bool:
    if existing_body is None:
        return False
    stored = record_from_body(existing_body)
    return stored is not None and stored.same_content(rec)

