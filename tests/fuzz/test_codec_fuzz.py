"""Property tests of the protocol codec: valid messages round-trip; anything else is a
ProtocolError with a stated reason code and a sentence, never another exception; size
limits hold for every generated message."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol import limits
from protocol.codec import decode_events, decode_message, encode_events
from protocol.errors import ProtocolError, Refusal
from protocol.messages import Event, Evidence, Location, Reading
from protocol.taxonomy import taxonomy
from protocol.topics import Channel, agent_topic

ID_START = string.ascii_letters + string.digits
ID_REST = ID_START + "_.-"
ids = st.builds(lambda a, b: a + b, st.sampled_from(ID_START), st.text(ID_REST, max_size=20))
PAIRS = [(s.category, s.code) for s in taxonomy().subcategories()]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(max_size=40))
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]))


@st.composite
def events(draw, agent_id: str | None = None) -> Event:
    category, sub = draw(st.sampled_from(PAIRS))
    reading = draw(st.none() | st.builds(Reading, name=ids, value=st.floats(-1e9, 1e9),
                                         unit=st.text(string.ascii_letters, max_size=8)))
    try:
        return Event(
            event_id=draw(ids), agent_id=agent_id or draw(ids), seq=draw(st.integers(1, 2**53)),
            kind=draw(st.sampled_from(["new", "update", "end"])), category=category, subcategory=sub,
            source=draw(ids), observed_at=draw(moments),
            location=Location(lat=draw(st.floats(-90, 90)), lon=draw(st.floats(-180, 180)),
                              grid_id=draw(st.none() | ids), place=draw(st.none() | st.text(max_size=40))),
            confidence=draw(st.floats(0, 1)), evidence=Evidence(reading=reading),
            attributes=draw(st.dictionaries(st.text(min_size=1, max_size=20), scalars, max_size=6)))
    except ValidationError:
        assume(False)
        raise


def refused_properly(exc: ProtocolError) -> None:
    assert isinstance(exc.reason, Refusal), exc
    assert exc.detail and len(str(exc)) > len(exc.reason.value)


@given(st.lists(events(agent_id="agent-1"), min_size=1, max_size=5))
def test_valid_events_round_trip(batch):
    try:
        payload = encode_events(batch)
    except ProtocolError as exc:  # the encoder refuses what the decoder would refuse
        assert exc.reason == Refusal.TOO_LARGE
        return
    assert len(payload) <= limits.MAX_EVENTS_MESSAGE_BYTES
    decoded = decode_message(agent_topic("agent-1", Channel.EVENTS), payload)
    assert decoded.message == batch


CHANNELS = [Channel.EVENTS, Channel.STATUS, Channel.TELEMETRY, Channel.ACKS, Channel.CONFIG]
valid_topics = st.one_of(st.builds(agent_topic, ids, st.sampled_from(CHANNELS)),
                         st.builds(lambda a, e: agent_topic(a, Channel.SNAPSHOTS, e), ids, ids))
# Mostly valid topics, so the payload checks behind the topic check get most examples.
topics = st.one_of(valid_topics, valid_topics, valid_topics, st.text(max_size=80),
                   st.sampled_from(["cityops/v1/agents/../events", "cityops/v2/agents/a/events",
                                    "cityops/v1/agents/a/snapshots", "\x00"]))


@st.composite
def mangled(draw) -> bytes:
    """Bytes near valid messages: a valid event with fields removed, retyped or added,
    truncated, wrapped, or random bytes and JSON."""
    base = json.loads(encode_events([draw(events())]))
    how = draw(st.sampled_from(["drop", "retype", "truncate", "wrap", "random", "json", "schema"]))
    if how == "drop":
        base.pop(draw(st.sampled_from(sorted(base))), None)
    elif how == "retype":
        base[draw(st.sampled_from(sorted(base)))] = draw(scalars | st.lists(scalars, max_size=3))
    elif how == "truncate":
        raw = json.dumps(base).encode()
        return raw[: draw(st.integers(0, len(raw)))]
    elif how == "wrap":
        return json.dumps(draw(st.sampled_from([[], [base] * 2, {"events": [base]}, [1, base]]))).encode()
    elif how == "random":
        return draw(st.binary(max_size=300))
    elif how == "json":
        return json.dumps(draw(st.recursive(scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c),
                                            max_leaves=10))).encode()
    else:
        base["schema"] = draw(st.sampled_from(["cityops.event/2", "cityops.event", "", "x/1"]))
    return json.dumps(base).encode()


@given(topics, st.one_of(mangled(), st.binary(max_size=200)))
@example("cityops/v1/agents/a/events", b"")
@example("cityops/v1/agents/a/events", b"not json")
@example("cityops/v1/agents/a/events", b"[]")
@example("cityops/v1/agents/a/status", b"\xff\xfe")
@example("cityops/v1/agents/a/snapshots/e", b"no header line")
def test_decoding_anything_either_works_or_says_why(topic, payload):
    try:
        decode_message(topic, payload)
    except ProtocolError as exc:
        refused_properly(exc)
        assert exc.topic in (topic, repr(topic))  # a topic with NUL is kept as its repr


@given(events(agent_id="agent-1"), st.integers(1, 4))
def test_oversized_messages_are_refused_as_too_large(event, factor):
    big = event.model_copy(update={"attributes": {f"k{i}": "x" * 1000 for i in range(9 * factor)}})
    one = big.model_dump_json(by_alias=True, exclude_none=True).encode()
    assert len(one) > limits.MAX_EVENT_BYTES
    for payload in (one, b"[" + b",".join([one] * (40 * factor)) + b"]"):
        try:
            decode_events(payload, agent_id="agent-1")
        except ProtocolError as exc:
            assert exc.reason == Refusal.TOO_LARGE, exc
        else:
            raise AssertionError(f"a {len(payload)}-byte events message was accepted")
    try:
        encode_events([big])
    except ProtocolError as exc:
        assert exc.reason == Refusal.TOO_LARGE
    else:
        raise AssertionError("the encoder produced an oversized event")


@given(st.lists(events(), min_size=2, max_size=3), ids)
def test_an_event_on_another_agents_topic_is_refused(batch, topic_agent):
    assume(any(e.agent_id != topic_agent for e in batch))
    try:
        payload = encode_events(batch)
    except ProtocolError:
        return
    try:
        decoded = decode_message(agent_topic(topic_agent, Channel.EVENTS), payload)
    except ProtocolError as exc:
        assert exc.reason == Refusal.TOPIC_MISMATCH
        assert all(e.agent_id != topic_agent for e in batch)  # refused whole: none was good
        return
    # A batch is decoded event by event: the spoofed events are refused one by one, the
    # agent's own go on.
    assert all(e.agent_id == topic_agent for e in decoded.message), "a spoofed agent id was accepted"
    spoofed = [i for i, e in enumerate(batch) if e.agent_id != topic_agent]
    assert [r.index for r in decoded.refused] == spoofed
    assert {r.error.reason for r in decoded.refused} == {Refusal.TOPIC_MISMATCH}
