"""The case state machine.

::

    new ──▶ accepted ──▶ dispatched ──▶ in_progress ──▶ resolved ──▶ closed
     │         ▲  │  ▲       │  ▲           │              │  │         │
     ▼         │  │  │       ▼  │           ▼              │  ▼         ▼
    rejected ──┘  │  │    escalated ◀───────┘   (not fixed)┘ dispatched reopened
                  │  └── returned by the department (wrongly dispatched)
                  └──▶ merged (from any open state)

Every change is checked here and recorded as one append-only audit row by the engine.
An illegal change is refused with the reason, never applied.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import IllegalTransition

__all__ = ["OPEN_STATES", "CaseState", "allowed_next", "check_transition", "is_open"]


class CaseState(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    MERGED = "merged"


S = CaseState

# States in which a case can receive events and holds its grouping key.
OPEN_STATES = frozenset(
    {S.NEW, S.ACCEPTED, S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.RESOLVED, S.REOPENED}
)

_WORKING = {S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.REOPENED}

_NEXT: dict[CaseState, frozenset[CaseState]] = {
    S.NEW: frozenset({S.ACCEPTED, S.REJECTED, S.MERGED}),
    S.REJECTED: frozenset({S.ACCEPTED}),  # an operator overturns the screen
    S.ACCEPTED: frozenset({S.DISPATCHED, S.REJECTED, S.ESCALATED, S.RESOLVED, S.MERGED}),
    # → accepted: the department says it was sent to the wrong place (back to the operators)
    S.DISPATCHED: frozenset({S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.RESOLVED, S.MERGED,
                             S.ACCEPTED}),
    S.IN_PROGRESS: frozenset({S.DISPATCHED, S.ESCALATED, S.RESOLVED, S.MERGED, S.ACCEPTED}),
    S.ESCALATED: frozenset({S.ESCALATED, S.DISPATCHED, S.IN_PROGRESS, S.RESOLVED, S.MERGED,
                            S.ACCEPTED}),
    S.REOPENED: frozenset({S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.RESOLVED, S.MERGED}),
    S.RESOLVED: frozenset({S.CLOSED, S.DISPATCHED, S.MERGED}),
    S.CLOSED: frozenset({S.REOPENED}),
    S.MERGED: frozenset(),
}

_WHY: dict[CaseState, str] = {
    S.NEW: "a new case is first accepted or rejected by the screen",
    S.REJECTED: "a rejected case can only be accepted (overturned) by an operator",
    S.ACCEPTED: "an accepted case must be dispatched (or resolved) first",
    S.CLOSED: "a closed case can only be reopened",
    S.MERGED: "a merged case is final; work on the case it was merged into",
    S.RESOLVED: "a resolved case is closed, or sent back to the department",
}


def is_open(state: str) -> bool:
    return CaseState(state) in OPEN_STATES


def allowed_next(state: str) -> frozenset[CaseState]:
    return _NEXT[CaseState(state)]


def check_transition(case_id: int | None, from_state: str, to_state: str) -> None:
    """Raise :class:`IllegalTransition` (with the reason) unless the change is allowed."""
    src, dst = CaseState(from_state), CaseState(to_state)
    if dst in _NEXT[src]:
        return
    reason = _WHY.get(src) or (
        f"from {src} the case may go to {', '.join(sorted(_NEXT[src])) or 'nothing'}"
    )
    if src in _WORKING and dst is S.CLOSED:
        reason = "a case is resolved before it is closed"
    raise IllegalTransition(case_id, src.value, dst.value, reason)
