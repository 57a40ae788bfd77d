"""Pure decisions: state machine, screening, merging, SLA, closure. Hand-checked fixtures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hubtest import T0, later

from hub.cases import sla
from hub.cases.closure import Outcome, Verdict, decide_on_verdict, sensor_close_due
from hub.cases.merging import Candidate, MergeFacts, decide_merge, group_key, held_key
from hub.cases.screening import Reason, ReportFacts, ScreenFacts, screen, screen_report, spam_signs
from hub.cases.states import OPEN_STATES, check_transition
from hub.errors import IllegalTransition
from hub.rules import MaintenanceWindow, RuleOverride, ScreeningConfig, resolve_rules
from hub.store.schema import OPEN_STATE_NAMES
from protocol.taxonomy import taxonomy

RULES = resolve_rules(taxonomy(), ScreeningConfig(rules={"elderly_care": RuleOverride(merge_scope="source")}))
WATERLOG = RULES["flood.road_waterlogging"]  # radius 200 m, window 360 min, min conf 0.5


# -- states -------------------------------------------------------------------------------

def test_open_states_match_the_database_index():
    assert set(OPEN_STATE_NAMES) == {s.value for s in OPEN_STATES}


@pytest.mark.parametrize("path", [
    ["new", "accepted", "dispatched", "in_progress", "resolved", "closed", "reopened", "dispatched"],
    ["new", "rejected", "accepted", "dispatched", "escalated", "escalated", "resolved", "closed"],
    ["new", "accepted", "merged"],
    ["new", "accepted", "dispatched", "resolved", "dispatched"],  # not fixed: back to the department
])
def test_legal_paths(path):
    for a, b in zip(path, path[1:], strict=False):
        check_transition(1, a, b)


@pytest.mark.parametrize(("src", "dst", "words"), [
    ("new", "dispatched", "accepted or rejected"),
    ("dispatched", "closed", "resolved before it is closed"),
    ("closed", "dispatched", "only be reopened"),
    ("merged", "accepted", "merged case is final"),
    ("rejected", "dispatched", "accepted (overturned)"),
])
def test_illegal_transitions_are_refused_with_the_reason(src, dst, words):
    with pytest.raises(IllegalTransition) as info:
        check_transition(7, src, dst)
    assert words in str(info.value) and "case 7" in str(info.value)
    assert info.value.from_state == src and info.value.to_state == dst


# -- screening ---------------------------------------------------------------------------------

def facts(**over) -> ScreenFacts:
    base = dict(subcategory="flood.road_waterlogging", agent_id="a1", source="cam-1", observed_at=T0,
                confidence=0.9, evidence=frozenset({"snapshot", "bbox"}), in_service_area=True,
                grid_id="g-01")
    base.update(over)
    return ScreenFacts(**base)


def test_a_good_event_is_accepted():
    assert screen(facts(), WATERLOG).accepted


def test_every_reason_is_kept():
    s = screen(facts(confidence=0.2, evidence=frozenset({"bbox"}), in_service_area=False, grid_id=None),
               WATERLOG)
    assert not s.accepted
    assert s.codes == [Reason.LOW_CONFIDENCE, Reason.MISSING_EVIDENCE, Reason.OUTSIDE_SERVICE_AREA,
                       Reason.UNKNOWN_GRID]
    assert "0.20 is below 0.50" in s.reasons[0][1] and "snapshot" in s.reasons[1][1]


def test_maintenance_window_applies_only_inside_its_time_grid_and_category():
    window = MaintenanceWindow(name="pump works", start=T0, end=later(60), grids=["g-01"],
                               categories=["flood"])
    assert screen(facts(observed_at=later(30)), WATERLOG, [window]).codes == [Reason.MAINTENANCE_WINDOW]
    assert screen(facts(observed_at=later(61)), WATERLOG, [window]).accepted
    assert screen(facts(grid_id="g-02"), WATERLOG, [window]).accepted
    fire = RULES["community_safety.fire"]
    assert screen(facts(subcategory="community_safety.fire"), fire, [window]).accepted


def test_repeat_offender_is_suppressed():
    assert screen(facts(recent_false=4), WATERLOG, repeat_max_false=5).accepted
    s = screen(facts(recent_false=5), WATERLOG, repeat_max_false=5)
    assert s.codes == [Reason.REPEAT_OFFENDER] and "a1/cam-1" in s.reasons[0][1]


def test_rules_layer_taxonomy_category_subcategory():
    rules = resolve_rules(taxonomy(), ScreeningConfig(rules={
        "flood": RuleOverride(min_confidence=0.7, deadline_min=45),
        "flood.road_waterlogging": RuleOverride(min_confidence=0.8, auto_accept=False)}))
    assert rules["flood.road_waterlogging"].min_confidence == 0.8
    assert rules["flood.road_waterlogging"].deadline_min == 45
    assert rules["flood.fallen_tree"].min_confidence == 0.7
    assert rules["roads.pothole"].min_confidence == taxonomy().subcategory("roads.pothole").min_confidence
    s = screen(facts(), rules["flood.road_waterlogging"])
    assert s.codes == [Reason.NEEDS_OPERATOR] and s.held and not s.accepted  # held for an operator
    s = screen(facts(confidence=0.5), rules["flood.road_waterlogging"])
    assert s.codes == [Reason.LOW_CONFIDENCE] and not s.held  # a failed screen is still a rejection


def report(**over) -> ReportFacts:
    base = dict(subcategory="flood.road_waterlogging", channel="open311", text="water up to the knee",
                has_photo=False, placed=True, in_service_area=True, grid_id="g-01")
    base.update(over)
    return ReportFacts(**base)


def test_a_text_only_report_passes_the_reports_screen():
    # The camera rules would say "the event carries no bbox, snapshot"; a person's text is enough.
    assert screen_report(report(), WATERLOG).accepted
    assert screen_report(report(text="", has_photo=True), WATERLOG).accepted
    assert screen_report(report(text="积水"), WATERLOG).accepted  # short, not Latin: fine


def test_a_report_that_says_nothing_or_is_spam_is_rejected_with_every_reason():
    s = screen_report(report(text=" ?! ", in_service_area=False, grid_id=None), WATERLOG)
    assert not s.accepted and not s.held
    assert s.codes == [Reason.NO_CONTENT, Reason.OUTSIDE_SERVICE_AREA]
    s = screen_report(report(text="buy http://a.example www.b.example https://c.example"), WATERLOG)
    assert s.codes == [Reason.SPAM] and "3 links" in s.reasons[0][1]
    assert spam_signs("aaaaaaaaaaaaaaaaaaaaaaaa!") == "the text is one character repeated"
    assert spam_signs("see http://a.example and http://b.example") is None
    assert spam_signs("aaaa") is None  # short notes are never spam


def test_an_unplaced_report_is_held_never_rejected():
    s = screen_report(report(placed=False, in_service_area=False, grid_id=None), WATERLOG)
    assert not s.accepted and s.held and s.codes == [Reason.NEEDS_PLACEMENT]
    manual = resolve_rules(taxonomy(), ScreeningConfig(rules={
        "flood.road_waterlogging": RuleOverride(auto_accept=False)}))["flood.road_waterlogging"]
    s = screen_report(report(), manual)
    assert s.held and s.codes == [Reason.NEEDS_OPERATOR]


# -- merging ---------------------------------------------------------------------------------------

def mf(lat=31.205, lon=121.405, at=T0, agent="a1", source="cam-1", sub="flood.road_waterlogging"):
    return MergeFacts(sub, agent, source, lat, lon, at)


def test_same_cell_joins_even_outside_the_window():
    key = group_key(WATERLOG, "a1", "cam-1", 31.205, 121.405)
    open_case = Candidate(5, key, 31.205, 121.405, last_event_at=T0 - timedelta(days=3))
    d = decide_merge(mf(), WATERLOG, [open_case])
    assert (d.action, d.case_id) == ("join", 5)


def test_join_by_distance_and_window_picks_the_nearest():
    # ~111 m and ~167 m north of the event; both within 200 m.
    far = Candidate(1, "other-a", 31.2065, 121.405, T0)
    near = Candidate(2, "other-b", 31.206, 121.405, T0)
    d = decide_merge(mf(), WATERLOG, [far, near])
    assert (d.action, d.case_id) == ("join", 2)
    assert "111 m" in d.detail


def test_no_join_beyond_radius_or_window():
    too_far = Candidate(1, "x", 31.2075, 121.405, T0)  # ~278 m
    too_old = Candidate(2, "y", 31.206, 121.405, T0 - timedelta(minutes=361))
    assert decide_merge(mf(), WATERLOG, [too_far, too_old]).action == "open"


def test_recently_closed_case_reopens_instead_of_a_new_one():
    key = group_key(WATERLOG, "a1", "cam-1", 31.205, 121.405)
    closed = Candidate(9, key, 31.205, 121.405, T0 - timedelta(hours=5), closed_at=T0 - timedelta(hours=2))
    old = Candidate(8, key, 31.205, 121.405, T0 - timedelta(days=9), closed_at=T0 - timedelta(days=8))
    d = decide_merge(mf(), WATERLOG, [], [old, closed], recurrence_window=timedelta(hours=72))
    assert (d.action, d.case_id) == ("reopen", 9)
    assert decide_merge(mf(), WATERLOG, [], [old], recurrence_window=timedelta(hours=72)).action == "open"


def test_source_scope_never_merges_two_residents():
    rule = RULES["elderly_care.water_no_use"]
    k1 = group_key(rule, "a1", "meter-1", 31.205, 121.405)
    k2 = group_key(rule, "a1", "meter-2", 31.205, 121.405)
    assert k1 != k2 and "|src|a1/meter-1" in k1
    neighbour = Candidate(3, k2, 31.205, 121.405, T0)
    assert decide_merge(mf(source="meter-1", sub=rule.subcategory), rule, [neighbour]).action == "open"


def test_radius_zero_means_same_source():
    rule = RULES["device.offline"]
    assert "|src|" in group_key(rule, "a1", "plc-1", 31.2, 121.4)


# -- SLA ---------------------------------------------------------------------------------------------

def slafacts(**over):
    base = dict(case_id=1, state="dispatched", deadline_at=later(100), warn_at=later(80), warned=False,
                escalation_level=0, last_escalated_at=None)
    base.update(over)
    return sla.SlaFacts(**base)


def test_deadline_plan():
    d = sla.plan_deadline(T0, 100, 0.2)
    assert d.deadline_at == later(100) and d.warn_at == later(80)


def test_warning_then_escalation_town_district_city():
    step = timedelta(minutes=60)
    assert sla.due_actions(slafacts(), later(79), step) == []
    assert [a.kind for a in sla.due_actions(slafacts(), later(81), step)] == ["warn"]
    esc = sla.due_actions(slafacts(warned=True), later(100), step)
    assert [(a.kind, a.level) for a in esc] == [("escalate", 1)] and "town" in esc[0].detail
    f1 = slafacts(warned=True, escalation_level=1, last_escalated_at=later(100), state="escalated")
    assert sla.due_actions(f1, later(159), step) == []
    assert [a.level for a in sla.due_actions(f1, later(160), step)] == [2]
    f3 = slafacts(warned=True, escalation_level=3, last_escalated_at=later(220), state="escalated")
    assert sla.due_actions(f3, later(1000), step) == []
    assert sla.next_due(f1, step) == later(160)


def test_resolved_and_closed_cases_are_not_late():
    assert sla.due_actions(slafacts(state="resolved"), later(500), timedelta(minutes=60)) == []
    assert sla.next_due(slafacts(state="closed"), timedelta(minutes=60)) is None


# -- closure -----------------------------------------------------------------------------------------

def test_verdicts():
    fixed = Verdict(Outcome.FIXED, 0.95, "region matches", "v")
    assert decide_on_verdict("resolved", fixed, 0.8).kind == "close"
    assert decide_on_verdict("resolved", Verdict(Outcome.FIXED, 0.6), 0.8).kind == "review"
    assert decide_on_verdict("resolved", Verdict(Outcome.NOT_FIXED, 0.9), 0.8).kind == "send_back"
    assert decide_on_verdict("dispatched", Verdict(Outcome.NOT_FIXED, 0.9), 0.8).kind == "note"
    assert decide_on_verdict("resolved", Verdict(Outcome.UNCERTAIN, 0.99), 0.8).kind == "review"


def test_sensor_hold():
    assert not sensor_close_due(None, later(10), timedelta(minutes=5))
    assert not sensor_close_due(later(6), later(10), timedelta(minutes=5))
    assert sensor_close_due(later(5), later(10), timedelta(minutes=5))


def test_a_held_report_joins_nothing_and_nothing_joins_it_by_distance():
    held = Candidate(5, held_key("flood.road_waterlogging", "open311", "e-1"), 31.205, 121.405, T0)
    d = decide_merge(mf(), WATERLOG, [held])  # same point, same time: still a case of its own
    assert d.action == "open"
    done = Candidate(6, held.group_key, 31.205, 121.405, T0, closed_at=T0)
    assert decide_merge(mf(at=later(10)), WATERLOG, [], [done]).action == "open"
