"""Protocol v1 messages.

Each message names its schema (``cityops.event/1`` ...). Models are tolerant of unknown
fields (a newer peer of the same major version may add some) and strict about the schema
name itself, which the codec checks first.

Events carry their full current state (Frigate's lesson): ``kind`` says where in its
lifecycle the event is (``new`` → ``update``* → ``end``), ``event_id`` names the
lifecycle, and ``seq`` names this one message of it. A message is identified by
``(agent_id, event_id, seq)``; redelivering it is harmless.

Every number is bounded (:mod:`protocol.limits`): sequence numbers, counts and versions
are integers below 2**53 (a JSON boolean, string or float is not a seq), floats are
finite, and times lie between 1970 and 9000 in UTC. A message outside these bounds is
refused at validation, naming the field, before anything reaches the store.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .base import WireModel
from .ids import Id
from .limits import MAX_COUNT, MAX_LIVE_SECONDS, MAX_SEQ, MAX_STORE_INT

__all__ = [
    "ACK_SCHEMA",
    "CARE_SCHEMA",
    "CONFIG_SCHEMA",
    "EVENT_SCHEMA",
    "FRAME_SCHEMA",
    "LIVE_SCHEMA",
    "SNAPSHOT_SCHEMA",
    "STATUS_SCHEMA",
    "TELEMETRY_SCHEMA",
    "Ack",
    "AgentState",
    "CameraTelemetry",
    "CareAck",
    "CareState",
    "ClipTelemetry",
    "DesiredConfig",
    "Event",
    "EventKind",
    "Evidence",
    "FrameHeader",
    "LiveRequest",
    "Location",
    "Message",
    "OutboxTelemetry",
    "Reading",
    "Rejection",
    "SnapshotHeader",
    "SnapshotRef",
    "Status",
    "Telemetry",
]

EVENT_SCHEMA = "cityops.event/1"
STATUS_SCHEMA = "cityops.status/1"
TELEMETRY_SCHEMA = "cityops.telemetry/1"
ACK_SCHEMA = "cityops.ack/1"
CONFIG_SCHEMA = "cityops.config/1"
SNAPSHOT_SCHEMA = "cityops.snapshot/1"
CARE_SCHEMA = "cityops.care/1"
LIVE_SCHEMA = "cityops.live/1"
FRAME_SCHEMA = "cityops.frame/1"
MAX_CARE_ACKS = 256

ShortText = Annotated[str, Field(max_length=200)]
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$", max_length=64)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A per-agent sequence number: a JSON integer (never a boolean, string or float).
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ, strict=True)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
AttrValue = Annotated[str, Field(max_length=200)] | int | float | bool | None

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _sane_time(value: datetime) -> datetime:
    """Times from 1970 to 9000 in UTC: wide enough for any clock, even one reset to the
    epoch, narrow enough that the hub's date arithmetic (deadlines, windows) never
    overflows. The value keeps its own offset."""
    if 1970 < value.year < 8999:  # the hot path: no offset can move it out
        return value
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise ValueError("time is out of range once converted to UTC") from None
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("time must lie between 1970-01-01 and 9000-01-01 (UTC)")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_sane_time)]


class Message(WireModel):
    """A top-level message. On the wire (validation context ``{"wire": True}``, as the
    codec validates) the ``schema`` field must be present; in Python it defaults."""

    @model_validator(mode="before")
    @classmethod
    def _schema_present_on_wire(cls, data: Any, info: ValidationInfo) -> Any:
        wire = bool(info.context and info.context.get("wire"))
        if wire and isinstance(data, dict) and "schema" not in data:
            raise ValueError("the 'schema' field is missing")
        return data


class EventKind(StrEnum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


class Location(WireModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    grid_id: Id | None = None
    place: ShortText | None = None


class Reading(WireModel):
    """A sensor value that backs an event (the evidence of sensor rules)."""

    name: Id
    value: float
    unit: Annotated[str, Field(max_length=16)] = ""

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("reading value must be a finite number")
        return v


class SnapshotRef(WireModel):
    """Points from an event to its snapshot, sent separately through the same outbox."""

    sha256: Sha256
    content_type: Literal["image/jpeg"] = "image/jpeg"
    bytes: int = Field(gt=0, le=MAX_COUNT)
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)


class Evidence(WireModel):
    bbox: tuple[Unit, Unit, Unit, Unit] | None = Field(
        None, description="x1, y1, x2, y2, normalised to 0..1 of the frame"
    )
    reading: Reading | None = None
    snapshot: SnapshotRef | None = None
    zone: Id | None = None
    frames: Count | None = Field(None, description="frames the object was seen in")

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, v: tuple[float, float, float, float] | None):
        if v is not None and not (v[0] < v[2] and v[1] < v[3]):
            raise ValueError("bbox must be x1 < x2 and y1 < y2")
        return v


class Event(Message):
    schema_: Literal["cityops.event/1"] = Field(EVENT_SCHEMA, alias="schema")
    event_id: Id
    agent_id: Id
    seq: Seq = Field(description="per-agent message sequence, survives restarts")
    kind: EventKind
    category: Code
    subcategory: Code
    source: Id = Field(description="camera or device id on the agent")
    observed_at: Timestamp
    started_at: Timestamp | None = None
    location: Location
    confidence: Unit = 1.0
    evidence: Evidence = Field(default_factory=Evidence)
    attributes: dict[Annotated[str, Field(max_length=64)], AttrValue] = Field(
        default_factory=dict, max_length=32
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _attribute_ints_fit(cls, v: Any) -> Any:
        # Checked before the union sees them: an integer too large for the store would
        # otherwise pass as an (inexact) float.
        if v and isinstance(v, dict):
            for key, value in v.items():
                if type(value) is int and not -MAX_STORE_INT - 1 <= value <= MAX_STORE_INT:
                    raise ValueError(f"attribute {str(key)[:64]!r} is an integer outside the "
                                     "signed 64-bit range")
        return v

    @model_validator(mode="after")
    def _subcategory_in_category(self) -> Event:
        if not self.subcategory.startswith(self.category + "."):
            raise ValueError(
                f"subcategory {self.subcategory!r} does not belong to category {self.category!r}"
            )
        return self


class AgentState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(Message):
    """Birth (``online``, retained) and death (``offline``, the LWT or a clean goodbye)."""

    schema_: Literal["cityops.status/1"] = Field(STATUS_SCHEMA, alias="schema")
    agent_id: Id
    state: AgentState
    boot_id: Id
    at: Timestamp
    version: ShortText = ""
    config_version: Count | None = None
    config_error: Annotated[str, Field(max_length=2000)] | None = None
    capabilities: list[Id] = Field(default_factory=list, max_length=64)
    reason: ShortText | None = None  # for offline: "shutdown", "connection lost", ...


class OutboxTelemetry(WireModel):
    depth: Count
    oldest_age_s: float = Field(0.0, ge=0)
    dropped: Count = Field(0, description="events dropped by the cap, since install")
    dropped_by_kind: dict[Annotated[str, Field(max_length=64)], Count] = Field(
        default_factory=dict, max_length=64)
    in_flight: Count = 0


class ClipTelemetry(WireModel):
    """A camera's event clips since the agent started (docs/agent.md, Event clips)."""

    recorded: Count = Field(0, description="clips encoded and handed to the outbox")
    busy: Count = Field(0, description="clips not made: the encoder's queue was full (it cannot keep up)")
    overlapping: Count = Field(0, description="events with no clip: the camera was already recording its most clips at once")
    failed: Count = Field(0, description="clips the encoder or the outbox failed on (logged with the reason)")
    encode_ms: float = Field(0.0, ge=0, description="mean encoding time of a clip")
    memory_bytes: Count = Field(0, description="frames held now (ring buffer and recordings)")


class CameraTelemetry(WireModel):
    state: Literal["up", "down"]
    fps: float = Field(0.0, ge=0)
    inference_ms: float = Field(0.0, ge=0)
    motion_ratio: float = Field(0.0, ge=0, le=1)
    no_people_count: ShortText | None = Field(
        None, description="why this camera sends no people count in readings (none: it sends one)")
    clips: ClipTelemetry | None = Field(None, description="event clips (none: clips are off)")


class Telemetry(Message):
    """Heartbeat, QoS 0: losing one is fine, the next one carries the full state."""

    schema_: Literal["cityops.telemetry/1"] = Field(TELEMETRY_SCHEMA, alias="schema")
    agent_id: Id
    boot_id: Id
    at: Timestamp
    uptime_s: float = Field(ge=0)
    outbox: OutboxTelemetry
    devices: dict[Id, Literal["up", "down", "unknown"]] = Field(default_factory=dict)
    cameras: dict[Id, CameraTelemetry] = Field(default_factory=dict)
    readings: dict[Id, float] = Field(
        default_factory=dict, description="latest reading per device.register, for vital signs"
    )
    rejected_readings: Count = 0
    rss_mb: float | None = Field(None, ge=0)
    cpu_percent: float | None = Field(None, ge=0)
    config_version: Count | None = None


class Rejection(WireModel):
    seq: Seq
    event_id: str = Field(max_length=200)
    reason: ShortText


class Ack(Message):
    """The hub's receipt: these messages are durably stored (or durably refused).

    The agent deletes every outbox row whose seq is ``<= upto`` or inside one of
    ``ranges``. ``upto`` is the highest seq below which the hub has everything;
    ``ranges`` covers what was stored beyond a gap (e.g. after the agent's outbox
    dropped updates under its cap).
    """

    schema_: Literal["cityops.ack/1"] = Field(ACK_SCHEMA, alias="schema")
    agent_id: Id
    upto: int = Field(0, ge=0, le=MAX_SEQ, strict=True)
    ranges: list[tuple[Seq, Seq]] = Field(default_factory=list, max_length=2000)
    rejected: list[Rejection] = Field(default_factory=list, max_length=500)
    at: Timestamp

    @field_validator("ranges")
    @classmethod
    def _ranges_ordered(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for lo, hi in v:
            if lo < 1 or hi < lo:
                raise ValueError(f"range ({lo}, {hi}) must satisfy 1 <= lo <= hi")
        return v

    def covers(self, seq: int) -> bool:
        if seq <= self.upto:
            return True
        return any(lo <= seq <= hi for lo, hi in self.ranges)


class DesiredConfig(Message):
    """Desired configuration pushed by the hub (retained). ``config`` is an overlay that
    the agent deep-merges onto its local file, validates and applies atomically; it then
    reports ``config_version`` (or ``config_error``) in its status."""

    schema_: Literal["cityops.config/1"] = Field(CONFIG_SCHEMA, alias="schema")
    agent_id: Id
    version: int = Field(ge=1, le=MAX_COUNT)
    config: dict[str, Any] = Field(default_factory=dict)
    issued_at: Timestamp
    issued_by: ShortText = "hub"
    reason: ShortText = ""


class SnapshotHeader(Message):
    """The JSON line in front of a snapshot's JPEG bytes."""

    schema_: Literal["cityops.snapshot/1"] = Field(SNAPSHOT_SCHEMA, alias="schema")
    agent_id: Id
    event_id: Id
    seq: Seq
    sha256: Sha256
    content_type: Literal["image/jpeg"] = "image/jpeg"
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    taken_at: Annotated[datetime, AfterValidator(_sane_time)] | None = None


class CareAck(WireModel):
    """One elderly-care alarm a person took on the hub: stop escalating its tiers."""

    event_id: Id = Field(description="the alarm's lifecycle on the agent")
    case_id: Count | None = None
    by: ShortText = Field("", description="who acknowledged it (an account name)")
    at: Timestamp


class CareState(Message):
    """The hub's desired state of an agent's elderly-care alarms (retained, QoS 1, like a
    desired config): every open alarm of the agent that someone has acknowledged. The
    whole set each time, so applying it twice changes nothing and the newest message
    alone is enough; an agent that was offline gets it when it subscribes."""

    schema_: Literal["cityops.care/1"] = Field(CARE_SCHEMA, alias="schema")
    agent_id: Id
    issued_at: Timestamp
    acknowledged: list[CareAck] = Field(default_factory=list, max_length=MAX_CARE_ACKS)


class LiveRequest(Message):
    """The hub asks one agent for live frames of one of its cameras (``live`` topic, QoS 1,
    never retained: a command, not a desired state). ``seconds`` from now the agent stops
    on its own; a new request for the same camera replaces the old one's end (the hub
    refreshes while somebody watches), ``seconds: 0`` stops at once (nobody watches)."""

    schema_: Literal["cityops.live/1"] = Field(LIVE_SCHEMA, alias="schema")
    agent_id: Id
    camera: Id
    request_id: Id = Field(description="names the stream; its frames carry it back")
    seconds: float = Field(ge=0, le=MAX_LIVE_SECONDS,
                           description="send frames this long from now; 0: stop now")
    issued_at: Timestamp


class FrameHeader(Message):
    """The JSON line in front of a live frame's JPEG bytes (``frames`` topic, QoS 0)."""

    schema_: Literal["cityops.frame/1"] = Field(FRAME_SCHEMA, alias="schema")
    agent_id: Id
    camera: Id
    request_id: Id
    n: int = Field(ge=1, le=MAX_COUNT, strict=True, description="frame number in the stream")
    taken_at: Timestamp
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    remaining_s: float = Field(ge=0, le=MAX_LIVE_SECONDS, description="until the agent stops")
