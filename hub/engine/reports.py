"""Events that do not come over MQTT: Open311 requests from citizens' and partners'
apps, linked incidents from emergency systems, and residents' committees' one-key
reports.

A report becomes an ordinary protocol event of a pseudo-agent (``open311``) with its own
sequence, stored as a message and placed exactly like an agent's event: the same
screening, merging, routing and dispatch. Its photo, if any, is the case's before-photo
(and, since a person framed it, the whole picture is the evidence box).

A report with a :class:`ReportKey` (linked incidents, one-key reports) is placed at most
once per key: :func:`apply_keyed_report` answers a repeated key with the case the first
one made, in the same writer transaction, so two racing posts cannot both open a case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from protocol.ids import new_event_id
from protocol.messages import Event, Evidence, Location, SnapshotRef

from ..errors import CaseError
from ..ingest.decode import event_record
from ..store.repo import Repository
from .intake import BatchResult, Ingestor
from .reporters import Contact

__all__ = ["KeyedOutcome", "Photo", "Report", "ReportKey", "ReportOutcome", "apply_keyed_report",
           "apply_report", "report_source"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def report_source(name: str) -> str:
    """A partner's name as an event source id (the safe id alphabet)."""
    safe = _UNSAFE.sub("-", name).strip("-.")[:64]
    return safe or "unknown"


@dataclass(frozen=True)
class Photo:
    sha256: str
    size: int
    width: int
    height: int


@dataclass(frozen=True)
class Report:
    agent_id: str  # the channel: "open311", "reporter"
    source: str  # who sent it (a partner's token name), as a safe id
    subcategory: str
    lat: float
    lon: float
    place: str | None = None
    description: str = ""
    photo: Photo | None = None
    attributes: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    observed_at: datetime | None = None  # when it happened, if the sender says; else now
    # Who to tell how it goes (hub/engine/reporters.py): kept apart from the event, which
    # lives longer than a person's contact may.
    contact: Contact | None = None


@dataclass(frozen=True)
class ReportOutcome:
    case_id: int
    event_id: str
    seq: int
    state: str


def apply_report(ingestor: Ingestor, repo: Repository, report: Report, now: datetime,
                 actor: str) -> ReportOutcome:
    """Store the report as an event and place it in a case, inside the caller's
    transaction. The lifecycle cache is the writer's: run this with ``moves_events``."""
    tax = ingestor.setup.taxonomy
    try:
        sub = tax.subcategory(report.subcategory)
    except KeyError:
        raise CaseError(None, f"unknown category {report.subcategory!r}") from None
    seq = repo.next_message_seq(report.agent_id)
    evidence = Evidence()
    if report.photo is not None:
        p = report.photo
        evidence = Evidence(bbox=(0.0, 0.0, 1.0, 1.0), snapshot=SnapshotRef(
            sha256=p.sha256, bytes=p.size, width=p.width, height=p.height))
    attrs = dict(report.attributes)
    if report.description:
        attrs["description"] = report.description[:200]
    event = Event(event_id=new_event_id(), agent_id=report.agent_id, seq=seq, kind="new",
                  category=sub.category, subcategory=sub.code, source=report.source,
                  observed_at=report.observed_at or now, location=Location(lat=report.lat, lon=report.lon,
                                                     place=(report.place or None) and report.place[:200]),
                  confidence=1.0, evidence=evidence, attributes=attrs)
    rec = event_record(event, event.model_dump_json(by_alias=True, exclude_none=True))
    repo.insert_messages([(rec.agent_id, rec.seq, rec.event_id, rec.kind, rec.observed_at, now,
                           rec.body)])
    if report.photo is not None:
        p = report.photo
        repo.add_snapshot(report.agent_id, event.event_id, seq, p.sha256, p.size, p.width,
                          p.height, now, now)
    result = BatchResult()
    batch = ingestor.placer.begin()
    ingestor.placer.apply(repo, rec, now, batch, result)
    ingestor.placer.finish(repo, batch, now)
    state = repo.lifecycle_state(report.agent_id, event.event_id)
    if state is None or state[1] is None:  # pragma: no cover - placing always links a case
        raise CaseError(None, "the report could not be placed in a case")
    case_id = state[1]
    case = repo.get_case(case_id)
    assert case is not None
    repo.append_audit(case_id, now, "report", None, None, actor,
                      report.description[:2000] or f"{report.agent_id} report",
                      {"event_id": event.event_id, "channel": report.agent_id})
    reporters = ingestor.engine.reporters
    if report.contact and reporters is not None:
        reporters.add_contact(repo, case, report.agent_id, event.event_id, report.contact, now)
    return ReportOutcome(case_id, event.event_id, seq, case.state)


@dataclass(frozen=True)
class ReportKey:
    """What makes a report the same report: ``(channel, partner, external_id)``."""

    channel: str
    partner: str
    external_id: str
    body_sha256: str  # the canonical body, to tell a harmless re-post from a conflict


@dataclass(frozen=True)
class KeyedOutcome:
    report_id: int
    case_id: int
    event_id: str
    state: str  # the case's state now
    duplicate: bool  # the key was seen before: nothing new was stored
    conflict: bool  # ...and with a different body


def apply_keyed_report(ingestor: Ingestor, repo: Repository, report: Report, key: ReportKey,
                       now: datetime, actor: str) -> KeyedOutcome:
    """:func:`apply_report` once per key (run it with ``moves_events``)."""
    seen = repo.get_external_report(key.channel, key.partner, key.external_id)
    if seen is not None:
        case = repo.get_case(seen.case_id)
        state = case.state if case is not None else "unknown"
        return KeyedOutcome(seen.id, seen.case_id, seen.event_id, state, True,
                            seen.body_sha256 != key.body_sha256)
    outcome = apply_report(ingestor, repo, report, now, actor)
    report_id = repo.add_external_report(key.channel, key.partner, key.external_id,
                                         key.body_sha256, outcome.event_id, outcome.case_id,
                                         actor, now)
    return KeyedOutcome(report_id, outcome.case_id, outcome.event_id, outcome.state, False, False)
