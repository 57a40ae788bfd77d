"""Elderly-care alarms on the hub: tiers told, acknowledgement sent to the agent, the end.

Runs on the writer, inside the transaction of the message or the action that causes it::

    event of elderly_care (new / update with a tier)
        ──▶ tier N's contacts in the care registry (hub/care.py) are told through the
            notification outbox (event key care/{agent}/{source}/{event}/tier-{N}),
            audit ``care_notified``
    a person accepts, dispatches, starts, resolves or closes the case
        ──▶ its open alarms are acknowledged (audit ``care_acknowledged``) and the agent's
            desired care state (protocol CareState, retained on its ``care`` topic) is
            published once the transaction commits (:meth:`CareDesk.take_dirty`)
    the agent's update with ``acknowledged: true``
        ──▶ audit ``care_ack_confirmed``: escalation stopped at tier N
    a tier reached after the acknowledgement (the agent had not heard yet)
        ──▶ nobody told, counted (``escalations_after_ack``), audit
            ``care_escalation_after_ack``, the state published again
    the alarm's end (water used, the call cancelled)
        ──▶ audit ``care_resident_ok``; the case closes by the sensor-clear rule, its
            closing row saying why (:meth:`CareDesk.close_reason`)

Every alarm is one ``care_alarms`` row; ``repo.care_counts()`` sums its counters. An
ingest batch keeps its care messages and settles them together (:meth:`CareDesk.settle`):
one read of their alarms, one write, their notes with the batch's other notes — each
message still sees what the ones before it decided.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from protocol.messages import CareAck, CareState

from ..care import (
    CARE_CATEGORY,
    FRESH,
    NO_STEP,
    AlarmFacts,
    CareAlarm,
    CareMessage,
    CareRegistry,
    CareStep,
    decide,
    end_reason_text,
    parse_message,
    recipients,
)
from ..cases.states import CaseState
from ..ingest.decode import EventRecord
from ..notify.model import Message
from ..notify.outbox import Outbox
from ..store.repo import CaseRow, Repository
from ..store.rows import to_db_time

if TYPE_CHECKING:
    from .core import CaseEngine

__all__ = ["ACK_STATES", "CareDesk"]

log = logging.getLogger(__name__)

# A person moving a care case into one of these states has taken it: stop the tiers.
ACK_STATES = frozenset({CaseState.ACCEPTED, CaseState.DISPATCHED, CaseState.IN_PROGRESS,
                        CaseState.RESOLVED, CaseState.CLOSED})
AUTO = "auto"


# An audit note of a care message, written with the batch's others: case id, action,
# actor, detail, data.
_Note = tuple[int, str, str, str, dict[str, Any]]


class CareDesk:
    def __init__(self, registry: CareRegistry, outbox: Outbox | None,
                 public_url: str | None = None) -> None:
        self.registry = registry
        self.outbox = outbox
        self.public_url = public_url
        if not registry.residents:
            log.info("care: no registry in hub.yaml: elderly-care alarms are tracked and "
                     "acknowledged to their agents, but their tiers tell no one")
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        # Set by the hub to wake its care publisher (thread-safe; called before the commit:
        # the publisher reads the state through the same writer, so after this transaction).
        self.wake: Callable[[], None] = lambda: None

    # -- agents whose desired care state changed ---------------------------------------------
    def mark(self, agent_id: str) -> None:
        with self._lock:
            self._dirty.add(agent_id)
        try:
            self.wake()
        except RuntimeError:  # the hub's loop is gone (stopping): the next start publishes
            log.debug("care state of %s not published now: the hub is stopping", agent_id)

    def take_dirty(self) -> set[str]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    @staticmethod
    def desired(repo: Repository, agent_id: str, now: datetime) -> CareState:
        alarms: list[CareAlarm] = repo.care_acknowledged_open(agent_id)
        return CareState(agent_id=agent_id, issued_at=now, acknowledged=[
            CareAck(event_id=a.event_id, case_id=a.case_id, by=(a.acknowledged_by or "")[:200],
                    at=a.acknowledged_at or now) for a in alarms])

    # -- events ---------------------------------------------------------------------------------
    @staticmethod
    def wants(ev: EventRecord) -> bool:
        """Whether a stored message of an elderly-care lifecycle can change its alarm. An
        ``update`` that names no tier and no acknowledgement (most of them: the reading
        moved on) cannot change what :func:`decide` does, whatever the alarm's facts, so it
        is not even kept for :meth:`settle` (stored JSON text: a key it lacks needs no
        parsing to be found absent)."""
        if ev.kind != "update":
            return True
        attrs = ev.attributes
        return attrs is not None and ('"tier"' in attrs or '"acknowledged"' in attrs)

    def settle(self, engine: CaseEngine, repo: Repository,
               pending: list[tuple[EventRecord, int, bool]], now: datetime,
               audit: list[tuple]) -> None:
        """The care messages of an ingest batch, in order: (message, its case, whether it
        is its lifecycle's first). Each does what it did message by message — a later
        message of the same alarm sees what an earlier one decided — but the batch reads
        its alarms in one statement and writes them in one, and its audit notes join
        ``audit`` (append_audit's arguments), which the batch writes in one statement too:
        message by message, this bookkeeping had cost a water-meter event a third more
        writer CPU.

        The writer calls this before anything else of the batch reads the alarms or notes
        on one of their cases, and before the batch commits (hub/engine/lifecycles.py)."""
        if not pending:
            return
        t = to_db_time(now)
        rows = repo.care_alarm_rows((ev.agent_id, ev.event_id) for ev, _, _ in pending)
        inserted: dict[tuple[str, str], None] = {}  # in the order the alarms were first seen
        changed: dict[tuple[str, str], None] = {}
        notes: list[_Note] = []
        for ev, case_id, first in pending:
            msg = parse_message(ev.kind, ev.attributes)
            if msg.kind == "update" and msg.tier is None and not msg.acknowledged:
                continue
            key = (ev.agent_id, ev.event_id)
            row = rows.get(key)
            # A lifecycle's first message decides on a fresh alarm; when one is there after
            # all (its lifecycle was retired while the alarm stayed), what it decided is
            # written over it, as for any later message.
            fresh = first or row is None
            if fresh:
                alarm = _fresh_row(ev, case_id, t)
            else:
                alarm = row
                if alarm["case_id"] != case_id:
                    alarm["case_id"] = case_id
                    changed[key] = None
            step = decide(FRESH if fresh else _facts(alarm), msg)
            fields = {} if step == NO_STEP else self._step(repo, ev, case_id, alarm, msg, step,
                                                           now, t, notes)
            if not fresh:
                if fields:
                    alarm.update(fields)
                    changed[key] = None
            elif row is None:
                alarm.update(fields)
                rows[key] = alarm
                inserted[key] = None
            else:
                row["case_id"] = case_id
                row["updated_at"] = t
                row.update(fields)
                changed[key] = None
        repo.write_care_alarms([rows[k] for k in inserted],
                               [rows[k] for k in changed if k not in inserted])
        if notes:
            at = engine.clock.now()
            audit += [(case_id, at, action, None, None, actor, detail, data)
                      for case_id, action, actor, detail, data in notes]

    def _step(self, repo: Repository, ev: EventRecord, case_id: int, alarm: dict,
              msg: CareMessage, step: CareStep, now: datetime, t: str,
              notes: list[_Note]) -> dict[str, Any]:
        """What one message's step does: its notifications and notes; returns the alarm's
        columns it changes."""
        fields: dict[str, Any] = {"updated_at": t}
        if step.notify_tier is not None and self.registry.residents:
            case = repo.get_case(case_id)
            if case is not None and self._notify_tier(repo, case, ev, step.notify_tier, now,
                                                      notes):
                fields["tier_notifications"] = alarm["tier_notifications"] + 1
        if step.after_ack_tier is not None:
            notes.append((case_id, "care_escalation_after_ack", AUTO,
                          f"{ev.agent_id}/{ev.source} reached tier {step.after_ack_tier} after "
                          f"{alarm['acknowledged_by']} acknowledged the alarm: nobody told; the "
                          "acknowledgement is sent to the agent again",
                          {"event_id": ev.event_id, "tier": step.after_ack_tier}))
            fields["escalations_after_ack"] = alarm["escalations_after_ack"] + 1
            self.mark(ev.agent_id)
        tier = step.notify_tier or step.after_ack_tier
        if tier is not None:
            fields["tiers_seen"] = sorted({*alarm["tiers_seen"], tier})
            fields["tier"] = max(alarm["tier"], tier)
        if step.confirm:
            fields["confirmed_at"] = t
            notes.append((case_id, "care_ack_confirmed", ev.agent_id,
                          f"the agent took the acknowledgement: escalation of {ev.source} "
                          f"stopped at tier {msg.tier or alarm['tier']}",
                          {"event_id": ev.event_id, "tier": msg.tier or alarm["tier"]}))
        if step.end_reason is not None:
            fields.update(ended_at=t, end_reason=step.end_reason)
            notes.append((case_id, "care_resident_ok", AUTO,
                          f"{ev.agent_id}/{ev.source}: resident fine again: "
                          f"{end_reason_text(step.end_reason, ev.subcategory)}",
                          {"event_id": ev.event_id, "reason": step.end_reason}))
            if alarm["acknowledged_at"] is not None:
                self.mark(ev.agent_id)  # it leaves the agent's desired state
        return fields

    def _notify_tier(self, repo: Repository, case: CaseRow, ev: EventRecord, tier: int,
                     now: datetime, notes: list[_Note]) -> bool:
        """Tell tier N's contacts; False when the registry names nobody. Without a
        registry at all (no care: in hub.yaml) that is the operator's choice, said once at
        start; with one, a resident or tier it misses is a gap shown on the case."""
        if not self.registry.residents:
            return False
        resident = self.registry.resident(ev.agent_id, ev.source)
        contacts = self.registry.tier_contacts(ev.agent_id, ev.source, tier)
        who = f"{ev.agent_id}/{ev.source}"
        if resident is None or not contacts:
            why = (f"{who} is not in the care registry: add the resident to the care: file"
                   if resident is None else f"the care registry names nobody for tier {tier} "
                   f"of {who}")
            notes.append((case.id, "care_notified", AUTO, f"tier {tier}: nobody told ({why})",
                          {"event_id": ev.event_id, "tier": tier, "contacts": []}))
            log.warning("care alarm %s tier %d: %s", ev.event_id, tier, why)
            return False
        names = ", ".join(f"{c.name} ({c.role})" for _, c in contacts)
        ref = f" {resident.ref}" if resident.ref else ""
        text = (f"Elderly-care alarm, tier {tier}: {_what(ev.subcategory)} at{ref} "
                f"{case.place or case.grid_id or ''}. Case {case.id}.")
        nid = repo.add_notification(case.id, now, "care_tier", f"tier {tier}: {names}"[:200], text)
        queued = 0
        if self.outbox is not None:
            url = f"{self.public_url.rstrip('/')}/cases/{case.id}" if self.public_url else None
            message = Message(f"[cityops] care alarm tier {tier}: {_what(ev.subcategory)}{ref}"[:200],
                              text + (f"\n{url}" if url else ""),
                              {"kind": "care_tier", "tier": tier, "case_id": case.id,
                               "agent_id": ev.agent_id, "source": ev.source,
                               "event_id": ev.event_id, "subcategory": ev.subcategory,
                               "resident": resident.ref, "grid_id": case.grid_id, "url": url})
            queued = self.outbox.enqueue(
                repo, event_key=f"care/{ev.agent_id}/{ev.source}/{ev.event_id}/tier-{tier}",
                kind="care_tier", message=message, recipients=recipients(contacts), now=now,
                case_id=case.id, notification_id=nid)
        sent = "" if self.outbox is not None else " (recorded; no notify: in hub.yaml, nothing sent)"
        notes.append((case.id, "care_notified", AUTO, f"tier {tier} → {names}{sent}",
                      {"event_id": ev.event_id, "tier": tier,
                       "contacts": [k for k, _ in contacts], "deliveries": queued}))
        return True

    # -- people acting on the case ----------------------------------------------------------------
    def on_transition(self, engine: CaseEngine, repo: Repository, case: CaseRow, to: CaseState,
                      actor: str, action: str, now: datetime) -> None:
        """A person moved a care case: its open alarms are acknowledged."""
        if actor == AUTO or to not in ACK_STATES or case.category != CARE_CATEGORY:
            return
        for alarm in repo.care_alarms_for_case(case.id):
            if alarm.acknowledged_at is not None or alarm.ended_at is not None:
                continue
            repo.update_care_alarm(alarm.id, acknowledged_at=now, acknowledged_by=actor[:200],
                                   updated_at=now)
            engine.note(repo, case, "care_acknowledged", actor,
                        f"acknowledged by {actor} ({action}): {alarm.agent_id} is told to stop "
                        f"escalating {alarm.source} (tier {alarm.tier or 1} reached)",
                        {"event_id": alarm.event_id, "agent_id": alarm.agent_id,
                         "tier": alarm.tier})
            self.mark(alarm.agent_id)

    @staticmethod
    def moved(repo: Repository, from_case: int, to_case: int) -> None:
        """A case merged into another: its alarms follow their lifecycles (a person acting
        on the surviving case acknowledges them)."""
        for alarm in repo.care_alarms_for_case(from_case):
            repo.update_care_alarm(alarm.id, case_id=to_case)

    @staticmethod
    def close_reason(repo: Repository, case: CaseRow) -> str | None:
        """Why a care case's sources cleared (for its closing row), or None."""
        if case.category != CARE_CATEGORY:
            return None
        reasons = [end_reason_text(a.end_reason, a.subcategory)
                   for a in repo.care_alarms_for_case(case.id) if a.ended_at is not None]
        return "; ".join(dict.fromkeys(reasons)) or None


def _fresh_row(ev: EventRecord, case_id: int, t: str) -> dict[str, Any]:
    """A new alarm's columns (as :meth:`Repository.care_alarm_rows` gives them)."""
    return {"id": None, "agent_id": ev.agent_id, "event_id": ev.event_id, "source": ev.source,
            "subcategory": ev.subcategory, "case_id": case_id, "opened_at": t, "updated_at": t,
            "tier": 0, "tiers_seen": [], "tier_notifications": 0, "escalations_after_ack": 0,
            "acknowledged_at": None, "acknowledged_by": None, "confirmed_at": None,
            "ended_at": None, "end_reason": None}


def _facts(row: dict[str, Any]) -> AlarmFacts:
    return AlarmFacts(frozenset(row["tiers_seen"]), row["acknowledged_at"] is not None,
                      row["confirmed_at"] is not None, row["ended_at"] is not None)


def _what(subcategory: str) -> str:
    return {"elderly_care.water_no_use": "no water used",
            "elderly_care.call_button": "call button pressed"}.get(subcategory, subcategory)
