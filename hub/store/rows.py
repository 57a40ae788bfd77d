"""Row conversion shared by the SQLite store's modules: times as ISO 8601 UTC text,
JSON columns as JSON text, rows to dataclasses."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields as dc_fields
from datetime import UTC, datetime
from typing import Any

from .repo import AgentRow

__all__ = ["from_db_time", "to_db_time"]

_JSON_COLUMNS = {
    "screen_reasons", "before_bbox", "bbox", "reading", "attributes", "capabilities",
    "devices", "cameras", "seq_ranges", "data", "scope",
}
_BOOL_COLUMNS = {"verify_pending", "disabled"}
# The store's JSON text: compact, UTF-8 kept. json.dumps with these options builds an
# encoder per call; one shared encoder writes the same text a third faster (JSON columns
# are written on the ingest path).
compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_db_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime: the store keeps timezone-aware UTC times only")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_db_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _to_db(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return to_db_time(value)
    if name in _JSON_COLUMNS and value is not None:
        if isinstance(value, str):  # already JSON text (no JSON column holds a bare string)
            return value
        return compact_json(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _converter(name: str) -> Any:
    if name.endswith("_at") or name == "last_seen":
        return datetime.fromisoformat
    if name in _JSON_COLUMNS:
        return json.loads
    if name in _BOOL_COLUMNS:
        return bool
    return None


_PLANS: dict[tuple[type, tuple[str, ...]], list[tuple[int, str, Any]]] = {}


def _row(cls, row: sqlite3.Row):
    """A dataclass from a row; the column → converter plan is computed once per shape."""
    keys = tuple(row.keys())
    plan = _PLANS.get((cls, keys))
    if plan is None:
        names = {f.name for f in dc_fields(cls)}
        plan = [(i, k, _converter(k)) for i, k in enumerate(keys) if k in names]
        _PLANS[(cls, keys)] = plan
    return cls(**{k: (v if (v := row[i]) is None or f is None else f(v)) for i, k, f in plan})


def _agent(row: sqlite3.Row) -> AgentRow:
    agent = _row(AgentRow, row)
    agent.capabilities = agent.capabilities or []
    agent.devices = agent.devices or {}
    agent.cameras = agent.cameras or {}
    agent.seq_ranges = agent.seq_ranges or []
    return agent
