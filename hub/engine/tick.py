"""The periodic pass: near-deadline warnings, overdue escalation town → district → city,
supervision orders' reminders (:mod:`hub.engine.supervision`), and sensor cases whose
sources stayed clear for the hold time. Runs on the writer, on the
hub's :class:`~protocol.clock.Clock` (tests drive it with a ``FakeClock``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..cases import sla
from ..cases.closure import sensor_close_due
from ..cases.states import CaseState
from ..store.repo import CaseRow, Repository
from .core import Actor, CaseEngine
from .supervision import remind_due

__all__ = ["TickReport", "tick"]


@dataclass
class TickReport:
    warned: list[int] = field(default_factory=list)
    escalated: list[tuple[int, int]] = field(default_factory=list)  # (case, level)
    closed: list[int] = field(default_factory=list)
    reminded: list[tuple[int, str]] = field(default_factory=list)  # (order, due_soon|overdue)


def _target(case: CaseRow, level: int) -> str:
    name = sla.LEVELS[level - 1]
    where = {1: case.town, 2: case.district, 3: "city"}[level]
    return f"{name}:{where}" if where and level < 3 else name


def tick(engine: CaseEngine, repo: Repository, now: datetime | None = None) -> TickReport:
    now = now or engine.clock.now()
    report = TickReport()
    for case in repo.cases_sla_due(now):
        facts = sla.SlaFacts(case.id, case.state, case.deadline_at, case.warn_at,
                             case.warned_at is not None, case.escalation_level, case.escalated_at)
        actions = sla.due_actions(facts, now, engine.escalation_step)
        if not actions:
            engine.update(repo, case)  # recompute sla_due_at so the case is not picked again
            continue
        for action in actions:
            if action.kind == "warn":
                case = engine.update(repo, case, warned_at=now)
                engine.note(repo, case, "warning", Actor.AUTO, action.detail)
                engine.notify(repo, case, "warning", case.department or "operators",
                              f"case {case.id}: {action.detail}")
                report.warned.append(case.id)
            else:
                target = _target(case, action.level)
                case = engine.transition(repo, case, CaseState.ESCALATED, Actor.AUTO,
                                         f"{action.detail} ({target})",
                                         data={"level": action.level, "target": target},
                                         escalation_level=action.level, escalated_at=now)
                engine.notify(repo, case, "escalated", target, f"case {case.id}: {action.detail}")
                report.escalated.append((case.id, action.level))
    report.reminded = remind_due(engine, repo, now)
    for case in repo.cases_cleared(now):
        rule = engine.rules[case.subcategory]
        if not sensor_close_due(case.cleared_at, now, timedelta(seconds=rule.clear_hold_s)):
            continue
        if case.state == CaseState.NEW:
            continue
        detail = f"source clear for {int((now - case.cleared_at).total_seconds())} s"
        why = engine.care.close_reason(repo, case)
        if why:
            detail += f": {why}"
        if case.state != CaseState.RESOLVED:
            case = engine.transition(repo, case, CaseState.RESOLVED, Actor.AUTO, detail,
                                     resolved_at=now)
        engine._close(repo, case, Actor.AUTO, "auto_sensor", "fixed", detail)
        report.closed.append(case.id)
    return report
