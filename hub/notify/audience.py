"""Who is told of what: notification kinds → contacts in the routing table. Pure.

* ``dispatched``, ``warning``, ``sent_back``, ``closed`` → the department's contacts and
  the contacts of its shift on duty for the case's grid;
* ``escalated`` → the leads of the level reached: the case's town (1), its district (2),
  the city (3);
* ``queued``, ``returned``, ``needs_review`` → the operators' contacts;
* plan notices → each department the plan names (:func:`department_contacts`);
* supervision (督办) ``supervision``, ``supervision_due_soon``, ``supervision_overdue``,
  ``supervision_answered`` → whom the notification names (:func:`supervision_contacts`):
  ``town:NAME`` / ``district:NAME`` → that town's or district's leads; a department code →
  the department's contacts and its shift on duty for the case's grid; an account (the
  order's issuer: told of the answer, and of an overdue order) → the operators' contacts,
  since accounts carry no contact of their own.

A kind not listed here is recorded on the case and sent to no one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from ..routing import Contact, RoutingTable, on_duty_shift
from .model import Recipient

__all__ = ["DEPARTMENT_KINDS", "LEAD_KINDS", "OPERATOR_KINDS", "SUPERVISION_KINDS", "case_audience",
           "department_contacts", "lead_contacts", "supervision_contacts"]

DEPARTMENT_KINDS = frozenset({"dispatched", "warning", "sent_back", "closed"})
LEAD_KINDS = frozenset({"escalated"})
OPERATOR_KINDS = frozenset({"queued", "returned", "needs_review"})
SUPERVISION_KINDS = frozenset({"supervision", "supervision_due_soon", "supervision_overdue",
                               "supervision_answered"})


def _unique(contacts: Iterable[Contact]) -> list[Recipient]:
    seen: dict[tuple[str, str], Recipient] = {}
    for c in contacts:
        seen.setdefault((c.channel, c.address), Recipient(c.channel, c.address))
    return list(seen.values())


def department_contacts(table: RoutingTable, department: str | None, grid_id: str | None,
                        at: datetime) -> list[Recipient]:
    """The department's own contacts, then its on-duty shift's (no address twice)."""
    if not department:
        return []
    shift = on_duty_shift(table, department, grid_id, at)
    return _unique([*table.contacts.departments.get(department, []),
                    *(shift.contacts if shift is not None else [])])


def lead_contacts(table: RoutingTable, level: int, town: str | None,
                  district: str | None) -> list[Recipient]:
    leads = table.contacts.leads
    if level == 1:
        return _unique(leads.town.get(town or "", []))
    if level == 2:
        return _unique(leads.district.get(district or "", []))
    if level >= 3:
        return _unique(leads.city)
    return []


def supervision_contacts(table: RoutingTable, kind: str, target: str, departments: Collection[str],
                         grid_id: str | None, at: datetime) -> list[Recipient]:
    """Who a supervision notification reaches. ``target`` is what the notification names
    (hub/engine/supervision.py): ``town:NAME``, ``district:NAME``, a department code, or
    the issuing account's name; ``departments``: the department codes there are."""
    level, sep, name = target.partition(":")
    if kind != "supervision_answered":  # an answer always goes back to the issuer
        if sep and level in ("town", "district"):
            return _unique(getattr(table.contacts.leads, level).get(name, []))
        if target in departments:
            return department_contacts(table, target, grid_id, at)
    return _unique(table.contacts.operators)


def case_audience(table: RoutingTable, kind: str, *, department: str | None,
                  grid_id: str | None, town: str | None, district: str | None,
                  escalation_level: int, at: datetime, target: str | None = None,
                  departments: Collection[str] = ()) -> list[Recipient]:
    """``target``: whom the notification names (supervision kinds read it)."""
    if kind in SUPERVISION_KINDS:
        return supervision_contacts(table, kind, target or "", departments, grid_id, at)
    if kind in DEPARTMENT_KINDS:
        return department_contacts(table, department, grid_id, at)
    if kind in LEAD_KINDS:
        return lead_contacts(table, escalation_level, town, district)
    if kind in OPERATOR_KINDS:
        return _unique(table.contacts.operators)
    return []
