from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from protocol import codec, limits
from protocol.errors import ProtocolError, Refusal
from protocol.messages import (
    Ack,
    DesiredConfig,
    Event,
    Evidence,
    Location,
    Reading,
    SnapshotHeader,
    SnapshotRef,
    Status,
    Telemetry,
)
from protocol.topics import Channel, agent_topic

NOW = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)


def make_event(**over) -> Event:
    fields = dict(
        event_id="e0001",
        agent_id="agent-1",
        seq=1,
        kind="new",
        category="elderly_care",
        subcategory="elderly_care.water_no_use",
        source="meter-7",
        observed_at=NOW,
        location=Location(lat=31.23, lon=121.47, grid_id="g-01", place="Lane 3, No. 12"),
        confidence=1.0,
        evidence=Evidence(reading=Reading(name="volume", value=1234.5, unit="L")),
        attributes={"hours_without_use": 8.5, "tier": "grid_worker"},
    )
    fields.update(over)
    return Event(**fields)


def test_event_round_trip_single_and_batch():
    e1 = make_event()
    e2 = make_event(event_id="e0002", seq=2, kind="update")
    single = codec.encode_events([e1])
    assert single.startswith(b"{")
    assert codec.decode_events(single, agent_id="agent-1") == [e1]
    batch = codec.encode_events([e1, e2])
    assert batch.startswith(b"[")
    assert codec.decode_events(batch, agent_id="agent-1") == [e1, e2]


def test_all_message_kinds_round_trip_through_decode_message():
    jpeg = b"\xff\xd8" + b"x" * 100 + b"\xff\xd9"
    sha = hashlib.sha256(jpeg).hexdigest()
    cases = {
        Channel.STATUS: Status(agent_id="a1", state="online", boot_id="b1", at=NOW, version="0.1",
                               config_version=3, capabilities=["modbus"]),
        Channel.TELEMETRY: Telemetry(agent_id="a1", boot_id="b1", at=NOW, uptime_s=5,
                                     outbox={"depth": 3}, devices={"m1": "up"}),
        Channel.ACKS: Ack(agent_id="a1", upto=10, ranges=[(12, 14)], at=NOW),
        Channel.CONFIG: DesiredConfig(agent_id="a1", version=2, config={"cameras": []}, issued_at=NOW),
    }
    for channel, msg in cases.items():
        decoded = codec.decode_message(agent_topic("a1", channel), codec.encode(msg))
        assert decoded.topic.channel == channel
        assert decoded.message == msg
    header = SnapshotHeader(agent_id="a1", event_id="e1", seq=4, sha256=sha, width=64, height=48)
    decoded = codec.decode_message(
        agent_topic("a1", Channel.SNAPSHOTS, "e1"), codec.encode_snapshot(header, jpeg)
    )
    assert decoded.message == (header, jpeg)


def test_snapshot_ref_in_event_round_trips():
    ref = SnapshotRef(sha256="a" * 64, bytes=1000, width=320, height=240)
    e = make_event(category="flood", subcategory="flood.road_waterlogging",
                   evidence=Evidence(bbox=(0.1, 0.2, 0.5, 0.6), snapshot=ref), confidence=0.8)
    assert codec.decode_events(codec.encode_events([e]))[0].evidence.snapshot == ref


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Refusal.MALFORMED),
        (b"not json", Refusal.MALFORMED),
        (b"{not json", Refusal.MALFORMED),
        (b"42", Refusal.MALFORMED),
        (b"[]", Refusal.INVALID),
        (b"{}", Refusal.UNKNOWN_SCHEMA),
        (b'{"schema": "cityops.event/2"}', Refusal.UNKNOWN_SCHEMA),
        (b'{"schema": "cityops.status/1"}', Refusal.UNKNOWN_SCHEMA),
    ],
)
def test_bad_event_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(payload, agent_id="agent-1")
    assert info.value.reason == reason
    assert info.value.detail


def test_invalid_fields_name_the_field():
    data = json.loads(codec.encode_events([make_event()]))
    data["confidence"] = 1.5
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(json.dumps(data).encode(), agent_id="agent-1")
    assert info.value.reason == Refusal.INVALID
    assert "confidence" in info.value.detail


def test_event_for_another_agent_is_a_topic_mismatch():
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(codec.encode_events([make_event(agent_id="agent-2")]), agent_id="agent-1")
    assert info.value.reason == Refusal.TOPIC_MISMATCH


def test_unknown_subcategory_is_refused():
    data = json.loads(codec.encode_events([make_event()]))
    data["subcategory"] = "elderly_care.teleportation"
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(json.dumps(data).encode())
    assert info.value.reason == Refusal.UNKNOWN_CATEGORY


def test_subcategory_must_belong_to_category():
    data = json.loads(codec.encode_events([make_event()]))
    data["category"] = "flood"
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(json.dumps(data).encode())
    assert info.value.reason == Refusal.INVALID


def test_naive_timestamps_are_refused():
    data = json.loads(codec.encode_events([make_event()]))
    data["observed_at"] = "2026-07-01T08:30:00"
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(json.dumps(data).encode())
    assert info.value.reason == Refusal.INVALID


def test_unknown_fields_are_tolerated_within_the_major_version():
    data = json.loads(codec.encode_events([make_event()]))
    data["added_in_1_1"] = {"anything": True}
    assert codec.decode_events(json.dumps(data).encode())[0].event_id == "e0001"


def test_size_limits_are_enforced_on_both_sides():
    big = make_event(attributes={f"k{i}": "积水" * 100 for i in range(32)},
                     location=Location(lat=1, lon=1, place="p" * 200))
    with pytest.raises(ProtocolError) as info:
        codec.encode_events([big])
    assert info.value.reason == Refusal.TOO_LARGE
    oversized = b'{"schema":"cityops.event/1","pad":"' + b"x" * limits.MAX_EVENT_BYTES + b'"}'
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(oversized)
    assert info.value.reason == Refusal.TOO_LARGE
    many = [make_event(seq=i + 1, event_id=f"e{i}") for i in range(limits.MAX_EVENTS_PER_MESSAGE + 1)]
    with pytest.raises(ProtocolError) as info:
        codec.encode_events(many)
    assert info.value.reason == Refusal.TOO_LARGE


def test_batch_of_max_events_fits_the_message_limit():
    events = [make_event(seq=i + 1, event_id=f"e{i:05d}") for i in range(limits.MAX_EVENTS_PER_MESSAGE)]
    payload = codec.encode_events(events)
    assert len(payload) <= limits.MAX_EVENTS_MESSAGE_BYTES
    assert len(codec.decode_events(payload)) == limits.MAX_EVENTS_PER_MESSAGE


def test_broker_limit_admits_the_largest_legal_message():
    assert limits.BROKER_MESSAGE_SIZE_LIMIT >= limits.MAX_SNAPSHOT_BYTES + limits.MAX_SNAPSHOT_HEADER_BYTES
    assert limits.BROKER_MESSAGE_SIZE_LIMIT >= limits.MAX_EVENTS_MESSAGE_BYTES


def test_snapshot_checks_hash_magic_and_topic():
    jpeg = b"\xff\xd8" + b"y" * 50
    header = SnapshotHeader(agent_id="a1", event_id="e1", seq=1,
                            sha256=hashlib.sha256(jpeg).hexdigest(), width=10, height=10)
    payload = codec.encode_snapshot(header, jpeg)
    with pytest.raises(ProtocolError) as info:
        codec.decode_snapshot(payload[:-1] + b"z")
    assert info.value.reason == Refusal.INVALID
    with pytest.raises(ProtocolError) as info:
        codec.decode_snapshot(payload, event_id="other")
    assert info.value.reason == Refusal.TOPIC_MISMATCH
    with pytest.raises(ProtocolError) as info:
        codec.decode_snapshot(b"no header line at all")
    assert info.value.reason == Refusal.MALFORMED
    png = b"\x89PNG" + b"q" * 20
    h2 = header.model_copy(update={"sha256": hashlib.sha256(png).hexdigest()})
    with pytest.raises(ProtocolError) as info:
        codec.decode_snapshot(codec.encode(h2) + b"\n" + png)
    assert "JPEG" in info.value.detail


def test_decode_message_sets_topic_on_errors():
    with pytest.raises(ProtocolError) as info:
        codec.decode_message("cityops/v1/agents/a1/events", b"nope")
    assert info.value.topic == "cityops/v1/agents/a1/events"
    with pytest.raises(ProtocolError) as info:
        codec.decode_message("cityops/v1/agents/a1/secrets", b"{}")
    assert info.value.reason == Refusal.BAD_TOPIC


def test_ack_covers_upto_and_ranges():
    ack = Ack(agent_id="a1", upto=5, ranges=[(8, 9)], at=NOW)
    assert [s for s in range(1, 12) if ack.covers(s)] == [1, 2, 3, 4, 5, 8, 9]
    with pytest.raises(ValueError):
        Ack(agent_id="a1", ranges=[(5, 3)], at=NOW)
