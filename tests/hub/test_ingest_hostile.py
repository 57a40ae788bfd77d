"""Hostile and broken input at the hub's ingest (issue 17, points 1, 2, 3, 5).

Every kind of bad message becomes a refusal with a reason and raises nothing; refused
seqs do not move an agent's sequence state; and through the real broker, a storm of
malformed messages mixed with valid traffic from three agents loses no valid event, and
the writer's counters account for every message the broker delivered."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import sqlite3

import pytest
from hubtest import TestAgent, await_for, make_setup, sensor_event

from hub.engine.core import CaseEngine
from hub.engine.intake import Ingestor
from hub.ingest.decode import EventsItem, RefusedItem, classify
from hub.ingest.process import decoded_chunks
from hub.store.files import SnapshotFiles
from hub.web.metrics import HttpMetrics, ingest_samples, render
from protocol.codec import encode, encode_events
from protocol.topics import Channel, agent_topic

AGENT = "agent-1"
TOPIC = agent_topic(AGENT, Channel.EVENTS)


def good(seq: int = 1000, **over) -> dict:
    data = json.loads(encode(sensor_event(agent=AGENT, seq=seq, event_id=f"h-{seq}")))
    data.update(over)
    return data


def dumps(data) -> bytes:
    return json.dumps(data).encode()


def raw_field(field: str, raw: str, seq: int = 1000) -> bytes:
    return dumps({**good(seq), field: "@@"}).replace(b'"@@"', raw.encode())


def hostile(rng: random.Random) -> dict[str, bytes]:
    """One message of every hostile kind the issue lists (on the agent's own events topic)."""
    base = dumps(good())
    cn = base.replace(b'"h-1000"', '"h-新桥"'.encode())  # GB18030 bytes are not UTF-8
    return {
        "random bytes": rng.randbytes(300),
        "empty": b"",
        "invalid utf-8": base.replace(b'"h-1000"', b'"h-\xff\xfe"'),
        "control chars": b"\x00\x01\x02{\x1b[31m" + base,
        "truncated JSON": base[: len(base) // 2],
        "wrong shape: array of numbers": b"[1, 2, 3]",
        "wrong shape: string": b'"an event"',
        "wrong shape: empty object": b"{}",
        "missing fields": dumps({k: v for k, v in good().items() if k not in ("kind", "location")}),
        "wrong types": dumps(good(kind=7, location="here", confidence="high")),
        "seq 2**63": raw_field("seq", str(2**63)),
        "seq 10**400": raw_field("seq", "1" + "0" * 400),
        "seq 1e309": raw_field("seq", "1e309"),
        "seq 100k digits": raw_field("seq", "7" * 100_000),
        "NaN": raw_field("confidence", "NaN"),
        "Infinity": raw_field("confidence", "Infinity"),
        "nesting 100k": b"[" * 100_000 + b"]" * 100_000,
        "nested object": b'{"seq": 1001, "event_id": "n", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "over the size limit": dumps(good(attributes={"pad": "x" * 200_000})),
        "schema v2": dumps(good(schema="cityops.event/2")),
        "schema missing": dumps({k: v for k, v in good().items() if k != "schema"}),
        "id with / + #": dumps(good(event_id="a/b+c#")),
        "id with NUL": dumps(good(event_id="a\x00b")),
        "id ..": dumps(good(event_id="..")),
        "id SQL": dumps(good(event_id="x'; DROP TABLE messages; --")),
        "id HTML": dumps(good(event_id="<script>alert(1)</script>")),
        "id 10 kB": dumps(good(event_id="a" * 10_000)),
        "spoofed agent_id": dumps(good(agent_id="agent-2")),
        "duplicate keys": dumps(good())[:-1] + b', "seq": -5}',
        "BOM": b"\xef\xbb\xbf" + base,
        "UTF-16": base.decode().encode("utf-16"),
        "UTF-32": base.decode().encode("utf-32"),
        "GB18030": cn.decode("utf-8").encode("gb18030"),
        "gzip": gzip.compress(base),
        "bad timestamp": dumps(good(observed_at="2026-02-30T25:61:00Z")),
        "timestamp year 9999 -05:00": dumps(good(observed_at="9999-12-31T23:00:00-05:00")),
        "timestamp naive": dumps(good(observed_at="2026-07-01T08:00:00")),
        "bool seq": raw_field("seq", "true"),
        "bad batch: all refused": dumps([good(1001, agent_id="agent-3"), {**good(1002), "seq": 0}]),
    }


def test_every_hostile_kind_is_refused_with_a_reason_and_nothing_raises():
    kinds = hostile(random.Random(3))
    for topic in (TOPIC, "cityops/v1/agents/\x00../+/events", "x" * 70_000):
        for kind, payload in kinds.items():
            item = classify(topic, payload)
            assert isinstance(item, RefusedItem), (kind, item)
            assert item.reason and item.detail, kind
            assert "\x00" not in item.topic + item.detail + item.payload_preview, kind
            assert len(item.payload_preview) <= 4096 and len(item.topic) <= 300, kind
    reasons = {kind: classify(TOPIC, p).reason for kind, p in kinds.items()}
    assert reasons["seq 2**63"] == reasons["seq 10**400"] == "invalid"
    assert reasons["nesting 100k"] == "malformed" and reasons["over the size limit"] == "too_large"
    assert reasons["schema v2"] == "unknown_schema" and reasons["spoofed agent_id"] == "topic_mismatch"
    assert reasons["id with NUL"] == reasons["timestamp year 9999 -05:00"] == "invalid"
    assert reasons["id 10 kB"] == "too_large"  # over the 8 kB of one event


def test_a_receiver_batch_of_hostile_messages_hands_over_every_one():
    """A RecursionError in one message threw away the receiver's whole batch ("receiver
    sink failed; N messages not handed over"): now each message is one item."""
    kinds = list(hostile(random.Random(4)).values())
    valid = [(TOPIC, encode_events([sensor_event(agent=AGENT, seq=s, event_id=f"ok-{s}")])) for s in (1, 2)]
    batch = [valid[0], *[(TOPIC, p) for p in kinds], valid[1]]
    items = [i for chunk in decoded_chunks(batch) for i in chunk]
    assert len(items) == len(batch)
    assert [r.seq for i in items if isinstance(i, EventsItem) for r in i.records] == [1, 2]


@pytest.fixture
def ingestor(tmp_path, clock):
    return Ingestor(CaseEngine(make_setup(tmp_path), clock), SnapshotFiles(tmp_path / "snaps"))


def apply(ingestor, repo, *payloads):
    with repo.transaction():
        result = ingestor.apply(repo, [classify(TOPIC, p) for p in payloads])
    ingestor.installed(result)
    return result


def test_refused_seqs_open_no_gap_and_far_ahead_ones_move_nothing(ingestor, repo):
    """Refused seqs used to enter the sequence state: a storm left 191 gap ranges and a
    million missing seqs, and every ack carried the ranges. Now only what is stored moves
    it; a refused seq right after the stored ones closes up, and the agent is told to drop
    each refused one through the ack's rejected list."""
    ok = [encode_events([sensor_event(agent=AGENT, seq=s, event_id=f"ok-{s}")]) for s in (1, 2)]
    far = [raw_field("confidence", "NaN", seq=s) for s in (10, 5000, 10**6, 2**40)]
    r = apply(ingestor, repo, ok[0], ok[1], *far)
    ack = r.acks[0]
    assert (ack.upto, ack.ranges) == (2, [])
    assert sorted(x.seq for x in ack.rejected) == [10, 5000, 10**6, 2**40]
    row = repo.get_agent(AGENT)
    assert (row.seq_upto, row.seq_highest, row.seq_gaps) == (2, 2, 0)
    # The very next seq refused: it cannot open a gap, so upto moves over it.
    r = apply(ingestor, repo, raw_field("confidence", "NaN", seq=3),
              encode_events([sensor_event(agent=AGENT, seq=4, event_id="ok-4")]))
    assert (r.acks[0].upto, r.acks[0].ranges) == (4, [])
    assert repo.get_agent(AGENT).seq_gaps == 0


def test_a_batch_with_bad_events_stores_the_good_ones_and_dead_letters_each_bad_one(ingestor, repo):
    events = [good(s) for s in range(1, 11)]
    events[3]["agent_id"] = "agent-2"  # spoofed
    events[6]["confidence"] = "x"  # wrong type
    r = apply(ingestor, repo, dumps(events))
    c = r.counts
    assert (c.event_messages, c.events_received, c.events_stored, c.events_refused) == (1, 10, 8, 2)
    assert sorted(x.seq for x in r.acks[0].rejected) == [4, 7]
    assert r.acks[0].upto == 10  # the refused seqs sit among stored ones: no gap
    assert sorted(d.reason for d in repo.list_dead_letters()) == ["invalid", "topic_mismatch"]


def test_the_metrics_show_the_accounting_and_the_writer():
    ingest = {"received": 9, "event_messages": 4, "refused": 3, "statuses": 1, "telemetry": 1,
              "events_stored": 5, "duplicates": 1, "events_refused": 2, "writer_restarts": 1}
    text = render(ingest_samples(ingest, {"writer": True}), HttpMetrics())
    assert "cityops_ingest_messages_received_total 9" in text
    assert 'cityops_ingest_messages_total{kind="refused"} 3' in text
    assert 'cityops_ingest_event_outcomes_total{outcome="refused"} 2' in text
    assert "cityops_writer_restarts_total 1" in text and "cityops_writer_up 1" in text


async def test_a_malformed_storm_loses_no_valid_event_and_every_message_is_accounted_for(hub):
    """Through the real broker: a hostile agent sends every hostile kind (several times
    over, a few hundred messages) mixed with its own valid events, a big batch with bad
    events in it, a redelivery and a conflicting resend; two other agents send valid events
    meanwhile. Nothing valid is lost and delivered = stored + duplicates + dead letters."""
    rng = random.Random(11)
    broker = hub.broker
    hostile_agent = await asyncio.to_thread(TestAgent, broker, AGENT, "agent-password-0123456")
    others = [await asyncio.to_thread(TestAgent, broker, a, f"{a}-password-0123456")
              for a in ("agent-2", "agent-3")]
    kinds = list(hostile(rng).values())
    sent = 0
    expected: dict[str, list[int]] = {AGENT: [], "agent-2": [], "agent-3": []}

    def storm() -> None:
        nonlocal sent
        bad = [kinds[i % len(kinds)] for i in range(6 * len(kinds))]
        rng.shuffle(bad)
        seq = 0
        for i, payload in enumerate(bad):
            hostile_agent.publish(Channel.EVENTS, payload)
            sent += 1
            if i % 12 == 0:  # the hostile agent's own valid events, interleaved
                seq += 1
                hostile_agent.send(sensor_event(agent=AGENT, seq=seq, event_id=f"a1-{seq}", source=f"m{seq}"))
                expected[AGENT].append(seq)
                sent += 1
            other = others[i % 2]
            n = len(expected[other.agent_id]) + 1
            other.send(sensor_event(agent=other.agent_id, seq=n, event_id=f"{other.agent_id}-{n}"))
            expected[other.agent_id].append(n)
            sent += 1
        # A big batch with bad events in it: the good ones are stored, each bad one refused.
        batch = [good(s, event_id=f"b-{s}", source=f"m{s}") for s in range(seq + 1, seq + 301)]
        for j in range(0, 300, 30):
            batch[j]["agent_id"] = "agent-3" if j % 60 else batch[j]["agent_id"]
            batch[j]["confidence"] = "x" if not j % 60 else batch[j]["confidence"]
        hostile_agent.publish(Channel.EVENTS, dumps(batch))
        sent += 1
        expected[AGENT] += [s for j, s in enumerate(range(seq + 1, seq + 301)) if j % 30]
        # A redelivery (a duplicate) and one seq with other content (a conflict).
        hostile_agent.send(sensor_event(agent=AGENT, seq=1, event_id="a1-1", source="m1"))
        hostile_agent.send(sensor_event(agent=AGENT, seq=2, event_id="a1-2", source="other"))
        sent += 2

    try:
        await asyncio.to_thread(storm)
        writer = hub.writer
        await await_for(lambda: writer.stats.received >= sent and writer.backlog() == 0
                        and writer.stats.messages == writer.stats.received,
                        timeout=60, what="every delivered message applied")
        for a in [hostile_agent, *others]:
            last = max(expected[a.agent_id])
            await await_for(lambda a=a, last=last: a.acked(last), timeout=20, what=f"{a.agent_id} acked")
    finally:
        for a in [hostile_agent, *others]:
            a.close()
    s = hub.writer.stats
    with sqlite3.connect(hub.config.database) as db:
        for agent, seqs in expected.items():
            stored = [r[0] for r in db.execute(
                "SELECT seq FROM messages WHERE agent_id = ? ORDER BY seq", (agent,))]
            assert stored == sorted(seqs), agent  # no valid event lost, nothing else stored
        dead_letters = db.execute("SELECT coalesce(sum(count), 0) FROM dead_letters").fetchone()[0]
        gaps = db.execute("SELECT seq_gaps, seq_upto FROM agents WHERE agent_id = ?", (AGENT,)).fetchone()
    # The accounting: every message the broker delivered is one of these, every event too.
    assert s.received == s.messages == sent
    assert s.messages == s.event_messages + s.refused + s.statuses + s.telemetry + s.snapshots
    assert s.events_received == (s.events_stored + s.duplicates + s.conflicts + s.events_refused
                                 + s.seq_out_of_window)
    assert dead_letters == s.refused + s.conflicts + s.events_refused + s.seq_out_of_window
    assert (s.duplicates, s.conflicts, s.events_refused) == (1, 1, 10)
    assert s.refused == 6 * len(kinds)
    assert s.events_stored == sum(len(v) for v in expected.values())
    # Refused seqs opened no gap: the hostile agent's state is its stored seqs only.
    assert gaps == (0, max(expected[AGENT]))
    health = hub.health()
    assert health["ok"] and health["writer_restarts"] == 0 and s.dead_letter_failures == 0
