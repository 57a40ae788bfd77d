"""cityops protocol v1: the one contract between edge agents and the hub.

Message models (:mod:`protocol.messages`), the topic grammar (:mod:`protocol.topics`),
the codec with size limits and schema checks (:mod:`protocol.codec`), the category
taxonomy (:mod:`protocol.taxonomy`), ids, errors, and the strict config loading that every
YAML people write goes through (:mod:`protocol.config`).

This package imports nothing from the agent or the hub and does no network or disk I/O
beyond reading its own packaged taxonomy file.
"""

from .codec import (
    decode_ack,
    decode_desired_config,
    decode_events,
    decode_message,
    decode_snapshot,
    decode_status,
    decode_telemetry,
    encode,
    encode_events,
    encode_snapshot,
)
from .errors import CityopsError, ConfigError, ConfigProblem, ProtocolError, Refusal, TopicError
from .messages import (
    Ack,
    AgentState,
    DesiredConfig,
    Event,
    EventKind,
    Evidence,
    Location,
    Reading,
    SnapshotHeader,
    SnapshotRef,
    Status,
    Telemetry,
)
from .taxonomy import taxonomy
from .topics import Channel, agent_topic, parse_topic, subscription

PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AgentState",
    "Channel",
    "CityopsError",
    "ConfigError",
    "ConfigProblem",
    "DesiredConfig",
    "Event",
    "EventKind",
    "Evidence",
    "Location",
    "ProtocolError",
    "Reading",
    "Refusal",
    "SnapshotHeader",
    "SnapshotRef",
    "Status",
    "Telemetry",
    "TopicError",
    "agent_topic",
    "decode_ack",
    "decode_desired_config",
    "decode_events",
    "decode_message",
    "decode_snapshot",
    "decode_status",
    "decode_telemetry",
    "encode",
    "encode_events",
    "encode_snapshot",
    "parse_topic",
    "subscription",
    "taxonomy",
]
