"""The SQLite queries behind the status page, the APIs and accounts: a mixin of
:class:`hub.store.sqlite.SqliteRepository` (same connection, same discipline)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import fields as dc_fields
from datetime import datetime
from typing import Any

from .repo import (
    AgentRow,
    ApiTokenRow,
    CaseFilter,
    CaseRow,
    ExternalReportRow,
    SessionRow,
    TokenRow,
    UserRow,
)
from .rows import _agent, _row, _to_db, to_db_time
from .schema import OPEN_STATE_NAMES, OPEN_STATES_SQL

__all__ = ["WebQueries"]


class WebQueries:
    """Needs ``conn``, ``_x`` and ``_update`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any
    _update: Any

    # -- reads for the status page and the APIs --------------------------------------------------
    def change_marker(self) -> int:
        """A number that changes whenever another connection commits (SQLite's
        ``data_version``): the live page recomputes only then."""
        return int(self._x("PRAGMA data_version").fetchone()[0])

    def _case_where(self, f: CaseFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []

        def among(column: str, values: Sequence[Any]) -> None:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)

        if f.states:
            among("state", list(f.states))
        if f.grid_id:
            where.append("grid_id = ?")
            params.append(f.grid_id)
        if f.category:
            where.append("(category = ? OR subcategory = ?)")
            params += [f.category, f.category]
        if f.categories is not None:
            among("category", list(f.categories) or [""])
        if f.subcategories is not None:
            among("subcategory", list(f.subcategories) or [""])
        if f.department:
            where.append("department = ?")
            params.append(f.department)
        if f.queue:
            where.append("queue = ?")
            params.append(f.queue)
        if f.level is not None:
            where.append("escalation_level = ?")
            params.append(f.level)
        if f.overdue_at is not None:
            where.append(f"state IN {OPEN_STATES_SQL} AND state NOT IN ('new', 'resolved')"
                         " AND deadline_at < ?")
            params.append(to_db_time(f.overdue_at))
        if f.needs_review:
            where.append("state = 'resolved' AND review_reason IS NOT NULL")
        if f.origin_agent:
            where.append("origin_agent = ?")
            params.append(f.origin_agent)
        if f.ids is not None:
            among("id", list(f.ids) or [-1])
        if f.grid_ids is not None:
            among("grid_id", sorted(f.grid_ids) or [""])
        if f.min_level is not None:
            where.append("escalation_level >= ?")
            params.append(f.min_level)
        if f.created_from is not None:
            where.append("created_at >= ?")
            params.append(to_db_time(f.created_from))
        if f.created_until is not None:
            where.append("created_at <= ?")
            params.append(to_db_time(f.created_until))
        if f.text:
            text = f.text.strip()
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clause = ("(place LIKE ? ESCAPE '\\' OR subcategory LIKE ? ESCAPE '\\'"
                      " OR origin_agent LIKE ? ESCAPE '\\' OR origin_source LIKE ? ESCAPE '\\'")
            params += [pattern] * 4
            if text.lstrip("#").isdigit():
                clause += " OR id = ?"
                params.append(int(text.lstrip("#")))
            where.append(clause + ")")
        return where, params

    def search_cases(self, f: CaseFilter, *, limit: int = 100, offset: int = 0,
                     with_total: bool = True) -> tuple[list[CaseRow], int | None]:
        where, params = self._case_where(f)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._x(f"SELECT * FROM cases{cond} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
                       [*params, limit, offset])
        cases = [_row(CaseRow, r) for r in rows]
        total = None
        if with_total:
            if not where:
                total = int(self._x("SELECT count(*) FROM cases").fetchone()[0])
            elif offset == 0 and len(cases) < limit:
                total = len(cases)
            else:
                total = int(self._x(f"SELECT count(*) FROM cases{cond}", params).fetchone()[0])  # noqa: S608
        return cases, total

    _URGENT_COLS = ("id, state, category, subcategory, grid_id, place, department, handler,"
                    " deadline_at, escalation_level")

    def case_overview(self, now: datetime, near_until: datetime, lists: int = 12,
                      grid_ids: Sequence[str] | None = None) -> dict[str, Any]:
        open_ = OPEN_STATES_SQL
        # A scoped account's overview: only its grids' cases (the ids are bound, not spliced).
        sp: list[Any] = sorted(grid_ids) if grid_ids is not None else []
        scope = (f" AND grid_id IN ({', '.join('?' for _ in sp) or 'NULL'})"
                 if grid_ids is not None else "")
        where_scope = f" WHERE{scope[4:]}" if scope else ""
        by_state = {r[0]: r[1] for r in self._x(
            f"SELECT state, count(*) FROM cases{where_scope} GROUP BY state", sp)}  # noqa: S608
        by_category: dict[str, int] = {}
        by_level: dict[int, int] = {}
        by_grid: dict[str, int] = {}
        for grid, cat, level, n in self._x(
                f"SELECT grid_id, category, escalation_level, count(*) FROM cases "  # noqa: S608
                f"WHERE state IN {open_}{scope} GROUP BY grid_id, category, escalation_level", sp):
            by_category[cat] = by_category.get(cat, 0) + n
            by_level[level] = by_level.get(level, 0) + n
            key = grid or ""
            by_grid[key] = by_grid.get(key, 0) + n
        working = f"state IN {open_} AND state NOT IN ('new', 'resolved'){scope}"
        t_now, t_near = to_db_time(now), to_db_time(near_until)
        overdue = int(self._x(f"SELECT count(*) FROM cases WHERE {working} AND deadline_at < ?",  # noqa: S608
                              (*sp, t_now)).fetchone()[0])
        near = int(self._x(f"SELECT count(*) FROM cases WHERE {working} AND deadline_at >= ? "  # noqa: S608
                           "AND deadline_at < ?", (*sp, t_now, t_near)).fetchone()[0])
        cols = self._URGENT_COLS
        overdue_rows = [dict(r) for r in self._x(
            f"SELECT {cols} FROM cases WHERE {working} AND deadline_at < ? "  # noqa: S608
            "ORDER BY deadline_at LIMIT ?", (*sp, t_now, lists))]
        near_rows = [dict(r) for r in self._x(
            f"SELECT {cols} FROM cases WHERE {working} AND deadline_at >= ? AND deadline_at < ? "  # noqa: S608
            "ORDER BY deadline_at LIMIT ?", (*sp, t_now, t_near, lists))]
        review = int(self._x(f"SELECT count(*) FROM cases WHERE state = 'resolved' "  # noqa: S608
                             f"AND review_reason IS NOT NULL{scope}", sp).fetchone()[0])
        queued = int(self._x(f"SELECT count(*) FROM cases WHERE queue = 'operator' "  # noqa: S608
                             f"AND state IN {open_}{scope}", sp).fetchone()[0])
        latest = self._x(f"SELECT max(id) FROM cases{where_scope}", sp).fetchone()[0]  # noqa: S608
        return {
            "by_state": by_state,
            "open": sum(n for s, n in by_state.items() if s in OPEN_STATE_NAMES),
            "by_category": by_category, "by_level": by_level, "by_grid": by_grid,
            "overdue": overdue, "near_deadline": near, "needs_review": review,
            "operator_queue": queued, "overdue_cases": overdue_rows, "near_cases": near_rows,
            "latest_case_id": latest or 0,
        }

    def agent_overview(self, stale_before: datetime, lists: int = 12) -> dict[str, Any]:
        t = to_db_time(stale_before)
        online = offline = stale = unknown = 0
        for state, n, n_stale in self._x(
                "SELECT state, count(*), sum(last_seen IS NULL OR last_seen < ?) FROM agents "
                "GROUP BY state", (t,)):
            if state == "online":
                stale += n_stale or 0
                online += n - (n_stale or 0)
            elif state == "offline":
                offline += n
            else:
                unknown += n
        depth, deepest, devices_down = self._x(
            "SELECT coalesce(sum(outbox_depth), 0), coalesce(max(outbox_depth), 0),"
            " sum(devices LIKE '%\"down\"%') FROM agents").fetchone()
        attention = [_agent(r) for r in self._x(
            "SELECT * FROM agents WHERE state != 'online' OR last_seen < ? OR outbox_depth > 0"
            " OR devices LIKE '%\"down\"%' OR seq_ranges != '[]'"  # a gap open now
            " ORDER BY (state = 'online') , last_seen LIMIT ?", (t, lists))]
        return {"online": online, "offline": offline, "stale": stale, "unknown": unknown,
                "total": online + offline + stale + unknown, "outbox_depth": int(depth),
                "outbox_deepest": int(deepest), "devices_down_agents": int(devices_down or 0),
                "attention": attention}

    def search_agents(self, *, state: str | None = None, text: str | None = None,
                      stale_before: datetime | None = None, limit: int = 100,
                      offset: int = 0) -> tuple[list[AgentRow], int]:
        where: list[str] = []
        params: list[Any] = []
        if state == "stale" and stale_before is not None:
            where.append("state = 'online' AND (last_seen IS NULL OR last_seen < ?)")
            params.append(to_db_time(stale_before))
        elif state == "online" and stale_before is not None:
            where.append("state = 'online' AND last_seen >= ?")
            params.append(to_db_time(stale_before))
        elif state:
            where.append("state = ?")
            params.append(state)
        if text:
            pattern = "%" + text.strip().replace("%", "").replace("_", "\\_") + "%"
            where.append("(agent_id LIKE ? ESCAPE '\\' OR grid_id LIKE ? ESCAPE '\\' "
                         "OR hostname LIKE ? ESCAPE '\\')")
            params += [pattern] * 3
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._x(f"SELECT * FROM agents{cond} ORDER BY agent_id LIMIT ? OFFSET ?",  # noqa: S608
                       [*params, limit, offset])
        total = int(self._x(f"SELECT count(*) FROM agents{cond}", params).fetchone()[0])  # noqa: S608
        return [_agent(r) for r in rows], total

    def messages_stored_by_agent(self, agent_ids: Sequence[str]) -> dict[str, int]:
        # Counted on the (agent_id, seq) index, a few hundred agents a statement.
        ids = list(dict.fromkeys(agent_ids))
        out = dict.fromkeys(ids, 0)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ", ".join("?" for _ in part)
            out.update(self._x(f"SELECT agent_id, count(*) FROM messages WHERE agent_id IN ({marks})"  # noqa: S608
                               " GROUP BY agent_id", part).fetchall())
        return out

    def counts_dead_letters(self) -> dict[str, Any]:
        rows, total, last = self._x("SELECT count(*), coalesce(sum(count), 0), max(last_at)"
                                    " FROM dead_letters").fetchone()
        return {"rows": int(rows), "total": int(total), "last_at": last}

    def list_enrollment_tokens(self, limit: int = 100) -> list[TokenRow]:
        rows = self._x("SELECT * FROM enrollment_tokens ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_row(TokenRow, r) for r in rows]

    def next_message_seq(self, agent_id: str) -> int:
        row = self._x("SELECT max(seq) FROM messages WHERE agent_id = ?", (agent_id,)).fetchone()
        return int(row[0] or 0) + 1

    def is_report_media(self, sha256: str, origin_agent: str) -> bool:
        return self._x("SELECT 1 FROM cases WHERE before_sha256 = ? AND origin_agent = ? LIMIT 1",
                       (sha256, origin_agent)).fetchone() is not None

    # -- reports with a key of their own ----------------------------------------------------------
    def get_external_report(self, channel: str, partner: str,
                            external_id: str) -> ExternalReportRow | None:
        row = self._x("SELECT * FROM external_reports WHERE channel = ? AND partner = ? AND "
                      "external_id = ?", (channel, partner, external_id)).fetchone()
        return None if row is None else _row(ExternalReportRow, row)

    def add_external_report(self, channel: str, partner: str, external_id: str,
                            body_sha256: str, event_id: str, case_id: int, actor: str,
                            at: datetime) -> int:
        cur = self._x("INSERT INTO external_reports (channel, partner, external_id, body_sha256,"
                      " event_id, case_id, actor, received_at) VALUES (?,?,?,?,?,?,?,?)",
                      (channel, partner, external_id, body_sha256, event_id, case_id, actor,
                       to_db_time(at)))
        return int(cur.lastrowid)

    def external_reports_by(self, channel: str, actor: str, limit: int = 50,
                            offset: int = 0) -> list[ExternalReportRow]:
        rows = self._x("SELECT * FROM external_reports WHERE channel = ? AND actor = ? "
                       "ORDER BY id DESC LIMIT ? OFFSET ?", (channel, actor, limit, offset))
        return [_row(ExternalReportRow, r) for r in rows]

    def get_external_report_by_id(self, report_id: int) -> ExternalReportRow | None:
        row = self._x("SELECT * FROM external_reports WHERE id = ?", (report_id,)).fetchone()
        return None if row is None else _row(ExternalReportRow, row)

    # -- accounts, sessions and API tokens ------------------------------------------------------
    def add_user(self, row: UserRow) -> None:
        names = [f.name for f in dc_fields(UserRow)]
        self._x(f"INSERT INTO users ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",  # noqa: S608
                [_to_db(n, getattr(row, n)) for n in names])

    def get_user(self, username: str) -> UserRow | None:
        row = self._x("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else _row(UserRow, row)

    def list_users(self) -> list[UserRow]:
        return [_row(UserRow, r) for r in self._x("SELECT * FROM users ORDER BY username")]

    def update_user(self, username: str, **fields: Any) -> None:
        self._update("users", "username", username, fields)

    def add_session(self, row: SessionRow) -> None:
        names = [f.name for f in dc_fields(SessionRow)]
        self._x(f"INSERT INTO sessions ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",  # noqa: S608
                [_to_db(n, getattr(row, n)) for n in names])

    def get_session(self, id_sha256: str) -> SessionRow | None:
        row = self._x("SELECT * FROM sessions WHERE id_sha256 = ?", (id_sha256,)).fetchone()
        return None if row is None else _row(SessionRow, row)

    def touch_session(self, id_sha256: str, at: datetime) -> None:
        self._x("UPDATE sessions SET last_seen_at = ? WHERE id_sha256 = ?",
                (to_db_time(at), id_sha256))

    def delete_session(self, id_sha256: str) -> None:
        self._x("DELETE FROM sessions WHERE id_sha256 = ?", (id_sha256,))

    def delete_sessions_for_user(self, username: str) -> int:
        return self._x("DELETE FROM sessions WHERE username = ?", (username,)).rowcount

    def purge_sessions(self, before: datetime) -> int:
        return self._x("DELETE FROM sessions WHERE expires_at < ?", (to_db_time(before),)).rowcount

    def add_api_token(self, token_sha256: str, name: str, role: str, department: str | None,
                      created_at: datetime, created_by: str, *, level: str | None = None,
                      scope: Sequence[str] = ()) -> int:
        cur = self._x("INSERT INTO api_tokens (token_sha256, name, role, department, created_at,"
                      " created_by, level, scope) VALUES (?,?,?,?,?,?,?,?)",
                      (token_sha256, name, role, department, to_db_time(created_at), created_by,
                       level, _to_db("scope", list(scope)) if level else None))
        return int(cur.lastrowid)

    def get_api_token(self, token_sha256: str) -> ApiTokenRow | None:
        row = self._x("SELECT * FROM api_tokens WHERE token_sha256 = ?", (token_sha256,)).fetchone()
        return None if row is None else _row(ApiTokenRow, row)

    def list_api_tokens(self) -> list[ApiTokenRow]:
        return [_row(ApiTokenRow, r) for r in self._x("SELECT * FROM api_tokens ORDER BY id")]

    def revoke_api_token(self, token_id: int, at: datetime) -> bool:
        return self._x("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (to_db_time(at), token_id)).rowcount == 1

    def touch_api_token(self, token_id: int, at: datetime) -> None:
        self._x("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (to_db_time(at), token_id))
