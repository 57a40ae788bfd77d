"""The SQLite queries behind model releases and rollouts (hub/releases/): a mixin of
:class:`hub.store.sqlite.SqliteRepository`. Writes run inside the writer's transaction
like every other write."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..releases.model import AgentRelease, ReleaseRow, RolloutAgent, RolloutRow
from .rows import from_db_time, to_db_time

__all__ = ["ReleaseQueries"]


def _release(row: sqlite3.Row) -> ReleaseRow:
    d = dict(row)
    d["created_at"] = from_db_time(d["created_at"])
    d["gate"] = json.loads(d["gate"]) if d["gate"] else None
    return ReleaseRow(**d)


def _rollout(row: sqlite3.Row) -> RolloutRow:
    d = dict(row)
    for k in ("started_at", "stage_at"):
        d[k] = from_db_time(d[k])
    d["scope"] = d["scope"] if d["scope"] == "all" else json.loads(d["scope"])
    d["canary"] = json.loads(d["canary"])
    d["history"] = json.loads(d["history"] or "[]")
    return RolloutRow(**d)


def _agent_release(row: sqlite3.Row) -> AgentRelease:
    d = dict(row)
    for k in ("desired_at", "published_at", "updated_at", "reported_at"):
        d[k] = from_db_time(d[k])
    return AgentRelease(**d)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class ReleaseQueries:
    conn: sqlite3.Connection

    # -- releases -----------------------------------------------------------------------------
    def release_next_version(self, name: str) -> int:
        row = self.conn.execute("SELECT max(version) FROM releases WHERE name = ?", (name,)).fetchone()
        return int(row[0] or 0) + 1

    def release_insert(self, r: ReleaseRow) -> None:
        self.conn.execute(
            "INSERT INTO releases (release_id, kind, name, version, sha256, bytes, chunk_bytes, chunks, "
            "file, created_at, created_by, notes, gate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.release_id, r.kind, r.name, r.version, r.sha256, r.bytes, r.chunk_bytes, r.chunks, r.file,
             to_db_time(r.created_at), r.created_by, r.notes,
             json.dumps(r.gate) if r.gate is not None else None))

    def release_get(self, release_id: str) -> ReleaseRow | None:
        row = self.conn.execute("SELECT * FROM releases WHERE release_id = ?", (release_id,)).fetchone()
        return _release(row) if row else None

    def release_list(self, limit: int = 200) -> list[ReleaseRow]:
        rows = self.conn.execute("SELECT * FROM releases ORDER BY created_at DESC, version DESC LIMIT ?",
                                 (limit,))
        return [_release(r) for r in rows]

    # -- rollouts -----------------------------------------------------------------------------
    def rollout_insert(self, release_id: str, scope: str | list[str], canary: list[str],
                       canary_minutes: float, started_at: datetime, started_by: str,
                       reason: str) -> RolloutRow:
        at = to_db_time(started_at)
        history = json.dumps([{"stage": "canary", "at": at, "reason": reason}])
        cur = self.conn.execute(
            "INSERT INTO rollouts (rollout_id, release_id, scope, canary, canary_minutes, stage, "
            "started_at, started_by, stage_at, reason, history) "
            "VALUES ('pending', ?, ?, ?, ?, 'canary', ?, ?, ?, ?, ?)",
            (release_id, scope if scope == "all" else json.dumps(scope), json.dumps(canary),
             canary_minutes, at, started_by, at, reason, history))
        rid = int(cur.lastrowid or 0)
        self.conn.execute("UPDATE rollouts SET rollout_id = ? WHERE id = ?", (f"rollout-{rid}", rid))
        row = self.rollout_get(f"rollout-{rid}")
        assert row is not None
        return row

    def rollout_get(self, rollout_id: str) -> RolloutRow | None:
        row = self.conn.execute("SELECT * FROM rollouts WHERE rollout_id = ?", (rollout_id,)).fetchone()
        return _rollout(row) if row else None

    def rollout_list(self, limit: int = 100) -> list[RolloutRow]:
        rows = self.conn.execute("SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", (limit,))
        return [_rollout(r) for r in rows]

    def rollouts_in_progress(self) -> list[RolloutRow]:
        rows = self.conn.execute("SELECT * FROM rollouts WHERE stage IN ('canary', 'all') ORDER BY id")
        return [_rollout(r) for r in rows]

    def rollout_set_stage(self, rollout_id: str, stage: str, at: datetime, reason: str) -> None:
        row = self.rollout_get(rollout_id)
        assert row is not None
        history = [*row.history, {"stage": stage, "at": to_db_time(at), "reason": reason}]
        self.conn.execute("UPDATE rollouts SET stage = ?, stage_at = ?, reason = ?, history = ? "
                          "WHERE rollout_id = ?",
                          (stage, to_db_time(at), reason, json.dumps(history), rollout_id))

    def rollout_set_false_alarms(self, rollout_id: str, before: int, after: int) -> None:
        self.conn.execute("UPDATE rollouts SET false_alarms_before = ?, false_alarms_after = ? "
                          "WHERE rollout_id = ? AND (false_alarms_before IS NOT ? OR false_alarms_after IS NOT ?)",
                          (before, after, rollout_id, before, after))

    def rollout_agents_insert(self, agents: Sequence[RolloutAgent]) -> None:
        self.conn.executemany(
            "INSERT INTO rollout_agents (rollout_id, agent_id, canary, previous_release, previous_rollout) "
            "VALUES (?, ?, ?, ?, ?)",
            [(a.rollout_id, a.agent_id, int(a.canary), a.previous_release, a.previous_rollout) for a in agents])

    def rollout_agents(self, rollout_id: str) -> list[RolloutAgent]:
        rows = self.conn.execute("SELECT * FROM rollout_agents WHERE rollout_id = ? ORDER BY agent_id",
                                 (rollout_id,))
        return [RolloutAgent(r["rollout_id"], r["agent_id"], bool(r["canary"]), r["previous_release"],
                             r["previous_rollout"]) for r in rows]

    def agents_in_rollouts(self, agent_ids: Sequence[str]) -> dict[str, str]:
        """Agents among ``agent_ids`` already in a rollout in progress → that rollout."""
        out: dict[str, str] = {}
        ids = list(agent_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self.conn.execute(
                f"SELECT a.agent_id, a.rollout_id FROM rollout_agents a JOIN rollouts r "  # noqa: S608
                f"ON r.rollout_id = a.rollout_id WHERE r.stage IN ('canary', 'all') "
                f"AND a.agent_id IN ({_marks(len(part))})", part)
            out.update({r[0]: r[1] for r in rows})
        return out

    # -- each agent's desired release and report ----------------------------------------------------
    def agent_release(self, agent_id: str) -> AgentRelease | None:
        row = self.conn.execute("SELECT * FROM agent_releases WHERE agent_id = ?", (agent_id,)).fetchone()
        return _agent_release(row) if row else None

    def agent_releases(self, agent_ids: Sequence[str] | None = None) -> dict[str, AgentRelease]:
        if agent_ids is None:
            return {r["agent_id"]: _agent_release(r) for r in self.conn.execute("SELECT * FROM agent_releases")}
        out: dict[str, AgentRelease] = {}
        ids = list(agent_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self.conn.execute(f"SELECT * FROM agent_releases WHERE agent_id IN ({_marks(len(part))})",  # noqa: S608
                                     part)
            out.update({r["agent_id"]: _agent_release(r) for r in rows})
        return out

    def agent_release_desire(self, agent_ids: Sequence[str], release_id: str | None, rollout_id: str | None,
                             at: datetime) -> None:
        """Set the desired release of these agents; the retained message is to publish."""
        t = to_db_time(at)
        self.conn.executemany(
            "INSERT INTO agent_releases (agent_id, desired_release, rollout_id, desired_at, published_at, "
            "updated_at) VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (agent_id) DO UPDATE SET "
            "desired_release = excluded.desired_release, rollout_id = excluded.rollout_id, "
            "desired_at = excluded.desired_at, published_at = NULL, updated_at = excluded.updated_at",
            [(a, release_id, rollout_id, t, t) for a in agent_ids])

    def agent_releases_unpublished(self, limit: int = 1000) -> list[AgentRelease]:
        rows = self.conn.execute("SELECT * FROM agent_releases WHERE published_at IS NULL "
                                 "ORDER BY desired_at LIMIT ?", (limit,))
        return [_agent_release(r) for r in rows]

    def agent_release_published(self, agent_id: str, desired_at: datetime, at: datetime) -> None:
        """Mark the desired release published, unless it changed since it was read."""
        self.conn.execute("UPDATE agent_releases SET published_at = ? WHERE agent_id = ? AND desired_at = ?",
                          (to_db_time(at), agent_id, to_db_time(desired_at)))

    def agent_release_report(self, agent_id: str, report: dict[str, Any], at: datetime) -> None:
        """Store an agent's latest report (an agent with no desired release yet gets a row
        desiring nothing, already published: its config's model)."""
        t = to_db_time(at)
        self.conn.execute(
            "INSERT INTO agent_releases (agent_id, desired_release, rollout_id, desired_at, published_at, "
            "updated_at, state, report_release, chunks_done, chunks, active, reason, reported_at) "
            "VALUES (?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
            "state = excluded.state, report_release = excluded.report_release, "
            "chunks_done = excluded.chunks_done, chunks = excluded.chunks, active = excluded.active, "
            "reason = excluded.reason, reported_at = excluded.reported_at, updated_at = excluded.updated_at",
            (agent_id, t, t, t, report["state"], report.get("release_id"), report.get("chunks_done", 0),
             report.get("chunks", 0), report.get("active"), report.get("reason"), to_db_time(report["at"])))

    def release_counts(self) -> dict[str, int]:
        """Releases stored, rollouts started, and rollouts by stage (rolled_back: the rollbacks)."""
        out = {"model_releases": int(self.conn.execute("SELECT count(*) FROM releases").fetchone()[0]),
               "rollouts": 0, "canary": 0, "all": 0, "done": 0, "rolled_back": 0}
        for stage, n in self.conn.execute("SELECT stage, count(*) FROM rollouts GROUP BY stage"):
            out[stage] = int(n)
            out["rollouts"] += int(n)
        return out

    # -- the figures a rollout decides on ----------------------------------------------------------
    def agent_last_status(self, agent_ids: Sequence[str]) -> dict[str, tuple[str, datetime | None]]:
        """agent → (state, when the hub last heard from it) for the agents the hub knows: for
        an offline agent, when its offline status arrived (its will's own time is the time it
        connected, so the hub's is the one to go by)."""
        out: dict[str, tuple[str, datetime | None]] = {}
        ids = list(agent_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self.conn.execute(f"SELECT agent_id, state, last_seen FROM agents WHERE agent_id IN "  # noqa: S608
                                     f"({_marks(len(part))})", part)
            out.update({r[0]: (r[1], from_db_time(r[2])) for r in rows})
        return out

    def agent_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT agent_id FROM agents ORDER BY agent_id")]

    def false_alarms_closed(self, agent_ids: Sequence[str], start: datetime, end: datetime) -> int:
        """Cases closed as ``false_alarm`` in [start, end) that came from these agents (their
        origin, or any event of theirs merged into the case)."""
        ids = list(agent_ids)
        if not ids:
            return 0
        m = _marks(len(ids))
        row = self.conn.execute(
            f"SELECT count(*) FROM cases WHERE resolution = 'false_alarm' AND closed_at >= ? "  # noqa: S608
            f"AND closed_at < ? AND (origin_agent IN ({m}) OR id IN "
            f"(SELECT case_id FROM events WHERE agent_id IN ({m}) AND case_id IS NOT NULL))",
            (to_db_time(start), to_db_time(end), *ids, *ids)).fetchone()
        return int(row[0])
