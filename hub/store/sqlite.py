"""The SQLite implementation of :class:`hub.store.repo.Repository`.

Discipline: WAL mode; one writer per database (the hub takes an exclusive lock file
next to it, so a second hub on the same file stops with a clear error); every write
transaction starts with ``BEGIN IMMEDIATE`` so it never fails half-way on a lock; readers
open their own connections and never block the writer. ``SqliteRepository.memory()`` is
the in-memory fixture for unit tests (same schema, same SQL).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields as dc_fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from ..errors import StoreError
from .repo import (
    AgentRow,
    AuditRow,
    CandidateRow,
    CaseRow,
    DeadLetterRow,
    GroupKeyTaken,
    InsertOutcome,
    LifecycleRow,
    LifecycleUpdate,
    SnapshotRow,
    TokenRow,
)
from .rows import _agent, _row, _to_db, from_db_time, to_db_time
from .schema import OPEN_STATE_NAMES, OPEN_STATES_SQL, migrations
from .sqlite_care import CareQueries
from .sqlite_clips import ClipQueries
from .sqlite_dataset import DatasetQueries
from .sqlite_notify import NotifyQueries
from .sqlite_plans import PlanQueries
from .sqlite_releases import ReleaseQueries
from .sqlite_reporters import ReporterQueries
from .sqlite_supervision import SupervisionQueries
from .sqlite_web import WebQueries

__all__ = ["SharedReader", "SqliteRepository", "from_db_time", "to_db_time"]

T = TypeVar("T")


class SqliteRepository(WebQueries, PlanQueries, NotifyQueries, SupervisionQueries,
                       ReporterQueries, CareQueries, ClipQueries, DatasetQueries,
                       ReleaseQueries):
    """One connection to the hub database. Create the writer with ``writer=True`` (applies
    migrations, takes the writer lock) and readers with ``writer=False``."""

    def __init__(self, path: str | Path, *, writer: bool = True, synchronous: str = "FULL",
                 busy_timeout_s: float = 10.0, take_lock: bool = True) -> None:
        self.path = str(path)
        self.writer = writer
        self._lock_fd: int | None = None
        self._times: dict[datetime, str] = {}
        memory = self.path == ":memory:"
        if writer and take_lock and not memory:
            self._take_lock()
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not writer and not memory and not Path(self.path).exists():
            raise StoreError(f"database {self.path} does not exist yet; start the hub first")
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                        timeout=busy_timeout_s)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        if writer:
            if not memory:
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute(f"PRAGMA synchronous = {synchronous}")
            migrations.apply(Database(self.conn))
        else:
            self.conn.execute("PRAGMA query_only = ON")

    def _t(self, value: datetime | str) -> str:
        """to_db_time, remembering recent values (a batch converts its "now", its
        recurrence cut-off and its events' times many times); a string is taken as already
        in the store's format."""
        if type(value) is str:
            return value
        times = self._times
        text = times.get(value)
        if text is None:
            if len(times) >= 512:
                times.clear()
            text = times[value] = to_db_time(value)
        return text

    @classmethod
    def memory(cls) -> SqliteRepository:
        """A fresh in-memory database with the full schema: the unit-test fixture."""
        return cls(":memory:", writer=True)

    def _take_lock(self) -> None:
        lock_path = self.path + ".writer.lock"
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"another hub process is writing {self.path} (lock {lock_path}); "
                "run one hub per database"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.conn.in_transaction:
            raise StoreError("transactions do not nest; finish the open one first")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): ROLLBACK only what
            # is still open, so the original error is the one that surfaces.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _x(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def _update(self, table: str, key: str, key_value: Any, fields: dict[str, Any]) -> None:
        if not fields:
            return
        cols = ", ".join(f"{name} = ?" for name in fields)
        values = [_to_db(n, v) for n, v in fields.items()]
        self._x(f"UPDATE {table} SET {cols} WHERE {key} = ?", [*values, key_value])  # noqa: S608

    # -- messages and lifecycles ------------------------------------------------------------
    def insert_message(self, agent_id: str, seq: int, event_id: str, kind: str,
                       observed_at: datetime | str, received_at: datetime, body: str) -> InsertOutcome:
        cur = self._x(
            "INSERT INTO messages (agent_id, seq, event_id, kind, observed_at, received_at, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, seq) DO NOTHING",
            (agent_id, seq, event_id, kind, self._t(observed_at), self._t(received_at), body),
        )
        if cur.rowcount == 1:
            return InsertOutcome("stored")
        row = self._x("SELECT event_id, body FROM messages WHERE agent_id = ? AND seq = ?",
                      (agent_id, seq)).fetchone()
        if row is None:  # pragma: no cover - purged between the two statements (same txn)
            return InsertOutcome("stored")
        if row["body"] == body:
            return InsertOutcome("duplicate", row["event_id"], row["body"])
        return InsertOutcome("conflict", row["event_id"], row["body"])

    def insert_messages(self, rows: Sequence[tuple[str, int, str, str, datetime | str, datetime, str]]) -> None:
        t = self._t
        self.conn.executemany(
            "INSERT INTO messages (agent_id, seq, event_id, kind, observed_at, received_at, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(a, s, e, k, t(o), t(r), b) for a, s, e, k, o, r, b in rows])

    def get_lifecycle(self, agent_id: str, event_id: str) -> LifecycleRow | None:
        row = self._x("SELECT * FROM events WHERE agent_id = ? AND event_id = ?",
                      (agent_id, event_id)).fetchone()
        return None if row is None else _row(LifecycleRow, row)

    def lifecycle_state(self, agent_id: str, event_id: str) -> tuple[int, int | None, int, bool] | None:
        row = self.conn.execute(
            "SELECT id, case_id, last_seq, ended_at IS NOT NULL FROM events "
            "WHERE agent_id = ? AND event_id = ?", (agent_id, event_id)).fetchone()
        return None if row is None else (row[0], row[1], row[2], bool(row[3]))

    _LIFECYCLE_COLUMNS = tuple(f.name for f in dc_fields(LifecycleRow) if f.name != "id")
    _INSERT_LIFECYCLE = (f"INSERT INTO events ({', '.join(_LIFECYCLE_COLUMNS)}) "  # noqa: S608
                         f"VALUES ({', '.join('?' for _ in _LIFECYCLE_COLUMNS)})")

    def insert_lifecycle(self, row: LifecycleRow) -> int:
        t = self._t
        cur = self.conn.execute(self._INSERT_LIFECYCLE, (
            row.agent_id, row.event_id, row.case_id, row.kind, row.category, row.subcategory,
            row.source, row.lat, row.lon, row.grid_id, row.confidence, row.first_seq, row.last_seq,
            row.messages, t(row.started_at), t(row.observed_at),
            None if row.ended_at is None else t(row.ended_at), row.snapshot_sha256,
            _to_db("bbox", row.bbox), _to_db("reading", row.reading),
            _to_db("attributes", row.attributes)))
        return int(cur.lastrowid)

    def note_lifecycle_messages(self, updates: Sequence[LifecycleUpdate]) -> None:
        t = self._t
        self.conn.executemany(
            "UPDATE events SET messages = messages + ?,"
            " kind = CASE WHEN coalesce(ended_at, ?) IS NOT NULL THEN 'end'"
            "   WHEN ? IS NOT NULL THEN ? ELSE kind END,"
            " last_seq = max(last_seq, coalesce(?, 0)),"
            " observed_at = coalesce(?, observed_at), confidence = coalesce(?, confidence),"
            " snapshot_sha256 = coalesce(?, snapshot_sha256), bbox = coalesce(?, bbox),"
            " reading = coalesce(?, reading), ended_at = coalesce(ended_at, ?),"
            # An older message than the stored first one: the lifecycle starts there.
            " started_at = CASE WHEN ? < first_seq THEN ? ELSE started_at END,"
            " first_seq = min(first_seq, coalesce(?, first_seq)) WHERE id = ?",
            [(u.messages, None if u.ended_at is None else t(u.ended_at), u.seq, u.kind, u.seq,
              None if u.observed_at is None else t(u.observed_at),
              None if u.seq is None else u.confidence, u.snapshot_sha256,
              _to_db("bbox", u.bbox), _to_db("reading", u.reading),
              None if u.ended_at is None else t(u.ended_at),
              u.first_seq, None if u.started_at is None else t(u.started_at), u.first_seq,
              u.id) for u in updates])

    def update_lifecycle(self, lifecycle_id: int, **fields: Any) -> None:
        self._update("events", "id", lifecycle_id, fields)

    def lifecycles_for_case(self, case_id: int) -> list[LifecycleRow]:
        rows = self._x("SELECT * FROM events WHERE case_id = ? ORDER BY id", (case_id,))
        return [_row(LifecycleRow, r) for r in rows]

    def move_lifecycles(self, from_case: int, to_case: int) -> int:
        return self._x("UPDATE events SET case_id = ? WHERE case_id = ?", (to_case, from_case)).rowcount

    # -- cases --------------------------------------------------------------------------------
    def insert_case(self, fields: dict[str, Any]) -> int:
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        try:
            cur = self._x(f"INSERT INTO cases ({cols}) VALUES ({marks})",  # noqa: S608
                          [_to_db(k, v) for k, v in fields.items()])
        except sqlite3.IntegrityError as exc:
            if "group_key" in str(exc):
                raise GroupKeyTaken(fields.get("group_key", "")) from None
            raise
        return int(cur.lastrowid)

    def get_case(self, case_id: int) -> CaseRow | None:
        row = self._x("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        return None if row is None else _row(CaseRow, row)

    def update_case(self, case_id: int, **fields: Any) -> None:
        try:
            self._update("cases", "id", case_id, fields)
        except sqlite3.IntegrityError as exc:
            if "group_key" in str(exc):
                raise GroupKeyTaken(str(fields.get("group_key", ""))) from None
            raise

    def add_case_activity(self, case_id: int, last_event_at: datetime | str, events: int,
                          active_delta: int, ended: bool, at: datetime) -> tuple[int, datetime | None]:
        # SQLite evaluates every SET expression against the row as it was before.
        now = self._t(at)
        row = self.conn.execute(
            "UPDATE cases SET last_event_at = max(last_event_at, ?), event_count = event_count + ?,"
            " active_sources = max(0, active_sources + ?),"
            " cleared_at = CASE WHEN max(0, active_sources + ?) > 0 THEN NULL"
            "   WHEN ? THEN coalesce(cleared_at, ?) ELSE cleared_at END,"
            " updated_at = ? WHERE id = ? RETURNING active_sources, cleared_at",
            (self._t(last_event_at), events, active_delta, active_delta, int(ended), now, now,
             case_id)).fetchone()
        if row is None:
            return (0, None)
        return (row[0], from_db_time(row[1]))

    def merge_candidates(self, subcategory: str, group_key: str,
                         box: tuple[float, float, float, float] | None,
                         closed_since: datetime | None) -> list[CandidateRow]:
        cols = "id, state, group_key, lat, lon, last_event_at, closed_at, before_sha256"
        sql = f"SELECT {cols} FROM cases WHERE group_key = ? AND state IN {OPEN_STATES_SQL}"
        params: list[Any] = [group_key]
        if box is not None:
            sql += (f" UNION SELECT {cols} FROM cases WHERE state IN {OPEN_STATES_SQL}"
                    " AND subcategory = ? AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
            params += [subcategory, *box]
        if closed_since is not None:
            sql += (f" UNION SELECT {cols} FROM cases WHERE state = 'closed' AND subcategory = ?"
                    " AND closed_at >= ? AND group_key = ?")
            since = self._t(closed_since)
            params += [subcategory, since, group_key]
            if box is not None:
                sql += (f" UNION SELECT {cols} FROM cases WHERE state = 'closed' AND subcategory = ?"
                        " AND closed_at >= ? AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
                params += [subcategory, since, *box]
        return [CandidateRow(r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]),
                             from_db_time(r[6]), r[7])
                for r in self.conn.execute(sql, params)]

    def count_false_alarms(self, agent_id: str, source: str, subcategory: str,
                           since: datetime) -> int:
        row = self._x(
            "SELECT count(*) FROM cases WHERE origin_agent = ? AND origin_source = ? "
            "AND subcategory = ? AND created_at >= ? AND (resolution = 'false_alarm' OR "
            "(state = 'rejected' AND screen_reasons NOT LIKE '%repeat_offender%'))",
            (agent_id, source, subcategory, to_db_time(since)),
        ).fetchone()
        return int(row[0])

    def cases_sla_due(self, now: datetime, limit: int = 500) -> list[CaseRow]:
        rows = self._x("SELECT * FROM cases WHERE sla_due_at <= ? ORDER BY sla_due_at LIMIT ?",
                       (to_db_time(now), limit))
        return [_row(CaseRow, r) for r in rows]

    def cases_cleared(self, before: datetime, limit: int = 500) -> list[CaseRow]:
        rows = self._x(
            f"SELECT * FROM cases WHERE cleared_at <= ? AND state IN {OPEN_STATES_SQL} "  # noqa: S608
            "AND close_mode = 'sensor_clear' ORDER BY cleared_at LIMIT ?",
            (to_db_time(before), limit),
        )
        return [_row(CaseRow, r) for r in rows]

    def cases_awaiting_verification(self, after_sha256: str | None = None) -> list[CaseRow]:
        if after_sha256 is None:
            rows = self._x("SELECT * FROM cases WHERE verify_pending = 1 ORDER BY id")
        else:
            rows = self._x("SELECT * FROM cases WHERE verify_pending = 1 AND after_sha256 = ?",
                           (after_sha256,))
        return [_row(CaseRow, r) for r in rows]

    def append_audit(self, case_id: int, at: datetime, action: str, from_state: str | None,
                     to_state: str | None, actor: str, detail: str = "",
                     data: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            "INSERT INTO case_audit (case_id, at, action, from_state, to_state, actor, detail, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (case_id, self._t(at), action, from_state, to_state, actor, detail,
             None if data is None else _to_db("data", data)),
        )

    def append_audits(self, rows: Sequence[tuple[int, datetime, str, str | None, str | None,
                                                  str, str, dict[str, Any] | None]]) -> None:
        self.conn.executemany(
            "INSERT INTO case_audit (case_id, at, action, from_state, to_state, actor, detail, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(case_id, self._t(at), action, from_state, to_state, actor, detail,
              None if data is None else _to_db("data", data))
             for case_id, at, action, from_state, to_state, actor, detail, data in rows])

    def audit_for_case(self, case_id: int) -> list[AuditRow]:
        rows = self._x("SELECT * FROM case_audit WHERE case_id = ? ORDER BY id", (case_id,))
        return [_row(AuditRow, r) for r in rows]

    def add_notification(self, case_id: int, at: datetime, kind: str, target: str,
                         message: str) -> int:
        cur = self._x("INSERT INTO notifications (case_id, at, kind, target, message)"
                      " VALUES (?,?,?,?,?)", (case_id, to_db_time(at), kind, target, message))
        return int(cur.lastrowid)

    def notifications_for_case(self, case_id: int) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM notifications WHERE case_id = ? ORDER BY id", (case_id,))
        return [dict(r) for r in rows]

    def add_verification(self, case_id: int, at: datetime, before_sha256: str | None,
                         after_sha256: str, outcome: str, confidence: float, verifier: str,
                         detail: str) -> None:
        self._x(
            "INSERT INTO verifications (case_id, at, before_sha256, after_sha256, outcome,"
            " confidence, verifier, detail) VALUES (?,?,?,?,?,?,?,?)",
            (case_id, to_db_time(at), before_sha256, after_sha256, outcome, confidence, verifier,
             detail),
        )

    def verifications_for_case(self, case_id: int) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM verifications WHERE case_id = ? ORDER BY id", (case_id,))
        return [dict(r) for r in rows]

    # -- agents -------------------------------------------------------------------------------
    def get_agent(self, agent_id: str) -> AgentRow | None:
        row = self._x("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if row is None else _agent(row)

    def upsert_agent(self, agent_id: str, **fields: Any) -> None:
        self._x("INSERT INTO agents (agent_id) VALUES (?) ON CONFLICT (agent_id) DO NOTHING",
                (agent_id,))
        self._update("agents", "agent_id", agent_id, fields)

    def note_agents_seen(self, agent_ids: Sequence[str],
                         seq_states: Sequence[tuple[str, int, list[list[int]], int, int]],
                         at: datetime) -> None:
        now = self._t(at)
        if agent_ids:
            self.conn.executemany(
                "INSERT INTO agents (agent_id, last_seen) VALUES (?, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET last_seen = excluded.last_seen",
                [(a, now) for a in agent_ids])
        if seq_states:
            self.conn.executemany(
                "INSERT INTO agents (agent_id, last_seen, seq_upto, seq_ranges, seq_highest, seq_gaps)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET"
                " last_seen = excluded.last_seen, seq_upto = excluded.seq_upto,"
                " seq_ranges = excluded.seq_ranges, seq_highest = excluded.seq_highest,"
                " seq_gaps = excluded.seq_gaps",
                [(a, now, upto, json.dumps(ranges, separators=(",", ":")), hi, gaps)
                 for a, upto, ranges, hi, gaps in seq_states])

    # -- snapshots and dead letters ---------------------------------------------------------
    def add_snapshot(self, agent_id: str, event_id: str, seq: int, sha256: str, size: int,
                     width: int, height: int, taken_at: datetime | None,
                     received_at: datetime) -> bool:
        cur = self._x(
            "INSERT INTO snapshots (agent_id, event_id, seq, sha256, bytes, width, height,"
            " taken_at, received_at) VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (agent_id, event_id, sha256) DO NOTHING",
            (agent_id, event_id, seq, sha256, size, width, height,
             None if taken_at is None else to_db_time(taken_at), to_db_time(received_at)),
        )
        return cur.rowcount == 1

    def has_snapshot(self, sha256: str) -> bool:
        return self._x("SELECT 1 FROM snapshots WHERE sha256 = ? LIMIT 1", (sha256,)).fetchone() is not None

    def snapshots_for_case(self, case_id: int) -> list[SnapshotRow]:
        rows = self._x(
            "SELECT s.* FROM snapshots s JOIN events e ON e.agent_id = s.agent_id "
            "AND e.event_id = s.event_id WHERE e.case_id = ? ORDER BY s.id", (case_id,))
        return [_row(SnapshotRow, r) for r in rows]

    def add_dead_letter(self, fingerprint: str, topic: str, agent_id: str | None, reason: str,
                        detail: str, payload: str, payload_bytes: int, at: datetime) -> None:
        t = to_db_time(at)
        self._x(
            "INSERT INTO dead_letters (fingerprint, topic, agent_id, reason, detail, payload,"
            " payload_bytes, count, first_at, last_at) VALUES (?,?,?,?,?,?,?,1,?,?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET count = count + 1, last_at = excluded.last_at",
            (fingerprint, topic, agent_id, reason, detail, payload, payload_bytes, t, t),
        )

    # -- enrollment ---------------------------------------------------------------------------
    def add_token(self, token_sha256: str, agent_id: str, grid_id: str | None,
                  created_at: datetime, expires_at: datetime) -> None:
        self._x("INSERT INTO enrollment_tokens (token_sha256, agent_id, grid_id, created_at,"
                " expires_at) VALUES (?,?,?,?,?)",
                (token_sha256, agent_id, grid_id, to_db_time(created_at), to_db_time(expires_at)))

    def get_token(self, token_sha256: str) -> TokenRow | None:
        row = self._x("SELECT * FROM enrollment_tokens WHERE token_sha256 = ?",
                      (token_sha256,)).fetchone()
        return None if row is None else _row(TokenRow, row)

    def use_token(self, token_sha256: str, at: datetime, used_by: str) -> None:
        self._x("UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE token_sha256 = ?",
                (to_db_time(at), used_by, token_sha256))

    def release_token(self, token_sha256: str) -> None:
        self._x("UPDATE enrollment_tokens SET used_at = NULL, used_by = NULL WHERE token_sha256 = ?",
                (token_sha256,))

    # -- retention ------------------------------------------------------------------------------
    def purge_messages(self, before: datetime, limit: int) -> int:
        return self._x(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE received_at < ? LIMIT ?)",
            (to_db_time(before), limit)).rowcount

    def purge_dead_letters(self, before: datetime, limit: int) -> int:
        return self._x(
            "DELETE FROM dead_letters WHERE id IN "
            "(SELECT id FROM dead_letters WHERE last_at < ? LIMIT ?)",
            (to_db_time(before), limit)).rowcount

    def purge_snapshots(self, before: datetime, limit: int) -> list[str]:
        rows = self._x(
            f"""SELECT s.id, s.sha256 FROM snapshots s WHERE s.received_at < ?
            AND s.sha256 NOT IN (SELECT before_sha256 FROM cases
                WHERE state IN {OPEN_STATES_SQL} AND before_sha256 IS NOT NULL)
            AND s.sha256 NOT IN (SELECT after_sha256 FROM cases
                WHERE state IN {OPEN_STATES_SQL} AND after_sha256 IS NOT NULL)
            LIMIT ?""",  # noqa: S608
            (to_db_time(before), limit)).fetchall()
        if not rows:
            return []
        self.conn.executemany("DELETE FROM snapshots WHERE id = ?", [(r["id"],) for r in rows])
        shas = sorted({r["sha256"] for r in rows})
        return [s for s in shas if not self.has_snapshot(s)]

    # -- reads ------------------------------------------------------------------------------
    def list_agents(self, limit: int = 1000, offset: int = 0) -> list[AgentRow]:
        rows = self._x("SELECT * FROM agents ORDER BY agent_id LIMIT ? OFFSET ?", (limit, offset))
        return [_agent(r) for r in rows]

    def list_cases(self, *, states: Sequence[str] | None = None, grid_id: str | None = None,
                   category: str | None = None, queue: str | None = None,
                   limit: int = 100, offset: int = 0) -> list[CaseRow]:
        where, params = [], []
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += list(states)
        if grid_id:
            where.append("grid_id = ?")
            params.append(grid_id)
        if category:
            where.append("(category = ? OR subcategory = ?)")
            params += [category, category]
        if queue:
            where.append("queue = ?")
            params.append(queue)
        sql = "SELECT * FROM cases"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        rows = self._x(sql, [*params, limit, offset])
        return [_row(CaseRow, r) for r in rows]

    def list_dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetterRow]:
        rows = self._x("SELECT * FROM dead_letters ORDER BY last_at DESC LIMIT ? OFFSET ?",
                       (limit, offset))
        return [_row(DeadLetterRow, r) for r in rows]

    def cases_accepted_between(self, start: datetime, end: datetime) -> Iterator[CaseRow]:
        rows = self._x("SELECT * FROM cases WHERE accepted_at >= ? AND accepted_at < ? ORDER BY id",
                       (to_db_time(start), to_db_time(end)))
        for r in rows:
            yield _row(CaseRow, r)

    def counts(self) -> dict[str, int]:
        one = lambda sql: int(self._x(sql).fetchone()[0])  # noqa: E731
        by_state = {r[0]: r[1] for r in self._x("SELECT state, count(*) FROM cases GROUP BY state")}
        return {
            "messages_stored": one("SELECT count(*) FROM messages"),
            "lifecycles": one("SELECT count(*) FROM events"),
            "cases_total": sum(by_state.values()),
            "cases_open": sum(n for s, n in by_state.items() if s in OPEN_STATE_NAMES),
            "cases_closed": by_state.get("closed", 0),
            "cases_rejected": by_state.get("rejected", 0),
            "cases_merged": by_state.get("merged", 0),
            "dead_letters": one("SELECT coalesce(sum(count), 0) FROM dead_letters"),
            "dead_letter_rows": one("SELECT count(*) FROM dead_letters"),
            "snapshots": one("SELECT count(*) FROM snapshots"),
            "agents": one("SELECT count(*) FROM agents"),
            "agents_online": one("SELECT count(*) FROM agents WHERE state = 'online'"),
            "seq_gaps": one("SELECT coalesce(sum(seq_gaps), 0) FROM agents"),  # ever opened
            "seq_gaps_open": one("SELECT coalesce(sum(json_array_length(seq_ranges)), 0) FROM agents"),
        }


class SharedReader:
    """A read-only connection opened on first use and shared by whoever holds this object,
    one user at a time. ``close()`` waits for a read in flight: a thread still inside
    SQLite when its connection is closed under it (an ``asyncio.to_thread`` read whose task
    was cancelled at shutdown keeps running) crashes the process. After ``close()`` every
    use raises ``StoreError``."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._repo: SqliteRepository | None = None
        self._lock = threading.Lock()
        self._closed = False

    def use(self, fn: Callable[[SqliteRepository], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreError("the read connection is closed (the hub is stopping)")
            if self._repo is None:
                self._repo = SqliteRepository(self.path, writer=False)
            return fn(self._repo)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._repo is not None:
                self._repo.close()
                self._repo = None
