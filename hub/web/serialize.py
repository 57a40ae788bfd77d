"""Rows as the APIs and pages show them: plain JSON-ready dicts. One shape per thing, so
the status page, the operator API, the handler API and the live feed agree.

Times are ISO 8601 UTC strings. Snapshot references become URLs (by hash only).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from protocol.taxonomy import Taxonomy

from ..cases.sla import LEVELS
from ..store.repo import AgentRow, CaseRow

__all__ = ["agent_json", "case_json", "clip_url", "clip_view", "jsonable", "names", "snapshot_url"]

LEVEL_NAMES = ("-", *LEVELS)


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def snapshot_url(sha256: str | None) -> str | None:
    return None if not sha256 else f"/api/v1/snapshots/{sha256}.jpg"


def clip_url(sha256: str | None) -> str | None:
    return None if not sha256 else f"/api/v1/clips/{sha256}.mp4"


def clip_view(clip: Any) -> dict[str, Any]:
    """An event clip for the case page and API: its state, and the video's URL once stored
    (a clip still arriving or failed has none; ``error`` says why it failed)."""
    return {"id": clip.id, "agent_id": clip.agent_id, "event_id": clip.event_id,
            "state": clip.state, "error": clip.error, "sha256": clip.clip_sha256,
            "url": clip_url(clip.clip_sha256) if clip.state == "stored" else None,
            "bytes": clip.clip_bytes, "width": clip.width, "height": clip.height,
            "fps": clip.fps, "frames": clip.frames, "duration_s": clip.duration_s,
            "event_offset_s": clip.event_offset_s, "chunks": clip.chunk_count,
            "chunks_received": clip.chunks_received,
            "started_at": jsonable(clip.started_at), "received_at": jsonable(clip.first_at)}


def names(tax: Taxonomy, code: str) -> dict[str, str]:
    """{en, zh} of a category or subcategory code (the code itself when unknown)."""
    try:
        n = (tax.subcategory(code) if "." in code else tax.category(code)).name
    except KeyError:
        return {"en": code, "zh": ""}
    return {"en": n.en, "zh": n.zh}


def department_names(tax: Taxonomy, extra: dict[str, Any], code: str | None) -> dict[str, str] | None:
    if not code:
        return None
    n = tax.departments.get(code) or extra.get(code)
    return {"en": n.en, "zh": n.zh} if n else {"en": code, "zh": ""}


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def case_json(case: CaseRow, tax: Taxonomy, departments: dict[str, Any] | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """The case object of the APIs (HANDLER_API.md's fields and more)."""
    overdue = bool(now and case.deadline_at and case.deadline_at < now
                   and case.state in ("accepted", "dispatched", "in_progress", "escalated",
                                      "reopened"))
    return {
        "id": case.id,
        "state": case.state,
        "category": case.category,
        "subcategory": case.subcategory,
        "category_name": names(tax, case.category),
        "subcategory_name": names(tax, case.subcategory),
        "grid_id": case.grid_id,
        "town": case.town,
        "district": case.district,
        "place": case.place,
        "lat": case.lat,
        "lon": case.lon,
        "department": case.department,
        "department_name": department_names(tax, departments or {}, case.department),
        "handler": case.handler,
        "queue": case.queue,
        "queue_reason": case.queue_reason,
        "created_at": _t(case.created_at),
        "updated_at": _t(case.updated_at),
        "accepted_at": _t(case.accepted_at),
        "rejected_at": _t(case.rejected_at),
        "dispatched_at": _t(case.dispatched_at),
        "started_at": _t(case.started_at),
        "resolved_at": _t(case.resolved_at),
        "closed_at": _t(case.closed_at),
        "closed_by": case.closed_by,
        "resolution": case.resolution,
        "deadline_at": _t(case.deadline_at),
        "overdue": overdue,
        "escalation_level": case.escalation_level,
        "escalation_name": LEVEL_NAMES[min(case.escalation_level, 3)],
        "event_count": case.event_count,
        "reopen_count": case.reopen_count,
        "merged_into": case.merged_into,
        "screen_reasons": [{"code": c, "detail": d} for c, d in (case.screen_reasons or [])],
        "review_reason": case.review_reason,
        "close_mode": case.close_mode,
        "before_snapshot": snapshot_url(case.before_sha256),
        "after_snapshot": snapshot_url(case.after_sha256),
        "verify_pending": case.verify_pending,
        "satisfaction": case.satisfaction,
        "origin": {"agent_id": case.origin_agent, "source": case.origin_source,
                   "event_id": case.origin_event},
    }


def agent_json(agent: AgentRow, now: datetime, stale_after_s: float,
               messages_stored: int | None = None) -> dict[str, Any]:
    """An agent row plus what the page shows: online / offline / stale. Its sequence state
    as a summary (the ranges themselves, up to 2,000, stay in the hub)."""
    data = jsonable(agent)
    shown = agent.state
    if agent.state == "online" and (agent.last_seen is None
                                    or (now - agent.last_seen).total_seconds() > stale_after_s):
        shown = "stale"
    data["shown_state"] = shown
    ranges = data.pop("seq_ranges")
    data["seq_gaps_opened"] = data.pop("seq_gaps")  # ever, since the agent's first message
    data["seq_gaps_open"] = len(ranges)  # now: each range above seq_upto has a hole below it
    data["missing_seqs"] = max(0, agent.seq_highest - agent.seq_upto
                               - sum(hi - lo + 1 for lo, hi in ranges))
    if messages_stored is not None:
        data["messages_stored"] = messages_stored
    data["devices_down"] = sorted(k for k, v in agent.devices.items() if v == "down")
    return data
