"""The SQLite queries behind event clips (``clips``, ``clip_chunks``; see hub/clips.py):
a mixin of :class:`hub.store.sqlite.SqliteRepository`. Writes run inside the writer's
transaction like every other write.

A clip row is created with its first chunk (state ``partial``); its chunks wait in
``clip_chunks`` until the last one arrives, then the clip is reassembled, checked and
written as a file (state ``stored``) or refused with the reason (state ``failed``), and
its chunks are deleted either way.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from .rows import from_db_time, to_db_time
from .schema import OPEN_STATES_SQL

__all__ = ["ClipQueries", "ClipRow"]


@dataclass
class ClipRow:
    id: int
    agent_id: str
    event_id: str
    clip_sha256: str
    chunk_count: int
    clip_bytes: int
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    started_at: datetime | None
    event_offset_s: float
    state: str  # partial | stored | failed
    error: str | None
    chunks_received: int
    first_at: datetime
    completed_at: datetime | None
    seqs: list[int]  # the agent's seqs of the chunks kept


def _clip(row: sqlite3.Row) -> ClipRow:
    d = dict(row)
    for k in ("started_at", "first_at", "completed_at"):
        d[k] = from_db_time(d[k])
    d["seqs"] = json.loads(d["seqs"] or "[]")
    return ClipRow(**d)


class ClipQueries:
    conn: sqlite3.Connection

    def clip_row(self, agent_id: str, event_id: str, clip_sha256: str) -> ClipRow | None:
        row = self.conn.execute(
            "SELECT * FROM clips WHERE agent_id = ? AND event_id = ? AND clip_sha256 = ?",
            (agent_id, event_id, clip_sha256)).fetchone()
        return None if row is None else _clip(row)

    def get_clip(self, clip_id: int) -> ClipRow | None:
        row = self.conn.execute("SELECT * FROM clips WHERE id = ?", (clip_id,)).fetchone()
        return None if row is None else _clip(row)

    def add_clip(self, agent_id: str, event_id: str, clip_sha256: str, *, chunk_count: int,
                 clip_bytes: int, width: int, height: int, fps: float, frames: int,
                 duration_s: float, started_at: datetime | None, event_offset_s: float,
                 at: datetime) -> int:
        cur = self.conn.execute(
            "INSERT INTO clips (agent_id, event_id, clip_sha256, chunk_count, clip_bytes, width,"
            " height, fps, frames, duration_s, started_at, event_offset_s, state, first_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'partial',?)",
            (agent_id, event_id, clip_sha256, chunk_count, clip_bytes, width, height, fps, frames,
             duration_s, None if started_at is None else to_db_time(started_at), event_offset_s,
             to_db_time(at)))
        return int(cur.lastrowid or 0)

    def add_clip_chunk(self, clip_id: int, index: int, seq: int, data: bytes) -> int:
        """Keep one chunk (a resent one changes nothing) and its seq (the clip's ``seqs``:
        what the agent's outbox sent, for audits); returns the chunks now held."""
        cur = self.conn.execute("INSERT INTO clip_chunks (clip_id, idx, data) VALUES (?,?,?)"
                                " ON CONFLICT (clip_id, idx) DO NOTHING", (clip_id, index, data))
        n = int(self.conn.execute("SELECT count(*) FROM clip_chunks WHERE clip_id = ?",
                                  (clip_id,)).fetchone()[0])
        if cur.rowcount == 1:
            self.conn.execute("UPDATE clips SET chunks_received = ?, seqs = json_insert(seqs, '$[#]', ?)"
                              " WHERE id = ?", (n, seq, clip_id))
        return n

    def clip_chunks(self, clip_id: int) -> dict[int, bytes]:
        return {int(i): bytes(d) for i, d in self.conn.execute(
            "SELECT idx, data FROM clip_chunks WHERE clip_id = ?", (clip_id,))}

    def finish_clip(self, clip_id: int, *, state: str, error: str | None, at: datetime) -> None:
        """The clip is stored (its file written) or failed: its chunks go."""
        self.conn.execute("UPDATE clips SET state = ?, error = ?, completed_at = ? WHERE id = ?",
                          (state, error, to_db_time(at), clip_id))
        self.conn.execute("DELETE FROM clip_chunks WHERE clip_id = ?", (clip_id,))

    def clips_for_case(self, case_id: int) -> list[ClipRow]:
        rows = self.conn.execute(
            "SELECT c.* FROM clips c JOIN events e ON e.agent_id = c.agent_id"
            " AND e.event_id = c.event_id WHERE e.case_id = ? ORDER BY c.id", (case_id,))
        return [_clip(r) for r in rows]

    def stale_partial_clips(self, before: datetime, limit: int) -> list[ClipRow]:
        rows = self.conn.execute(
            "SELECT * FROM clips WHERE state = 'partial' AND first_at < ? ORDER BY id LIMIT ?",
            (to_db_time(before), limit))
        return [_clip(r) for r in rows]

    def purge_clips(self, before: datetime, limit: int) -> tuple[int, list[str]]:
        """Delete clip rows older than ``before`` but those of a case still open; return how
        many, and the sha256s of stored clips no row names any more (their files can go)."""
        rows = self.conn.execute(
            f"""SELECT c.id, c.clip_sha256, c.state FROM clips c WHERE c.first_at < ?
            AND NOT EXISTS (SELECT 1 FROM events e JOIN cases k ON k.id = e.case_id
                WHERE e.agent_id = c.agent_id AND e.event_id = c.event_id
                AND k.state IN {OPEN_STATES_SQL})
            LIMIT ?""",  # noqa: S608
            (to_db_time(before), limit)).fetchall()
        if not rows:
            return 0, []
        ids = [(r[0],) for r in rows]
        self.conn.executemany("DELETE FROM clip_chunks WHERE clip_id = ?", ids)
        self.conn.executemany("DELETE FROM clips WHERE id = ?", ids)
        shas = sorted({r[1] for r in rows if r[2] == "stored"})
        return len(rows), [s for s in shas if self.conn.execute(
            "SELECT 1 FROM clips WHERE clip_sha256 = ? AND state = 'stored' LIMIT 1",
            (s,)).fetchone() is None]

    def count_clips(self, state: str | None = None, *, agent_id: str | None = None) -> int:
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if agent_id is not None:
            where.append("agent_id = ?")
            params.append(agent_id)
        sql = "SELECT count(*) FROM clips" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.conn.execute(sql, params).fetchone()[0])
