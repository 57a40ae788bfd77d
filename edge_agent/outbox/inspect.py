"""Look into an outbox without changing it (``cityops-agent outbox``): read-only, safe
while the agent runs (WAL)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from edge_agent.errors import OutboxError

__all__ = ["inspect_outbox"]


def inspect_outbox(path: Path, *, rows: int = 0) -> dict[str, Any]:
    if not path.exists():
        raise OutboxError("no outbox here yet (the agent has not run with this config)", path=str(path))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open: {exc}", path=str(path)) from exc
    try:
        by_state = dict(conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        by_kind = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
        depth, size, oldest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_at) FROM outbox").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        out: dict[str, Any] = {
            "path": str(path), "depth": depth, "bytes": size, "by_state": by_state,
            "by_kind": by_kind, "oldest_age_s": round(time.time() - oldest, 1) if oldest else 0.0,
            "next_seq": meta.pop("next_seq", 1), "counters": meta,
            "rule_states": conn.execute("SELECT COUNT(*) FROM rule_state").fetchone()[0],
        }
        if rows:
            cur = conn.execute("SELECT seq, event_id, kind, channel, state, size, attempts FROM outbox"
                               " ORDER BY seq LIMIT ?", (rows,))
            names = [d[0] for d in cur.description]
            out["rows"] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return out
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot read: {exc}", path=str(path)) from exc
    finally:
        conn.close()
