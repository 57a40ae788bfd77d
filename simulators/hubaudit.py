"""Read what the hub stored, independently of the hub's own counters.

The demo's scorecard must not take the hub's word for what it stored: this module opens
the hub's SQLite database read-only and reads the rows themselves — every stored message
``(agent_id, seq, event_id, kind)``, every event lifecycle and every case, each case's
state changes (``case_audit``), the plans' activations and the vital signs' level
changes (the hub's ``vitals`` pseudo-agent stores each one as an event message), the
notification deliveries and the care alarms' counts. It depends on the hub's table layout
(``hub/store/schema.py``: ``messages``, ``events``, ``cases``, ``case_audit``,
``plan_activations``, ``vital_levels``, ``notification_deliveries``, ``care_alarms``); a
schema change there that breaks it fails the demo tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = ["StoreAudit", "StoredActivation", "StoredCase", "StoredDelivery", "StoredIndicator",
           "StoredLevelChange", "StoredLifecycle", "StoredTransition", "audit_store"]

VITALS_AGENT = "vitals"  # the hub's pseudo-agent of vital-sign warnings (hub/vitals/events.py)


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


@dataclass(frozen=True)
class StoredTransition:
    """A case's state change, from its audit trail (``dispatched`` for a dispatch or a
    re-dispatch)."""

    case_id: int
    at: datetime
    action: str
    to_state: str


@dataclass(frozen=True)
class StoredActivation:
    plan: str
    version: int
    activated_at: datetime
    activated_by: str  # "auto" when a trigger fired, else the account
    reason: str  # the trigger that fired, as the hub wrote it
    deactivated_at: datetime | None
    deactivated_by: str | None
    deactivate_reason: str | None


@dataclass(frozen=True)
class StoredIndicator:
    """A vital-sign indicator and its level when the store was read."""

    indicator: str
    kind: str
    grid: str
    level: int  # 0 normal .. 4 red


@dataclass(frozen=True)
class StoredLevelChange:
    indicator: str
    kind: str
    grid: str
    at: datetime
    before: str  # level labels: normal, blue, yellow, orange, red
    after: str
    value: float | None


@dataclass(frozen=True)
class StoredDelivery:
    """A notification delivery: one message to one contact on one channel."""

    kind: str  # dispatched, escalated, care_tier, plan_notice, ...
    channel: str
    target: str
    state: str  # queued | sending | sent | failed | dead
    attempts: int
    last_error: str | None


@dataclass
class StoreAudit:
    seqs: dict[str, set[int]] = field(default_factory=dict)  # stored seqs per agent (events, snapshots)
    messages: int = 0
    duplicate_rows: int = 0  # the same (agent, seq) stored more than once
    duplicate_new: int = 0  # a lifecycle whose `new` was stored under two seqs
    lifecycles: list[StoredLifecycle] = field(default_factory=list)
    cases: list[StoredCase] = field(default_factory=list)
    dead_letters: int = 0
    transitions: list[StoredTransition] = field(default_factory=list)  # in the order they happened
    activations: list[StoredActivation] = field(default_factory=list)
    indicators: list[StoredIndicator] = field(default_factory=list)
    level_changes: list[StoredLevelChange] = field(default_factory=list)  # in the order they happened
    deliveries: list[StoredDelivery] = field(default_factory=list)  # in the order they were queued
    care: dict[str, int] = field(default_factory=dict)  # care_alarms summed: alarms, tier_notifications, ...


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _level_change(observed_at: str, body: str) -> StoredLevelChange:
    """A level change from the warning event the hub stored for it."""
    event = json.loads(body)
    attrs = event["attributes"]
    reading = (event.get("evidence") or {}).get("reading") or {}
    return StoredLevelChange(attrs["indicator"], reading.get("name", ""), attrs["grid"],
                             datetime.fromisoformat(observed_at), attrs["previous_level"],
                             attrs["level"], reading.get("value"))


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
        # So does each chunk of an event's clip (the clip row keeps their seqs).
        for agent_id, chunk_seqs in conn.execute("SELECT agent_id, seqs FROM clips"):
            seqs[agent_id].update(json.loads(chunk_seqs))
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
        out.transitions = [
            StoredTransition(c, _when(at), action, to)  # type: ignore[arg-type]
            for c, at, action, to in conn.execute(
                "SELECT case_id, at, action, to_state FROM case_audit WHERE to_state IS NOT NULL ORDER BY id")
        ]
        out.activations = [
            StoredActivation(n, v, _when(a), by, why, _when(d), dby, dwhy)  # type: ignore[arg-type]
            for n, v, a, by, why, d, dby, dwhy in conn.execute(
                "SELECT name, version, activated_at, activated_by, reason, deactivated_at,"
                " deactivated_by, deactivate_reason FROM plan_activations ORDER BY id")
        ]
        out.indicators = [StoredIndicator(*row) for row in conn.execute(
            "SELECT indicator, kind, grid_id, level FROM vital_levels ORDER BY indicator")]
        out.level_changes = [
            _level_change(observed, body) for observed, body in conn.execute(
                "SELECT observed_at, body FROM messages WHERE agent_id = ? ORDER BY seq", (VITALS_AGENT,))
        ]
        out.deliveries = [StoredDelivery(*row) for row in conn.execute(
            "SELECT kind, channel, target, state, attempts, last_error FROM notification_deliveries ORDER BY id")]
        alarms, told, after_ack, acked = conn.execute(
            "SELECT count(*), coalesce(sum(tier_notifications), 0), coalesce(sum(escalations_after_ack), 0),"
            " count(acknowledged_at) FROM care_alarms").fetchone()
        out.care = {"alarms": alarms, "tier_notifications": told, "escalations_after_ack": after_ack,
                    "acknowledged": acked}
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()
