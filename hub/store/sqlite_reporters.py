"""The SQLite queries behind "reporters answered": reporters' contacts, satisfaction
surveys and their retention. A mixin of :class:`hub.store.sqlite.SqliteRepository`
(same connection; writes run inside the writer's transaction)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..privacy import REPORTER_KIND_PREFIX, mask_address
from .repo import ReporterContactRow, SurveyRow
from .rows import _row, to_db_time
from .schema import OPEN_STATES_SQL

__all__ = ["ReporterQueries"]

REDACTED_TEXT = "(removed: the reporter's contact passed its retention)"


class ReporterQueries:
    """Needs ``conn`` and ``_x`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any

    def existing_delivery_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self._x("SELECT idempotency_key FROM notification_deliveries WHERE "  # noqa: S608
                       f"idempotency_key IN ({', '.join('?' for _ in keys)})", list(keys))
        return {r[0] for r in rows}

    def add_reporter_contact(self, *, case_id: int, request_id: int, channel: str, event_id: str,
                             name: str | None, email: str | None, phone: str | None,
                             at: datetime) -> int:
        cur = self._x("INSERT INTO reporter_contacts (case_id, request_id, channel, event_id, "
                      "name, email, phone, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (case_id, request_id, channel, event_id, name, email, phone, to_db_time(at)))
        return int(cur.lastrowid)

    def reporter_contacts_for_case(self, case_id: int) -> list[ReporterContactRow]:
        rows = self._x("SELECT * FROM reporter_contacts WHERE case_id = ? ORDER BY id", (case_id,))
        return [_row(ReporterContactRow, r) for r in rows]

    def move_reporter_contacts(self, from_case: int, to_case: int) -> int:
        return self._x("UPDATE reporter_contacts SET case_id = ? WHERE case_id = ?",
                       (to_case, from_case)).rowcount

    def add_survey(self, *, case_id: int, contact_id: int, cycle: int, token_sha256: str,
                   at: datetime, expires_at: datetime) -> int | None:
        cur = self._x("INSERT OR IGNORE INTO satisfaction_surveys (case_id, contact_id, cycle, "
                      "token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (case_id, contact_id, cycle, token_sha256, to_db_time(at),
                       to_db_time(expires_at)))
        return int(cur.lastrowid) if cur.rowcount else None

    def get_survey(self, token_sha256: str) -> SurveyRow | None:
        row = self._x("SELECT * FROM satisfaction_surveys WHERE token_sha256 = ?",
                      (token_sha256,)).fetchone()
        return None if row is None else _row(SurveyRow, row)

    def answer_survey(self, survey_id: int, at: datetime, answer: str, comment: str | None) -> bool:
        return self._x("UPDATE satisfaction_surveys SET answered_at = ?, answer = ?, comment = ? "
                       "WHERE id = ? AND answered_at IS NULL",
                       (to_db_time(at), answer, comment, survey_id)).rowcount == 1

    def surveys_for_case(self, case_id: int) -> list[SurveyRow]:
        rows = self._x("SELECT * FROM satisfaction_surveys WHERE case_id = ? ORDER BY id", (case_id,))
        return [_row(SurveyRow, r) for r in rows]

    def purge_reporter_contacts(self, before: datetime, now: datetime, limit: int) -> int:
        rows = self._x(
            "SELECT rc.id, rc.case_id, rc.request_id, rc.email, rc.phone FROM reporter_contacts rc "  # noqa: S608
            "JOIN cases c ON c.id = rc.case_id "
            f"WHERE c.state NOT IN {OPEN_STATES_SQL} AND c.updated_at < ? LIMIT ?",
            (to_db_time(before), limit)).fetchall()
        stamp = to_db_time(now)
        for r in rows:
            addresses = [a for a in (r["email"], r["phone"]) if a]
            cases = sorted({r["case_id"], r["request_id"]})
            if addresses:
                found = self._x(
                    "SELECT id, target, idempotency_key FROM notification_deliveries "  # noqa: S608
                    f"WHERE case_id IN ({', '.join('?' for _ in cases)}) AND kind LIKE ? "
                    f"AND target IN ({', '.join('?' for _ in addresses)})",
                    [*cases, REPORTER_KIND_PREFIX + "%", *addresses]).fetchall()
                for d in found:
                    key = "redacted|" + hashlib.sha256(d["idempotency_key"].encode()).hexdigest()
                    self._x("UPDATE notification_deliveries SET target = ?, idempotency_key = ?, "
                            "subject = ?, text = ?, fields = '{}', updated_at = ?, "
                            "next_attempt_at = NULL, "
                            "last_error = CASE WHEN state = 'sent' THEN last_error "
                            "ELSE 'the reporter''s contact passed its retention' END, "
                            "state = CASE WHEN state = 'sent' THEN state ELSE 'dead' END "
                            "WHERE id = ?",
                            (mask_address(d["target"]), key, REDACTED_TEXT, REDACTED_TEXT, stamp,
                             d["id"]))
            self._x("DELETE FROM satisfaction_surveys WHERE contact_id = ?", (r["id"],))
            self._x("DELETE FROM reporter_contacts WHERE id = ?", (r["id"],))
        return len(rows)
