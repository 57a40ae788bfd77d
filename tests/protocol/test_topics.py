from __future__ import annotations

import pytest

from protocol.errors import TopicError
from protocol.topics import (
    Channel,
    ParsedTopic,
    acl_lines,
    agent_subscription,
    agent_topic,
    parse_topic,
    subscription,
)


def test_builders_and_parser_agree():
    for channel in Channel:
        event_id = "e1" if channel in (Channel.SNAPSHOTS, Channel.CLIPS) else None
        topic = agent_topic("agent-7", channel, event_id)
        assert parse_topic(topic) == ParsedTopic("agent-7", channel, event_id)


@pytest.mark.parametrize("bad", ["a/b", "a+", "a#", "a\x00b", "", "..", ".hidden", "x" * 65, "é"])
def test_unsafe_ids_are_refused(bad):
    with pytest.raises(TopicError):
        agent_topic(bad, Channel.EVENTS)


@pytest.mark.parametrize(
    "topic",
    [
        "cityops/v1/agents/a1",
        "cityops/v2/agents/a1/events",
        "other/v1/agents/a1/events",
        "cityops/v1/agents/a1/events/extra",
        "cityops/v1/agents/a1/snapshots",
        "cityops/v1/agents/a1/snapshots/../x",
        "cityops/v1/agents/+/events",
        "cityops/v1/agents/a1/unknown",
    ],
)
def test_parser_refuses_topics_outside_the_grammar(topic):
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_subscriptions():
    assert subscription(Channel.EVENTS) == "cityops/v1/agents/+/events"
    assert subscription(Channel.SNAPSHOTS) == "cityops/v1/agents/+/snapshots/+"
    assert subscription("events", shared_group="hub") == "$share/hub/cityops/v1/agents/+/events"
    assert agent_subscription("a1", Channel.ACKS) == "cityops/v1/agents/a1/acks"
    with pytest.raises(TopicError):
        agent_subscription("a1", Channel.EVENTS)


def test_acl_gives_agents_only_their_own_channels():
    lines = acl_lines("hub")
    assert "pattern write cityops/v1/agents/%u/events" in lines
    assert "pattern read cityops/v1/agents/%u/config" in lines
    assert "pattern read cityops/v1/agents/%u/care" in lines
    assert not any(line.startswith("pattern read") and "events" in line for line in lines)
    assert lines[-2:] == ["user hub", "topic readwrite cityops/#"]
