"""The SQLite queries behind elderly-care alarms (``care_alarms``, see hub/care.py and
hub/engine/care.py): a mixin of :class:`hub.store.sqlite.SqliteRepository`. Writes run
inside the writer's transaction like every other write."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
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


def _dumps(tiers: list[int]) -> str:
    """The JSON text json.dumps(sorted(tiers)) gives, without its encoder (small ints)."""
    return "[" + ", ".join(map(str, sorted(tiers))) + "]"


# Every column but the id; the ones an event of the alarm can change.
_COLUMNS = ("agent_id", "event_id", "source", "subcategory", "case_id", "opened_at",
            "updated_at", "tier", "tiers_seen", "tier_notifications", "escalations_after_ack",
            "acknowledged_at", "acknowledged_by", "confirmed_at", "ended_at", "end_reason")
_EVENT_COLUMNS = ("case_id", "updated_at", "tier", "tiers_seen", "tier_notifications",
                  "escalations_after_ack", "confirmed_at", "ended_at", "end_reason")
# Each statement's values: the columns before tiers_seen, its JSON text, the ones after.
_HEAD = itemgetter(*_COLUMNS[:_COLUMNS.index("tiers_seen")])
_TAIL = itemgetter(*_COLUMNS[_COLUMNS.index("tiers_seen") + 1:])
_EVENT_HEAD = itemgetter(*_EVENT_COLUMNS[:_EVENT_COLUMNS.index("tiers_seen")])
_EVENT_TAIL = itemgetter(*_EVENT_COLUMNS[_EVENT_COLUMNS.index("tiers_seen") + 1:], "id")
_INSERT = (f"INSERT INTO care_alarms ({', '.join(_COLUMNS)}) "  # noqa: S608 (our names)
           f"VALUES ({', '.join('?' * len(_COLUMNS))})")
_UPDATE = (f"UPDATE care_alarms SET {', '.join(f'{c} = ?' for c in _EVENT_COLUMNS)} "  # noqa: S608
           "WHERE id = ?")


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

    def care_alarm_rows(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The stored alarms of these (agent id, event id) keys in one statement, as their
        columns (times as stored text, ``tiers_seen`` as a list): what an ingest batch's
        care messages start from (:meth:`hub.engine.care.CareDesk.settle`)."""
        wanted = json.dumps([list(k) for k in dict.fromkeys(keys)])
        rows = self._x("SELECT c.* FROM json_each(?) AS k JOIN care_alarms c"
                       " ON c.agent_id = json_extract(k.value, '$[0]')"
                       " AND c.event_id = json_extract(k.value, '$[1]')", (wanted,))
        out = {}
        for row in rows:
            d = dict(row)
            d["tiers_seen"] = json.loads(d["tiers_seen"] or "[]")
            out[(d["agent_id"], d["event_id"])] = d
        return out

    def write_care_alarms(self, inserts: Sequence[dict], updates: Sequence[dict]) -> None:
        """New alarms and changed ones, as :meth:`care_alarm_rows` gives them (an update
        writes every column an event can change; the acknowledgement is a person's)."""
        if inserts:
            self.conn.executemany(_INSERT, [(*_HEAD(r), _dumps(r["tiers_seen"]), *_TAIL(r))
                                            for r in inserts])
        if updates:
            self.conn.executemany(_UPDATE, [(*_EVENT_HEAD(r), _dumps(r["tiers_seen"]),
                                             *_EVENT_TAIL(r)) for r in updates])

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
