"""The durable outbox on real SQLite: seq, snapshots, the delivery state machine, hub
acks, the cap's drop policy, rule state in the same transaction, restarts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from edge_agent.errors import OutboxError, OutboxFullError
from edge_agent.outbox import Candidate, Outbox, plan_drops
from protocol.clock import FakeClock
from protocol.codec import decode_events, decode_snapshot
from protocol.messages import Ack, Rejection


@pytest.fixture
def clock():
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def outbox(tmp_path, clock):
    box = Outbox(tmp_path / "outbox.sqlite", "agent-1", clock=clock)
    yield box
    box.close()


def ack(upto=0, ranges=(), rejected=()):
    return Ack(agent_id="agent-1", upto=upto, ranges=list(ranges), rejected=list(rejected),
               at=datetime(2026, 1, 1, tzinfo=UTC))


def test_emit_assigns_seq_and_encodes_a_protocol_event(outbox, draft):
    assert outbox.emit(draft("new", "ev-1")) == 1
    assert outbox.emit(draft("update", "ev-1")) == 2
    rows = outbox.take_backlog(10, 1 << 20)
    assert [r.seq for r in rows] == [1, 2]
    (event,) = decode_events(rows[0].payload, agent_id="agent-1")
    assert (event.event_id, event.seq, event.kind, event.agent_id) == ("ev-1", 1, "new", "agent-1")
    assert event.evidence.reading.value == 12.5


def test_seq_survives_restart_and_deletion(tmp_path, draft, clock):
    box = Outbox(tmp_path / "o.sqlite", "agent-1", clock=clock)
    for i in range(3):
        box.emit(draft("new", f"ev-{i}"))
    box.apply_ack(ack(upto=3))
    assert box.depth == 0
    box.close()
    box = Outbox(tmp_path / "o.sqlite", "agent-1", clock=clock)
    assert box.emit(draft("new", "ev-9")) == 4
    box.close()


def test_snapshot_travels_as_its_own_row_before_its_event(outbox, draft, jpeg):
    image = jpeg(16, 12)
    seq = outbox.emit(draft("new", "ev-s", jpeg=image))
    assert seq == 2
    snap, event_row = outbox.take_backlog(10, 1 << 20)
    assert (snap.seq, snap.kind, snap.channel) == (1, "snapshot", "snapshots")
    header, body = decode_snapshot(snap.payload, agent_id="agent-1", event_id="ev-s")
    assert body == image and header.seq == 1 and (header.width, header.height) == (16, 12)
    (event,) = decode_events(event_row.payload)
    assert event.evidence.snapshot.sha256 == header.sha256
    assert event.evidence.snapshot.bytes == len(image)


def test_not_a_jpeg_and_oversized_events_are_refused_not_stored(outbox, draft):
    with pytest.raises(OutboxError, match="not a JPEG"):
        outbox.emit(draft("new", "ev-x", jpeg=b"GIF89a..."))
    with pytest.raises(OutboxError, match="not valid protocol v1"):
        outbox.emit(draft("new", "ev-y", note="x" * 300))  # attribute over 200 chars
    assert outbox.depth == 0 and outbox.next_seq == 1


def test_delivery_state_machine(outbox, draft, clock):
    for i in range(3):
        outbox.emit(draft("new", f"ev-{i}"))
    rows = outbox.take_backlog(2, 1 << 20)
    assert [r.seq for r in rows] == [1, 2]
    assert [r.seq for r in outbox.take_backlog(10, 1 << 20)] == [3]  # in flight: not again
    assert outbox.take_backlog(10, 1 << 20) == []
    outbox.mark_sent([1, 2])
    outbox.release([3])  # publish failed
    states = {r["seq"]: r["state"] for r in outbox.rows()}
    assert states == {1: "sent", 2: "sent", 3: "pending"}
    assert [r.seq for r in outbox.take_backlog(10, 1 << 20)] == [3]
    outbox.mark_sent([3])
    clock.advance(30)
    assert outbox.requeue_stale(60) == 0
    clock.advance(31)
    outbox.apply_ack(ack(upto=1))
    assert outbox.requeue_stale(60) == 2  # 2 and 3 got no hub ack in time
    assert [r.seq for r in outbox.take_backlog(10, 1 << 20)] == [2, 3]


def test_ack_ranges_and_rejections_delete_and_count(outbox, draft, caplog):
    for i in range(6):
        outbox.emit(draft("new", f"ev-{i}"))
    result = outbox.apply_ack(ack(upto=1, ranges=[(3, 4)],
                                  rejected=[Rejection(seq=6, event_id="ev-5", reason="unknown_category")]))
    assert result.deleted == 4 and result.rejected == 1
    assert [r["seq"] for r in outbox.rows()] == [2, 5]
    assert outbox.counters()["rejected"] == 1
    assert "hub rejected seq 6 (event ev-5): unknown_category" in caplog.text


def test_live_rows_go_first_and_never_twice(outbox, draft):
    outbox.emit(draft("new", "old-1"))
    outbox.emit(draft("new", "old-2"))
    outbox.start_delivery()
    outbox.emit(draft("new", "live-1"))
    assert [r.event_id for r in outbox.take_live()] == ["live-1"]
    assert [r.event_id for r in outbox.take_backlog(10, 1 << 20)] == ["old-1", "old-2"]
    outbox.emit(draft("new", "live-2"))
    assert [r.event_id for r in outbox.take_backlog(10, 1 << 20)] == ["live-2"]
    assert outbox.take_live() == []  # already handed out by the backlog


def test_backlog_respects_byte_budget(outbox, draft):
    for i in range(5):
        outbox.emit(draft("new", f"ev-{i}"))
    size = len(outbox.take_backlog(1, 1 << 20)[0].payload)
    rows = outbox.take_backlog(10, size * 2 + 1)
    assert [r.seq for r in rows] == [2, 3]


def test_cap_drops_oldest_updates_first_and_counts(tmp_path, draft, clock, jpeg):
    box = Outbox(tmp_path / "o.sqlite", "agent-1", max_events=10, clock=clock)
    box.emit(draft("new", "a"))
    box.emit(draft("update", "a", jpeg=jpeg()))  # 2 rows: snapshot + update
    for i in range(3):
        box.emit(draft("update", "a", n=i))
    box.emit(draft("new", "b"))
    box.emit(draft("end", "a"))
    assert box.depth == 8
    box.emit(draft("new", "c"))
    box.emit(draft("new", "d"))
    assert box.depth == 10
    box.emit(draft("new", "e"))  # drops the oldest update and its snapshot
    kinds = [(r["event_id"], r["kind"]) for r in box.rows()]
    assert ("a", "snapshot") not in kinds
    assert kinds.count(("a", "update")) == 3
    assert box.counters() == {"dropped.update": 1, "dropped.snapshot": 1}
    tele = box.telemetry()
    assert tele.dropped == 2 and tele.dropped_by_kind == {"dropped_update": 1, "dropped_snapshot": 1}
    box.close()


def test_full_of_new_and_end_refuses_with_an_error_and_counts(tmp_path, draft, clock):
    box = Outbox(tmp_path / "o.sqlite", "agent-1", max_events=10, clock=clock)
    for i in range(5):
        box.emit(draft("new", f"ev-{i}"))
        box.emit(draft("end", f"ev-{i}"))
    with pytest.raises(OutboxFullError, match="holds only new/end events: refusing this new"):
        box.emit(draft("new", "ev-x"))
    with pytest.raises(OutboxFullError, match="refusing this update"):
        box.emit(draft("update", "ev-1"))
    assert box.depth == 10
    assert box.counters() == {"refused.new": 1, "refused.update": 1}
    assert box.telemetry().dropped_by_kind == {"refused_new": 1, "refused_update": 1}
    assert box.telemetry().dropped == 0  # nothing stored was dropped
    box.close()


def test_rule_state_commits_with_its_event_or_not_at_all(outbox, draft):
    outbox.commit([draft("new", "ev-1")], {"dev-1/water_no_use": {"open": "ev-1"}})
    assert outbox.load_states("dev-1/") == {"dev-1/water_no_use": {"open": "ev-1"}}
    with pytest.raises(OutboxError):
        outbox.commit([draft("new", "ev-2", note="x" * 300)], {"dev-1/water_no_use": {"open": "ev-2"}})
    assert outbox.load_states("dev-1/") == {"dev-1/water_no_use": {"open": "ev-1"}}
    outbox.save_states({"dev-1/water_no_use": None, "dev-2/level": {"x": 1}})
    assert outbox.load_states("") == {"dev-2/level": {"x": 1}}


def test_restart_makes_sent_rows_pending_again(tmp_path, draft, clock):
    box = Outbox(tmp_path / "o.sqlite", "agent-1", clock=clock)
    box.emit(draft("new", "a"))
    box.take_backlog(10, 1 << 20)
    box.mark_sent([1])
    box.close()
    box = Outbox(tmp_path / "o.sqlite", "agent-1", clock=clock)
    assert [r["state"] for r in box.rows()] == ["pending"]
    assert [r.seq for r in box.take_backlog(10, 1 << 20)] == [1]
    box.close()


def test_a_full_disk_is_a_clear_error_and_loses_nothing_already_stored(tmp_path, draft, clock):
    box = Outbox(tmp_path / "o.sqlite", "agent-1", clock=clock)
    box.emit(draft("new", "kept"))
    page_count = box._conn.execute("PRAGMA page_count").fetchone()[0]
    box._conn.execute(f"PRAGMA max_page_count = {page_count}")  # the disk is now "full"
    with pytest.raises(OutboxError, match="disk is full"):
        for i in range(200):
            box.emit(draft("new", f"ev-{i}", note="y" * 150))
    stored = box.depth
    box.close()
    conn = sqlite3.connect(tmp_path / "o.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == stored >= 1
    conn.close()


def test_oldest_age_in_telemetry(outbox, draft, clock):
    outbox.emit(draft("new", "a"))
    clock.advance(42)
    outbox.emit(draft("new", "b"))
    assert outbox.telemetry().oldest_age_s == 42
    assert outbox.telemetry().depth == 2


def test_plan_drops_is_minimal_and_refuses_when_it_cannot_make_room():
    cands = [Candidate(1, 100), Candidate(2, 100, snapshot_seq=3, snapshot_size=1000), Candidate(4, 100)]
    plan = plan_drops(count=10, size=0, incoming_rows=1, incoming_bytes=10, max_rows=10,
                      max_bytes=10**6, candidates=cands)
    assert plan.drop == (1,) and not plan.refuse
    plan = plan_drops(count=5, size=1300, incoming_rows=1, incoming_bytes=500, max_rows=10,
                      max_bytes=1500, candidates=cands)
    assert plan.drop == (1, 2, 3) and plan.freed_bytes == 1200
    plan = plan_drops(count=10, size=0, incoming_rows=5, incoming_bytes=10, max_rows=10,
                      max_bytes=10**6, candidates=cands)
    assert plan.refuse and plan.drop == ()
