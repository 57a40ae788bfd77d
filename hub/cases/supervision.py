"""Supervision orders (督办): a higher command level presses on a late or poorly handled
case. Pure: who may issue, to whom, who answers, and which reminder is due when.

An order is issued by a district or city account (or an operator, dispatcher or admin
without a level, who speak for the city) to a level below it (the case's town or
district) or to a department. It carries a note and its own deadline. Its addressee
acknowledges it (received) and answers it (what was done). Until it is answered, the SLA
tick sends two reminders: when ``REMIND_FRACTION`` of its time is left, and when its
deadline passes. Every step is an audit row on the case.

::

    issued ──▶ acknowledged ──▶ answered
       └────────────────────────▲ (an answer acknowledges too)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ANSWERED", "ISSUABLE_STATES", "REMIND_FRACTION", "TARGET_KINDS", "Addressee",
           "Issuer", "OrderClock", "Reminder", "SupervisionRefused", "addressed_to",
           "check_acknowledge", "check_answer", "check_issue", "due_reminders", "next_due",
           "plan_order"]

TARGET_KINDS = ("town", "district", "department")
RANK = {"town": 1, "district": 2, "city": 3}
REMIND_FRACTION = 0.25  # the "deadline approaches" reminder when a quarter of the time is left
MIN_DEADLINE = timedelta(minutes=10)
MAX_DEADLINE = timedelta(days=30)
# Cases a higher level may press on: being worked, or resolved but not yet closed.
ISSUABLE_STATES = frozenset({"accepted", "dispatched", "in_progress", "escalated", "reopened",
                             "resolved"})
ISSUED, ACKNOWLEDGED, ANSWERED = "issued", "acknowledged", "answered"


class SupervisionRefused(Exception):
    """An order step refused, with a stable ``code``, the reason and the HTTP status the
    web answers with (403: not yours; 409: not now; 422: bad input)."""

    def __init__(self, code: str, detail: str, status: int = 409) -> None:
        self.code = code
        self.detail = detail
        self.status = status
        super().__init__(detail)


@dataclass(frozen=True)
class Issuer:
    """Who issues: the account's command level (``None``: an unscoped account, the city)."""

    level: str | None
    may_supervise: bool  # the role's ``supervise`` permission


@dataclass(frozen=True)
class Addressee:
    """Who is asking to acknowledge or answer: the account's level, its department and
    whether the case is inside its scope."""

    level: str | None
    department: str | None
    is_handler: bool
    sees_case: bool


@dataclass(frozen=True)
class OrderClock:
    state: str
    issued_at: datetime
    deadline_at: datetime
    remind_at: datetime
    reminded: bool
    overdue_reminded: bool


@dataclass(frozen=True)
class Reminder:
    kind: str  # "due_soon" | "overdue"
    detail: str


def _issuer_rank(level: str | None) -> int:
    return RANK.get(level or "city", 3)


def check_issue(issuer: Issuer, case_state: str, target_kind: str, target: str,
                known_departments: set[str], deadline: timedelta,
                open_targets: set[tuple[str, str]]) -> None:
    """Raise :class:`SupervisionRefused` unless this order may be issued now.

    ``target`` is the town or district name (from the case) or a department code;
    ``open_targets`` are the (kind, target) pairs of the case's unanswered orders."""
    if not issuer.may_supervise:
        raise SupervisionRefused("forbidden", "your role may not issue supervision orders", 403)
    rank = _issuer_rank(issuer.level)
    if rank <= RANK["town"]:
        raise SupervisionRefused("forbidden", "a town account cannot issue supervision orders; "
                                 "its district or the city does", 403)
    if target_kind not in TARGET_KINDS:
        raise SupervisionRefused("bad_target", f"target is one of {', '.join(TARGET_KINDS)}", 422)
    if target_kind in RANK and RANK[target_kind] >= rank:
        raise SupervisionRefused("forbidden", f"a {issuer.level or 'city'} account supervises "
                                 f"the levels below it, not a {target_kind}", 403)
    if not target:
        raise SupervisionRefused("bad_target", f"the case has no {target_kind} (it lies outside "
                                 "the grids' towns and districts); address a department", 422)
    if target_kind == "department" and target not in known_departments:
        raise SupervisionRefused("bad_target", f"unknown department {target!r}", 422)
    if case_state not in ISSUABLE_STATES:
        raise SupervisionRefused("illegal_state", f"a {case_state} case cannot be supervised; "
                                 "supervision presses on a case being worked (reopen a closed one "
                                 "first)")
    if not MIN_DEADLINE <= deadline <= MAX_DEADLINE:
        raise SupervisionRefused("bad_deadline", "the order's deadline is 10 minutes to 30 days "
                                 "away", 422)
    if (target_kind, target) in open_targets:
        raise SupervisionRefused("already_open", f"an unanswered order to {target_kind} "
                                 f"{target} exists on this case; wait for its answer")


def addressed_to(who: Addressee, target_kind: str, target: str) -> bool:
    """Whether ``who`` is the order's addressee: an account of the order's level whose
    scope covers the case, or a handler of the order's department."""
    if target_kind == "department":
        return who.is_handler and who.department == target
    return who.level == target_kind and who.sees_case


def check_acknowledge(who: Addressee, state: str, target_kind: str, target: str) -> None:
    if not addressed_to(who, target_kind, target):
        raise SupervisionRefused("not_addressee", f"this order is addressed to {target_kind} "
                                 f"{target}; only its accounts acknowledge it", 403)
    if state != ISSUED:
        raise SupervisionRefused("illegal_state", f"the order is {state} already")


def check_answer(who: Addressee, state: str, target_kind: str, target: str, text: str) -> None:
    if not addressed_to(who, target_kind, target):
        raise SupervisionRefused("not_addressee", f"this order is addressed to {target_kind} "
                                 f"{target}; only its accounts answer it", 403)
    if state == ANSWERED:
        raise SupervisionRefused("illegal_state", "the order is answered already")
    if not text.strip():
        raise SupervisionRefused("answer_required", "say what was done", 422)


def plan_order(issued_at: datetime, deadline: timedelta) -> tuple[datetime, datetime]:
    """(deadline_at, remind_at) of an order issued at ``issued_at``."""
    deadline_at = issued_at + deadline
    return deadline_at, deadline_at - deadline * REMIND_FRACTION


def due_reminders(o: OrderClock, now: datetime) -> list[Reminder]:
    """The reminders due at ``now``: at most one of each kind, none once answered. A tick
    that comes only after the deadline sends the overdue reminder alone."""
    if o.state == ANSWERED:
        return []
    if now >= o.deadline_at:
        if o.overdue_reminded:
            return []
        late = int((now - o.deadline_at).total_seconds() // 60)
        return [Reminder("overdue", f"the order's deadline passed {late} min ago, unanswered")]
    if not o.reminded and now >= o.remind_at:
        left = int((o.deadline_at - now).total_seconds() // 60)
        return [Reminder("due_soon", f"the order's deadline is in {left} min")]
    return []


def next_due(o: OrderClock) -> datetime | None:
    """When the order next needs the tick (stored as ``due_at``, queried by index)."""
    if o.state == ANSWERED or o.overdue_reminded:
        return None
    if not o.reminded and o.remind_at < o.deadline_at:
        return o.remind_at
    return o.deadline_at
