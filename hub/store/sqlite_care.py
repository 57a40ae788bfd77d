"""The SQLite queries behind elderly-care alarms (``care_alarms``, see hub/care.py and
hub/engine/care.py): a mixin of :class:`hub.store.sqlite.SqliteRepository`. Writes run
inside the writer's transaction like every other write."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from ..care import CareAlarm
from .rows import from_db_time, to_db_time

__all__ = ["CareQueries"]

_TIMES = ("opened_at", "updated_at", "acknowledged_at", "confirmed_at", "ended_at")


def _alarm(row: sqlite3.Row) -> CareAlarm:
    d = dict(row)
    for k in _TIMES:
        d[k] = from_db_time(d[k])
    d["tiers_seen"] = json.loads(d["tiers_seen"] or "[]")
    return CareAlarm(**d)


def _db(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return to_db_time(value)
    if name == "tiers_seen":
        return json.dumps(sorted(value or []))
    return value


class CareQueries:
    """Needs ``conn`` and ``_x`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any

    def get_care_alarm(self, agent_id: str, event_id: str) -> CareAlarm | None:
        row = self._x("SELECT * FROM care_alarms WHERE agent_id = ? AND event_id = ?",
                      (agent_id, event_id)).fetchone()
        return None if row is None else _alarm(row)

    def insert_care_alarm(self, agent_id: str, event_id: str, source: str, subcategory: str,
                          case_id: int | None, now: datetime, **fields: Any) -> CareAlarm | None:
        """A new alarm with ``fields`` set; None when the alarm is already there (the
        caller then reads and updates it)."""
        t = to_db_time(now)
        cols = ["agent_id", "event_id", "source", "subcategory", "case_id", "opened_at",
                "updated_at", *fields]
        cur = self._x(f"INSERT OR IGNORE INTO care_alarms ({', '.join(cols)}) "  # noqa: S608 (our names)
                      f"VALUES ({', '.join('?' * len(cols))})",
                      [agent_id, event_id, source, subcategory, case_id, t, t,
                       *(_db(k, v) for k, v in fields.items())])
        if cur.rowcount == 0:
            return None
        return CareAlarm(int(cur.lastrowid), agent_id, event_id, source, subcategory, case_id,
                         now, now, **{"tiers_seen": [], **fields})

    def update_care_alarm(self, alarm_id: int, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._x(f"UPDATE care_alarms SET {cols} WHERE id = ?",  # noqa: S608 (our column names)
                [*(_db(k, v) for k, v in fields.items()), alarm_id])

    def care_alarms_for_case(self, case_id: int) -> list[CareAlarm]:
        rows = self._x("SELECT * FROM care_alarms WHERE case_id = ? ORDER BY id", (case_id,))
        return [_alarm(r) for r in rows]

    def care_acknowledged_open(self, agent_id: str) -> list[CareAlarm]:
        """The agent's open alarms someone acknowledged: its desired care state."""
        rows = self._x("SELECT * FROM care_alarms WHERE agent_id = ? AND acknowledged_at IS NOT"
                       " NULL AND ended_at IS NULL ORDER BY id LIMIT 256", (agent_id,))
        return [_alarm(r) for r in rows]

    def care_agents_unconfirmed(self) -> list[str]:
        """Agents with an acknowledged open alarm they have not confirmed yet."""
        rows = self._x("SELECT DISTINCT agent_id FROM care_alarms WHERE acknowledged_at IS NOT"
                       " NULL AND ended_at IS NULL AND confirmed_at IS NULL")
        return [r[0] for r in rows]

    def care_counts(self) -> dict[str, int]:
        """For the scorecard: alarms, tier notifications, escalations after an
        acknowledgement, acknowledged, confirmed by the agent, ended."""
        row = self._x(
            "SELECT count(*), coalesce(sum(tier_notifications), 0),"
            " coalesce(sum(escalations_after_ack), 0), count(acknowledged_at),"
            " count(confirmed_at), count(ended_at) FROM care_alarms").fetchone()
        keys = ("alarms", "tier_notifications", "escalations_after_ack", "acknowledged",
                "confirmed", "ended")
        return dict(zip(keys, (int(v) for v in row), strict=True))
