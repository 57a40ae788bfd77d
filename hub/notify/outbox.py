"""Enqueue deliveries: called on the writer, inside the transaction of the change that
causes them (a dispatch, an escalation, a plan's activation), so a committed change always
has its deliveries and a rolled-back one has none.

:class:`Outbox` is the API the rest of the hub uses::

    outbox.case_event(repo, case, "dispatched", notification_id, text, now)
    outbox.plan_notice(repo, plan="rainstorm", title=..., activation_id=3,
                       department="drainage", notice_id=7, text=..., now=now)
    outbox.enqueue(repo, event_key="care-agent-1/ev-9/tier-2", kind="care_tier",
                   message=Message(...), recipients=[Recipient("sms", "+86...")], now=now,
                   case_id=12)

``enqueue`` is the general form: ``event_key`` names the event (stable, so calling it
again for the same event adds nothing: the idempotency key is unique). A recipient whose
channel or endpoint hub.yaml does not set up is written ``dead`` with that reason, never
dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from protocol.taxonomy import taxonomy

from ..routing import RoutingTable
from ..store.repo import CaseRow, Repository
from .audience import case_audience, department_contacts
from .model import DeliveryState, Message, Recipient, fields_json, idempotency_key
from .settings import NotifyConfig

__all__ = ["Outbox", "case_message"]

_SUBJECT = {
    "dispatched": "dispatched to you", "warning": "deadline near", "sent_back": "sent back",
    "closed": "closed", "escalated": "escalated", "queued": "needs routing",
    "returned": "returned to operators", "needs_review": "needs review",
    "supervision": "supervision order", "supervision_due_soon": "supervision order due soon",
    "supervision_overdue": "supervision order overdue",
    "supervision_answered": "supervision order answered",
}


def case_message(kind: str, case: CaseRow, text: str, public_url: str | None) -> Message:
    """The message about a case: subject, text with the facts, and the facts as fields."""
    url = f"{public_url.rstrip('/')}/cases/{case.id}" if public_url else None
    where = " / ".join(x for x in (case.district, case.town, case.grid_id) if x) or "-"
    subject = f"[cityops] case {case.id} {_SUBJECT.get(kind, kind)}: {case.subcategory} ({where})"
    lines = [text, "", f"case: {case.id} ({case.state})", f"category: {case.subcategory}",
             f"where: {where}" + (f", {case.place}" if case.place else "")]
    if case.department:
        lines.append(f"department: {case.department}" + (f" / {case.handler}" if case.handler else ""))
    if case.deadline_at is not None:
        lines.append(f"deadline: {case.deadline_at:%Y-%m-%d %H:%M} UTC")
    if url:
        lines.append(url)
    fields: dict[str, Any] = {
        "kind": kind, "case_id": case.id, "state": case.state, "category": case.category,
        "subcategory": case.subcategory, "grid_id": case.grid_id, "town": case.town,
        "district": case.district, "place": case.place, "lat": case.lat, "lon": case.lon,
        "department": case.department, "handler": case.handler,
        "deadline_at": case.deadline_at.isoformat() if case.deadline_at else None,
        "escalation_level": case.escalation_level, "url": url,
    }
    return Message(subject[:200], "\n".join(lines), fields)


class Outbox:
    def __init__(self, routing: RoutingTable, config: NotifyConfig, *,
                 public_url: str | None = None) -> None:
        self.routing = routing
        self.config = config
        self.endpoints = config.endpoints()
        self.public_url = public_url
        self.departments = frozenset(taxonomy().departments) | frozenset(routing.departments)
        # Set by the hub to wake its delivery task (thread-safe; called before the commit:
        # the task claims through the same writer, so it runs after this transaction).
        self.wake: Callable[[], None] = lambda: None

    def _check(self, r: Recipient) -> str | None:
        """Why this recipient cannot be sent to, or None."""
        if r.channel not in self.endpoints:
            return f"channel {r.channel} is not set up under notify: in hub.yaml"
        names = self.endpoints[r.channel]
        if names is not None and r.address not in names:
            return f"no {r.channel} named {r.address!r} under notify: in hub.yaml"
        return None

    def enqueue(self, repo: Repository, *, event_key: str, kind: str, message: Message,
                recipients: Sequence[Recipient], now: datetime, case_id: int | None = None,
                notification_id: int | None = None, plan_notice_id: int | None = None) -> int:
        """One delivery per recipient (inside the caller's transaction). Returns how many
        rows are new (an event enqueued again adds none)."""
        rows = []
        body = fields_json(message.fields)
        for r in recipients:
            problem = self._check(r)
            state = DeliveryState.DEAD if problem else DeliveryState.QUEUED
            rows.append((notification_id, plan_notice_id, case_id, kind, r.channel, r.address,
                         idempotency_key(event_key, r.channel, r.address), state.value,
                         None if problem else now, problem, now, message.subject,
                         message.text, body))
        if not rows:
            return 0
        added = repo.enqueue_deliveries(rows)
        if added:
            self.wake()
        return added

    def case_event(self, repo: Repository, case: CaseRow, kind: str, notification_id: int,
                   text: str, now: datetime, target: str | None = None) -> int:
        """Deliveries of a case notification to its audience (:mod:`.audience`);
        ``target``: whom the notification names (supervision orders are addressed)."""
        recipients = case_audience(self.routing, kind, department=case.department,
                                   grid_id=case.grid_id, town=case.town, district=case.district,
                                   escalation_level=case.escalation_level, at=now, target=target,
                                   departments=self.departments)
        if not recipients:
            return 0
        return self.enqueue(repo, event_key=f"case-{case.id}/{kind}/n{notification_id}",
                            kind=kind, message=case_message(kind, case, text, self.public_url),
                            recipients=recipients, now=now, case_id=case.id,
                            notification_id=notification_id)

    def plan_notice(self, repo: Repository, *, plan: str, title: str, activation_id: int,
                    department: str, notice_id: int, text: str, now: datetime) -> int:
        """Deliveries of a plan's notice to a department it names (its contacts and the
        shift on duty now)."""
        recipients = department_contacts(self.routing, department, None, now)
        message = Message(f"[cityops] plan {title}: {department}"[:200], text,
                          {"kind": "plan_notice", "plan": plan, "title": title,
                           "activation_id": activation_id, "department": department})
        return self.enqueue(repo, event_key=f"plan-{plan}/a{activation_id}/{department}",
                            kind="plan_notice", message=message, recipients=recipients,
                            now=now, plan_notice_id=notice_id)
