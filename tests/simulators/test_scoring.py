"""The scorecard, on hand-made stores: each figure comes from its own source, and every
way a run can go wrong shows in it. Also the simulated clock the scores are measured on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.clock import ScaledClock
from simulators.hubaudit import StoreAudit, StoredCase, StoredLifecycle, StoredTransition
from simulators.scenarios.truth import Problem
from simulators.scoring import AgentCounters, covering_dispatch, percentile, scorecard

T0 = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def problem(pid: str, source: str, sub: str, start: float, due: float, end: float | None = None) -> Problem:
    return Problem(pid, "a1", source, sub, "x", start, end, due, (start - 60, (end or due) + 600))


def life(source: str, sub: str, start: float, case: int | None, event: str | None = None) -> StoredLifecycle:
    return StoredLifecycle("a1", event or f"e-{source}-{start}", source, sub, at(start), None, case)


def case(cid: int, *, dispatched: float | None = None, state: str = "dispatched",
         closed_by: str | None = None, merged_into: int | None = None) -> StoredCase:
    return StoredCase(cid, state, "s", at(0), None if dispatched is None else at(dispatched), None,
                      closed_by, "sensor_clear", merged_into)


def store(**fields) -> StoreAudit:
    """A store whose cases' audit trails hold one dispatch each, at their ``dispatched_at``
    (unless ``transitions`` are given)."""
    if "transitions" not in fields:
        fields["transitions"] = sorted(
            (StoredTransition(c.id, c.dispatched_at, "dispatched", "dispatched")
             for c in fields.get("cases", []) if c.dispatched_at is not None), key=lambda t: t.at)
    return StoreAudit(**fields)


def test_a_clean_run_scores_clean():
    problems = [problem("p1", "wm", "elderly_care.water_no_use", 100, 1000),
                problem("p2", "btn", "elderly_care.call_button", 2000, 2100, 2500)]
    audit = store(seqs={"a1": {1, 2, 3, 4}}, messages=4,
                       lifecycles=[life("wm", "elderly_care.water_no_use", 900, 1),
                                   life("btn", "elderly_care.call_button", 2030, 2)],
                       cases=[case(1, dispatched=905, state="closed", closed_by="auto_sensor"),
                              case(2, dispatched=2040, state="closed", closed_by="operator")])
    card = scorecard(problems, [AgentCounters("a1", 4, 4, 4, 0)], audit, T0, horizon=5000)
    assert card["events_published"] == card["events_stored"] == card["events_acked"] == 4
    assert (card["lost"], card["duplicates"], card["false_cases"], card["duplicate_cases"]) == (0, 0, 0, 0)
    assert (card["problems_injected"], card["problems_detected"], card["missed"]) == (2, 2, 0)
    assert (card["closed_automatically"], card["closed_by_operator"]) == (1, 1)
    assert card["time_to_dispatch_s"] == {"median": 40.0, "p99": 805.0, "n": 2}


def test_lost_events_are_seqs_the_agent_issued_that_the_store_lacks():
    audit = store(seqs={"a1": {1, 2, 4}}, messages=3)
    card = scorecard([], [AgentCounters("a1", 5, 3, 5, 2)], audit, T0, horizon=10)
    assert card["lost"] == card["events_lost"] == 2  # seqs 3 and 5
    assert card["events_published"] == 5 and card["events_stored"] == 3 and card["outbox_left"] == 2


def test_stored_twice_counts_as_a_duplicate():
    audit = store(seqs={"a1": {1, 2}}, messages=3, duplicate_rows=1, duplicate_new=1)
    assert scorecard([], [AgentCounters("a1", 2, 2, 2, 0)], audit, T0, horizon=10)["duplicates"] == 2


def test_false_duplicate_missed_and_pending():
    problems = [problem("seen", "wm", "elderly_care.water_no_use", 100, 1000),
                problem("missed", "leak", "water.continuous_flow", 100, 1500),
                problem("pending", "gauge", "flood.river_level", 4000, 6000)]
    audit = store(
        seqs={"a1": {1, 2, 3}}, messages=3,
        lifecycles=[life("wm", "elderly_care.water_no_use", 900, 1),
                    life("wm", "elderly_care.water_no_use", 1200, 2),  # same problem, second case
                    life("btn", "elderly_care.call_button", 300, 3)],  # nothing pressed it
        cases=[case(1, dispatched=950), case(2, dispatched=1250), case(3, dispatched=310)])
    card = scorecard(problems, [AgentCounters("a1", 3, 3, 3, 0)], audit, T0, horizon=5000)
    assert card["problems_detected"] == 1 and card["missed"] == 1 and card["problems_pending"] == 1
    assert card["duplicate_cases"] == 1
    assert card["false_cases"] == 1 and card["false_case_ids"] == [3]
    statuses = {row["id"]: row["status"] for row in card["problems"]}
    assert statuses == {"seen": "detected", "missed": "missed", "pending": "pending"}


def test_merged_cases_are_followed_and_not_counted_false():
    problems = [problem("fire-a", "smoke-a", "fire_alarm.smoke_detector", 100, 300),
                problem("fire-b", "smoke-b", "fire_alarm.smoke_detector", 150, 350)]
    audit = store(
        seqs={"a1": {1, 2}}, messages=2,
        lifecycles=[life("smoke-a", "fire_alarm.smoke_detector", 120, 1),
                    life("smoke-b", "fire_alarm.smoke_detector", 170, 1)],
        cases=[case(1, dispatched=130), case(2, state="merged", merged_into=1)])
    card = scorecard(problems, [AgentCounters("a1", 2, 2, 2, 0)], audit, T0, horizon=1000)
    assert card["problems_detected"] == 2 and card["false_cases"] == 0 and card["duplicate_cases"] == 0
    # fire-b joined an already dispatched case: its dispatch is when it joined
    assert [r.get("dispatched_after_s") for r in card["problems"]] == [30.0, 20.0]


def test_a_recurring_problem_is_measured_to_its_own_dispatch_not_the_reopened_cases_last():
    """The rainstorm's gauges flood again the next day and reopen the first day's case: its
    ``dispatched_at`` is then the second day's dispatch, but the first flood was dispatched
    a minute after it began."""
    sub = "flood.underpass_water_level"
    problems = [problem("day1", "gauge", sub, 100, 1000, 2000),
                problem("day2", "gauge", sub, 86_500, 87_400, 88_400)]
    trail = [StoredTransition(1, at(t), action, state) for t, action, state in [
        (150, "opened", "new"), (158, "accepted", "accepted"), (160, "dispatched", "dispatched"),
        (900, "in_progress", "in_progress"), (1500, "resolved", "resolved"), (2600, "closed", "closed"),
        (86_552, "reopened", "reopened"), (86_552, "dispatched", "dispatched")]]
    audit = store(seqs={"a1": {1, 2, 3, 4}}, messages=4,
                  lifecycles=[life("gauge", sub, 150, 1), life("gauge", sub, 86_550, 1)],
                  cases=[case(1, dispatched=86_552)], transitions=trail)
    card = scorecard(problems, [AgentCounters("a1", 4, 4, 4, 0)], audit, T0, horizon=90_000)
    assert [r["dispatched_after_s"] for r in card["problems"]] == [60.0, 52.0]
    assert card["time_to_dispatch_s"] == {"median": 52.0, "p99": 60.0, "n": 2}


def test_a_dispatch_covers_a_problem_while_the_case_is_in_a_departments_hands():
    history = [(10.0, "new"), (12.0, "dispatched"), (50.0, "in_progress"), (80.0, "closed"),
               (200.0, "reopened"), (260.0, "dispatched"), (300.0, "accepted"), (400.0, "dispatched")]
    assert covering_dispatch(history, 11.0) == 12.0  # joined before the first dispatch
    assert covering_dispatch(history, 60.0) == 60.0  # joined while the department works on it
    assert covering_dispatch(history, 90.0) == 260.0  # closed: the reopening's dispatch
    assert covering_dispatch(history, 310.0) == 400.0  # returned to the operators: the next one
    assert covering_dispatch(history, 500.0) == 500.0
    assert covering_dispatch([(10.0, "new"), (20.0, "rejected")], 15.0) is None


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_scaled_clock_runs_fast_freezes_and_restarts():
    real = [100.0]
    clock = ScaledClock(T0, 60.0, real=lambda: real[0])
    real[0] += 2.5
    assert clock.now() == T0 + timedelta(minutes=2.5) and clock.monotonic() == 150.0
    clock.restart()
    assert clock.now() == T0
    real[0] += 1
    clock.freeze()
    real[0] += 10
    assert clock.elapsed() == 60.0 and clock.frozen
    assert clock.real_seconds(3600) == 60.0
    with pytest.raises(ValueError):
        ScaledClock(T0, 0)
    with pytest.raises(ValueError):
        ScaledClock(datetime(2026, 1, 1), 1)  # noqa: DTZ001 - the point of the test


def test_the_hubs_own_warnings_are_not_false_cases():
    """A vital-sign warning (the hub's pseudo-agent ``vitals``) is not a scenario problem."""
    warning = StoredLifecycle("vitals", "e-w", "water_level.g", "vital_signs.water_level", at(50), None, 9)
    audit = store(seqs={"a1": {1}, "vitals": {1}}, messages=2, lifecycles=[warning],
                       cases=[case(9, dispatched=60)])
    card = scorecard([], [AgentCounters("a1", 1, 1, 1, 0)], audit, T0, horizon=100)
    assert card["false_cases"] == 0 and card["lost"] == 0 and card["duplicates"] == 0
