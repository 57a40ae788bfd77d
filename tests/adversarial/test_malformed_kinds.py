"""The malformed-message generator makes every kind issue 17 names, the same way for
the same seed; and the hub's classifier takes each of them without raising (a message
the hub cannot take becomes a refusal with a reason, never an exception that costs its
batch: issue 17, point 2). Fast: no broker, no hub."""

from __future__ import annotations

import gzip
import json

import pytest
from malformed import KINDS, MEGABYTE, NEST, kinds_made, storm

from hub.ingest.decode import EventsItem, RefusedItem, classify
from protocol.errors import Refusal
from protocol.topics import Channel, agent_topic

AGENT = "hostile-1"
TOPIC = agent_topic(AGENT, Channel.EVENTS)

# Kinds the protocol refuses (at least in part: a batch's good events may be kept) whatever
# the seed picked inside them. The others may hold
# a message that is valid after all (a UTF-8 BOM, a repeated key whose last value is
# fine, a control character in free text, a known seq with other content: a conflict
# only the store can see) and are accounted for by the storm test either way.
ALWAYS_REFUSED = {"random_bytes", "empty", "invalid_utf8", "truncated_json", "wrong_shape",
                  "missing_field", "wrong_type", "nan_infinity", "deep_nesting", "megabyte",
                  "near_limit", "wrong_schema", "bad_id", "spoofed_agent", "big_batch"}


@pytest.fixture(scope="module")
def plan():
    return storm(17, AGENT, malformed=600, spoof_as="normal-1")


def test_every_kind_is_made_and_the_seed_decides(plan):
    assert kinds_made(plan.probes) == set(KINDS)
    assert len(plan.malformed) == 600
    again = storm(17, AGENT, malformed=600, spoof_as="normal-1")
    assert [p.payload for p in again.probes] == [p.payload for p in plan.probes]
    other = storm(18, AGENT, malformed=600, spoof_as="normal-1")
    assert [p.payload for p in other.probes] != [p.payload for p in plan.probes]
    assert plan.valid_seqs == list(range(1, len(plan.valid_seqs) + 1))
    assert any(p.valid_events == 500 for p in plan.probes), "no full valid batch"


def test_the_extremes_issue_17_names_are_there():
    plan = storm(17, AGENT, malformed=2000, spoof_as="normal-1")
    blobs = [p.payload for p in plan.malformed]
    assert any(b"1" + b"0" * 400 in b for b in blobs), "10**400"
    assert any(b":1e309" in b for b in blobs), "1e309"
    assert any(b"9" * 100_000 in b for b in blobs), "a 100,000-digit number"
    assert any(b.startswith(b"[" * NEST) for b in blobs), "nesting to 100,000 levels"
    assert any(len(b) >= MEGABYTE for b in blobs), "1 MB"
    assert any(b.startswith(b"\xef\xbb\xbf") for b in blobs), "UTF-8 BOM"
    assert any(b.startswith(gzip.compress(b"", mtime=0)[:3]) for b in blobs), "gzip"
    assert any(b[:2] in (b"\xff\xfe", b"\xfe\xff") for b in blobs), "UTF-16/32"
    ids = [json.loads(b).get("event_id") for b in blobs if b.startswith(b"{") and _json(b)]
    for needle in ("/", "+", "#", "\x00", "..", "DROP TABLE", "<script>"):
        assert any(isinstance(i, str) and needle in i for i in ids) or _in_any(blobs, needle), needle
    assert _in_any(blobs, "z" * 10_240), "a 10 kB id"


def _json(b: bytes) -> bool:
    try:
        return isinstance(json.loads(b), dict)
    except ValueError:
        return False


def _in_any(blobs: list[bytes], needle: str) -> bool:
    n = json.dumps(needle)[1:-1].encode()
    return any(n in b or needle.encode() in b for b in blobs)


def test_the_classifier_refuses_each_malformed_message_with_a_reason_and_never_raises(plan):
    reasons = {r.value for r in Refusal}
    for probe in plan.probes:
        item = classify(TOPIC, probe.payload)  # must not raise, whatever the payload
        if not probe.malformed:
            assert isinstance(item, EventsItem), (probe.kind, item)
            assert [r.seq for r in item.records] == list(probe.seqs)
            continue
        # Refused as a whole, or (a batch) its bad events refused one by one.
        refusals = [item] if isinstance(item, RefusedItem) else list(getattr(item, "refused", ()))
        if probe.kind in ALWAYS_REFUSED:
            assert refusals, (probe.kind, probe.payload[:200], item)
        for r in refusals:
            assert r.reason in reasons, (probe.kind, r.reason)
            assert r.detail.strip(), probe.kind
            assert r.agent_id == AGENT
