"""Classify raw MQTT messages into what the engine stores. Never raises.

Each message becomes exactly one item: events, a status, a telemetry heartbeat, a
snapshot, or a refusal carrying the codec's reason code, the detail, a truncated copy of
the payload, and — when the seq and event id can still be read — the rejections to put
in the agent's ack (a refused message is acknowledged as refused, so the agent's outbox
does not resend it forever).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from protocol.codec import decode_message, loads_lenient
from protocol.errors import ProtocolError, Refusal
from protocol.messages import Event, Rejection, SnapshotHeader, Status, Telemetry
from protocol.topics import Channel, parse_topic

from ..store.rows import compact_json

__all__ = [
    "EventRecord",
    "EventsItem",
    "Item",
    "RefusedItem",
    "SnapshotItem",
    "StatusItem",
    "TelemetryItem",
    "classify",
    "events_in",
    "rejections_from_payload",
]

log = logging.getLogger(__name__)

PAYLOAD_KEEP = 1024  # bytes of a refused payload kept in the dead-letter table


class EventRecord(NamedTuple):
    """A validated event flattened to plain values: what the writer needs, cheap to pickle
    from a receiver process. Times are ISO 8601 UTC strings in the store's format; reading
    and attributes are JSON text (stored as they are)."""

    agent_id: str
    event_id: str
    seq: int
    kind: str
    category: str
    subcategory: str
    source: str
    observed_at: str
    started_at: str | None
    lat: float
    lon: float
    place: str | None
    confidence: float
    snapshot_sha256: str | None
    bbox: tuple[float, float, float, float] | None
    reading: str | None
    attributes: str | None
    body: str  # the JSON stored for the message (the raw payload when it came alone)

    def same_content(self, other: EventRecord) -> bool:
        return self[:-1] == other[:-1]


_ZERO = timedelta(0)


def _iso(value: datetime) -> str:
    # Already UTC (agents send "Z"): format as it is, without building a converted copy.
    if value.utcoffset() == _ZERO:
        return value.isoformat(timespec="microseconds")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_record(ev: Event, body: str) -> EventRecord:
    e = ev.evidence
    return EventRecord(
        ev.agent_id, ev.event_id, ev.seq, ev.kind.value, ev.category, ev.subcategory, ev.source,
        _iso(ev.observed_at), None if ev.started_at is None else _iso(ev.started_at),
        ev.location.lat, ev.location.lon, ev.location.place, ev.confidence,
        e.snapshot.sha256 if e.snapshot else None, tuple(e.bbox) if e.bbox else None,
        None if e.reading is None else e.reading.model_dump_json(),
        compact_json(ev.attributes) if ev.attributes else None,
        body,
    )


def record_from_body(body: str) -> EventRecord | None:
    """The record of a stored body (to compare a replay with what was stored)."""
    try:
        return event_record(Event.model_validate_json(body), body)
    except ValueError:
        return None


class EventsItem(NamedTuple):
    """A NamedTuple, not a dataclass: it crosses the receiver pipe for every decoded
    message, and a tuple pickles and unpickles several times faster."""

    agent_id: str
    records: list[EventRecord]

    def __reduce__(self):  # type: ignore[override]
        # Its records cross the pipe as plain tuples: pickling a NamedTuple goes through a
        # Python-level reduce for every record, which doubled a receiver's pickling time.
        return (_events_item, (self.agent_id, [tuple(r) for r in self.records]))


def events_in(entry: object) -> int:
    """Events an ingest entry carries: a decoded events message its records, anything else
    (a raw message, status, telemetry, snapshot, refusal) one."""
    records = getattr(entry, "records", None)
    return len(records) if records is not None else 1


def _events_item(agent_id: str, rows: list[tuple]) -> EventsItem:
    """Unpickle an :class:`EventsItem` (see its ``__reduce__``)."""
    make = EventRecord._make
    return EventsItem(agent_id, [make(r) for r in rows])


@dataclass(frozen=True)
class StatusItem:
    agent_id: str
    status: Status


@dataclass(frozen=True)
class TelemetryItem:
    agent_id: str
    telemetry: Telemetry


@dataclass(frozen=True)
class SnapshotItem:
    agent_id: str
    header: SnapshotHeader
    jpeg: bytes


@dataclass(frozen=True)
class RefusedItem:
    topic: str
    agent_id: str | None
    reason: str
    detail: str
    payload_preview: str
    payload_bytes: int
    fingerprint: str
    rejections: list[Rejection] = field(default_factory=list)


Item = EventsItem | StatusItem | TelemetryItem | SnapshotItem | RefusedItem


def _preview(payload: bytes) -> str:
    return payload[:PAYLOAD_KEEP].decode("utf-8", errors="backslashreplace")


def rejections_from_payload(payload: bytes, reason: str) -> list[Rejection]:
    """Best effort: the (seq, event_id) of every event the refused payload names."""
    data = loads_lenient(payload)
    items = data if isinstance(data, list) else [data]
    out = []
    for obj in items[:500]:
        if not isinstance(obj, dict):
            continue
        seq, event_id = obj.get("seq"), obj.get("event_id")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 and isinstance(event_id, str):
            out.append(Rejection(seq=seq, event_id=event_id[:200], reason=reason[:200]))
    return out


def refused(topic: str, payload: bytes, reason: str, detail: str,
            agent_id: str | None = None, with_rejections: bool = True) -> RefusedItem:
    if agent_id is None:
        try:
            agent_id = parse_topic(topic).agent_id
        except ProtocolError:
            agent_id = None
    fingerprint = hashlib.sha256(
        topic.encode("utf-8", "replace") + b"\0" + reason.encode() + b"\0" + payload
    ).hexdigest()
    rejections = []
    if with_rejections and agent_id is not None:
        rejections = rejections_from_payload(payload, f"{reason}: {detail}")
    return RefusedItem(topic, agent_id, reason, detail, _preview(payload), len(payload),
                       fingerprint, rejections)


def classify(topic: str, payload: bytes) -> Item:
    try:
        decoded = decode_message(topic, payload)
    except ProtocolError as exc:
        channel = None
        try:
            channel = parse_topic(topic).channel
        except ProtocolError:
            pass
        return refused(topic, payload, exc.reason.value, exc.detail,
                       with_rejections=channel is Channel.EVENTS)
    except Exception as exc:  # a codec bug must not take the hub down; keep the evidence
        log.exception("unexpected error decoding a message", extra={"topic": topic})
        return refused(topic, payload, Refusal.INVALID.value, f"hub could not decode it: {exc!r}")
    agent_id = decoded.topic.agent_id
    match decoded.topic.channel:
        case Channel.EVENTS:
            events: list[Event] = decoded.message
            if len(events) == 1 and payload.lstrip()[:1] == b"{":
                return EventsItem(agent_id, [event_record(events[0], payload.decode("utf-8"))])
            return EventsItem(agent_id, [
                event_record(e, e.model_dump_json(by_alias=True, exclude_none=True)) for e in events])
        case Channel.STATUS:
            return StatusItem(agent_id, decoded.message)
        case Channel.TELEMETRY:
            return TelemetryItem(agent_id, decoded.message)
        case Channel.SNAPSHOTS:
            header, jpeg = decoded.message
            return SnapshotItem(agent_id, header, jpeg)
        case _:
            return refused(topic, payload, Refusal.BAD_TOPIC.value,
                           f"the hub does not take {decoded.topic.channel} messages")
