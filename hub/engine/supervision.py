"""Supervision orders (督办) applied: issue, acknowledge, answer, and the tick's
reminders. The decisions are :mod:`hub.cases.supervision`'s; here they are written, each
step with an audit row on the case and a notification for the addressee, inside the
writer's transaction (the caller's ``repo``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..cases import supervision as sv
from ..store.repo import CaseRow, Repository, SupervisionRow
from .core import Actor, CaseEngine

__all__ = ["Who", "acknowledge", "answer", "issue", "remind_due"]


@dataclass(frozen=True)
class Who:
    """The account taking a step, as supervision needs it (built from a web principal)."""

    actor: str
    level: str | None
    department: str | None
    is_handler: bool
    grids: frozenset[str] | None  # None: everywhere
    may_supervise: bool

    def sees(self, case: CaseRow) -> bool:
        return self.grids is None or (case.grid_id is not None and case.grid_id in self.grids)

    def addressee(self, case: CaseRow) -> sv.Addressee:
        return sv.Addressee(self.level, self.department, self.is_handler, self.sees(case))


def target_label(kind: str, target: str) -> str:
    """How notifications name an order's addressee (like escalation: ``town:Xinqiao``)."""
    return target if kind == "department" else f"{kind}:{target}"


def _case(repo: Repository, case_id: int) -> CaseRow:
    case = repo.get_case(case_id)
    if case is None:
        raise sv.SupervisionRefused("no_such_case", f"case {case_id} does not exist", 404)
    return case


def _order(repo: Repository, order_id: int, who: Who) -> tuple[SupervisionRow, CaseRow]:
    order = repo.get_supervision_order(order_id)
    if order is None:
        raise sv.SupervisionRefused("no_such_order", f"supervision order {order_id} does not exist", 404)
    case = _case(repo, order.case_id)
    if not who.sees(case) and not (who.is_handler and who.department == order.target):
        # outside the account's scope: as if it did not exist
        raise sv.SupervisionRefused("no_such_order", f"supervision order {order_id} does not exist", 404)
    return order, case


def _clock(o: SupervisionRow) -> sv.OrderClock:
    return sv.OrderClock(o.state, o.issued_at, o.deadline_at, o.remind_at,
                         o.reminded_at is not None, o.overdue_reminded_at is not None)


def _data(o: SupervisionRow, **extra: object) -> dict[str, object]:
    return {"order": o.id, "target_kind": o.target_kind, "target": o.target, **extra}


def issue(engine: CaseEngine, repo: Repository, case_id: int, who: Who, *, target_kind: str,
          department: str | None, note: str, deadline: timedelta) -> SupervisionRow:
    """Issue an order on a case to its town, its district or a department."""
    case = _case(repo, case_id)
    if not who.sees(case):
        raise sv.SupervisionRefused("no_such_case", f"case {case_id} does not exist", 404)
    target = {"town": case.town, "district": case.district}.get(target_kind, department) or ""
    open_targets = {(o.target_kind, o.target) for o in repo.supervision_for_case(case_id)
                    if o.state != sv.ANSWERED}
    sv.check_issue(sv.Issuer(who.level, who.may_supervise), case.state, target_kind, target,
                   engine.departments, deadline, open_targets)
    note = note.strip()
    if not note:
        raise sv.SupervisionRefused("note_required", "say what is wrong and what you expect", 422)
    now = engine.clock.now()
    deadline_at, remind_at = sv.plan_order(now, deadline)
    fields = {"case_id": case_id, "state": sv.ISSUED, "target_kind": target_kind,
              "target": target, "note": note[:2000], "issued_by": who.actor,
              "issuer_level": who.level or "city", "issued_at": now, "deadline_at": deadline_at,
              "remind_at": remind_at, "due_at": remind_at}
    order_id = repo.add_supervision_order(fields)
    order = repo.get_supervision_order(order_id)
    assert order is not None
    label = target_label(target_kind, target)
    engine.note(repo, case, "supervision_issued", who.actor,
                f"order {order_id} to {label}, due {deadline_at:%Y-%m-%d %H:%M} UTC: {note[:500]}",
                _data(order, deadline_at=deadline_at.isoformat(), issuer_level=order.issuer_level))
    engine.notify(repo, case, "supervision", label,
                  f"case {case.id}: supervision order {order_id} from {who.actor}, answer by "
                  f"{deadline_at:%Y-%m-%d %H:%M} UTC: {note[:300]}")
    return order


def acknowledge(engine: CaseEngine, repo: Repository, order_id: int, who: Who) -> SupervisionRow:
    order, case = _order(repo, order_id, who)
    sv.check_acknowledge(who.addressee(case), order.state, order.target_kind, order.target)
    now = engine.clock.now()
    repo.update_supervision_order(order_id, state=sv.ACKNOWLEDGED, acknowledged_at=now,
                                  acknowledged_by=who.actor)
    engine.note(repo, case, "supervision_acknowledged", who.actor,
                f"order {order_id} acknowledged by {target_label(order.target_kind, order.target)}",
                _data(order))
    return repo.get_supervision_order(order_id)  # type: ignore[return-value]


def answer(engine: CaseEngine, repo: Repository, order_id: int, who: Who, text: str) -> SupervisionRow:
    order, case = _order(repo, order_id, who)
    sv.check_answer(who.addressee(case), order.state, order.target_kind, order.target, text)
    now = engine.clock.now()
    fields: dict[str, object] = {"state": sv.ANSWERED, "answered_at": now, "answered_by": who.actor,
                                 "answer": text.strip()[:2000], "due_at": None}
    if order.acknowledged_at is None:  # an answer acknowledges too
        fields.update(acknowledged_at=now, acknowledged_by=who.actor)
    repo.update_supervision_order(order_id, **fields)
    late = " (after its deadline)" if now > order.deadline_at else ""
    engine.note(repo, case, "supervision_answered", who.actor,
                f"order {order_id} answered{late}: {text.strip()[:500]}",
                _data(order, on_time=now <= order.deadline_at))
    engine.notify(repo, case, "supervision_answered", order.issued_by,
                  f"case {case.id}: order {order_id} answered by {who.actor}{late}")
    return repo.get_supervision_order(order_id)  # type: ignore[return-value]


def remind_due(engine: CaseEngine, repo: Repository, now: datetime) -> list[tuple[int, str]]:
    """The tick's part: send the reminders due at ``now``; returns (order id, kind)."""
    done: list[tuple[int, str]] = []
    for order in repo.supervision_due(now):
        reminders = sv.due_reminders(_clock(order), now)
        fields: dict[str, object] = {}
        case = repo.get_case(order.case_id)
        for r in reminders:
            fields["reminded_at" if r.kind == "due_soon" else "overdue_reminded_at"] = now
            if case is not None:
                label = target_label(order.target_kind, order.target)
                engine.note(repo, case, f"supervision_{r.kind}", Actor.AUTO,
                            f"order {order.id} to {label}: {r.detail}", _data(order))
                for whom in (label, order.issued_by) if r.kind == "overdue" else (label,):
                    engine.notify(repo, case, f"supervision_{r.kind}", whom,
                                  f"case {case.id}: supervision order {order.id}: {r.detail}")
            done.append((order.id, r.kind))
        after = _clock(order)
        after = sv.OrderClock(after.state, after.issued_at, after.deadline_at, after.remind_at,
                              after.reminded or "reminded_at" in fields,
                              after.overdue_reminded or "overdue_reminded_at" in fields)
        repo.update_supervision_order(order.id, **fields, due_at=sv.next_due(after))
    return done
