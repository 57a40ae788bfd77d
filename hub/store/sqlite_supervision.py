"""The SQLite queries behind supervision orders (督办): a mixin of
:class:`hub.store.sqlite.SqliteRepository` (same connection, same discipline: writes run
inside the writer's transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .repo import SupervisionRow
from .rows import _row, _to_db, to_db_time

__all__ = ["SupervisionQueries"]


class SupervisionQueries:
    """Needs ``conn``, ``_x`` and ``_update`` from the repository class."""

    conn: sqlite3.Connection
    _x: Any
    _update: Any

    def add_supervision_order(self, fields: dict[str, Any]) -> int:
        names = list(fields)
        cur = self._x(f"INSERT INTO supervision_orders ({', '.join(names)}) "  # noqa: S608
                      f"VALUES ({', '.join('?' for _ in names)})",
                      [_to_db(n, fields[n]) for n in names])
        return int(cur.lastrowid)

    def get_supervision_order(self, order_id: int) -> SupervisionRow | None:
        row = self._x("SELECT * FROM supervision_orders WHERE id = ?", (order_id,)).fetchone()
        return None if row is None else _row(SupervisionRow, row)

    def update_supervision_order(self, order_id: int, **fields: Any) -> None:
        self._update("supervision_orders", "id", order_id, fields)

    def supervision_for_case(self, case_id: int) -> list[SupervisionRow]:
        rows = self._x("SELECT * FROM supervision_orders WHERE case_id = ? ORDER BY id", (case_id,))
        return [_row(SupervisionRow, r) for r in rows]

    def supervision_due(self, now: datetime, limit: int = 500) -> list[SupervisionRow]:
        rows = self._x("SELECT * FROM supervision_orders WHERE due_at IS NOT NULL AND due_at <= ? "
                       "ORDER BY due_at LIMIT ?", (to_db_time(now), limit))
        return [_row(SupervisionRow, r) for r in rows]

    def supervision_queue(self, *, target_kind: str | None = None,
                          targets: Sequence[str] | None = None,
                          grid_ids: Sequence[str] | None = None, open_only: bool = True,
                          limit: int = 100) -> list[SupervisionRow]:
        where: list[str] = []
        params: list[Any] = []
        if target_kind is not None:
            where.append("o.target_kind = ?")
            params.append(target_kind)
        if targets is not None:
            where.append(f"o.target IN ({', '.join('?' for _ in targets) or 'NULL'})")
            params.extend(targets)
        if grid_ids is not None:
            where.append(f"c.grid_id IN ({', '.join('?' for _ in grid_ids) or 'NULL'})")
            params.extend(sorted(grid_ids))
        if open_only:
            where.append("o.state != 'answered'")
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._x("SELECT o.* FROM supervision_orders o JOIN cases c ON c.id = o.case_id"  # noqa: S608
                       f"{cond} ORDER BY o.id DESC LIMIT ?", [*params, limit])
        return [_row(SupervisionRow, r) for r in rows]
