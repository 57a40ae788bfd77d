"""The SQLite queries behind plans and vital signs: a mixin of
:class:`hub.store.sqlite.SqliteRepository` (same connection, same discipline: writes
run inside the writer's transaction). Rows come back as plain dicts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .rows import compact_json, to_db_time
from .schema import OPEN_STATES_SQL

__all__ = ["PlanQueries"]

_JSON = {"config", "previous_config", "data"}


def _dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    for k in _JSON & out.keys():
        if out[k] is not None:
            out[k] = json.loads(out[k])
    return out


def _json(value: Any) -> str | None:
    return None if value is None else compact_json(value)


class PlanQueries:
    """Needs ``conn`` and ``_x`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any

    # -- plan versions -------------------------------------------------------------------------
    def save_plan_version(self, name: str, text: str, at: datetime, by: str, comment: str = "") -> int:
        row = self._x("SELECT MAX(version) FROM plan_versions WHERE name = ?", (name,)).fetchone()
        version = (row[0] or 0) + 1
        self._x("INSERT INTO plan_versions (name, version, text, saved_at, saved_by, comment) "
                "VALUES (?, ?, ?, ?, ?, ?)", (name, version, text, to_db_time(at), by, comment))
        return version

    def plan_versions(self, name: str) -> list[dict[str, Any]]:
        rows = self._x("SELECT name, version, saved_at, saved_by, comment, length(text) AS bytes "
                       "FROM plan_versions WHERE name = ? ORDER BY version DESC", (name,))
        return [dict(r) for r in rows]

    def plan_text(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        if version is None:
            row = self._x("SELECT * FROM plan_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
                          (name,)).fetchone()
        else:
            row = self._x("SELECT * FROM plan_versions WHERE name = ? AND version = ?",
                          (name, version)).fetchone()
        return _dict(row)

    def latest_plans(self) -> list[dict[str, Any]]:
        rows = self._x("SELECT p.* FROM plan_versions p JOIN (SELECT name, MAX(version) AS v "
                       "FROM plan_versions GROUP BY name) m ON p.name = m.name AND p.version = m.v "
                       "ORDER BY p.name")
        return [dict(r) for r in rows]

    # -- activations ---------------------------------------------------------------------------
    def open_activation(self, name: str) -> dict[str, Any] | None:
        return _dict(self._x("SELECT * FROM plan_activations WHERE name = ? AND deactivated_at IS NULL",
                             (name,)).fetchone())

    def open_activations(self) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM plan_activations WHERE deactivated_at IS NULL ORDER BY id")
        return [dict(r) for r in rows]

    def activations(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if name is None:
            rows = self._x("SELECT * FROM plan_activations ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._x("SELECT * FROM plan_activations WHERE name = ? ORDER BY id DESC LIMIT ?",
                           (name, limit))
        return [dict(r) for r in rows]

    def add_activation(self, name: str, version: int, at: datetime, by: str, reason: str) -> int:
        cur = self._x("INSERT INTO plan_activations (name, version, activated_at, activated_by, reason) "
                      "VALUES (?, ?, ?, ?, ?)", (name, version, to_db_time(at), by, reason))
        return int(cur.lastrowid)

    def close_activation(self, activation_id: int, at: datetime, by: str, reason: str) -> None:
        self._x("UPDATE plan_activations SET deactivated_at = ?, deactivated_by = ?, deactivate_reason = ? "
                "WHERE id = ?", (to_db_time(at), by, reason, activation_id))

    # -- desired configs -----------------------------------------------------------------------
    def agent_desired(self, agent_id: str) -> dict[str, Any] | None:
        return _dict(self._x("SELECT * FROM agent_desired WHERE agent_id = ?", (agent_id,)).fetchone())

    def set_agent_desired(self, agent_id: str, version: int, config: dict[str, Any], at: datetime,
                          reason: str) -> None:
        self._x("INSERT INTO agent_desired (agent_id, version, config, issued_at, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET version = excluded.version, "
                "config = excluded.config, issued_at = excluded.issued_at, reason = excluded.reason",
                (agent_id, version, _json(config), to_db_time(at), reason))

    def add_push(self, activation_id: int, agent_id: str, purpose: str, version: int,
                 config: dict[str, Any], previous_version: int | None,
                 previous_config: dict[str, Any] | None, at: datetime) -> None:
        self._x("INSERT INTO plan_pushes (activation_id, agent_id, purpose, version, config, "
                "previous_version, previous_config, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (activation_id, agent_id, purpose, version, _json(config), previous_version,
                 _json(previous_config), to_db_time(at)))

    def pushes(self, activation_id: int) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM plan_pushes WHERE activation_id = ? ORDER BY id", (activation_id,))
        return [d for r in rows if (d := _dict(r)) is not None]

    def pending_pushes(self) -> list[dict[str, Any]]:
        rows = self._x("SELECT * FROM plan_pushes WHERE acked_at IS NULL AND error IS NULL ORDER BY id")
        return [d for r in rows if (d := _dict(r)) is not None]

    def settle_push(self, push_id: int, at: datetime, error: str | None) -> None:
        if error is None:
            self._x("UPDATE plan_pushes SET acked_at = ? WHERE id = ?", (to_db_time(at), push_id))
        else:
            self._x("UPDATE plan_pushes SET error = ? WHERE id = ?", (error[:2000], push_id))

    # -- audit and notices ---------------------------------------------------------------------
    def add_plan_audit(self, at: datetime, plan: str, action: str, actor: str, detail: str,
                       data: dict[str, Any] | None = None) -> None:
        self._x("INSERT INTO plan_audit (at, plan, action, actor, detail, data) VALUES (?, ?, ?, ?, ?, ?)",
                (to_db_time(at), plan, action, actor, detail[:2000], _json(data)))

    def plan_audit(self, plan: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if plan is None:
            rows = self._x("SELECT * FROM plan_audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._x("SELECT * FROM plan_audit WHERE plan = ? ORDER BY id DESC LIMIT ?", (plan, limit))
        return [d for r in rows if (d := _dict(r)) is not None]

    def add_plan_notice(self, at: datetime, plan: str, department: str, message: str) -> int:
        cur = self._x("INSERT INTO plan_notices (at, plan, department, message) VALUES (?, ?, ?, ?)",
                      (to_db_time(at), plan, department, message[:2000]))
        return int(cur.lastrowid)

    def plan_notices(self, department: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if department is None:
            rows = self._x("SELECT * FROM plan_notices ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._x("SELECT * FROM plan_notices WHERE department = ? ORDER BY id DESC LIMIT ?",
                           (department, limit))
        return [dict(r) for r in rows]

    # -- vital signs ---------------------------------------------------------------------------
    def upsert_vital_levels(self, rows: Sequence[tuple]) -> None:
        """(indicator, kind, source, grid_id, level, value, unit, place, at, changed_at|None,
        event_id|None)."""
        self.conn.executemany(
            "INSERT INTO vital_levels (indicator, kind, source, grid_id, level, value, unit, place, at, "
            "changed_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(indicator) DO "
            "UPDATE SET level = excluded.level, value = excluded.value, at = excluded.at, "
            "changed_at = COALESCE(excluded.changed_at, vital_levels.changed_at), "
            "event_id = CASE WHEN excluded.changed_at IS NULL THEN vital_levels.event_id "
            "ELSE excluded.event_id END", rows)

    def vital_levels(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._x("SELECT * FROM vital_levels ORDER BY grid_id, indicator")]

    def add_vital_samples(self, rows: Sequence[tuple[str, str, float, int]]) -> None:
        self.conn.executemany("INSERT INTO vital_samples (indicator, at, value, level) VALUES (?, ?, ?, ?)", rows)

    def vital_samples(self, since: datetime, indicator: str | None = None) -> list[dict[str, Any]]:
        if indicator is None:
            rows = self._x("SELECT * FROM vital_samples WHERE at >= ? ORDER BY indicator, at",
                           (to_db_time(since),))
        else:
            rows = self._x("SELECT * FROM vital_samples WHERE indicator = ? AND at >= ? ORDER BY at",
                           (indicator, to_db_time(since)))
        return [dict(r) for r in rows]

    def purge_vital_samples(self, before: datetime) -> int:
        return int(self._x("DELETE FROM vital_samples WHERE at < ?", (to_db_time(before),)).rowcount)

    def open_case_counts(self) -> list[tuple[str | None, str, int]]:
        """(grid_id, category, open cases)."""
        rows = self._x(f"SELECT grid_id, category, COUNT(*) FROM cases WHERE state IN {OPEN_STATES_SQL} "
                       "GROUP BY grid_id, category")
        return [(r[0], r[1], int(r[2])) for r in rows]
