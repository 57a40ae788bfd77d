"""The durable outbox: every event the agent takes, until the hub acknowledges it.

Delivery is a state machine you can see in the database::

    emit ──▶ pending ──(published, broker PUBACK)──▶ sent ──(hub ack covers seq)──▶ deleted
                ▲                                      │
                └──── ack timeout / reconnect ─────────┘

* ``emit`` / ``commit`` write the event (and its snapshot, as a separate row with its
  own seq, first) in one transaction with the next per-agent ``seq``; when they return
  the event survives a crash and a power cut.
* ``add_clip`` writes an event's clip, later, as chunk rows (kind ``clip``, each with its
  own seq) in one transaction. They are not sent live: they go with the backlog, paced by
  ``max_in_flight``, so a clip never holds back an event emitted after it.
* Between being handed to the transport and the PUBACK a row is *in flight* (in memory
  only: after a crash it is simply pending again).
* Rows are deleted only when a hub :class:`~protocol.messages.Ack` covers them (``upto``
  or a ``range``), or when the hub rejected them (logged; the hub keeps them in its
  dead-letter store).
* The cap (rows and bytes) drops by :mod:`edge_agent.outbox.policy`; every drop and
  refusal is counted in the database and shown in telemetry.

One writer: the agent's event-loop thread. ``cityops-agent outbox`` reads the same file
from another process (WAL lets it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.emit import ClipDraft, EventDraft
from edge_agent.errors import OutboxError, OutboxFullError
from protocol.clips import ClipChunkHeader, encode_clip_chunk, split_clip
from protocol.clock import Clock, SystemClock
from protocol.codec import encode, encode_snapshot
from protocol.errors import ProtocolError
from protocol.limits import MAX_EVENT_BYTES
from protocol.messages import Ack, Event, OutboxTelemetry, SnapshotHeader, SnapshotRef
from protocol.topics import Channel

from . import db
from .jpeg import jpeg_size
from .policy import Candidate, DropPlan, plan_drops

__all__ = ["AckResult", "Outbox", "OutboxRow"]

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot"
CLIP = "clip"
_COUNTERS = ("dropped.update", "dropped.snapshot", "dropped.clip", "refused.new",
             "refused.update", "refused.end", "refused.clip", "rejected")


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    kind: str  # new | update | end | snapshot
    channel: Channel
    payload: bytes


@dataclass(frozen=True)
class AckResult:
    deleted: int
    rejected: int
    seqs: frozenset[int] = field(default_factory=frozenset)


class Outbox:
    """SQLite outbox for one agent. Implements :class:`edge_agent.emit.EventSink` and the
    rule-state store of :mod:`edge_agent.rules.state`."""

    def __init__(
        self, path: str | Path, agent_id: str, *, max_events: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024, synchronous: str = "full", clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.agent_id = agent_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.clock = clock or SystemClock()
        try:
            self._conn = db.connect(self.path, synchronous=synchronous)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the database: {exc}", path=str(self.path)) from exc
        row = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        # Delivery bookkeeping (memory only: after a restart every row is pending again).
        self._conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sent'")
        self._in_flight: set[int] = set()
        self._live: deque[OutboxRow] = deque()
        self._live_enabled = False
        self._cursor = 0
        self._listeners: list[Any] = []
        self.last_error: str | None = None

    # -- EventSink ---------------------------------------------------------------------
    def emit(self, draft: EventDraft) -> int:
        """Store one event durably; returns its seq. Raises OutboxError, never drops it."""
        return self.commit([draft])[-1]

    def commit(
        self, drafts: Sequence[EventDraft], states: Mapping[str, dict[str, Any] | None] | None = None
    ) -> list[int]:
        """Store events and rule-state changes in one transaction. Returns the seq of each
        draft's event row. ``states`` maps a key to its new JSON-able state (None deletes)."""
        now = self.clock.now().timestamp()
        refused: OutboxFullError | None = None
        try:
            with db.transaction(self._conn):
                next_seq = self._meta("next_seq")
                rows, seq_of_draft = self._build_rows(drafts, next_seq)
                incoming_bytes = sum(len(r.payload) for r in rows)
                plan = self._plan(rows, incoming_bytes)
                if plan.refuse:
                    # Only the refusal counters commit; nothing is dropped.
                    for d in drafts:
                        self._bump(f"refused.{d.kind.value}", 1)
                    kinds = ", ".join(sorted({d.kind.value for d in drafts}))
                    refused = OutboxFullError(
                        f"full ({self._count} rows, {self._bytes} bytes; caps {self.max_events} "
                        f"rows, {self.max_bytes} bytes) and holds only new/end events: refusing "
                        f"this {kinds} rather than dropping a case's start or end",
                        path=str(self.path), event_id=drafts[0].event_id if drafts else None,
                    )
                else:
                    self._apply_drops(plan)
                    self._conn.executemany(
                        "INSERT INTO outbox (seq, event_id, kind, channel, payload, size, created_at, pair)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(r.seq, r.event_id, r.kind, r.channel.value, r.payload, len(r.payload), now,
                          pair) for r, pair in rows_with_pairs(rows)],
                    )
                    self._set_meta("next_seq", next_seq + len(rows))
                    self._write_states(states or {}, now)
        except sqlite3.Error as exc:
            self.last_error = f"write failed: {exc}"
            raise OutboxError(_sqlite_reason(exc), path=str(self.path),
                              event_id=drafts[0].event_id if drafts else None) from exc
        if refused is not None:
            self.last_error = str(refused)
            log.error("%s", refused, extra={"outbox": str(self.path)})
            raise refused
        self._after_drops(plan)
        self._count += len(rows)
        self._bytes += incoming_bytes
        if self._live_enabled:
            self._live.extend(rows)
        for listener in self._listeners:
            listener()
        return seq_of_draft

    def add_clip(self, clip: ClipDraft) -> list[int]:
        """Store an event's clip as chunk rows in one transaction; returns their seqs.
        Raises OutboxError (a clip that is not valid protocol, a full outbox), never drops
        part of it on the way in."""
        now = self.clock.now().timestamp()
        try:
            parts = split_clip(clip.data)
            digest = hashlib.sha256(clip.data).hexdigest()
        except (ProtocolError, ValueError) as exc:
            raise OutboxError(f"clip refused: {exc}", path=str(self.path), event_id=clip.event_id) from exc
        try:
            with db.transaction(self._conn):
                seq = self._meta("next_seq")
                rows = []
                for i, part in enumerate(parts):
                    header = ClipChunkHeader(
                        agent_id=self.agent_id, event_id=clip.event_id, seq=seq + i, index=i,
                        count=len(parts), sha256=hashlib.sha256(part).hexdigest(),
                        clip_sha256=digest, clip_bytes=len(clip.data), width=clip.width,
                        height=clip.height, fps=clip.fps, frames=clip.frames,
                        duration_s=clip.duration_s, started_at=clip.started_at,
                        event_offset_s=clip.event_offset_s)
                    rows.append(OutboxRow(seq + i, clip.event_id, CLIP, Channel.CLIPS,
                                          encode_clip_chunk(header, part)))
                incoming = sum(len(r.payload) for r in rows)
                plan = self._plan(rows, incoming)
                if plan.refuse:
                    self._bump("refused.clip", 1)
                else:
                    self._apply_drops(plan)
                    self._conn.executemany(
                        "INSERT INTO outbox (seq, event_id, kind, channel, payload, size, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(r.seq, r.event_id, r.kind, r.channel.value, r.payload, len(r.payload), now)
                         for r in rows])
                    self._set_meta("next_seq", seq + len(rows))
        except (ValidationError, ProtocolError, ValueError) as exc:
            raise OutboxError(f"clip refused: {exc}", path=str(self.path), event_id=clip.event_id) from exc
        except sqlite3.Error as exc:
            self.last_error = f"write failed: {exc}"
            raise OutboxError(_sqlite_reason(exc), path=str(self.path), event_id=clip.event_id) from exc
        if plan.refuse:
            raise OutboxFullError(
                f"full ({self._count} rows, {self._bytes} bytes) and holds only new/end events: "
                f"refusing the clip of event {clip.event_id} ({len(clip.data)} bytes)",
                path=str(self.path), event_id=clip.event_id)
        self._after_drops(plan)
        self._count += len(rows)
        self._bytes += incoming
        # Not live: chunks go with the backlog, so they never hold back a later event.
        for listener in self._listeners:
            listener()
        return [r.seq for r in rows]

    def _apply_drops(self, plan: DropPlan) -> None:
        if plan.drop:
            self._delete_seqs(plan.drop)
            self._bump("dropped.update", plan.dropped_updates)
            self._bump("dropped.snapshot", plan.dropped_snapshots)
            self._bump("dropped.clip", plan.dropped_clips)

    def _after_drops(self, plan: DropPlan) -> None:
        if plan.drop:
            log.warning("outbox full: dropped %d oldest clip chunk(s), %d update(s) and %d "
                        "snapshot(s) to make room", plan.dropped_clips, plan.dropped_updates,
                        plan.dropped_snapshots, extra={"outbox": str(self.path)})
        dropped = set(plan.drop)
        self._count -= len(dropped)
        self._bytes -= plan.freed_bytes
        self._in_flight -= dropped

    def _build_rows(self, drafts: Sequence[EventDraft], next_seq: int) -> tuple[list[OutboxRow], list[int]]:
        rows: list[OutboxRow] = []
        seqs: list[int] = []
        seq = next_seq
        for draft in drafts:
            evidence = draft.evidence
            if draft.snapshot_jpeg is not None:
                snap, ref = self._snapshot_row(draft, seq)
                rows.append(snap)
                seq += 1
                evidence = evidence.model_copy(update={"snapshot": ref})
            try:
                event = Event(
                    event_id=draft.event_id, agent_id=self.agent_id, seq=seq, kind=draft.kind,
                    category=draft.category, subcategory=draft.subcategory, source=draft.source,
                    observed_at=draft.observed_at, started_at=draft.started_at,
                    location=draft.location, confidence=draft.confidence, evidence=evidence,
                    attributes=draft.attributes,
                )
                payload = encode(event, limit=MAX_EVENT_BYTES)
            except (ValidationError, ProtocolError) as exc:
                raise OutboxError(f"event is not valid protocol v1: {exc}", path=str(self.path),
                                  event_id=draft.event_id) from exc
            rows.append(OutboxRow(seq, draft.event_id, draft.kind.value, Channel.EVENTS, payload))
            seqs.append(seq)
            seq += 1
        return rows, seqs

    def _snapshot_row(self, draft: EventDraft, seq: int) -> tuple[OutboxRow, SnapshotRef]:
        jpeg = draft.snapshot_jpeg or b""
        size = draft.snapshot_size or jpeg_size(jpeg)
        if size is None:
            raise OutboxError("snapshot is not a JPEG (no frame header found)",
                              path=str(self.path), event_id=draft.event_id)
        digest = hashlib.sha256(jpeg).hexdigest()
        try:
            header = SnapshotHeader(agent_id=self.agent_id, event_id=draft.event_id, seq=seq,
                                    sha256=digest, width=size[0], height=size[1],
                                    taken_at=draft.observed_at)
            payload = encode_snapshot(header, jpeg)
        except (ValidationError, ProtocolError, ValueError) as exc:
            raise OutboxError(f"snapshot refused: {exc}", path=str(self.path),
                              event_id=draft.event_id) from exc
        ref = SnapshotRef(sha256=digest, bytes=len(jpeg), width=size[0], height=size[1])
        return OutboxRow(seq, draft.event_id, SNAPSHOT, Channel.SNAPSHOTS, payload), ref

    def _plan(self, rows: list[OutboxRow], incoming_bytes: int) -> DropPlan:
        fits = (self._count + len(rows) <= self.max_events
                and self._bytes + incoming_bytes <= self.max_bytes)
        return plan_drops(
            count=self._count, size=self._bytes, incoming_rows=len(rows),
            incoming_bytes=incoming_bytes, max_rows=self.max_events, max_bytes=self.max_bytes,
            candidates=() if fits else self._drop_candidates(),
        )

    def _drop_candidates(self) -> Iterable[Candidate]:
        # Clip chunks first (oldest first): a clip only illustrates an event the hub has.
        for seq, size in self._conn.execute(
                "SELECT seq, size FROM outbox WHERE kind = 'clip' ORDER BY seq"):
            yield Candidate(seq, size, kind=CLIP)
        cur = self._conn.execute(
            "SELECT o.seq, o.size, s.seq, s.size FROM outbox o"
            " LEFT JOIN outbox s ON s.seq = o.pair AND s.kind = 'snapshot'"
            " WHERE o.kind = 'update' ORDER BY o.seq"
        )
        for seq, size, snap_seq, snap_size in cur:
            yield Candidate(seq, size, snap_seq, snap_size or 0)

    # -- rule state --------------------------------------------------------------------
    def load_states(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT key, value FROM rule_state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def save_states(self, states: Mapping[str, dict[str, Any] | None]) -> None:
        """Write rule-state changes that come with no event (batched by the caller)."""
        if not states:
            return
        try:
            with db.transaction(self._conn, durable=False):
                self._write_states(states, self.clock.now().timestamp())
        except sqlite3.Error as exc:
            self.last_error = f"state write failed: {exc}"
            raise OutboxError(_sqlite_reason(exc), path=str(self.path)) from exc

    def _write_states(self, states: Mapping[str, dict[str, Any] | None], now: float) -> None:
        for key, value in states.items():
            if value is None:
                self._conn.execute("DELETE FROM rule_state WHERE key = ?", (key,))
            else:
                self._conn.execute(
                    "INSERT INTO rule_state (key, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (key, json.dumps(value, separators=(",", ":")), now),
                )

    # -- delivery (the MQTT session drives these) -------------------------------------
    def add_listener(self, callback: Any) -> None:
        """``callback()`` after every commit (the session wakes its sender)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Any) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def start_delivery(self) -> None:
        """A (new) connection: every unacked row is pending again, rows emitted from now on
        go out live, ahead of the backlog."""
        self._requeue("state = 'sent'")
        self._in_flight.clear()
        self._live.clear()
        self._live_enabled = True
        self._cursor = 0

    def stop_delivery(self) -> None:
        """The connection is gone: what was in flight is pending again."""
        self._live_enabled = False
        self._live.clear()
        self._in_flight.clear()
        self._cursor = 0

    def take_live(self, limit: int = 100) -> list[OutboxRow]:
        """Rows emitted since delivery started, oldest first, not yet handed out."""
        out: list[OutboxRow] = []
        while self._live and len(out) < limit:
            row = self._live.popleft()
            if row.seq in self._in_flight:
                continue
            out.append(row)
            self._in_flight.add(row.seq)
        if out:
            # Dropped by the cap or acked meanwhile? Only hand out rows still stored.
            present = self._present([r.seq for r in out])
            for r in out:
                if r.seq not in present:
                    self._in_flight.discard(r.seq)
            out = [r for r in out if r.seq in present]
        return out

    def take_backlog(self, max_rows: int, max_bytes: int) -> list[OutboxRow]:
        """Pending rows not in flight, oldest first, at most ``max_rows`` rows and (but for
        a single larger row) ``max_bytes`` bytes."""
        out: list[OutboxRow] = []
        total = 0
        cursor = self._cursor
        while len(out) < max_rows:
            rows = self._conn.execute(
                "SELECT seq, event_id, kind, channel, payload FROM outbox"
                " WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (cursor, max_rows - len(out) + len(self._in_flight)),
            ).fetchall()
            if not rows:
                break
            for seq, event_id, kind, channel, payload in rows:
                cursor = seq
                if seq in self._in_flight:
                    continue
                if out and (total + len(payload) > max_bytes or len(out) >= max_rows):
                    self._hand_out(out, cursor=seq - 1)
                    return out
                out.append(OutboxRow(seq, event_id, kind, Channel(channel), bytes(payload)))
                total += len(payload)
            if len(rows) < max_rows:
                break
        self._hand_out(out, cursor=cursor)
        return out

    def _hand_out(self, rows: list[OutboxRow], *, cursor: int) -> None:
        self._cursor = max(self._cursor, cursor)
        self._in_flight.update(r.seq for r in rows)

    def release(self, seqs: Iterable[int]) -> None:
        """Publishing failed: these rows are pending again and will be taken again."""
        seqs = list(seqs)
        self._in_flight.difference_update(seqs)
        if seqs:
            self._cursor = min(self._cursor, min(seqs) - 1)

    def mark_sent(self, seqs: Sequence[int]) -> None:
        """The broker acknowledged the message carrying these rows (PUBACK)."""
        self._in_flight.difference_update(seqs)
        if not seqs:
            return
        now = self.clock.now().timestamp()
        try:
            with db.transaction(self._conn, durable=False):
                self._conn.executemany(
                    "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1 WHERE seq = ?",
                    [(now, s) for s in seqs],
                )
        except sqlite3.Error as exc:  # harmless: the row stays pending and is sent again
            log.error("outbox: could not mark rows sent: %s", exc)

    def apply_ack(self, ack: Ack) -> AckResult:
        """Delete every row the hub's ack covers (and the ones it rejected, logged)."""
        rejected = {r.seq: r for r in ack.rejected}
        try:
            with db.transaction(self._conn, durable=False):
                gone = self._conn.execute(
                    "DELETE FROM outbox WHERE seq <= ? RETURNING seq, size", (ack.upto,)
                ).fetchall()
                for lo, hi in ack.ranges:
                    gone += self._conn.execute(
                        "DELETE FROM outbox WHERE seq BETWEEN ? AND ? RETURNING seq, size", (lo, hi)
                    ).fetchall()
                for seq in rejected:
                    gone += self._conn.execute(
                        "DELETE FROM outbox WHERE seq = ? RETURNING seq, size", (seq,)
                    ).fetchall()
                if rejected:
                    self._bump("rejected", len(rejected))
        except sqlite3.Error as exc:
            log.error("outbox: could not apply an ack (rows will be sent again): %s", exc)
            return AckResult(0, 0)
        for r in ack.rejected:
            log.warning("hub rejected seq %d (event %s): %s; kept in the hub's dead-letter store",
                        r.seq, r.event_id, r.reason, extra={"seq": r.seq, "event_id": r.event_id})
        seqs = frozenset(s for s, _ in gone)
        self._count -= len(gone)
        self._bytes -= sum(size for _, size in gone)
        self._in_flight -= seqs
        return AckResult(len(gone), len(rejected), seqs)

    def requeue_stale(self, ack_timeout_s: float) -> int:
        """Sent rows the hub has not acked within the timeout become pending again."""
        cutoff = self.clock.now().timestamp() - ack_timeout_s
        return self._requeue("state = 'sent' AND sent_at < ?", (cutoff,))

    def _requeue(self, where: str, params: tuple = ()) -> int:
        try:
            with db.transaction(self._conn, durable=False):
                rows = self._conn.execute(
                    f"UPDATE outbox SET state = 'pending' WHERE {where} RETURNING seq", params  # noqa: S608
                ).fetchall()
        except sqlite3.Error as exc:
            log.error("outbox: could not requeue rows: %s", exc)
            return 0
        if rows:
            self._cursor = min(self._cursor, min(r[0] for r in rows) - 1)
        return len(rows)

    # -- inspection --------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE key != 'next_seq'"
        ).fetchall()
        return {k: int(v) for k, v in rows}

    def telemetry(self) -> OutboxTelemetry:
        counters = self.counters()
        oldest = self._conn.execute("SELECT created_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
        age = max(0.0, self.clock.now().timestamp() - oldest[0]) if oldest else 0.0
        sent = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").fetchone()[0]
        by_kind = {k.replace(".", "_"): v for k, v in counters.items() if v and k != "rejected"}
        return OutboxTelemetry(
            depth=self._count, oldest_age_s=round(age, 3),
            dropped=counters.get("dropped.update", 0) + counters.get("dropped.snapshot", 0)
            + counters.get("dropped.clip", 0),
            dropped_by_kind=by_kind, in_flight=len(self._in_flight) + int(sent),
        )

    @property
    def depth(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def next_seq(self) -> int:
        return self._meta("next_seq")

    def rows(self, limit: int = 1_000_000) -> list[dict[str, Any]]:
        """Every row's delivery state, oldest first (for inspection and tests)."""
        cur = self._conn.execute(
            "SELECT seq, event_id, kind, channel, state, size, created_at, sent_at, attempts"
            " FROM outbox ORDER BY seq LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("outbox: checkpoint at close failed: %s", exc)
        self._conn.close()

    # -- helpers -----------------------------------------------------------------------
    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _bump(self, key: str, by: int) -> None:
        if by:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (key, by))

    def _delete_seqs(self, seqs: Sequence[int]) -> None:
        self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def _present(self, seqs: Sequence[int]) -> set[int]:
        marks = ",".join("?" * len(seqs))
        return {r[0] for r in self._conn.execute(
            f"SELECT seq FROM outbox WHERE seq IN ({marks})", list(seqs))}  # noqa: S608


def rows_with_pairs(rows: Sequence[OutboxRow]) -> list[tuple[OutboxRow, int | None]]:
    """Each row with the seq of its partner: a snapshot and the event that follows it."""
    out: list[tuple[OutboxRow, int | None]] = []
    for i, row in enumerate(rows):
        pair = None
        if row.kind == SNAPSHOT and i + 1 < len(rows) and rows[i + 1].event_id == row.event_id:
            pair = rows[i + 1].seq
        elif i > 0 and rows[i - 1].kind == SNAPSHOT and rows[i - 1].event_id == row.event_id:
            pair = rows[i - 1].seq
        out.append((row, pair))
    return out


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "full" in text.lower():
        return f"the disk is full ({text}); free space on the data directory's disk"
    if "readonly" in text.lower() or "read-only" in text.lower():
        return f"the database is read-only ({text}); check the data directory's permissions"
    return f"database error: {text}"

