"""Encode and decode protocol v1 messages, enforcing size limits and schema versions.

Decoding never raises anything but :class:`~protocol.errors.ProtocolError`, whose
``reason`` says why (malformed, too large, unknown schema, invalid, unknown category,
topic mismatch, bad topic). That is what the hub stores in its dead-letter table.

An events message of several events is decoded event by event when one of them fails
(:func:`decode_events_partly`, what :func:`decode_message` uses): the good events go on,
each bad one is refused with its own reason, so one broken event never costs the others
of its batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from . import limits
from .clips import decode_clip_chunk
from .errors import ProtocolError, Refusal
from .messages import (
    Ack,
    CareState,
    DesiredConfig,
    Event,
    FrameHeader,
    LiveRequest,
    Message,
    SnapshotHeader,
    Status,
    Telemetry,
)
from .releases import ChunkRequest, DesiredRelease, ReleaseReport, decode_release_chunk
from .taxonomy import taxonomy
from .topics import Channel, ParsedTopic, parse_topic

__all__ = [
    "Decoded",
    "RefusedEvent",
    "decode_ack",
    "decode_care_state",
    "decode_chunk_request",
    "decode_desired_release",
    "decode_release_report",
    "decode_desired_config",
    "decode_events",
    "decode_events_partly",
    "decode_frame",
    "decode_live_request",
    "decode_message",
    "decode_snapshot",
    "decode_status",
    "decode_telemetry",
    "encode",
    "encode_events",
    "encode_frame",
    "encode_snapshot",
    "loads_lenient",
    "nesting_exceeds",
    "readable_seq",
]

T = TypeVar("T", bound=Message)

_WIRE = {"wire": True}
_EVENT = TypeAdapter(Event)
_EVENTS = TypeAdapter(list[Event])


# -- encoding ----------------------------------------------------------------------


def encode(message: Message, *, limit: int | None = None) -> bytes:
    """JSON bytes of one message (by alias, without nulls). Raises TOO_LARGE over ``limit``."""
    data = message.model_dump_json(by_alias=True, exclude_none=True).encode()
    limit = limit if limit is not None else _LIMITS.get(type(message), limits.MAX_CONFIG_BYTES)
    if len(data) > limit:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"{type(message).__name__} is {len(data)} bytes, over the {limit}-byte limit",
        )
    return data


def encode_events(events: Sequence[Event]) -> bytes:
    """One event as a JSON object, several as a JSON array (outbox replay batches)."""
    if not events:
        raise ValueError("encode_events needs at least one event")
    if len(events) > limits.MAX_EVENTS_PER_MESSAGE:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"{len(events)} events in one message, over the limit of {limits.MAX_EVENTS_PER_MESSAGE}",
        )
    parts = [encode(e, limit=limits.MAX_EVENT_BYTES) for e in events]
    if len(parts) == 1:
        return parts[0]
    data = b"[" + b",".join(parts) + b"]"
    if len(data) > limits.MAX_EVENTS_MESSAGE_BYTES:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"events message is {len(data)} bytes, over the {limits.MAX_EVENTS_MESSAGE_BYTES}-byte limit",
        )
    return data


def encode_snapshot(header: SnapshotHeader, jpeg: bytes) -> bytes:
    """A snapshot message: the JSON header, a newline, the JPEG bytes."""
    if len(jpeg) > limits.MAX_SNAPSHOT_BYTES:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"snapshot is {len(jpeg)} bytes, over the {limits.MAX_SNAPSHOT_BYTES}-byte limit",
        )
    if hashlib.sha256(jpeg).hexdigest() != header.sha256:
        raise ValueError("snapshot header sha256 does not match the JPEG bytes")
    return encode(header, limit=limits.MAX_SNAPSHOT_HEADER_BYTES) + b"\n" + jpeg


def encode_frame(header: FrameHeader, jpeg: bytes) -> bytes:
    """A live frame message: the JSON header, a newline, the JPEG bytes."""
    if len(jpeg) > limits.MAX_LIVE_FRAME_BYTES:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"live frame is {len(jpeg)} bytes, over the {limits.MAX_LIVE_FRAME_BYTES}-byte limit",
        )
    return encode(header, limit=limits.MAX_LIVE_HEADER_BYTES) + b"\n" + jpeg


# -- decoding ----------------------------------------------------------------------


_LIMITS: dict[type, int] = {
    Event: limits.MAX_EVENT_BYTES,
    Status: limits.MAX_STATUS_BYTES,
    Telemetry: limits.MAX_TELEMETRY_BYTES,
    Ack: limits.MAX_ACK_BYTES,
    DesiredConfig: limits.MAX_CONFIG_BYTES,
    CareState: limits.MAX_CONFIG_BYTES,  # desired state too: 256 acknowledgements fit
    SnapshotHeader: limits.MAX_SNAPSHOT_HEADER_BYTES,
    LiveRequest: limits.MAX_LIVE_REQUEST_BYTES,
    FrameHeader: limits.MAX_LIVE_HEADER_BYTES,
    DesiredRelease: limits.MAX_RELEASE_MESSAGE_BYTES,
    ChunkRequest: limits.MAX_RELEASE_MESSAGE_BYTES,
    ReleaseReport: limits.MAX_RELEASE_MESSAGE_BYTES,
}
_SCHEMAS: dict[type, str] = {
    Event: "cityops.event/1",
    Status: "cityops.status/1",
    Telemetry: "cityops.telemetry/1",
    Ack: "cityops.ack/1",
    DesiredConfig: "cityops.config/1",
    CareState: "cityops.care/1",
    SnapshotHeader: "cityops.snapshot/1",
    LiveRequest: "cityops.live/1",
    FrameHeader: "cityops.frame/1",
    DesiredRelease: "cityops.release/1",
    ChunkRequest: "cityops.fetch/1",
    ReleaseReport: "cityops.release_state/1",
}


def _check_size(payload: bytes, limit: int, what: str) -> None:
    if len(payload) > limit:
        raise ProtocolError(
            Refusal.TOO_LARGE, f"{what} is {len(payload)} bytes, over the {limit}-byte limit"
        )


def _summarise(exc: ValidationError, expected_schema: str, payload: bytes) -> ProtocolError:
    errors = exc.errors(include_url=False, include_context=False)
    for err in errors:
        if err["type"] in ("json_invalid", "json_type"):
            if "recursion limit" in err["msg"]:
                return ProtocolError(Refusal.MALFORMED, "not valid JSON: nested too deeply "
                                     f"({err['msg']}); a message needs {limits.MAX_DEPTH} levels at most")
            return ProtocolError(Refusal.MALFORMED, f"not valid JSON: {err['msg']}")
    for err in errors:
        loc = [p for p in err["loc"] if not isinstance(p, int)]
        if loc[:1] == ["schema"] and err["type"] == "literal_error":
            got = err.get("input")
            return ProtocolError(
                Refusal.UNKNOWN_SCHEMA,
                f"schema {got!r} is not supported here; this side speaks {expected_schema!r}",
                field="schema",
            )
        if err["type"] == "value_error" and "'schema' field is missing" in err["msg"]:
            return ProtocolError(
                Refusal.UNKNOWN_SCHEMA, f"the 'schema' field is missing; expected {expected_schema!r}",
                field="schema",
            )
    for err in errors:
        if err["type"] in ("model_type", "model_attributes_type", "list_type") and len(err["loc"]) <= 1:
            return ProtocolError(Refusal.MALFORMED, f"expected a JSON object: {err['msg']}")
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        got = err.get("input")
        got_text = ""
        if not isinstance(got, dict | list):
            got_text = f" (got {str(got)[:40]!r})"
        parts.append(f"{where}: {err['msg']}{got_text}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    first = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
    return ProtocolError(Refusal.INVALID, "; ".join(parts) + more, field=first)


def _decode_one(model: type[T], payload: bytes, limit: int | None = None) -> T:
    _check_size(payload, limit or _LIMITS[model], model.__name__)
    try:
        return model.model_validate_json(payload, context=_WIRE)
    except ValidationError as exc:
        raise _summarise(exc, _SCHEMAS[model], payload) from None


def _check_agent(agent_id: str | None, found: str, what: str) -> None:
    if agent_id is not None and found != agent_id:
        raise ProtocolError(
            Refusal.TOPIC_MISMATCH,
            f"{what} says agent_id {found!r} but was published on agent {agent_id!r}'s topic",
            field="agent_id",
        )


@cache
def _valid_pairs() -> frozenset[tuple[str, str]]:
    """(category, subcategory) pairs an event may carry: ``Taxonomy.is_valid_pair`` as a
    set lookup (the taxonomy never changes at run time; this is on every event's path)."""
    return frozenset((s.category, s.code) for s in taxonomy().subcategories() if not s.retired)


def decode_events(payload: bytes, *, agent_id: str | None = None) -> list[Event]:
    """Decode an events message (one object or an array). All or nothing: one bad event
    refuses the message, with the index of the culprit in the detail."""
    head = payload[:64].lstrip()
    if head.startswith(b"["):
        _check_size(payload, limits.MAX_EVENTS_MESSAGE_BYTES, "events message")
        try:
            events = _EVENTS.validate_json(payload, context=_WIRE)
        except ValidationError as exc:
            raise _summarise(exc, _SCHEMAS[Event], payload) from None
        if not events:
            raise ProtocolError(Refusal.INVALID, "events message is an empty array")
        if len(events) > limits.MAX_EVENTS_PER_MESSAGE:
            raise ProtocolError(
                Refusal.TOO_LARGE,
                f"{len(events)} events in one message, over the limit of {limits.MAX_EVENTS_PER_MESSAGE}",
            )
    elif head.startswith(b"{"):
        _check_size(payload, limits.MAX_EVENT_BYTES, "event")
        try:
            events = [_EVENT.validate_json(payload, context=_WIRE)]
        except ValidationError as exc:
            raise _summarise(exc, _SCHEMAS[Event], payload) from None
    else:
        raise ProtocolError(Refusal.MALFORMED, "an events message is a JSON object or array")
    pairs = _valid_pairs()
    for i, ev in enumerate(events):
        _check_agent(agent_id, ev.agent_id, f"event {i}")
        if (ev.category, ev.subcategory) not in pairs:
            tax = taxonomy()
            raise ProtocolError(
                Refusal.UNKNOWN_CATEGORY,
                f"event {i}: {ev.category}/{ev.subcategory} is not in taxonomy v{tax.version}",
                field="subcategory",
            )
    return events


@dataclass(frozen=True)
class RefusedEvent:
    """One event of a batched events message that was refused while the others went on:
    its place in the batch, why, its seq and event id when they can be read (for the
    ack's ``rejected``), and the element as JSON (for the dead letter)."""

    index: int
    error: ProtocolError
    seq: int | None
    event_id: str | None
    raw: bytes


def readable_seq(value: Any) -> int | None:
    """``value`` as a seq when it is one (a JSON integer in 1..MAX_SEQ), else None."""
    if type(value) is int and 1 <= value <= limits.MAX_SEQ:
        return value
    return None


def _refused_event(index: int, error: ProtocolError, obj: Any) -> RefusedEvent:
    seq = event_id = None
    if isinstance(obj, dict):
        seq = readable_seq(obj.get("seq"))
        eid = obj.get("event_id")
        event_id = eid[:200] if isinstance(eid, str) else None
    try:
        raw = json.dumps(obj, ensure_ascii=False, default=repr).encode("utf-8", "backslashreplace")
    except (ValueError, TypeError, RecursionError):
        raw = repr(obj).encode("utf-8", "backslashreplace")
    error.detail = f"event {index}: {error.detail}"
    return RefusedEvent(index, error, seq, event_id, raw[: limits.MAX_EVENT_BYTES])


def _whole_message_error(exc: ValidationError) -> bool:
    """A failure of the array itself (not JSON, not an array), not of one of its events."""
    return any(err["type"] in ("json_invalid", "json_type") or not err["loc"]
               or not isinstance(err["loc"][0], int)
               for err in exc.errors(include_url=False, include_context=False))


def decode_events_partly(payload: bytes, *, agent_id: str | None = None
                         ) -> tuple[list[Event], list[RefusedEvent]]:
    """Decode an events message, refusing bad events of a batch one by one.

    A single event, or a message that is not a readable array of at most
    ``MAX_EVENTS_PER_MESSAGE`` events, is refused as a whole (ProtocolError). In a batch,
    each event that fails validation, names another agent or has an unknown category is
    returned as a :class:`RefusedEvent` beside the good ones; a batch with no good event
    at all is refused as a whole, with the first event's reason."""
    head = payload[:64].lstrip()
    if not head.startswith(b"["):
        return decode_events(payload, agent_id=agent_id), []
    _check_size(payload, limits.MAX_EVENTS_MESSAGE_BYTES, "events message")
    refusals: list[RefusedEvent] = []
    try:
        events: list[Event] = _EVENTS.validate_json(payload, context=_WIRE)
        indexed = list(enumerate(events))
        elements: list[Any] | None = None
    except ValidationError as exc:
        whole = _summarise(exc, _SCHEMAS[Event], payload)
        if _whole_message_error(exc):
            raise whole from None
        elements = loads_lenient(payload)
        if not isinstance(elements, list):
            raise whole from None
        if len(elements) > limits.MAX_EVENTS_PER_MESSAGE:
            raise ProtocolError(
                Refusal.TOO_LARGE,
                f"{len(elements)} events in one message, over the limit of {limits.MAX_EVENTS_PER_MESSAGE}",
            ) from None
        indexed = []
        for i, obj in enumerate(elements):
            try:
                indexed.append((i, _EVENT.validate_python(obj, context=_WIRE)))
            except ValidationError as one:
                refusals.append(_refused_event(i, _summarise(one, _SCHEMAS[Event], b""), obj))
    if not indexed and not refusals:
        raise ProtocolError(Refusal.INVALID, "events message is an empty array")
    if len(indexed) + len(refusals) > limits.MAX_EVENTS_PER_MESSAGE:
        raise ProtocolError(
            Refusal.TOO_LARGE,
            f"{len(indexed) + len(refusals)} events in one message, over the limit of "
            f"{limits.MAX_EVENTS_PER_MESSAGE}",
        )
    pairs = _valid_pairs()
    good: list[Event] = []
    for i, ev in indexed:
        problem: ProtocolError | None = None
        if agent_id is not None and ev.agent_id != agent_id:
            problem = ProtocolError(
                Refusal.TOPIC_MISMATCH,
                f"says agent_id {ev.agent_id!r} but was published on agent {agent_id!r}'s topic",
                field="agent_id")
        elif (ev.category, ev.subcategory) not in pairs:
            problem = ProtocolError(
                Refusal.UNKNOWN_CATEGORY,
                f"{ev.category}/{ev.subcategory} is not in taxonomy v{taxonomy().version}",
                field="subcategory")
        if problem is None:
            good.append(ev)
        else:
            obj = elements[i] if elements is not None else ev.model_dump(mode="json", by_alias=True)
            refusals.append(_refused_event(i, problem, obj))
    if not good:
        refusals.sort(key=lambda r: r.index)
        first = refusals[0].error
        raise ProtocolError(first.reason, f"all {len(refusals)} events of the batch were refused; "
                            f"{first.detail}", field=first.field)
    refusals.sort(key=lambda r: r.index)
    return good, refusals


def decode_status(payload: bytes, *, agent_id: str | None = None) -> Status:
    msg = _decode_one(Status, payload)
    _check_agent(agent_id, msg.agent_id, "status")
    return msg


def decode_telemetry(payload: bytes, *, agent_id: str | None = None) -> Telemetry:
    msg = _decode_one(Telemetry, payload)
    _check_agent(agent_id, msg.agent_id, "telemetry")
    return msg


def decode_ack(payload: bytes, *, agent_id: str | None = None) -> Ack:
    msg = _decode_one(Ack, payload)
    _check_agent(agent_id, msg.agent_id, "ack")
    return msg


def decode_desired_config(payload: bytes, *, agent_id: str | None = None) -> DesiredConfig:
    msg = _decode_one(DesiredConfig, payload)
    _check_agent(agent_id, msg.agent_id, "config")
    return msg


def decode_care_state(payload: bytes, *, agent_id: str | None = None) -> CareState:
    msg = _decode_one(CareState, payload)
    _check_agent(agent_id, msg.agent_id, "care state")
    return msg


def decode_snapshot(
    payload: bytes, *, agent_id: str | None = None, event_id: str | None = None
) -> tuple[SnapshotHeader, bytes]:
    """Split and check a snapshot message: header line, JPEG bytes, hash and JPEG magic."""
    _check_size(
        payload, limits.MAX_SNAPSHOT_BYTES + limits.MAX_SNAPSHOT_HEADER_BYTES + 1, "snapshot message"
    )
    newline = payload.find(b"\n", 0, limits.MAX_SNAPSHOT_HEADER_BYTES + 1)
    if newline < 0:
        raise ProtocolError(Refusal.MALFORMED, "snapshot message has no JSON header line")
    header = _decode_one(SnapshotHeader, payload[:newline])
    jpeg = payload[newline + 1 :]
    _check_size(jpeg, limits.MAX_SNAPSHOT_BYTES, "snapshot image")
    _check_agent(agent_id, header.agent_id, "snapshot")
    if event_id is not None and header.event_id != event_id:
        raise ProtocolError(
            Refusal.TOPIC_MISMATCH,
            f"snapshot header names event {header.event_id!r} but the topic names {event_id!r}",
            field="event_id",
        )
    if not jpeg.startswith(b"\xff\xd8"):
        raise ProtocolError(Refusal.INVALID, "snapshot is not a JPEG (no FF D8 start marker)")
    if hashlib.sha256(jpeg).hexdigest() != header.sha256:
        raise ProtocolError(Refusal.INVALID, "snapshot bytes do not match the header's sha256")
    return header, jpeg


def decode_live_request(payload: bytes, *, agent_id: str | None = None) -> LiveRequest:
    msg = _decode_one(LiveRequest, payload)
    _check_agent(agent_id, msg.agent_id, "live request")
    return msg


def decode_desired_release(payload: bytes, *, agent_id: str | None = None) -> DesiredRelease:
    msg = _decode_one(DesiredRelease, payload)
    _check_agent(agent_id, msg.agent_id, "desired release")
    return msg


def decode_chunk_request(payload: bytes, *, agent_id: str | None = None) -> ChunkRequest:
    msg = _decode_one(ChunkRequest, payload)
    _check_agent(agent_id, msg.agent_id, "chunk request")
    return msg


def decode_release_report(payload: bytes, *, agent_id: str | None = None) -> ReleaseReport:
    msg = _decode_one(ReleaseReport, payload)
    _check_agent(agent_id, msg.agent_id, "release report")
    return msg


def decode_frame(payload: bytes, *, agent_id: str | None = None) -> tuple[FrameHeader, bytes]:
    """Split and check a live frame message: header line, JPEG bytes (size, JPEG magic),
    and the agent the header names against the topic's."""
    _check_size(payload, limits.MAX_LIVE_FRAME_BYTES + limits.MAX_LIVE_HEADER_BYTES + 1,
                "live frame message")
    newline = payload.find(b"\n", 0, limits.MAX_LIVE_HEADER_BYTES + 1)
    if newline < 0:
        raise ProtocolError(Refusal.MALFORMED, "live frame message has no JSON header line")
    header = _decode_one(FrameHeader, payload[:newline])
    jpeg = payload[newline + 1 :]
    _check_size(jpeg, limits.MAX_LIVE_FRAME_BYTES, "live frame image")
    _check_agent(agent_id, header.agent_id, "live frame")
    if not jpeg.startswith(b"\xff\xd8"):
        raise ProtocolError(Refusal.INVALID, "live frame is not a JPEG (no FF D8 start marker)")
    return header, jpeg


@dataclass(frozen=True)
class Decoded:
    topic: ParsedTopic
    message: Any  # list[Event] | Status | Telemetry | Ack | DesiredConfig | (SnapshotHeader, bytes)
    refused: list[RefusedEvent] = field(default_factory=list)  # bad events of a batch


def decode_message(topic: str, payload: bytes) -> Decoded:
    """Parse the topic and decode the payload that belongs to it. Raises ProtocolError
    (with ``.topic`` set) for anything that is not a valid protocol v1 message; the bad
    events of an otherwise good batch are in ``Decoded.refused``."""
    refused: list[RefusedEvent] = []
    try:
        parsed = parse_topic(topic)
        aid = parsed.agent_id
        match parsed.channel:
            case Channel.EVENTS:
                message: Any
                message, refused = decode_events_partly(payload, agent_id=aid)
            case Channel.STATUS:
                message = decode_status(payload, agent_id=aid)
            case Channel.TELEMETRY:
                message = decode_telemetry(payload, agent_id=aid)
            case Channel.ACKS:
                message = decode_ack(payload, agent_id=aid)
            case Channel.CONFIG:
                message = decode_desired_config(payload, agent_id=aid)
            case Channel.CARE:
                message = decode_care_state(payload, agent_id=aid)
            case Channel.SNAPSHOTS:
                message = decode_snapshot(payload, agent_id=aid, event_id=parsed.event_id)
            case Channel.CLIPS:
                message = decode_clip_chunk(payload, agent_id=aid, event_id=parsed.event_id)
            case Channel.LIVE:
                message = decode_live_request(payload, agent_id=aid)
            case Channel.FRAMES:
                message = decode_frame(payload, agent_id=aid)
            case Channel.RELEASE:
                message = decode_desired_release(payload, agent_id=aid)
            case Channel.FETCH:
                message = decode_chunk_request(payload, agent_id=aid)
            case Channel.BLOBS:
                message = decode_release_chunk(payload)
            case Channel.RELEASE_STATE:
                message = decode_release_report(payload, agent_id=aid)
    except ProtocolError as exc:
        if exc.topic is None:
            exc.topic = topic
        raise
    for r in refused:
        r.error.topic = topic
    return Decoded(parsed, message, refused)


_STRING = re.compile(rb'"(?:[^"\\]++|\\(?s:.)?)*+(?:"|\Z)')  # a string, or an unclosed one
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nesting_exceeds(payload: bytes, limit: int = limits.MAX_DEPTH) -> bool:
    """True when ``payload`` nests arrays and objects deeper than ``limit`` (or its
    brackets do not pair up). Linear and cheap: strings are cut out, the brackets left
    are paired off one level a pass, at most ``limit`` passes."""
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKET)
    too_deep = _opening_run(limit + 1)
    for _ in range(limit):
        if not brackets:
            return False
        if too_deep.search(brackets):  # limit + 1 openers in a row: no pass can save it
            return True
        brackets, paired = _PAIR.subn(b"", brackets)
        if not paired:
            return True
    return bool(brackets)


@cache
def _opening_run(n: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\[{]{%d}" % n)


def loads_lenient(payload: bytes) -> Any:
    """Best-effort JSON for showing a refused payload to people and reading what it
    names. Never raises: anything that is not JSON, or nests deeper than
    ``MAX_DEPTH`` (which would exhaust the parser's recursion), is None."""
    try:
        if nesting_exceeds(payload):
            return None
        return json.loads(payload)
    except Exception:  # noqa: BLE001 - any payload at all; None says "not readable"
        return None
