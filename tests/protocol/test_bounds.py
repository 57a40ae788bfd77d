"""Every number a protocol message carries is bounded (protocol/limits.py): a seq of 2**63,
10**400 or 1e309, NaN or Infinity, a time SQLite-era arithmetic cannot hold — each is
refused at validation with the field named, never handed on to the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from protocol import codec, limits
from protocol.errors import ProtocolError, Refusal
from protocol.messages import Ack, Event, Location, OutboxTelemetry, Rejection, Telemetry

AGENT = "agent-1"


def event_json(**over) -> dict:
    e = Event(event_id="e1", agent_id=AGENT, seq=1, kind="new", category="flood",
              subcategory="flood.road_waterlogging", source="cam-1",
              observed_at=datetime(2026, 7, 1, 8, tzinfo=UTC), location=Location(lat=31.2, lon=121.4))
    data = json.loads(codec.encode(e))
    data.update(over)
    return data


def with_raw(field: str, raw: str) -> bytes:
    """An event whose ``field`` holds ``raw`` JSON text verbatim (numbers json.dumps cannot write)."""
    data = event_json(**{field: "@@"})
    return json.dumps(data).replace('"@@"', raw).encode()


def refusal(payload: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode_events(payload, agent_id=AGENT)
    return info.value


@pytest.mark.parametrize("raw", [str(2**63), str(2**53), "1" + "0" * 400, "-1", "0", "true",
                                 '"7"', "7.0", "1e309", "NaN", "Infinity"])
def test_a_seq_outside_1_to_2_53_or_not_an_integer_is_invalid(raw):
    err = refusal(with_raw("seq", raw))
    assert err.reason in (Refusal.INVALID, Refusal.MALFORMED), err
    assert err.reason is Refusal.MALFORMED or err.field == "seq"


def test_the_largest_seq_is_taken():
    (e,) = codec.decode_events(with_raw("seq", str(limits.MAX_SEQ)), agent_id=AGENT)
    assert e.seq == limits.MAX_SEQ < limits.MAX_STORE_INT


def test_a_number_of_100k_digits_is_refused_by_size_and_of_5k_as_malformed():
    assert refusal(with_raw("seq", "9" * 100_000)).reason is Refusal.TOO_LARGE
    assert refusal(with_raw("seq", "9" * 5_000)).reason is Refusal.MALFORMED


@pytest.mark.parametrize(("field", "raw"), [("confidence", "NaN"), ("confidence", "Infinity"),
                                            ("confidence", "-Infinity")])
def test_nan_and_infinity_are_refused(field, raw):
    assert refusal(with_raw(field, raw)).reason is Refusal.INVALID


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e309", str(2**63), "-" + str(2**63 + 1)])
def test_attribute_numbers_must_fit_the_store_and_be_finite(value):
    data = event_json(attributes={"x": "@@"})
    err = refusal(json.dumps(data).replace('"@@"', value).encode())
    assert err.reason is Refusal.INVALID and "attributes" in str(err)


@pytest.mark.parametrize("when", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+14:00",
                                  "1969-12-31T23:59:59Z", "9000-01-01T00:00:00Z", "2026-13-45T00:00:00Z",
                                  "2026-07-01T08:00:00"])
def test_times_outside_1970_to_9000_utc_or_naive_are_refused(when):
    err = refusal(json.dumps(event_json(observed_at=when)).encode())
    assert err.reason is Refusal.INVALID and err.field == "observed_at", err


def test_a_clock_reset_to_the_epoch_is_still_taken():
    (e,) = codec.decode_events(json.dumps(event_json(observed_at="1970-01-01T00:00:00Z")).encode())
    assert e.observed_at.year == 1970


def test_the_other_messages_are_bounded_too():
    at = datetime(2026, 7, 1, tzinfo=UTC)
    for bad in (dict(upto=2**63), dict(ranges=[(1, 2**63)]), dict(upto=True)):
        with pytest.raises(ValidationError):
            Ack(agent_id=AGENT, at=at, **bad)
    with pytest.raises(ValidationError):
        Rejection(seq=2**63, event_id="e", reason="r")
    with pytest.raises(ValidationError):
        OutboxTelemetry(depth=2**63)
    with pytest.raises(ValidationError):
        OutboxTelemetry(depth=1, dropped_by_kind={"new": 10**400})
    base = dict(agent_id=AGENT, boot_id="b", at=at, outbox={"depth": 0}, uptime_s=1)
    for bad in (dict(uptime_s=float("inf")), dict(readings={"m.r": float("nan")}),
                dict(config_version=2**63), dict(rss_mb=float("inf"))):
        with pytest.raises(ValidationError):
            Telemetry(**{**base, **bad})


def test_nesting_is_measured_cheaply_and_refused_with_a_reason():
    assert codec.nesting_exceeds(b"[" * 100_000 + b"]" * 100_000)
    assert codec.nesting_exceeds(b"[" * 100_000)  # unbalanced
    assert not codec.nesting_exceeds(codec.encode_events([Event.model_validate(event_json())]))
    assert not codec.nesting_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}')
    assert codec.loads_lenient(b"[" * 100_000 + b"]" * 100_000) is None  # RecursionError before
    err = refusal(b"[" * 100_000 + b"]" * 100_000)
    assert err.reason is Refusal.MALFORMED and "nested too deeply" in err.detail


def test_a_batch_refuses_its_bad_events_one_by_one_and_keeps_the_good_ones():
    good = event_json()
    batch = [good, {**good, "seq": 2, "agent_id": "agent-9"}, {**good, "seq": 3, "confidence": "x"},
             {**good, "seq": 4, "event_id": "e4"}, {**good, "seq": 2**70, "event_id": "e5"}, "nope"]
    events, refused = codec.decode_events_partly(json.dumps(batch).encode(), agent_id=AGENT)
    assert [e.seq for e in events] == [1, 4]
    assert [(r.index, r.error.reason, r.seq) for r in refused] == [
        (1, Refusal.TOPIC_MISMATCH, 2), (2, Refusal.INVALID, 3), (4, Refusal.INVALID, None),
        (5, Refusal.MALFORMED, None)]
    assert all(r.error.detail.startswith(f"event {r.index}: ") for r in refused)
    # All or nothing stays for decode_events, and a batch with no good event is refused whole.
    with pytest.raises(ProtocolError):
        codec.decode_events(json.dumps(batch).encode(), agent_id=AGENT)
    with pytest.raises(ProtocolError) as info:
        codec.decode_events_partly(json.dumps(batch[1:3]).encode(), agent_id=AGENT)
    assert "all 2 events of the batch were refused" in info.value.detail
