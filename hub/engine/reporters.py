"""Reporters answered: a resident who reported a problem (Open311, one-key reports) and
gave an email or a phone number hears how it goes, and is asked, once it is closed,
whether it is fixed.

* **Updates.** When the case the report lives in is ``accepted``, ``dispatched``,
  ``closed`` (or ``rejected``), each of its reporters gets one message per change and
  cycle of the case (event key ``report/{case}/{kind}/{n}``, ``n`` the case's
  ``reopen_count``: a redispatch in the same cycle says nothing new; after a reopen the
  next dispatch and closing are told again). A report that joins a case already on its
  way is told where it stands at once (:meth:`ReporterUpdates.add_contact`).
* **What a reporter sees.** Their request id, the category, the department (no person's
  name), the deadline, the result in plain words, and a link: never another reporter's
  text, place or contact, never an operator's note.
* **The survey.** The ``closed`` message carries a link with a single-use token (random,
  stored as its SHA-256, bound to the case, the closure and the reporter, expiring after
  ``web.survey_valid_days``). The page (hub/web/survey.py) shows the result and the
  after-photo and asks: satisfied / not satisfied / not fixed. :func:`answer_survey`
  records it; "not fixed" reopens the case with an audit row.

Decisions are plain functions (:func:`update_kind`, :func:`catch_up_kinds`,
:func:`compose`, :func:`survey_status`); :class:`ReporterUpdates` is the shell that reads
and writes through the repository inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..cases.states import CaseState
from ..errors import CaseError
from ..notify.model import Message, Recipient, idempotency_key
from ..notify.outbox import Outbox
from ..store.repo import CaseRow, ReporterContactRow, Repository, SurveyRow

if TYPE_CHECKING:
    from ..config import Setup
    from .core import CaseEngine

__all__ = ["ANSWERS", "Contact", "ReporterFacts", "ReporterUpdates", "SurveyRefused",
           "answer_survey", "catch_up_kinds", "clean_email", "clean_phone", "compose",
           "survey_status", "token_hash", "update_kind"]

S = CaseState

# A survey's answers and the satisfaction score (1-5) each records.
ANSWERS: dict[str, int] = {"satisfied": 5, "not_satisfied": 2, "not_fixed": 1}
ANSWER_LABELS = {"satisfied": "satisfied", "not_satisfied": "not satisfied",
                 "not_fixed": "not fixed"}
SURVEY_ACTOR = "reporter (survey)"

_EMAIL = re.compile(r"^[^@\s<>\"',;:()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)+$")


@dataclass(frozen=True)
class Contact:
    """What a reporter gave to be answered (already checked)."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None

    def __bool__(self) -> bool:
        return bool(self.email or self.phone)


def clean_email(raw: str) -> str | None:
    """The address, or None when it is not one (a clear refusal is the caller's)."""
    raw = raw.strip()
    if not raw:
        return None
    return raw if len(raw) <= 254 and _EMAIL.match(raw) else None


def clean_phone(raw: str) -> str | None:
    """A phone number as ``+`` and digits (spaces, dots, dashes and brackets dropped), 6 to
    20 digits; None when it is not one."""
    raw = raw.strip()
    if not raw:
        return None
    plus = raw.startswith("+")
    digits = re.sub(r"[\s.\-()]", "", raw[1:] if plus else raw)
    if not digits.isascii() or not digits.isdigit() or not 6 <= len(digits) <= 20:
        return None
    return ("+" if plus else "") + digits


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- pure decisions -------------------------------------------------------------------------
def update_kind(from_state: str, to: CaseState, action: str | None) -> str | None:
    """What a reporter is told of a state change, or None (internal steps: started,
    escalated, resolved, sent back, returned, ...)."""
    if to is S.ACCEPTED and from_state in (S.NEW, S.REJECTED):
        return "accepted"
    if to is S.DISPATCHED and action in (None, "redispatched"):
        return "dispatched"
    if to is S.CLOSED:
        return "closed"
    if to is S.REJECTED:
        return "rejected"
    return None


def catch_up_kinds(state: str) -> list[str]:
    """What a reporter who arrives now is told at once of the case's state."""
    if state == S.ACCEPTED:
        return ["accepted"]
    if state in (S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.RESOLVED, S.REOPENED):
        return ["accepted", "dispatched"]
    if state == S.REJECTED:
        return ["rejected"]
    return []


@dataclass(frozen=True)
class ReporterFacts:
    """Everything a reporter may be told about their case (and nothing else)."""

    kind: str
    request_id: int
    case_id: int
    service: str  # "Road waterlogging (道路积水)"
    department: str | None = None  # the agency's name, never a person's
    deadline: str | None = None  # local time text
    result: str | None = None
    reasons: str | None = None  # why it was not accepted
    has_after_photo: bool = False
    survey_url: str | None = None
    status_url: str | None = None  # the one-key reporter's own page
    name: str | None = None


def result_text(case: CaseRow) -> str:
    """The closing in plain words (never an operator's free text)."""
    if case.resolution == "false_alarm":
        return "closed: on inspection no problem was found"
    if case.closed_by == "auto_photo":
        return "fixed; a photo taken after the work confirmed it"
    if case.closed_by == "auto_sensor":
        return "fixed; the sensors read normal again"
    if case.resolution in (None, "fixed"):
        return "fixed; an operator confirmed it"
    return f"closed ({case.resolution})"


def compose(f: ReporterFacts) -> Message:
    """The message: a first line that says it all (it is the SMS), then the details."""
    ref = f"report {f.request_id}" + (f" (now handled as case {f.case_id})"
                                      if f.case_id != f.request_id else "")
    if f.kind == "accepted":
        first = f"Your {ref}, {f.service}, has been accepted. 您的报告已受理。"
        subject = "accepted"
    elif f.kind == "dispatched":
        first = (f"Your {ref}, {f.service}, has been sent to {f.department or 'the department in charge'}"
                 + (f", due by {f.deadline}" if f.deadline else "") + ". 已派遣处置。")
        subject = "sent to " + (f.department or "the department")
    elif f.kind == "closed":
        first = f"Your {ref}, {f.service}, is closed: {f.result or 'fixed'}. 已结案。"
        subject = "closed"
    else:
        first = (f"Your {ref}, {f.service}, was not accepted"
                 + (f": {f.reasons}" if f.reasons else "") + ". 未予受理。")
        subject = "not accepted"
    lines = [f"Hello {f.name}," if f.name else "Hello,", "", first]
    if f.kind == "closed" and f.survey_url:
        see = "the result and the photo taken after the work" if f.has_after_photo else "the result"
        lines += ["", f"See {f.survey_url} for {see}, and tell us with one tap whether it is "
                      "fixed (满意度评价). The link works once.", f.survey_url]
    if f.status_url:
        lines += ["", f"Your reports: {f.status_url}"]
    lines += ["", "-- CityOps (an automatic message; please do not reply)"]
    fields: dict[str, Any] = {"kind": f"reporter_{f.kind}", "request_id": f.request_id,
                              "case_id": f.case_id}
    return Message(f"[cityops] Your report {f.request_id}: {subject}"[:200], "\n".join(lines),
                   fields)


def survey_status(survey: SurveyRow | None, case: CaseRow | None, now: datetime) -> str:
    """``open`` (may be answered), ``unknown`` (no such token: 404), ``answered``,
    ``expired`` or ``superseded`` (the case was reopened since; a new survey comes with
    its next closing) — the last three are 410."""
    if survey is None or case is None:
        return "unknown"
    if survey.answered_at is not None:
        return "answered"
    if now >= survey.expires_at:
        return "expired"
    if case.reopen_count != survey.cycle or case.state != S.CLOSED:
        return "superseded"
    return "open"


class SurveyRefused(CaseError):
    """A survey answer that cannot be taken; ``status`` is one of :func:`survey_status`'s."""

    def __init__(self, case_id: int | None, status: str) -> None:
        self.status = status
        super().__init__(case_id, f"the survey is {status}")


# -- the shell ---------------------------------------------------------------------------------
class ReporterUpdates:
    """Tells reporters (inside the caller's transaction, on the writer)."""

    def __init__(self, outbox: Outbox, setup: Setup) -> None:
        self.outbox = outbox
        self.setup = setup
        cfg = setup.config
        self.public_url = cfg.web.public_url.rstrip("/") if cfg.web.public_url else None
        self.survey_valid = timedelta(days=cfg.web.survey_valid_days)
        self.zone: ZoneInfo = setup.zone

    # which of a contact the hub can reach
    def reachable(self, contact: Contact) -> Contact:
        """The parts of ``contact`` a channel set up under ``notify:`` can reach (only those
        are kept: nothing is stored that will not be used)."""
        ends = self.outbox.endpoints
        return Contact(email=contact.email if "email" in ends else None,
                       phone=contact.phone if "sms" in ends else None,
                       name=contact.name if (contact.email and "email" in ends)
                       or (contact.phone and "sms" in ends) else None)

    def recipients(self, c: ReporterContactRow) -> list[Recipient]:
        out = []
        if c.email:
            out.append(Recipient("email", c.email))
        if c.phone:
            out.append(Recipient("sms", c.phone))
        return out

    def add_contact(self, repo: Repository, case: CaseRow, channel: str, event_id: str,
                    contact: Contact, now: datetime) -> int | None:
        """Keep a report's contact and tell it where the case stands. Returns its id (None:
        nothing reachable was given)."""
        contact = self.reachable(contact)
        if not contact:
            return None
        contact_id = repo.add_reporter_contact(
            case_id=case.id, request_id=case.id, channel=channel, event_id=event_id,
            name=contact.name, email=contact.email, phone=contact.phone, at=now)
        row = ReporterContactRow(contact_id, case.id, case.id, channel, event_id, contact.name,
                                 contact.email, contact.phone, now)
        for kind in catch_up_kinds(case.state):
            self.tell(repo, case, kind, now, [row])
        return contact_id

    def after_transition(self, repo: Repository, from_state: str, case: CaseRow,
                         to: CaseState, action: str | None, now: datetime) -> None:
        if to is S.MERGED and case.merged_into is not None:  # the reporters follow the case
            repo.move_reporter_contacts(case.id, case.merged_into)
            return
        kind = update_kind(from_state, to, action)
        if kind is not None:
            self.tell(repo, case, kind, now)

    def tell(self, repo: Repository, case: CaseRow, kind: str, now: datetime,
             contacts: list[ReporterContactRow] | None = None) -> int:
        """Enqueue ``kind`` for the case's reporters (each once per cycle). Returns how many
        deliveries are new."""
        if contacts is None:
            contacts = repo.reporter_contacts_for_case(case.id)
        if not contacts:
            return 0
        event_key = f"report/{case.id}/{kind}/{case.reopen_count}"
        notification_id: int | None = None
        added = 0
        for c in contacts:
            recipients = self.recipients(c)
            keys = [idempotency_key(event_key, r.channel, r.address) for r in recipients]
            seen = repo.existing_delivery_keys(keys)
            fresh = [r for r, k in zip(recipients, keys, strict=True) if k not in seen]
            if not fresh:
                continue
            survey_url = self._survey(repo, case, c, now) if kind == "closed" else None
            message = compose(self.facts(case, kind, c, survey_url))
            if notification_id is None:
                notification_id = repo.add_notification(
                    case.id, now, f"reporter_{kind}", "reporters",
                    f"case {case.id} {kind}: update to its reporters"
                    + (" with a satisfaction survey" if survey_url else ""))
            added += self.outbox.enqueue(repo, event_key=event_key, kind=f"reporter_{kind}",
                                         message=message, recipients=fresh, now=now,
                                         case_id=case.id, notification_id=notification_id)
        return added

    def _survey(self, repo: Repository, case: CaseRow, c: ReporterContactRow,
                now: datetime) -> str | None:
        if self.public_url is None:
            repo.append_audit(case.id, now, "survey_not_sent", None, None, "auto",
                              "no satisfaction survey link: web.public_url is not set in hub.yaml",
                              None)
            return None
        token = secrets.token_urlsafe(24)
        made = repo.add_survey(case_id=case.id, contact_id=c.id, cycle=case.reopen_count,
                               token_sha256=token_hash(token), at=now,
                               expires_at=now + self.survey_valid)
        return f"{self.public_url}/survey/{token}" if made is not None else None

    def facts(self, case: CaseRow, kind: str, c: ReporterContactRow,
              survey_url: str | None) -> ReporterFacts:
        tax = self.setup.taxonomy
        try:
            sub = tax.subcategory(case.subcategory)
            service = f"{sub.name.en} ({sub.name.zh})"
        except KeyError:
            service = case.subcategory
        department = None
        if case.department:
            n = tax.departments.get(case.department) or self.setup.routing.departments.get(case.department)
            department = f"{n.en} ({n.zh})" if n is not None else case.department
        deadline = None
        if case.deadline_at is not None:
            deadline = f"{case.deadline_at.astimezone(self.zone):%Y-%m-%d %H:%M} ({self.zone.key})"
        reasons = None
        if kind == "rejected":
            reasons = "; ".join(d for _, d in case.screen_reasons or []) or None
        status_url = (f"{self.public_url}/report"
                      if self.public_url and c.channel == "reporter" else None)
        return ReporterFacts(kind=kind, request_id=c.request_id, case_id=case.id, service=service,
                             department=department, deadline=deadline,
                             result=result_text(case) if kind == "closed" else None,
                             reasons=reasons, has_after_photo=bool(case.after_sha256),
                             survey_url=survey_url, status_url=status_url, name=c.name)


@dataclass(frozen=True)
class SurveyAnswer:
    case_id: int
    answer: str
    reopened: bool
    note: str  # what happened, for the thank-you page


def answer_survey(engine: CaseEngine, repo: Repository, token_sha256: str, answer: str,
                  comment: str, now: datetime) -> SurveyAnswer:
    """Take a survey's answer, once (inside one writer transaction): satisfaction recorded,
    and "not fixed" reopens the case. Raises :class:`SurveyRefused`."""
    if answer not in ANSWERS:
        raise CaseError(None, f"answer is one of {', '.join(ANSWERS)}")
    survey = repo.get_survey(token_sha256)
    case = repo.get_case(survey.case_id) if survey is not None else None
    status = survey_status(survey, case, now)
    if status != "open":
        raise SurveyRefused(case.id if case else None, status)
    assert survey is not None and case is not None
    if not repo.answer_survey(survey.id, now, answer, comment or None):
        raise SurveyRefused(case.id, "answered")
    said = f"survey: {ANSWER_LABELS[answer]}" + (f": {comment}" if comment else "")
    engine.record_satisfaction(repo, case.id, ANSWERS[answer], actor=SURVEY_ACTOR, note=said)
    if answer != "not_fixed":
        return SurveyAnswer(case.id, answer, False, "Thank you: your answer is recorded.")
    reason = "the reporter says it is not fixed (survey)" + (f": {comment}" if comment else "")
    try:
        engine.reopen(repo, case.id, actor=SURVEY_ACTOR, reason=reason)
    except CaseError as exc:
        engine.note(repo, case, "not_fixed", SURVEY_ACTOR, f"{reason}; not reopened: {exc.detail}")
        engine.notify(repo, case, "needs_review", "operators", f"case {case.id}: a reporter "
                      f"says it is not fixed, and it could not be reopened: {exc.detail}")
        return SurveyAnswer(case.id, answer, False, "Thank you: an operator will look at it "
                            "again.")
    return SurveyAnswer(case.id, answer, True, "Thank you: the case is reopened and sent to "
                        "the department again.")
