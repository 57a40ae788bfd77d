"""Deadlines, near-deadline warnings and escalation (town → district → city). Pure.

A case's clock starts when it is accepted (``deadline_at = accepted_at + deadline``),
so a case waiting in the operator queue is late too; a reopened case gets a fresh
deadline. A warning is due ``warn_fraction`` of the deadline before it. Past the
deadline an unresolved case escalates one level, then one more level every
``escalation_step`` until the city has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["LEVELS", "Deadline", "SlaAction", "due_actions", "plan_deadline"]

LEVELS = ("town", "district", "city")  # escalation_level 1, 2, 3


@dataclass(frozen=True)
class Deadline:
    deadline_at: datetime
    warn_at: datetime


def plan_deadline(start: datetime, deadline_min: float, warn_fraction: float) -> Deadline:
    total = timedelta(minutes=deadline_min)
    return Deadline(start + total, start + total * (1 - warn_fraction))


@dataclass(frozen=True)
class SlaFacts:
    case_id: int
    state: str
    deadline_at: datetime | None
    warn_at: datetime | None
    warned: bool
    escalation_level: int  # 0: not escalated
    last_escalated_at: datetime | None


@dataclass(frozen=True)
class SlaAction:
    case_id: int
    kind: str  # "warn" | "escalate"
    level: int = 0  # for escalate: the new level (1 town, 2 district, 3 city)
    detail: str = ""


_LATE_STATES = {"accepted", "dispatched", "in_progress", "escalated", "reopened"}


def due_actions(facts: SlaFacts, now: datetime, escalation_step: timedelta) -> list[SlaAction]:
    """What is due for one case at ``now`` (at most one warning and one escalation)."""
    if facts.state not in _LATE_STATES or facts.deadline_at is None:
        return []
    out: list[SlaAction] = []
    if not facts.warned and facts.warn_at is not None and facts.warn_at <= now < facts.deadline_at:
        left = facts.deadline_at - now
        out.append(SlaAction(facts.case_id, "warn", 0, f"deadline in {_minutes(left)} min"))
    if now >= facts.deadline_at and facts.escalation_level < len(LEVELS):
        if facts.escalation_level == 0:
            due = True
        else:
            last = facts.last_escalated_at or facts.deadline_at
            due = now >= last + escalation_step
        if due:
            level = facts.escalation_level + 1
            out.append(SlaAction(facts.case_id, "escalate", level,
                                 f"overdue by {_minutes(now - facts.deadline_at)} min; "
                                 f"escalated to {LEVELS[level - 1]}"))
    return out


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def next_due(facts: SlaFacts, escalation_step: timedelta) -> datetime | None:
    """When this case next needs looking at (the engine stores it to query by index)."""
    if facts.state not in _LATE_STATES or facts.deadline_at is None:
        return None
    if not facts.warned and facts.warn_at is not None and facts.warn_at < facts.deadline_at:
        return facts.warn_at
    if facts.escalation_level == 0:
        return facts.deadline_at
    if facts.escalation_level < len(LEVELS):
        return (facts.last_escalated_at or facts.deadline_at) + escalation_step
    return None
