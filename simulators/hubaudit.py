"""Read what the hub stored, independently of the hub's own counters.

The demo's scorecard must not take the hub's word for what it stored: this module opens
the hub's SQLite database read-only and reads the rows themselves — every stored message
``(agent_id, seq, event_id, kind)``, every event lifecycle and every case. It depends on
the hub's table layout (``hub/store/schema.py``: ``messages``, ``events``, ``cases``);
a schema change there that breaks it fails the demo tests.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = ["StoreAudit", "StoredCase", "StoredLifecycle", "audit_store"]


@dataclass(frozen=True)
class StoredLifecycle:
    agent_id: str
    event_id: str
    source: str
    subcategory: str
    started_at: datetime
    ended_at: datetime | None
    case_id: int | None


@dataclass(frozen=True)
class StoredCase:
    id: int
    state: str
    subcategory: str
    created_at: datetime
    dispatched_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    close_mode: str
    merged_into: int | None


@dataclass
class StoreAudit:
    seqs: dict[str, set[int]] = field(default_factory=dict)  # stored seqs per agent (events, snapshots)
    messages: int = 0
    duplicate_rows: int = 0  # the same (agent, seq) stored more than once
    duplicate_new: int = 0  # a lifecycle whose `new` was stored under two seqs
    lifecycles: list[StoredLifecycle] = field(default_factory=list)
    cases: list[StoredCase] = field(default_factory=list)
    dead_letters: int = 0


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def audit_store(database: Path) -> StoreAudit:
    """Everything the scorecard needs, read in one read-only transaction."""
    conn = sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("BEGIN")
        out = StoreAudit()
        seqs: dict[str, set[int]] = defaultdict(set)
        for agent_id, seq in conn.execute("SELECT agent_id, seq FROM messages"):
            seqs[agent_id].add(seq)
            out.messages += 1
        out.duplicate_rows = out.messages - sum(len(s) for s in seqs.values())
        # A camera event's snapshot travels as its own outbox row with its own seq.
        for agent_id, seq in conn.execute("SELECT agent_id, seq FROM snapshots"):
            seqs[agent_id].add(seq)
        out.seqs = dict(seqs)
        out.duplicate_new = conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM messages"
            " WHERE kind = 'new' GROUP BY agent_id, event_id)").fetchone()[0]
        out.lifecycles = [
            StoredLifecycle(a, e, src, sub, _when(start), _when(end), case)  # type: ignore[arg-type]
            for a, e, src, sub, start, end, case in conn.execute(
                "SELECT agent_id, event_id, source, subcategory, started_at, ended_at, case_id"
                " FROM events ORDER BY id")
        ]
        out.cases = [
            StoredCase(i, st, sub, _when(c), _when(d), _when(cl), by, mode, m)  # type: ignore[arg-type]
            for i, st, sub, c, d, cl, by, mode, m in conn.execute(
                "SELECT id, state, subcategory, created_at, dispatched_at, closed_at, closed_by,"
                " close_mode, merged_into FROM cases ORDER BY id")
        ]
        out.dead_letters = conn.execute("SELECT coalesce(sum(count), 0) FROM dead_letters").fetchone()[0]
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()
