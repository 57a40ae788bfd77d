"""Case operations: every state change goes through :meth:`CaseEngine.transition`,
which asks the state machine, writes the case and one audit row, and keeps the SLA
bookkeeping (``sla_due_at``) right. Public methods are what operators, handlers and the
automatic paths do; each takes the repository of the open transaction first.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

from protocol.clock import Clock

from ..cases import sla
from ..cases.closure import ClosureStep, Verdict, decide_on_verdict
from ..cases.states import CaseState, check_transition, is_open
from ..config import Setup
from ..errors import CaseError
from ..notify.outbox import Outbox
from ..routing import RouteDecision, on_duty, route
from ..rules import CaseRule
from ..store.repo import CaseRow, Repository
from .care import CareDesk
from .reporters import ReporterUpdates

__all__ = ["Actor", "CaseEngine"]

log = logging.getLogger(__name__)

S = CaseState


class Actor:
    AUTO = "auto"  # the hub itself (screen, routing, SLA, closure)


class CaseEngine:
    def __init__(self, setup: Setup, clock: Clock) -> None:
        self.setup = setup
        self.clock = clock
        self.rules = setup.rules
        self.escalation_step = timedelta(minutes=setup.config.sla.escalation_step_min)
        self.warn_fraction = setup.config.sla.warn_fraction
        self.recurrence_window = timedelta(hours=setup.config.closure.recurrence_window_h)
        self.departments = set(setup.taxonomy.departments) | set(setup.routing.departments)
        # Active response plans shorten deadlines: {category or subcategory code: minutes}.
        # Replaced whole (never mutated) by the plan service, read by the writer thread.
        self.deadline_overrides: dict[str, int] = {}
        # The notification outbox (hub/notify/): deliveries enqueued in the same transaction
        # as the notification row; None without notify: in hub.yaml (rows only, nothing sent).
        notify = setup.config.notify
        self.outbox: Outbox | None = (Outbox(setup.routing, notify, public_url=setup.config.web.public_url)
                                      if notify is not None else None)
        # Reporters answered (hub/engine/reporters.py): state updates and the survey to the
        # people who reported the problem and left a contact; only with an outbox.
        self.reporters: ReporterUpdates | None = (ReporterUpdates(self.outbox, setup)
                                                  if self.outbox is not None else None)

        # Elderly-care alarms (hub/engine/care.py): tiers told through the outbox, a
        # person's action acknowledged to the agent.
        self.care = CareDesk(setup.care, self.outbox, setup.config.web.public_url)

    # -- helpers -----------------------------------------------------------------------------
    def rule(self, case: CaseRow) -> CaseRule:
        return self.rules[case.subcategory]

    def deadline_min(self, case: CaseRow, base: int) -> int:
        """``base`` shortened by an active plan's deadline for the case's subcategory or
        category (a plan never lengthens one)."""
        overrides = self.deadline_overrides
        for code in (case.subcategory, case.category):
            if code in overrides:
                return min(base, overrides[code])
        return base

    def _get(self, repo: Repository, case_id: int) -> CaseRow:
        case = repo.get_case(case_id)
        if case is None:
            raise CaseError(case_id, "no such case")
        return case

    def _sla_due(self, case: CaseRow) -> datetime | None:
        facts = sla.SlaFacts(case.id, case.state, case.deadline_at, case.warn_at,
                             case.warned_at is not None, case.escalation_level, case.escalated_at)
        return sla.next_due(facts, self.escalation_step)

    def update(self, repo: Repository, case: CaseRow, **fields: Any) -> CaseRow:
        """Write fields (no state change) and keep the SLA bookkeeping right."""
        now = self.clock.now()
        new = dataclasses.replace(case, **fields, updated_at=now)
        due = self._sla_due(new)
        repo.update_case(case.id, **fields, updated_at=now, sla_due_at=due)
        return dataclasses.replace(new, sla_due_at=due)

    def transition(self, repo: Repository, case: CaseRow, to: CaseState, actor: str,
                   detail: str = "", *, action: str | None = None,
                   data: dict[str, Any] | None = None, **fields: Any) -> CaseRow:
        check_transition(case.id, case.state, to)
        new = self.update(repo, case, state=to.value, **fields)
        repo.append_audit(case.id, self.clock.now(), action or to.value, case.state, to.value,
                          actor, detail, data)
        if self.reporters is not None:
            self.reporters.after_transition(repo, case.state, new, to, action, self.clock.now())
        self.care.on_transition(self, repo, new, to, actor, action or to.value, self.clock.now())
        return new

    def note(self, repo: Repository, case: CaseRow, action: str, actor: str, detail: str,
             data: dict[str, Any] | None = None) -> None:
        """An audit row without a state change (warning, event joined, source cleared, ...)."""
        repo.append_audit(case.id, self.clock.now(), action, None, None, actor, detail, data)

    def notify(self, repo: Repository, case: CaseRow, kind: str, target: str, message: str) -> int:
        """Record a notification on the case and enqueue its deliveries; returns its id."""
        now = self.clock.now()
        notification_id = repo.add_notification(case.id, now, kind, target, message)
        if self.outbox is not None:
            self.outbox.case_event(repo, case, kind, notification_id, message, now, target=target)
        log.info("case %s: %s → %s: %s", case.id, kind, target, message)
        return notification_id

    # -- acceptance and dispatch -----------------------------------------------------------------
    def _route(self, case: CaseRow, department: str | None = None,
               handler: str | None = None) -> RouteDecision | None:
        now = self.clock.now()
        if department is not None:
            if department not in self.departments:
                raise CaseError(case.id, f"unknown department {department!r}")
            who = handler or on_duty(self.setup.routing, department, case.grid_id, now)
            return RouteDecision(department, who, None, "operator")
        return route(self.setup.routing, subcategory=case.subcategory, grid_id=case.grid_id,
                     town=case.town or "", district=case.district or "",
                     default_department=self.rule(case).department, at=now)

    def accept(self, repo: Repository, case: CaseRow, actor: str, detail: str) -> CaseRow:
        """Accept (from new, or overturning a rejection) and dispatch automatically."""
        now = self.clock.now()
        decision = self._route(case)
        deadline_min = (decision.deadline_min if decision and decision.deadline_min
                        else self.rule(case).deadline_min)
        deadline_min = self.deadline_min(case, deadline_min)
        plan = sla.plan_deadline(now, deadline_min, self.warn_fraction)
        case = self.transition(
            repo, case, S.ACCEPTED, actor, detail,
            action="overturned" if case.state == S.REJECTED else None,
            accepted_at=now, rejected_at=None, deadline_min=deadline_min,
            deadline_at=plan.deadline_at, warn_at=plan.warn_at, warned_at=None,
            escalation_level=0, escalated_at=None, queue=None, queue_reason=None,
        )
        if decision is None:
            return self._queue(repo, case, f"no route for {case.subcategory} in grid {case.grid_id}")
        return self._dispatch(repo, case, decision, Actor.AUTO)

    def _queue(self, repo: Repository, case: CaseRow, reason: str) -> CaseRow:
        case = self.update(repo, case, queue="operator", queue_reason=reason)
        self.note(repo, case, "queued", Actor.AUTO, f"operator queue: {reason}")
        self.notify(repo, case, "queued", "operators", f"case {case.id} needs routing: {reason}")
        return case

    def _dispatch(self, repo: Repository, case: CaseRow, decision: RouteDecision,
                  actor: str) -> CaseRow:
        target = decision.department + (f"/{decision.handler}" if decision.handler else "")
        case = self.transition(
            repo, case, S.DISPATCHED, actor, f"to {target} ({decision.matched})",
            action="redispatched" if case.state == S.DISPATCHED else None,
            data={"department": decision.department, "handler": decision.handler,
                  "matched": decision.matched},
            department=decision.department, handler=decision.handler,
            dispatched_at=self.clock.now(), queue=None, queue_reason=None,
        )
        self.notify(repo, case, "dispatched", target,
                    f"case {case.id} {case.subcategory} in grid {case.grid_id or '-'}"
                    f" due {case.deadline_at:%Y-%m-%d %H:%M} UTC" if case.deadline_at else
                    f"case {case.id} {case.subcategory}")
        return case

    def dispatch(self, repo: Repository, case_id: int, *, department: str | None = None,
                 handler: str | None = None, actor: str) -> CaseRow:
        """One-key dispatch: send any open (or rejected) case, by the routing table or to a
        chosen department."""
        case = self._get(repo, case_id)
        if case.state == S.REJECTED:
            case = self.transition(repo, case, S.ACCEPTED, actor, "overturned by dispatch",
                                   action="overturned", accepted_at=case.accepted_at or self.clock.now(),
                                   rejected_at=None)
            if case.deadline_at is None:
                minutes = self.deadline_min(case, self.rule(case).deadline_min)
                plan = sla.plan_deadline(self.clock.now(), minutes, self.warn_fraction)
                case = self.update(repo, case, deadline_min=minutes,
                                   deadline_at=plan.deadline_at, warn_at=plan.warn_at)
        if not is_open(case.state) or case.state == S.RESOLVED:
            raise CaseError(case_id, f"a {case.state} case cannot be dispatched")
        decision = self._route(case, department, handler)
        if decision is None:
            raise CaseError(case_id, "no route matches; choose a department")
        return self._dispatch(repo, case, decision, actor)

    def reject(self, repo: Repository, case_id: int, *, reason: str, actor: str) -> CaseRow:
        case = self._get(repo, case_id)
        reasons = [*(case.screen_reasons or []), ["operator", reason]]
        return self.transition(repo, case, S.REJECTED, actor, reason, rejected_at=self.clock.now(),
                               screen_reasons=reasons, queue=None)

    def accept_case(self, repo: Repository, case_id: int, *, actor: str, note: str = "") -> CaseRow:
        """An operator accepts a case the screen held (``new``, e.g. ``auto_accept: false``)
        or rejected (an overturn): it is accepted and dispatched by the routing table."""
        case = self._get(repo, case_id)
        if case.state == S.REJECTED:
            return self.accept(repo, case, actor, note or "rejection overturned by an operator")
        if case.state != S.NEW:
            raise CaseError(case_id, f"only a new or rejected case can be accepted (it is {case.state})")
        return self.accept(repo, case, actor, note or "accepted by an operator")

    def return_to_operators(self, repo: Repository, case_id: int, *, actor: str,
                            reason: str) -> CaseRow:
        """A department says the case is not theirs: it goes back to the operator queue
        (accepted, undispatched) with the reason; the deadline keeps running."""
        case = self._get(repo, case_id)
        if not reason.strip():
            raise CaseError(case_id, "give the reason the case is not yours")
        department = case.department
        case = self.transition(repo, case, S.ACCEPTED, actor, reason, action="returned",
                               data={"department": department, "handler": case.handler},
                               department=None, handler=None, queue="operator",
                               queue_reason=f"returned by {department or 'the department'}: {reason}",
                               started_at=None)
        self.notify(repo, case, "returned", "operators",
                    f"case {case.id} returned by {department}: {reason}")
        return case

    def add_note(self, repo: Repository, case_id: int, *, actor: str, text: str) -> CaseRow:
        case = self._get(repo, case_id)
        if not text.strip():
            raise CaseError(case_id, "a note needs some text")
        self.note(repo, case, "note", actor, text.strip())
        return case

    def overturn(self, repo: Repository, case_id: int, *, actor: str, note: str = "") -> CaseRow:
        """An operator overturns a screening rejection: the case is accepted and dispatched."""
        case = self._get(repo, case_id)
        if case.state != S.REJECTED:
            raise CaseError(case_id, f"only a rejected case can be overturned (it is {case.state})")
        return self.accept(repo, case, actor, note or "rejection overturned by an operator")

    # -- handling ----------------------------------------------------------------------------
    def start(self, repo: Repository, case_id: int, *, actor: str) -> CaseRow:
        case = self._get(repo, case_id)
        return self.transition(repo, case, S.IN_PROGRESS, actor, "work started",
                               started_at=case.started_at or self.clock.now())

    def resolve(self, repo: Repository, case_id: int, *, actor: str, note: str = "",
                after_sha256: str | None = None) -> CaseRow:
        """The handler says it is fixed. Photo cases with an after-photo wait for the
        verifier; without one they wait for an operator."""
        case = self._get(repo, case_id)
        fields: dict[str, Any] = {"resolved_at": self.clock.now()}
        if after_sha256:
            fields.update(after_sha256=after_sha256, verify_pending=True)
        elif self.rule(case).close == "photo":
            fields["review_reason"] = "resolved without an after-photo"
        return self.transition(repo, case, S.RESOLVED, actor, note or "resolved", **fields)

    def close(self, repo: Repository, case_id: int, *, actor: str, resolution: str = "fixed",
              note: str = "") -> CaseRow:
        """An operator closes a case. ``resolution`` ``false_alarm`` counts against the
        source (repeat-offender screening). A case still being worked is resolved first."""
        case = self._get(repo, case_id)
        if case.state not in (S.RESOLVED,) and is_open(case.state) and case.state != S.NEW:
            case = self.transition(repo, case, S.RESOLVED, actor, note or "resolved on closing",
                                   resolved_at=self.clock.now())
        return self._close(repo, case, actor, "operator", resolution, note or resolution)

    def _close(self, repo: Repository, case: CaseRow, actor: str, closed_by: str,
               resolution: str, detail: str) -> CaseRow:
        case = self.transition(repo, case, S.CLOSED, actor, detail, closed_at=self.clock.now(),
                               closed_by=closed_by, resolution=resolution, verify_pending=False,
                               review_reason=None, queue=None)
        self.notify(repo, case, "closed", case.department or "operators",
                    f"case {case.id} closed ({closed_by}: {detail})")
        return case

    def reopen(self, repo: Repository, case_id: int, *, actor: str, reason: str) -> CaseRow:
        case = self._get(repo, case_id)
        return self._reopen(repo, case, actor, reason)

    def _reopen(self, repo: Repository, case: CaseRow, actor: str, reason: str) -> CaseRow:
        now = self.clock.now()
        deadline_min = case.deadline_min or self.rule(case).deadline_min
        plan = sla.plan_deadline(now, deadline_min, self.warn_fraction)
        holder = next((r for r in repo.merge_candidates(case.subcategory, case.group_key, None, None)
                       if r.id != case.id and is_open(r.state)), None)
        if holder is not None:
            raise CaseError(case.id, f"open case {holder.id} now covers this place; "
                                     "work on that one (or merge them)")
        case = self.transition(
            repo, case, S.REOPENED, actor, reason, reopen_count=case.reopen_count + 1,
            closed_at=None, closed_by=None, resolution=None, resolved_at=None,
            deadline_at=plan.deadline_at, warn_at=plan.warn_at, warned_at=None,
            escalation_level=0, escalated_at=None, after_sha256=None, verify_pending=False,
            review_reason=None,
        )
        decision = (RouteDecision(case.department, case.handler, None, "previous")
                    if case.department else self._route(case))
        if decision is None:
            return self._queue(repo, case, "reopened case has no route")
        return self._dispatch(repo, case, decision, Actor.AUTO)

    def merge(self, repo: Repository, source_id: int, into_id: int, *, actor: str) -> CaseRow:
        """Merge one open case into another: its events move, it ends as ``merged``."""
        if source_id == into_id:
            raise CaseError(source_id, "a case cannot be merged into itself")
        src, dst = self._get(repo, source_id), self._get(repo, into_id)
        if not is_open(dst.state):
            raise CaseError(into_id, f"cannot merge into a {dst.state} case")
        moved = repo.move_lifecycles(src.id, dst.id)
        self.care.moved(repo, src.id, dst.id)
        self.transition(repo, src, S.MERGED, actor, f"merged into case {dst.id}",
                        merged_into=dst.id, data={"events_moved": moved}, queue=None)
        dst = self.update(repo, dst, event_count=dst.event_count + src.event_count,
                          active_sources=dst.active_sources + src.active_sources,
                          last_event_at=max(dst.last_event_at, src.last_event_at),
                          cleared_at=None if src.active_sources else dst.cleared_at)
        self.note(repo, dst, "absorbed", actor, f"case {src.id} merged into this one",
                  {"from_case": src.id, "events_moved": moved})
        return dst

    def record_satisfaction(self, repo: Repository, case_id: int, score: int, *,
                            actor: str, note: str = "") -> CaseRow:
        """The reporter's satisfaction with a closed case (1-5: the survey, or an operator
        who called them back); the latest one counts in the scores."""
        if not 1 <= score <= 5:
            raise CaseError(case_id, f"satisfaction is 1..5, got {score}")
        case = self._get(repo, case_id)
        if case.state != S.CLOSED:
            raise CaseError(case_id, f"satisfaction is asked once a case is closed (it is {case.state})")
        case = self.update(repo, case, satisfaction=score)
        self.note(repo, case, "satisfaction", actor,
                  f"satisfaction {score}/5" + (f" ({note.strip()})" if note.strip() else ""),
                  {"score": score})
        return case

    # -- photo verification --------------------------------------------------------------------
    def submit_after_photo(self, repo: Repository, case_id: int, sha256: str, *,
                           actor: str, note: str = "") -> CaseRow:
        """A handler's after-photo (already stored as a file): resolve and verify."""
        case = self._get(repo, case_id)
        if case.state == S.RESOLVED and case.review_reason:
            raise CaseError(case_id, f"the case waits for an operator's review ({case.review_reason}); "
                                     "a new after-photo cannot replace it")
        if case.state == S.RESOLVED:
            case = self.update(repo, case, after_sha256=sha256, verify_pending=True,
                               review_reason=None)
            self.note(repo, case, "after_photo", actor, note or "new after-photo submitted")
            return case
        return self.resolve(repo, case_id, actor=actor,
                            note=note or "resolved with an after-photo", after_sha256=sha256)

    def apply_verdict(self, repo: Repository, case_id: int, verdict: Verdict,
                      after_sha256: str) -> CaseRow:
        case = self._get(repo, case_id)
        repo.add_verification(case.id, self.clock.now(), case.before_sha256, after_sha256,
                              verdict.outcome.value, verdict.confidence, verdict.verifier,
                              verdict.detail)
        if not is_open(case.state) or case.after_sha256 != after_sha256:
            self.note(repo, case, "verification_stale", Actor.AUTO,
                      f"verdict for an older photo ignored ({verdict.outcome})")
            return case
        step: ClosureStep = decide_on_verdict(case.state, verdict,
                                              self.setup.config.verification.min_confidence)
        case = self.update(repo, case, verify_pending=False)
        if step.kind == "close":
            if case.state != S.RESOLVED:
                case = self.transition(repo, case, S.RESOLVED, Actor.AUTO, "source cleared",
                                       resolved_at=self.clock.now())
            return self._close(repo, case, Actor.AUTO, "auto_photo", "fixed", step.detail)
        if step.kind == "send_back":
            case = self.transition(repo, case, S.DISPATCHED, Actor.AUTO, step.detail,
                                   action="sent_back", resolved_at=None, after_sha256=None)
            self.notify(repo, case, "sent_back", case.department or "operators", step.detail)
            return case
        if step.kind == "review":
            case = self.update(repo, case, review_reason=step.detail)
            self.note(repo, case, "needs_review", Actor.AUTO, step.detail)
            self.notify(repo, case, "needs_review", "operators", f"case {case.id}: {step.detail}")
            return case
        self.note(repo, case, "verification", Actor.AUTO, step.detail)
        return case

    def review_verification(self, repo: Repository, case_id: int, *, fixed: bool,
                            actor: str, note: str = "") -> CaseRow:
        """An operator decides what the verifier could not."""
        case = self._get(repo, case_id)
        if case.state != S.RESOLVED:
            raise CaseError(case_id, f"only a resolved case awaits review (it is {case.state})")
        if fixed:
            return self._close(repo, case, actor, "operator", "fixed", note or "operator confirmed")
        case = self.transition(repo, case, S.DISPATCHED, actor, note or "operator: not fixed",
                               action="sent_back", resolved_at=None, after_sha256=None,
                               verify_pending=False, review_reason=None)
        self.notify(repo, case, "sent_back", case.department or "operators",
                    f"case {case.id}: {note or 'not fixed'}")
        return case
