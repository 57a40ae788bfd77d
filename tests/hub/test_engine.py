"""The case engine over the in-memory store, on a fake clock: ingest, screening, merging,
dispatch, SLA, closure, audit. No broker: messages go through the same classify → apply
path the writer uses."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from hubtest import G01, G05, OUTSIDE, T0, event, jpeg, make_setup, sensor_event

from hub.cases.closure import Outcome, Verdict
from hub.engine.core import CaseEngine
from hub.engine.intake import Ingestor
from hub.engine.tick import tick
from hub.errors import CaseError, IllegalTransition
from hub.ingest.decode import classify
from hub.store.files import SnapshotFiles
from hub.store.repo import GroupKeyTaken
from protocol.codec import encode, encode_events
from protocol.messages import Status, Telemetry
from protocol.topics import Channel, agent_topic


class World:
    def __init__(self, tmp_path, clock, repo, **config):
        self.setup = make_setup(tmp_path, **config)
        self.clock = clock
        self.repo = repo
        self.files = SnapshotFiles(tmp_path / "snaps")
        self.engine = CaseEngine(self.setup, clock)
        self.ingestor = Ingestor(self.engine, self.files)

    def ingest_raw(self, *pairs):
        with self.repo.transaction():
            result = self.ingestor.apply(self.repo, [classify(t, p) for t, p in pairs])
        self.ingestor.installed(result)
        return result

    def ingest(self, *events, batch=False):
        if batch:
            return self.ingest_raw((agent_topic(events[0].agent_id, Channel.EVENTS), encode_events(list(events))))
        return self.ingest_raw(*[(agent_topic(e.agent_id, Channel.EVENTS), encode_events([e])) for e in events])

    def do(self, fn, *args, **kwargs):
        with self.repo.transaction():
            return fn(self.repo, *args, **kwargs)

    def tick(self):
        with self.repo.transaction():
            return tick(self.engine, self.repo)

    def case(self, case_id=1):
        return self.repo.get_case(case_id)

    def actions(self, case_id=1):
        return [a.action for a in self.repo.audit_for_case(case_id)]


@pytest.fixture
def world(tmp_path, clock, repo):
    return World(tmp_path, clock, repo)


SNAP = jpeg(1)


def test_camera_event_becomes_an_accepted_dispatched_case(world):
    r = world.ingest(event(where=G05, snapshot=SNAP))
    assert r.counts.events_stored == 1 and r.counts.cases_opened == 1
    c = world.case()
    assert (c.state, c.department, c.handler, c.grid_id, c.town) == (
        "dispatched", "drainage", "drainage-day", "g-05", "Jiuting")
    assert c.deadline_at == T0 + timedelta(minutes=60)  # the Jiuting route's override
    assert world.actions() == ["opened", "accepted", "dispatched"]
    assert world.repo.notifications_for_case(1)[0]["target"].startswith("drainage/")
    assert [a.upto for a in r.acks] == [1]


def test_the_duty_roster_uses_local_time(world):
    world.ingest(event(where=G05, snapshot=SNAP))
    # T0 is 08:00 UTC = 16:00 in Shanghai: the day crew.
    assert world.case().handler == "drainage-day"


def test_same_message_twice_is_stored_once_and_acked_twice(world):
    e = event(snapshot=SNAP)
    first = world.ingest(e)
    again = world.ingest(e, e)
    assert again.counts.duplicates == 2 and again.counts.events_stored == 0
    assert world.repo.counts()["messages_stored"] == 1 and world.repo.counts()["cases_total"] == 1
    assert first.acks[0].upto == again.acks[0].upto == 1


def test_same_message_in_a_batch_with_other_bytes_is_still_a_duplicate(world):
    e = event(snapshot=SNAP)
    world.ingest(e)
    r = world.ingest(e, event(seq=2, event_id="ev-1", kind="update", snapshot=SNAP), batch=True)
    assert (r.counts.duplicates, r.counts.events_stored, r.counts.conflicts) == (1, 1, 0)


def test_same_seq_other_content_is_a_conflict_dead_letter(world):
    world.ingest(event(snapshot=SNAP))
    r = world.ingest(event(event_id="ev-other", snapshot=SNAP))
    assert r.counts.conflicts == 1
    assert r.acks[0].rejected[0].seq == 1 and "conflict" in r.acks[0].rejected[0].reason
    dl = world.repo.list_dead_letters()
    assert dl[0].reason == "conflict" and "already stored as event ev-1" in dl[0].detail


def test_bad_messages_become_dead_letters_with_a_count_and_a_rejection(world):
    bad = b'{"schema": "cityops.event/9", "seq": 4, "event_id": "e4"}'
    topic = agent_topic("agent-1", Channel.EVENTS)
    r = world.ingest_raw((topic, bad), (topic, bad), (topic, b"\x00not json"))
    rows = {d.reason: d for d in world.repo.list_dead_letters()}
    assert rows["unknown_schema"].count == 2 and rows["malformed"].count == 1
    assert rows["unknown_schema"].agent_id == "agent-1" and "cityops.event/9" in rows["unknown_schema"].payload
    assert [(x.seq, x.event_id) for x in r.acks[0].rejected] == [(4, "e4"), (4, "e4")]
    # Refused seqs are not stored: they move no sequence state (no gap below seq 4 opens);
    # the ack's rejected list is what tells the agent to drop them.
    assert (r.acks[0].upto, r.acks[0].ranges) == (0, [])
    assert world.repo.get_agent("agent-1").seq_gaps == 0


def test_lifecycle_updates_join_their_case_and_sensor_closes_after_hold(world):
    world.ingest(sensor_event(seq=1), sensor_event(seq=2, kind="update"))
    c = world.case()
    assert (c.state, c.department, c.event_count, c.active_sources) == ("dispatched", "civil_affairs", 2, 1)
    assert c.handler == "grid-worker-xinqiao"
    world.clock.advance(minutes=10)
    world.ingest(sensor_event(seq=3, kind="end", at=T0 + timedelta(minutes=10)))
    c = world.case()
    assert c.cleared_at == world.clock.now() and c.active_sources == 0
    world.clock.advance(seconds=299)
    assert world.tick().closed == []
    world.clock.advance(seconds=1)
    assert world.tick().closed == [1]
    c = world.case()
    assert (c.state, c.closed_by, c.resolution) == ("closed", "auto_sensor", "fixed")
    assert world.actions()[-3:] == ["source_cleared", "resolved", "closed"]


def test_a_lifecycle_pushed_out_of_the_cache_is_read_back_from_the_store(world):
    """The placer's cache is bounded; an update or end for a lifecycle it no longer holds
    must still join its case and clear it (the store answers)."""
    world.ingestor.placer._cache_size = 1  # noqa: SLF001 - every other lifecycle evicts it
    world.ingest(sensor_event(seq=1))
    world.ingest(sensor_event(seq=2, event_id="wm-2", source="meter-2"))
    assert ("agent-1", "wm-1") not in world.ingestor.placer._cache  # noqa: SLF001
    world.ingest(sensor_event(seq=3, kind="update"), sensor_event(seq=4, kind="end"))
    c = world.case()
    assert (c.event_count, c.active_sources) == (3, 0) and c.cleared_at is not None

def test_an_ended_lifecycle_leaves_the_cache_and_late_messages_still_count_once(world):
    """The cache holds lifecycles in flight: once a batch has written an end, the lifecycle
    leaves it (memory stays flat however many lifecycles a day brings). A message after the
    end in the same batch, and one in a later batch, must not clear the case twice."""
    cache = world.ingestor.placer._cache  # noqa: SLF001
    world.ingest(sensor_event(seq=1), sensor_event(seq=2, event_id="wm-2", source="meter-2"))
    assert {("agent-1", "wm-1"), ("agent-1", "wm-2")} <= set(cache)
    world.ingest(sensor_event(seq=3, kind="end"), sensor_event(seq=4, kind="update"))
    assert ("agent-1", "wm-1") not in cache and ("agent-1", "wm-2") in cache
    c = world.case()
    assert (c.event_count, c.active_sources) == (3, 0) and c.cleared_at is not None
    world.ingest(sensor_event(seq=5, kind="end"))  # a late repeat of the end, read from the store
    c = world.case()
    assert (c.event_count, c.active_sources) == (4, 0)
    assert world.repo.counts()["cases_total"] == 2



def test_a_batch_larger_than_the_cache_keeps_its_lifecycles_until_it_is_written(world):
    """The cache is trimmed when a batch is written, never during one: a lifecycle that ended
    early in a big batch and is ended again later in it (a resend) must not clear its case
    twice, however many other lifecycles the batch brings."""
    world.ingestor.placer._cache_size = 2  # noqa: SLF001 - far smaller than the batch
    world.ingest(sensor_event(seq=1), sensor_event(seq=2, event_id="wm-2", source="meter-2"),
                 sensor_event(seq=3, event_id="wm-2b", source="meter-2"),  # same meter: same case
                 sensor_event(seq=4, event_id="wm-2", source="meter-2", kind="end"),
                 sensor_event(seq=5, event_id="wm-4", source="meter-4"),
                 sensor_event(seq=6, event_id="wm-5", source="meter-5"),
                 sensor_event(seq=7, event_id="wm-2", source="meter-2", kind="end"))
    cases = {c.origin_source: c for c in world.repo.list_cases()}
    two = cases["meter-2"]
    assert (two.event_count, two.active_sources, two.cleared_at) == (4, 1, None)  # wm-2b still on
    assert all(cases[m].active_sources == 1 for m in ("meter-1", "meter-4", "meter-5"))
    assert len(world.ingestor.placer._cache) <= 2  # noqa: SLF001 - trimmed once written


def test_a_new_trigger_during_the_hold_keeps_the_case_open(world):
    world.ingest(sensor_event(seq=1), sensor_event(seq=2, kind="end"))
    world.clock.advance(seconds=200)
    world.ingest(sensor_event(seq=3, event_id="wm-2", at=T0 + timedelta(seconds=200)))
    c = world.case()
    assert c.cleared_at is None and c.active_sources == 1 and world.repo.counts()["cases_total"] == 1
    world.clock.advance(seconds=400)
    assert world.tick().closed == []


def test_two_residents_in_one_building_get_two_cases(world):
    world.ingest(sensor_event(source="meter-1"), sensor_event(seq=2, event_id="wm-2", source="meter-2"))
    assert world.repo.counts()["cases_total"] == 2


def test_nearby_cameras_merge_and_other_categories_do_not(world):
    world.ingest(event(snapshot=SNAP))
    near = (G01[0] + 0.001, G01[1])  # ~110 m
    world.ingest(event(agent="agent-2", event_id="x1", where=near, snapshot=SNAP))
    world.ingest(event(agent="agent-3", event_id="t1", sub="flood.fallen_tree", snapshot=SNAP))
    c = world.case()
    assert c.event_count == 2 and world.repo.counts()["cases_total"] == 2
    assert "event_joined" in world.actions()
    assert {e.agent_id for e in world.repo.lifecycles_for_case(1)} == {"agent-1", "agent-2"}


def test_screen_rejection_keeps_reasons_and_can_be_overturned(world):
    world.ingest(event(confidence=0.2, where=OUTSIDE))  # no snapshot either
    c = world.case()
    assert c.state == "rejected"
    assert [r[0] for r in c.screen_reasons] == [
        "low_confidence", "missing_evidence", "outside_service_area", "unknown_grid"]
    c = world.do(world.engine.overturn, 1, actor="op-li", note="confirmed on camera")
    assert c.state == "dispatched" and c.department == "drainage"
    audit = world.repo.audit_for_case(1)
    assert [(a.action, a.actor) for a in audit][-2:] == [("overturned", "op-li"), ("dispatched", "auto")]


def test_unroutable_goes_to_the_operator_queue_then_one_key_dispatch(tmp_path, clock, repo):
    (tmp_path / "q").mkdir()
    w = World(tmp_path / "q", clock, repo)
    w.setup.routing.fallback = "queue"
    w.ingest(event(sub="roads.pothole", snapshot=SNAP))
    c = w.case()
    assert (c.state, c.queue) == ("accepted", "operator") and "no route" in c.queue_reason
    with pytest.raises(CaseError, match="unknown department"):
        w.do(w.engine.dispatch, 1, department="nobody", actor="op")
    c = w.do(w.engine.dispatch, 1, department="road_maintenance", actor="op")
    assert (c.state, c.department, c.queue) == ("dispatched", "road_maintenance", None)


def test_illegal_transition_is_refused_and_leaves_no_trace(world):
    world.ingest(sensor_event(seq=1))
    world.do(world.engine.close, 1, actor="op", resolution="fixed")
    before = world.actions()
    with pytest.raises(IllegalTransition, match="closed case can only be reopened"):
        world.do(world.engine.start, 1, actor="crew")
    assert world.actions() == before and world.case().state == "closed"


def test_overdue_escalates_town_district_city_with_warnings(world):
    world.ingest(event(where=G05, snapshot=SNAP))  # deadline 60 min, warn at 48
    world.clock.advance(minutes=47)
    assert world.tick().warned == []
    world.clock.advance(minutes=1)
    assert world.tick().warned == [1]
    world.clock.advance(minutes=12)
    assert world.tick().escalated == [(1, 1)]
    c = world.case()
    assert (c.state, c.escalation_level) == ("escalated", 1)
    world.clock.advance(minutes=59)
    assert world.tick().escalated == []
    world.clock.advance(minutes=1)
    assert world.tick().escalated == [(1, 2)]
    world.clock.advance(minutes=60)
    assert world.tick().escalated == [(1, 3)]
    world.clock.advance(minutes=600)
    assert world.tick().escalated == []
    targets = [n["target"] for n in world.repo.notifications_for_case(1) if n["kind"] == "escalated"]
    assert targets == ["town:Jiuting", "district:Songjiang", "city"]
    # handled after all: the handler resolves from escalated
    assert world.do(world.engine.resolve, 1, actor="crew").state == "resolved"


def test_photo_verdicts_close_send_back_or_ask_an_operator(world):
    for i in (1, 2, 3):
        world.ingest(event(seq=i, event_id=f"e{i}", source=f"cam-{i}", snapshot=jpeg(i),
                           where=(G01[0] + 0.003 * i, G01[1])))
    after = "ab" * 32
    for i in (1, 2, 3):
        c = world.do(world.engine.submit_after_photo, i, after, actor="crew")
        assert (c.state, c.verify_pending, c.after_sha256) == ("resolved", True, after)
    world.do(world.engine.apply_verdict, 1, Verdict(Outcome.FIXED, 0.93, "region clear", "test"), after)
    world.do(world.engine.apply_verdict, 2, Verdict(Outcome.NOT_FIXED, 0.9, "still flooded", "test"), after)
    world.do(world.engine.apply_verdict, 3, Verdict(Outcome.UNCERTAIN, 0.4, "misaligned", "test"), after)
    assert (world.case(1).state, world.case(1).closed_by) == ("closed", "auto_photo")
    assert world.case(2).state == "dispatched" and "sent_back" in world.actions(2)
    c3 = world.case(3)
    assert c3.state == "resolved" and "misaligned" in c3.review_reason
    assert len(world.repo.verifications_for_case(3)) == 1
    c3 = world.do(world.engine.review_verification, 3, fixed=True, actor="op")
    assert (c3.state, c3.closed_by) == ("closed", "operator")


def test_agent_end_with_an_after_photo_asks_for_verification(world):
    world.ingest(event(snapshot=jpeg(1)))
    r = world.ingest(event(seq=2, kind="end", snapshot=jpeg(2)))
    c = world.case()
    assert r.verify_cases == {1} and c.verify_pending and c.after_sha256 != c.before_sha256
    assert (c.event_count, c.active_sources) == (2, 0)  # the end counted once, not twice
    world.do(world.engine.apply_verdict, 1, Verdict(Outcome.FIXED, 0.9, "", "t"), c.after_sha256)
    assert world.actions()[-2:] == ["resolved", "closed"]


def test_recurrence_reopens_the_closed_case(world):
    world.ingest(event(snapshot=SNAP))
    world.do(world.engine.close, 1, actor="op")
    world.clock.advance(hours=5)
    world.ingest(event(seq=2, event_id="ev-2", at=T0 + timedelta(hours=5), snapshot=SNAP))
    c = world.case()
    assert (c.state, c.reopen_count, world.repo.counts()["cases_total"]) == ("dispatched", 1, 1)
    assert "reopened" in world.actions()
    world.do(world.engine.close, 1, actor="op")
    world.clock.advance(hours=80)
    world.ingest(event(seq=3, event_id="ev-3", at=T0 + timedelta(hours=85), snapshot=SNAP))
    assert world.repo.counts()["cases_total"] == 2


def test_one_open_case_per_group_key_is_a_database_guarantee(world):
    world.ingest(event(snapshot=SNAP))
    c = world.case()
    fields = {k: getattr(c, k) for k in ("category", "subcategory", "group_key", "lat", "lon",
                                         "origin_agent", "origin_source", "origin_event", "close_mode",
                                         "created_at", "updated_at", "first_event_at", "last_event_at")}
    with pytest.raises(GroupKeyTaken), world.repo.transaction():
        world.repo.insert_case({**fields, "state": "new"})
    world.do(world.engine.close, 1, actor="op")
    with world.repo.transaction():
        assert world.repo.insert_case({**fields, "state": "new"}) == 2


def test_the_audit_log_is_append_only(world):
    world.ingest(event(snapshot=SNAP))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), world.repo.transaction():
        world.repo.conn.execute("UPDATE case_audit SET actor = 'me'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), world.repo.transaction():
        world.repo.conn.execute("DELETE FROM case_audit")


def test_repeat_offender_source_is_suppressed(world):
    for i in range(5):
        world.ingest(event(seq=i + 1, event_id=f"low{i}", confidence=0.1, snapshot=SNAP))
    world.ingest(event(seq=6, event_id="good", confidence=0.95, snapshot=SNAP))
    last = world.case(6)
    assert last.state == "rejected" and [r[0] for r in last.screen_reasons] == ["repeat_offender"]
    other = event(agent="agent-2", seq=1, event_id="good2", snapshot=SNAP, confidence=0.95)
    world.ingest(other)
    assert world.case(7).state == "dispatched"


def test_operator_merge_moves_events(world):
    world.ingest(event(snapshot=SNAP), event(agent="agent-2", event_id="far", snapshot=SNAP,
                                            where=(G01[0] + 0.005, G01[1])))
    dst = world.do(world.engine.merge, 2, 1, actor="op")
    assert dst.event_count == 2 and world.case(2).state == "merged" and world.case(2).merged_into == 1
    assert len(world.repo.lifecycles_for_case(1)) == 2


def test_agent_registry_from_status_and_telemetry(world):
    topic = agent_topic("agent-1", Channel.STATUS)
    birth = Status(agent_id="agent-1", state="online", boot_id="b2", at=T0 + timedelta(seconds=10),
                   version="0.2")
    old_lwt = Status(agent_id="agent-1", state="offline", boot_id="b1", at=T0, reason="connection lost")
    world.ingest_raw((topic, encode(birth)), (topic, encode(old_lwt)))
    a = world.repo.get_agent("agent-1")
    assert (a.state, a.boot_id, a.version) == ("online", "b2", "0.2")
    t = Telemetry(agent_id="agent-1", boot_id="b2", at=T0, uptime_s=5, outbox={"depth": 17},
                  devices={"meter-1": "down"})
    world.ingest_raw((agent_topic("agent-1", Channel.TELEMETRY), encode(t)))
    a = world.repo.get_agent("agent-1")
    assert (a.outbox_depth, a.devices, a.last_seen) == (17, {"meter-1": "down"}, T0)


def test_snapshot_is_stored_by_the_hubs_own_hash(world):
    import hashlib

    from protocol.codec import encode_snapshot
    from protocol.messages import SnapshotHeader

    data = jpeg(9)
    sha = hashlib.sha256(data).hexdigest()
    header = SnapshotHeader(agent_id="agent-1", event_id="ev-1", seq=1, sha256=sha, width=64, height=48)
    world.ingest_raw((agent_topic("agent-1", Channel.SNAPSHOTS, "ev-1"), encode_snapshot(header, data)))
    world.ingest(event(snapshot=data))
    path = world.files.path_for(sha)
    assert path.read_bytes() == data and path.parent.parent.name == sha[:2]
    assert [s.sha256 for s in world.repo.snapshots_for_case(1)] == [sha]
    assert world.case().before_sha256 == sha


def test_reopen_yields_to_an_open_case_that_holds_the_place(world):
    world.ingest(event(snapshot=SNAP))
    world.do(world.engine.close, 1, actor="op")
    c = world.case(1)
    fields = {k: getattr(c, k) for k in ("category", "subcategory", "group_key", "lat", "lon",
                                         "origin_agent", "origin_source", "origin_event", "close_mode",
                                         "created_at", "updated_at", "first_event_at", "last_event_at")}
    # Case 2 holds case 1's key now, quiet for a day (outside the merge window).
    with world.repo.transaction():
        world.repo.insert_case({**fields, "state": "dispatched",
                                "last_event_at": T0 - timedelta(days=1)})
    with pytest.raises(CaseError, match="open case 2 now covers this place"):
        world.do(world.engine.reopen, 1, actor="op", reason="again")
    # ~166 m away, another cell: by distance it would reopen case 1; case 2 takes it.
    world.ingest(event(seq=2, event_id="ev-2", snapshot=SNAP, where=(G01[0] + 0.0015, G01[1])))
    assert world.case(1).state == "closed" and world.case(2).event_count == 1
    assert "open case 2 holds the place now" in world.repo.audit_for_case(2)[-1].detail


def test_snapshot_retention_keeps_what_open_cases_need(world):
    keep, old = "a" * 64, "b" * 64
    with world.repo.transaction():
        for sha in (keep, old):
            world.repo.add_snapshot("agent-1", f"e-{sha[0]}", 1, sha, 100, 64, 48, None,
                                    T0 - timedelta(days=400))
    world.ingest(event(snapshot=SNAP))
    with world.repo.transaction():
        world.repo.update_case(1, before_sha256=keep)
        gone = world.repo.purge_snapshots(T0 - timedelta(days=180), 100)
    assert gone == [old]
    assert world.repo.has_snapshot(keep) and not world.repo.has_snapshot(old)
