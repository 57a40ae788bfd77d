"""Classify raw MQTT messages into what the engine stores. Never raises, whatever the
topic or payload: a failure on one message becomes that message's refusal and costs no
other message.

Each message becomes exactly one item: events, a status, a telemetry heartbeat, a
snapshot, or a refusal carrying the codec's reason code, the detail, a truncated and
escaped copy of the payload, and — when the seq and event id can still be read — the
rejections to put in the agent's ack (a refused message is acknowledged as refused, so
the agent's outbox does not resend it forever). The bad events of an otherwise good
batch travel as refusals inside its :class:`EventsItem` (``refused``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import time_ns
from typing import NamedTuple

from protocol.clips import ClipChunkHeader, read_clip_header
from protocol.codec import RefusedEvent, decode_message, loads_lenient, readable_seq
from protocol.errors import ProtocolError, Refusal
from protocol.messages import Event, Rejection, SnapshotHeader, Status, Telemetry
from protocol.topics import Channel, parse_topic

from ..store.rows import compact_json

__all__ = [
    "ClipChunkItem",
    "EventRecord",
    "EventsItem",
    "Item",
    "RefusedItem",
    "SnapshotItem",
    "StatusItem",
    "TelemetryItem",
    "classify",
    "events_in",
    "refused",
    "refused_event",
    "rejection",
    "rejections_from_payload",
    "safe_text",
]

log = logging.getLogger(__name__)

PAYLOAD_KEEP = 1024  # bytes of a refused payload kept in the dead-letter table
TOPIC_KEEP = 300  # characters of a refused message's topic kept
DETAIL_KEEP = 1000  # characters of a refusal's detail kept


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
    message, and a tuple pickles and unpickles several times faster. ``refused``: the
    events of the batch that were refused one by one (each a :class:`RefusedItem`)."""

    agent_id: str
    records: list[EventRecord]
    refused: tuple[RefusedItem, ...] = ()

    def __reduce__(self):  # type: ignore[override]
        # Its records cross the pipe as plain tuples: pickling a NamedTuple goes through a
        # Python-level reduce for every record, which doubled a receiver's pickling time.
        return (_events_item, (self.agent_id, [tuple(r) for r in self.records], self.refused))


def events_in(entry: object) -> int:
    """Events an ingest entry carries: a decoded events message its records (and refused
    events), anything else (a raw message, status, telemetry, snapshot, refusal) one."""
    records = getattr(entry, "records", None)
    if records is None:
        return 1
    return len(records) + len(getattr(entry, "refused", ()))


def _events_item(agent_id: str, rows: list[tuple], refused: tuple = ()) -> EventsItem:
    """Unpickle an :class:`EventsItem` (see its ``__reduce__``)."""
    make = EventRecord._make
    return EventsItem(agent_id, [make(r) for r in rows], refused)


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


@dataclass(frozen=True)
class ClipChunkItem:
    """One chunk of an event's clip (:mod:`protocol.clips`). ``refusal`` is set, and
    ``data`` empty, when the header could be read but the chunk was refused (its bytes
    do not match its hash, ...): the hub then dead-letters it, rejects its seq in the ack
    and marks the clip failed with the reason, so the case page says what went wrong."""

    agent_id: str
    header: ClipChunkHeader
    data: bytes
    refusal: RefusedItem | None = None


Item = EventsItem | StatusItem | TelemetryItem | SnapshotItem | ClipChunkItem | RefusedItem


# Control characters (but tab and newline) shown as escapes: a refusal's text is safe to
# store, log and show, whatever bytes the payload or topic held (NUL included).
_ESCAPE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x09, 0x0A)}


def safe_text(value: object, limit: int) -> str:
    """``value`` as printable text of at most ``limit`` characters: control characters
    and lone surrogates escaped. Never raises."""
    try:
        text = value if isinstance(value, str) else repr(value)
        text = text[: limit * 4].encode("utf-8", "backslashreplace").decode("utf-8")
        return text.translate(_ESCAPE)[:limit]
    except Exception:  # noqa: BLE001 - last resort: a text we know is safe
        return f"<unprintable {type(value).__name__}>"


def _preview(payload: bytes) -> str:
    return safe_text(payload[:PAYLOAD_KEEP].decode("utf-8", errors="backslashreplace"),
                     PAYLOAD_KEEP * 4)


def rejection(seq: object, event_id: object, reason: str) -> Rejection | None:
    """The ack's rejection of a refused event when its seq and event id can be read (a seq
    in 1..MAX_SEQ, an event id string), else None."""
    good_seq = readable_seq(seq)
    if good_seq is None or not isinstance(event_id, str):
        return None
    try:
        return Rejection(seq=good_seq, event_id=safe_text(event_id, 200),
                         reason=safe_text(reason, 200))
    except Exception:  # noqa: BLE001 - an odd id must not cost the refusal itself
        return None


def rejections_from_payload(payload: bytes, reason: str) -> list[Rejection]:
    """Best effort: the (seq, event_id) of every event the refused payload names. Never
    raises (a payload nested too deeply to read names none)."""
    data = loads_lenient(payload)
    items = data if isinstance(data, list) else [data]
    out = []
    for obj in items[:500]:
        if isinstance(obj, dict):
            r = rejection(obj.get("seq"), obj.get("event_id"), reason)
            if r is not None:
                out.append(r)
    return out


def refused(topic: str, payload: bytes, reason: str, detail: str,
            agent_id: str | None = None, with_rejections: bool = True) -> RefusedItem:
    """The refusal of one message. Never raises: the topic, detail and payload are
    truncated and escaped, and what cannot be read is left out."""
    try:
        if not isinstance(payload, bytes | bytearray):
            payload = repr(payload).encode("utf-8", "backslashreplace")
        payload = bytes(payload)
        if agent_id is None:
            try:
                agent_id = parse_topic(topic).agent_id
            except Exception:  # noqa: BLE001 - a bad topic has no agent
                agent_id = None
        topic_bytes = str(topic).encode("utf-8", "backslashreplace")
        fingerprint = hashlib.sha256(
            topic_bytes + b"\0" + str(reason).encode("utf-8", "backslashreplace") + b"\0" + payload
        ).hexdigest()
        rejections = []
        if with_rejections and agent_id is not None:
            rejections = rejections_from_payload(payload, f"{reason}: {detail}")
        return RefusedItem(safe_text(topic, TOPIC_KEEP), agent_id, safe_text(reason, 40),
                           safe_text(detail, DETAIL_KEEP), _preview(payload), len(payload),
                           fingerprint, rejections)
    except Exception as exc:  # noqa: BLE001 - the refusal itself must always exist
        log.exception("could not describe a refused message; keeping a minimal record")
        fingerprint = hashlib.sha256(f"{id(payload)}{time_ns()}".encode()).hexdigest()
        return RefusedItem(safe_text(topic, TOPIC_KEEP), None, safe_text(reason, 40),
                           safe_text(f"{detail} (and describing it failed: {exc!r})", DETAIL_KEEP),
                           "", 0, fingerprint, [])


def refused_event(topic: str, agent_id: str, r: RefusedEvent) -> RefusedItem:
    """The refusal of one event of a batch (the batch's other events go on)."""
    reason = r.error.reason.value
    item = refused(topic, r.raw, reason, r.error.detail, agent_id=agent_id, with_rejections=False)
    one = rejection(r.seq, r.event_id, f"{reason}: {r.error.detail}")
    return RefusedItem(item.topic, item.agent_id, item.reason, item.detail, item.payload_preview,
                       item.payload_bytes, item.fingerprint, [one] if one is not None else [])


def classify(topic: str, payload: bytes) -> Item:
    """The item of one raw message. Never raises: an unexpected failure (a bug) is logged
    and the message refused with what went wrong."""
    try:
        return _classify(topic, payload)
    except Exception as exc:  # noqa: BLE001 - a codec bug must not take the hub down
        log.exception("unexpected error decoding a message on %s", safe_text(topic, TOPIC_KEEP))
        return refused(topic, payload, Refusal.INVALID.value,
                       f"the hub could not decode it: {exc!r}")


def _classify(topic: str, payload: bytes) -> Item:
    try:
        decoded = decode_message(topic, payload)
    except ProtocolError as exc:
        channel = None
        try:
            channel = parse_topic(topic).channel
        except ProtocolError:
            pass
        refusal = refused(topic, payload, exc.reason.value, exc.detail,
                          with_rejections=channel is Channel.EVENTS)
        if channel is Channel.CLIPS:
            return _refused_chunk(refusal, payload, exc)
        return refusal
    agent_id = decoded.topic.agent_id
    match decoded.topic.channel:
        case Channel.EVENTS:
            events: list[Event] = decoded.message
            bad = tuple(refused_event(topic, agent_id, r) for r in decoded.refused)
            if len(events) == 1 and not bad and payload.lstrip()[:1] == b"{":
                return EventsItem(agent_id, [event_record(events[0], payload.decode("utf-8"))])
            return EventsItem(agent_id, [
                event_record(e, e.model_dump_json(by_alias=True, exclude_none=True)) for e in events],
                bad)
        case Channel.STATUS:
            return StatusItem(agent_id, decoded.message)
        case Channel.TELEMETRY:
            return TelemetryItem(agent_id, decoded.message)
        case Channel.SNAPSHOTS:
            header, jpeg = decoded.message
            return SnapshotItem(agent_id, header, jpeg)
        case Channel.CLIPS:
            chunk_header, data = decoded.message
            return ClipChunkItem(agent_id, chunk_header, data)
        case _:
            return refused(topic, payload, Refusal.BAD_TOPIC.value,
                           f"the hub does not take {decoded.topic.channel} messages")


def _refused_chunk(refusal: RefusedItem, payload: bytes, exc: ProtocolError) -> Item:
    """A refused clip chunk whose header can still be read (and whose agent matches its
    topic) becomes a :class:`ClipChunkItem` carrying the refusal; otherwise the refusal."""
    try:
        header = read_clip_header(payload)
    except ProtocolError:
        return refusal
    if refusal.agent_id is None or header.agent_id != refusal.agent_id \
            or exc.reason is Refusal.TOPIC_MISMATCH:
        return refusal
    one = rejection(header.seq, header.event_id, f"{exc.reason.value}: {exc.detail}")
    with_rejection = RefusedItem(refusal.topic, refusal.agent_id, refusal.reason, refusal.detail,
                                 refusal.payload_preview, refusal.payload_bytes, refusal.fingerprint,
                                 [one] if one is not None else [])
    return ClipChunkItem(refusal.agent_id, header, b"", with_rejection)
