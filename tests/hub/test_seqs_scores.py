"""Sequence tracking and acks; monthly scores. Pure, hand-checked."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from hubtest import T0

from hub.ingest.seqs import SeqState, build_acks
from hub.scores import month_bounds, score_cases, to_csv
from hub.store.repo import CaseRow


def test_contiguous_seqs_advance_upto():
    s = SeqState()
    assert s.add([1, 2, 3]) == 0
    assert (s.upto, s.ranges, s.highest) == (3, [], 3)


def test_a_gap_is_reported_and_filled_later():
    s = SeqState()
    s.add([1, 2])
    assert s.add([5, 6]) == 1  # live events first: 3 and 4 still in the agent's backlog
    assert (s.upto, s.ranges, s.missing(), s.gaps) == (2, [[5, 6]], 2, 1)
    [ack] = build_acks("a1", s, [], T0)
    assert ack.covers(6) and ack.covers(2) and not ack.covers(3)
    s.add([4])
    assert s.ranges == [[4, 6]]
    s.add([3])
    assert (s.upto, s.ranges, s.missing()) == (6, [], 0)


def test_duplicates_and_disorder_do_not_move_anything():
    s = SeqState()
    s.add([3, 1, 2, 2, 1])
    assert (s.upto, s.ranges) == (3, [])
    s.add([10, 8])
    assert s.ranges == [[8, 8], [10, 10]]
    s.add([9])
    assert s.ranges == [[8, 10]]


def case(i, **over) -> CaseRow:
    base = dict(
        id=i, state="closed", category="flood", subcategory="flood.road_waterlogging", group_key=f"k{i}",
        lat=0.0, lon=0.0, grid_id="g-01", town="T", district="D", place=None, department="drainage",
        handler=None, queue=None, queue_reason=None, origin_agent="a", origin_source="s",
        origin_event=f"e{i}", close_mode="photo", created_at=T0, updated_at=T0, accepted_at=T0,
        rejected_at=None, dispatched_at=T0, started_at=None, resolved_at=None, closed_at=None,
        closed_by=None, resolution=None, first_event_at=T0, last_event_at=T0, event_count=1,
        active_sources=0, cleared_at=None, deadline_min=60, deadline_at=T0 + timedelta(hours=1),
        warn_at=None, warned_at=None, escalation_level=0, escalated_at=None, sla_due_at=None,
        reopen_count=0, merged_into=None, screen_reasons=[], review_reason=None, before_sha256=None,
        before_bbox=None, after_sha256=None, verify_pending=False, satisfaction=None)
    base.update(over)
    return CaseRow(**base)


def test_scores_by_grid_hand_checked():
    h = timedelta(hours=1)
    cases = [
        # on time, auto-closed after 0.5 h, satisfaction 5
        case(1, resolved_at=T0 + h / 2, closed_at=T0 + h / 2, closed_by="auto_sensor", satisfaction=5),
        # late (resolved after 2 h), closed by an operator after 2 h, reopened once, satisfaction 3
        case(2, resolved_at=T0 + 2 * h, closed_at=T0 + 2 * h, closed_by="operator", reopen_count=1,
             satisfaction=3),
        # still open past its deadline: late, not closed
        case(3, state="dispatched"),
        # another grid
        case(4, grid_id="g-02", resolved_at=T0 + 4 * h, closed_at=T0 + 4 * h, closed_by="auto_photo",
             deadline_at=T0 + 8 * h),
    ]
    scores = {s.key: s for s in score_cases("2026-07", cases, now=T0 + 10 * h)}
    g1 = scores["g-01"]
    assert (g1.cases, g1.closed) == (3, 2)
    assert g1.closure_rate == round(2 / 3, 4)
    assert g1.on_time_rate == round(1 / 3, 4)
    assert g1.auto_closure_share == 0.5
    assert g1.reopen_rate == round(1 / 3, 4)
    assert g1.mean_hours_to_close == 1.25 and g1.p90_hours_to_close == 2.0
    assert (g1.satisfaction, g1.satisfaction_count) == (4.0, 2)
    every = scores["all"]
    assert (every.cases, every.closed, every.on_time_rate) == (4, 3, 0.5)
    csv_text = to_csv(list(scores.values()))
    assert csv_text.splitlines()[0].startswith("month,group_by,key,cases,closed,closure_rate")
    assert "2026-07,grid,g-02,1,1,1.0,1.0,1.0,0.0,4.0,4.0,,0" in csv_text


def test_month_bounds_are_local():
    start, end = month_bounds("2026-07", ZoneInfo("Asia/Shanghai"))
    assert start.isoformat() == "2026-06-30T16:00:00+00:00"
    assert end.isoformat() == "2026-07-31T16:00:00+00:00"
    start, end = month_bounds("2026-12", ZoneInfo("UTC"))
    assert end.year == 2027 and end.month == 1
