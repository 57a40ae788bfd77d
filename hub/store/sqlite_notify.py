"""The SQLite queries behind the notification outbox (``notification_deliveries``, see
hub/notify/): a mixin of :class:`hub.store.sqlite.SqliteRepository`. Writes run inside the
writer's transaction like every other write."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..notify.model import Delivery, DeliveryState
from .rows import from_db_time, to_db_time

__all__ = ["DeliveryInsert", "NotifyQueries"]

# (notification_id, plan_notice_id, case_id, kind, channel, target, idempotency_key, state,
#  next_attempt_at, last_error, created_at, subject, text, fields_json)
DeliveryInsert = tuple[int | None, int | None, int | None, str, str, str, str, str,
                       datetime | None, str | None, datetime, str, str, str]

_TIMES = ("next_attempt_at", "sent_at", "created_at", "updated_at")


def _delivery(row: sqlite3.Row) -> Delivery:
    d = dict(row)
    for k in _TIMES:
        d[k] = from_db_time(d[k])
    d["fields"] = json.loads(d["fields"] or "{}")
    return Delivery(**d)


class NotifyQueries:
    """Needs ``conn`` and ``_x`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any

    def enqueue_deliveries(self, rows: Sequence[DeliveryInsert]) -> int:
        """Insert deliveries; a row whose idempotency key exists already is skipped.
        Returns how many were new."""
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT INTO notification_deliveries (notification_id, plan_notice_id, case_id, kind,"
            " channel, target, idempotency_key, state, next_attempt_at, last_error, created_at,"
            " updated_at, subject, text, fields)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (idempotency_key) DO NOTHING",
            [(n, p, c, kind, ch, target, key, state,
              None if due is None else to_db_time(due), err, to_db_time(at), to_db_time(at),
              subject, text, fields)
             for (n, p, c, kind, ch, target, key, state, due, err, at, subject, text, fields)
             in rows])
        return self.conn.total_changes - before

    def claim_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Due rows (queued or failed, ``next_attempt_at <= now``), oldest first, marked
        ``sending`` with one more attempt counted."""
        t = to_db_time(now)
        rows = self._x(
            "SELECT id FROM notification_deliveries WHERE state IN ('queued', 'failed')"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?", (t, limit)).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        self._x(f"UPDATE notification_deliveries SET state = 'sending', attempts = attempts + 1,"  # noqa: S608
                f" updated_at = ? WHERE id IN ({marks})", [t, *ids])
        got = self._x(f"SELECT * FROM notification_deliveries WHERE id IN ({marks})"  # noqa: S608
                      " ORDER BY next_attempt_at, id", ids)
        return [_delivery(r) for r in got]

    def next_delivery_due(self) -> datetime | None:
        row = self._x("SELECT min(next_attempt_at) FROM notification_deliveries"
                      " WHERE state IN ('queued', 'failed')").fetchone()
        return from_db_time(row[0]) if row and row[0] else None

    def settle_delivery(self, delivery_id: int, state: str, now: datetime,
                        next_attempt_at: datetime | None, last_error: str | None,
                        sent_at: datetime | None) -> bool:
        """Record an attempt's outcome on a row still ``sending`` (False: it was not)."""
        cur = self._x(
            "UPDATE notification_deliveries SET state = ?, next_attempt_at = ?, last_error = ?,"
            " sent_at = ?, updated_at = ? WHERE id = ? AND state = 'sending'",
            (state, None if next_attempt_at is None else to_db_time(next_attempt_at), last_error,
             None if sent_at is None else to_db_time(sent_at), to_db_time(now), delivery_id))
        if state == DeliveryState.SENT and cur.rowcount and sent_at is not None:
            self._x("UPDATE notifications SET delivered_at = coalesce(delivered_at, ?) WHERE id ="
                    " (SELECT notification_id FROM notification_deliveries WHERE id = ?)",
                    (to_db_time(sent_at), delivery_id))
        return cur.rowcount > 0

    def requeue_sending(self, now: datetime) -> int:
        """Rows left ``sending`` by a hub that stopped mid-attempt go back to the queue (the
        attempt may have reached the peer: at-least-once, the delivery id lets it dedupe)."""
        cur = self._x(
            "UPDATE notification_deliveries SET state = 'queued', next_attempt_at = ?,"
            " updated_at = ?, last_error = 'the hub stopped during attempt ' || attempts ||"
            " '; sent again (the receiver may have it already: same delivery id)'"
            " WHERE state = 'sending'", (to_db_time(now), to_db_time(now)))
        return cur.rowcount

    def release_deliveries(self, ids: Sequence[int], now: datetime) -> int:
        """Claimed rows the delivery task did not start (the hub is stopping) go back to
        the queue, their claim's attempt uncounted."""
        if not ids:
            return 0
        cur = self.conn.executemany(
            "UPDATE notification_deliveries SET state = 'queued', attempts = attempts - 1,"
            " updated_at = ? WHERE id = ? AND state = 'sending'",
            [(to_db_time(now), i) for i in ids])
        return cur.rowcount

    def requeue_delivery(self, delivery_id: int, now: datetime) -> bool:
        """Send a dead or failed row again now, with a fresh attempt count (an operator's
        retry after fixing the address or the channel)."""
        cur = self._x(
            "UPDATE notification_deliveries SET state = 'queued', attempts = 0,"
            " next_attempt_at = ?, updated_at = ? WHERE id = ? AND state IN ('dead', 'failed')",
            (to_db_time(now), to_db_time(now), delivery_id))
        return cur.rowcount > 0

    def get_delivery(self, delivery_id: int) -> Delivery | None:
        row = self._x("SELECT * FROM notification_deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return None if row is None else _delivery(row)

    def deliveries_for_case(self, case_id: int) -> list[Delivery]:
        rows = self._x("SELECT * FROM notification_deliveries WHERE case_id = ? ORDER BY id",
                       (case_id,))
        return [_delivery(r) for r in rows]

    def list_deliveries(self, *, state: str | None = None, channel: str | None = None,
                        plan_notice_id: int | None = None, after_id: int = 0,
                        limit: int = 100) -> list[Delivery]:
        where, args = ["id > ?"], [after_id]
        for col, value in (("state", state), ("channel", channel),
                           ("plan_notice_id", plan_notice_id)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        rows = self._x(f"SELECT * FROM notification_deliveries WHERE {' AND '.join(where)}"  # noqa: S608
                       " ORDER BY id LIMIT ?", [*args, limit])
        return [_delivery(r) for r in rows]

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """Rows by (state, channel)."""
        rows = self._x("SELECT state, channel, count(*) FROM notification_deliveries"
                       " GROUP BY state, channel")
        return {(r[0], r[1]): r[2] for r in rows}
