"""Seq order through the real engine and SQLite store (issue 17, points 4 and 7): a
lifecycle starts at its lowest seq whatever order its messages arrive in, and a seq far
beyond anything the agent sent is refused with a reason while the agent's next real
event is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hubtest import T0, sensor_event
from test_engine import World

from hub.ingest.seqs import WINDOW


@pytest.fixture
def world(tmp_path, clock, repo):
    return World(tmp_path, clock, repo)


def _lifecycle(world, event_id="wm-1"):
    return next(x for x in world.repo.lifecycles_for_case(1) if x.event_id == event_id)


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_new_redelivered_after_its_end_starts_the_lifecycle(world, same_batch):
    new = sensor_event(seq=1)
    update = sensor_event(seq=2, kind="update", at=T0 + timedelta(minutes=2))
    end = sensor_event(seq=3, kind="end", at=T0 + timedelta(minutes=5))
    if same_batch:
        world.ingest(end, update, new, batch=True)
    else:  # the end arrives first (live), the rest with the agent's backlog later
        world.ingest(end)
        world.ingest(update, new, batch=True)
    lc = _lifecycle(world)
    assert (lc.first_seq, lc.last_seq, lc.messages, lc.kind) == (1, 3, 3, "end")
    assert lc.started_at == T0  # the new's time, not the end's
    assert lc.observed_at == T0 + timedelta(minutes=5)  # the latest state is still the end's
    assert world.repo.counts()["cases_total"] == 1


def test_a_late_message_above_the_first_leaves_the_start_alone(world):
    world.ingest(sensor_event(seq=1), sensor_event(seq=3, kind="end", at=T0 + timedelta(minutes=5)))
    world.ingest(sensor_event(seq=2, kind="update", at=T0 + timedelta(minutes=2)))
    lc = _lifecycle(world)
    assert (lc.first_seq, lc.last_seq, lc.started_at, lc.messages) == (1, 3, T0, 3)


def test_a_seq_far_beyond_the_window_is_a_dead_letter_and_a_rejection(world):
    world.ingest(sensor_event(seq=1))
    far = 1 + WINDOW + 1
    r = world.ingest(sensor_event(seq=far, event_id="wm-far", source="meter-9"),
                     sensor_event(seq=2, kind="update"))
    assert r.counts.seq_out_of_window == 1 and r.counts.events_stored == 1
    ack = r.acks[0]
    assert (ack.upto, ack.ranges) == (2, [])  # the refused seq moved nothing
    assert [(x.seq, x.event_id) for x in ack.rejected] == [(far, "wm-far")]
    assert ack.rejected[0].reason.startswith("seq_out_of_window: seq ")
    letter = world.repo.list_dead_letters()[0]
    assert (letter.reason, letter.agent_id) == ("seq_out_of_window", "agent-1")
    assert f"more than {WINDOW:,} above the highest seq" in letter.detail
    assert world.repo.counts()["messages_stored"] == 2
    row = world.repo.get_agent("agent-1")
    assert (row.seq_upto, row.seq_highest, row.seq_ranges) == (2, 2, [])
    # A real jump after an outage, within the window, is stored and opens a gap.
    r = world.ingest(sensor_event(seq=WINDOW, kind="update"))
    assert r.counts.events_stored == 1 and r.acks[0].ranges == [(WINDOW, WINDOW)]


def test_a_new_agent_is_admitted_wherever_its_counter_is(world):
    """A hub restored from an old backup, or a new one, has no state for the agent."""
    r = world.ingest(sensor_event(seq=5 * WINDOW))
    assert r.counts.events_stored == 1 and r.acks[0].ranges == [(5 * WINDOW, 5 * WINDOW)]
