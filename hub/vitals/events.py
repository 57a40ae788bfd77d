"""A level change becomes an event of the ``vital_signs`` category, from the hub's
pseudo-agent ``vitals``, placed exactly like an agent's event (screening, merging,
routing, dispatch, closure).

One warning is one lifecycle: ``new`` when an indicator leaves normal, ``update`` on each
level change, ``end`` when it is back to normal (the case then closes by
``sensor_clear`` after the hold, like a gauge's own case).
"""

from __future__ import annotations

from datetime import datetime

from protocol.messages import Event, Evidence, Location, Reading

from ..engine.intake import BatchResult, Ingestor
from ..ingest.decode import event_record
from ..store.repo import Repository
from .config import SUBCATEGORY
from .levels import Level
from .monitor import LevelChange

__all__ = ["VITALS_AGENT", "place_level_change"]

VITALS_AGENT = "vitals"


def _kind(change: LevelChange) -> str:
    if change.before == Level.NORMAL:
        return "new"
    if change.after == Level.NORMAL:
        return "end"
    return "update"


def place_level_change(ingestor: Ingestor, repo: Repository, change: LevelChange, event_id: str,
                       now: datetime) -> None:
    """Store and place the event of ``change`` inside the caller's transaction (run it
    on the writer with ``moves_events``)."""
    sub = SUBCATEGORY[change.kind]
    seq = repo.next_message_seq(VITALS_AGENT)
    event = Event(
        event_id=event_id, agent_id=VITALS_AGENT, seq=seq, kind=_kind(change),
        category=sub.split(".", 1)[0], subcategory=sub, source=change.indicator,
        observed_at=change.at, location=Location(lat=change.lat, lon=change.lon, grid_id=change.grid,
                                                 place=change.place[:200] or None),
        confidence=1.0,
        evidence=Evidence(reading=Reading(name=change.kind.value, value=change.value, unit=change.unit)),
        attributes={"level": change.after.label, "previous_level": change.before.label,
                    "indicator": change.indicator, "grid": change.grid},
    )
    rec = event_record(event, event.model_dump_json(by_alias=True, exclude_none=True))
    repo.insert_messages([(rec.agent_id, rec.seq, rec.event_id, rec.kind, rec.observed_at, now, rec.body)])
    batch = ingestor.placer.begin()
    ingestor.placer.apply(repo, rec, now, batch, BatchResult())
    ingestor.placer.finish(repo, batch, now)
