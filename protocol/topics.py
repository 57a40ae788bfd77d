"""The MQTT topic grammar of protocol v1. The only place topics are built or parsed.

::

    cityops/v1/agents/{agent_id}/status              agent → hub   QoS 1, retained
    cityops/v1/agents/{agent_id}/events              agent → hub   QoS 1
    cityops/v1/agents/{agent_id}/telemetry           agent → hub   QoS 0
    cityops/v1/agents/{agent_id}/snapshots/{event_id} agent → hub  QoS 1
    cityops/v1/agents/{agent_id}/clips/{event_id}    agent → hub   QoS 1 (event clip chunks)
    cityops/v1/agents/{agent_id}/acks                hub → agent   QoS 1
    cityops/v1/agents/{agent_id}/config              hub → agent   QoS 1, retained
    cityops/v1/agents/{agent_id}/care                hub → agent   QoS 1, retained
    cityops/v1/agents/{agent_id}/live                hub → agent   QoS 1 (a command: live view)
    cityops/v1/agents/{agent_id}/frames              agent → hub   QoS 0 (live JPEG frames)
    cityops/v1/agents/{agent_id}/release             hub → agent   QoS 1, retained (desired model release)
    cityops/v1/agents/{agent_id}/fetch               agent → hub   QoS 1 (asks for chunks of a release)
    cityops/v1/agents/{agent_id}/blobs               hub → agent   QoS 1 (the chunks it asked for)
    cityops/v1/agents/{agent_id}/release_state       agent → hub   QoS 1, retained (download/activation state)

The broker ACL is generated from the same table (:func:`acl_lines`), so the grammar and
the permissions cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import TopicError
from .ids import is_safe_id

__all__ = [
    "PREFIX",
    "Channel",
    "ParsedTopic",
    "QOS",
    "RETAINED",
    "acl_lines",
    "agent_topic",
    "parse_topic",
    "subscription",
]

PREFIX = "cityops/v1/agents"


class Channel(StrEnum):
    STATUS = "status"
    EVENTS = "events"
    TELEMETRY = "telemetry"
    SNAPSHOTS = "snapshots"
    CLIPS = "clips"  # an event's video clip, in chunks, through the outbox like snapshots
    ACKS = "acks"
    CONFIG = "config"
    CARE = "care"  # acknowledged elderly-care alarms: desired state, like config
    LIVE = "live"  # the hub asks for one camera's live frames for N seconds (never retained)
    FRAMES = "frames"  # the live frames it asked for: ephemeral, never through the outbox
    RELEASE = "release"  # the model release the agent should run: desired state (protocol/releases.py)
    FETCH = "fetch"  # the agent asks for chunks of a release (it pulls, so it can resume)
    BLOBS = "blobs"  # the chunks it asked for
    RELEASE_STATE = "release_state"  # where the agent stands with its release


# Who publishes on each channel.
AGENT_PUBLISHES = frozenset({Channel.STATUS, Channel.EVENTS, Channel.TELEMETRY, Channel.SNAPSHOTS, Channel.CLIPS,
                             Channel.FRAMES, Channel.FETCH, Channel.RELEASE_STATE})
HUB_PUBLISHES = frozenset({Channel.ACKS, Channel.CONFIG, Channel.CARE, Channel.LIVE, Channel.RELEASE,
                           Channel.BLOBS})

QOS: dict[Channel, int] = {
    Channel.STATUS: 1,
    Channel.EVENTS: 1,
    Channel.TELEMETRY: 0,
    Channel.SNAPSHOTS: 1,
    Channel.CLIPS: 1,
    Channel.ACKS: 1,
    Channel.CONFIG: 1,
    Channel.CARE: 1,
    Channel.LIVE: 1,
    Channel.FRAMES: 0,
    Channel.RELEASE: 1,
    Channel.FETCH: 1,
    Channel.BLOBS: 1,
    Channel.RELEASE_STATE: 1,
}
RETAINED: dict[Channel, bool] = {c: c in (Channel.STATUS, Channel.CONFIG, Channel.CARE, Channel.RELEASE,
                                          Channel.RELEASE_STATE)
                                 for c in Channel}

# Channels whose topic carries one more level (the event id).
_WITH_SUBTOPIC = frozenset({Channel.SNAPSHOTS, Channel.CLIPS})


@dataclass(frozen=True)
class ParsedTopic:
    agent_id: str
    channel: Channel
    event_id: str | None = None  # only for snapshots and clips


def _check_id(kind: str, value: str) -> None:
    if not is_safe_id(value):
        raise TopicError(
            f"{kind} {value!r} cannot be used in a topic: use 1-64 characters from "
            "A-Z a-z 0-9 _ . - starting with a letter or digit"
        )


def agent_topic(agent_id: str, channel: Channel | str, event_id: str | None = None) -> str:
    """Build the topic of one agent's channel. Refuses ids unsafe in a topic."""
    channel = Channel(channel)
    _check_id("agent id", agent_id)
    if channel in _WITH_SUBTOPIC:
        if event_id is None:
            raise TopicError(f"the {channel} topic needs an event id")
        _check_id("event id", event_id)
        return f"{PREFIX}/{agent_id}/{channel}/{event_id}"
    if event_id is not None:
        raise TopicError(f"the {channel} topic takes no event id")
    return f"{PREFIX}/{agent_id}/{channel}"


def subscription(channel: Channel | str, *, shared_group: str | None = None) -> str:
    """The hub's subscription filter for one channel across all agents.

    With ``shared_group`` it becomes an MQTT shared subscription
    (``$share/{group}/...``) so several hub workers split the load.
    """
    channel = Channel(channel)
    tail = "/+" if channel in _WITH_SUBTOPIC else ""
    topic = f"{PREFIX}/+/{channel}{tail}"
    if shared_group is not None:
        _check_id("shared subscription group", shared_group)
        topic = f"$share/{shared_group}/{topic}"
    return topic


def agent_subscription(agent_id: str, channel: Channel | str) -> str:
    """What an agent subscribes to for its own acks or config."""
    channel = Channel(channel)
    if channel not in HUB_PUBLISHES:
        raise TopicError(f"agents subscribe only to {sorted(HUB_PUBLISHES)}, not {channel}")
    return agent_topic(agent_id, channel)


def parse_topic(topic: str) -> ParsedTopic:
    """Parse a cityops topic. Raises :class:`TopicError` with the reason when it is not one."""
    if not isinstance(topic, str) or "\x00" in topic:
        raise TopicError("topic is not a string or contains NUL", topic=repr(topic))
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:3]) != PREFIX:
        raise TopicError(f"topic does not start with {PREFIX}/{{agent_id}}/", topic=topic)
    agent_id, channel_text, rest = parts[3], parts[4], parts[5:]
    if not is_safe_id(agent_id):
        raise TopicError(f"agent id {agent_id!r} is not a valid id", topic=topic)
    try:
        channel = Channel(channel_text)
    except ValueError:
        raise TopicError(
            f"unknown channel {channel_text!r}; expected one of {[c.value for c in Channel]}",
            topic=topic,
        ) from None
    if channel in _WITH_SUBTOPIC:
        if len(rest) != 1 or not is_safe_id(rest[0]):
            raise TopicError(f"the {channel} topic ends with one valid event id", topic=topic)
        return ParsedTopic(agent_id, channel, rest[0])
    if rest:
        raise TopicError(f"unexpected levels after {channel}: {'/'.join(rest)!r}", topic=topic)
    return ParsedTopic(agent_id, channel)


def acl_lines(hub_user: str) -> list[str]:
    """Mosquitto ACL lines: the hub reads and writes everything under cityops/;
    each agent (username = agent id) writes only its own outbound channels (live frames
    included: a frame on agent A's topic can only come from A) and reads only its own
    acks, config, care and live requests."""
    _check_id("hub user", hub_user)
    # Mosquitto applies `pattern` lines to every user, wherever they stand; `topic` lines
    # apply to the `user` above them. Patterns first keeps the file easy to read.
    lines = ["# generated by cityops from protocol/topics.py; do not edit by hand"]
    for channel in Channel:
        tail = "/+" if channel in _WITH_SUBTOPIC else ""
        access = "write" if channel in AGENT_PUBLISHES else "read"
        lines.append(f"pattern {access} {PREFIX}/%u/{channel}{tail}")
    lines += ["", f"user {hub_user}", "topic readwrite cityops/#"]
    return lines
