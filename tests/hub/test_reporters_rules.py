"""The pure decisions of "reporters answered" (hub/engine/reporters.py, hub/privacy.py):
what a state change tells a reporter, what a late reporter is told at once, the message
(its first line is the SMS), contact checks, masking, and a survey link's status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hub.cases.states import CaseState as S
from hub.engine.reporters import (
    ReporterFacts,
    catch_up_kinds,
    clean_email,
    clean_phone,
    compose,
    result_text,
    survey_status,
    update_kind,
)
from hub.privacy import mask_address
from hub.store.repo import CaseRow, SurveyRow

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def case(**over) -> CaseRow:
    base = dict(
        id=7, state="closed", category="flood", subcategory="flood.road_waterlogging",
        group_key="k", lat=31.2, lon=121.4, grid_id="g-05", town="Jiuting", district="Songjiang",
        place="Gate 3", department="drainage", handler="wang", queue=None, queue_reason=None,
        origin_agent="open311", origin_source="s", origin_event="e", close_mode="photo",
        created_at=T0, updated_at=T0, accepted_at=T0, rejected_at=None, dispatched_at=T0,
        started_at=None, resolved_at=T0, closed_at=T0, closed_by="operator", resolution="fixed",
        first_event_at=T0, last_event_at=T0, event_count=1, active_sources=0, cleared_at=None,
        deadline_min=240, deadline_at=T0, warn_at=None, warned_at=None, escalation_level=0,
        escalated_at=None, sla_due_at=None, reopen_count=0, merged_into=None, screen_reasons=[],
        review_reason=None, before_sha256=None, before_bbox=None, after_sha256=None,
        verify_pending=False, satisfaction=None)
    return CaseRow(**{**base, **over})


@pytest.mark.parametrize(("frm", "to", "action", "kind"), [
    (S.NEW, S.ACCEPTED, None, "accepted"),
    (S.REJECTED, S.ACCEPTED, "overturned", "accepted"),
    (S.ACCEPTED, S.DISPATCHED, None, "dispatched"),
    (S.DISPATCHED, S.DISPATCHED, "redispatched", "dispatched"),
    (S.RESOLVED, S.DISPATCHED, "sent_back", None),  # internal: the work goes on
    (S.DISPATCHED, S.ACCEPTED, "returned", None),  # a department handing it back
    (S.DISPATCHED, S.IN_PROGRESS, None, None),
    (S.DISPATCHED, S.ESCALATED, None, None),
    (S.IN_PROGRESS, S.RESOLVED, None, None),
    (S.RESOLVED, S.CLOSED, None, "closed"),
    (S.NEW, S.REJECTED, None, "rejected"),
    (S.CLOSED, S.REOPENED, None, None),  # the dispatch that follows is told
])
def test_what_a_state_change_tells_a_reporter(frm, to, action, kind):
    assert update_kind(frm, to, action) == kind


def test_a_late_reporter_is_told_where_the_case_stands():
    assert catch_up_kinds("new") == []
    assert catch_up_kinds("accepted") == ["accepted"]
    for state in ("dispatched", "in_progress", "escalated", "resolved", "reopened"):
        assert catch_up_kinds(state) == ["accepted", "dispatched"]
    assert catch_up_kinds("rejected") == ["rejected"]
    assert catch_up_kinds("closed") == []


def test_the_result_in_plain_words_never_an_operators_note():
    assert result_text(case(closed_by="auto_photo")).startswith("fixed; a photo taken after")
    assert result_text(case(closed_by="auto_sensor")) == "fixed; the sensors read normal again"
    assert result_text(case(resolution="false_alarm")).startswith("closed: on inspection no problem")
    assert result_text(case()) == "fixed; an operator confirmed it"


def test_the_message_says_it_on_its_first_line_and_names_no_person():
    facts = ReporterFacts(kind="dispatched", request_id=5, case_id=7,
                          service="Road waterlogging (道路积水)", department="Drainage (排水)",
                          deadline="2026-07-01 20:00 (Asia/Shanghai)", name="Li")
    msg = compose(facts)
    first = msg.text.splitlines()[2]
    assert first.startswith("Your report 5 (now handled as case 7), Road waterlogging")
    assert "sent to Drainage (排水), due by 2026-07-01 20:00" in first
    assert msg.subject == "[cityops] Your report 5: sent to Drainage (排水)"
    assert msg.text.startswith("Hello Li,") and "wang" not in msg.text
    closed = compose(replace(facts, kind="closed", case_id=5, result="fixed; x",
                             survey_url="https://hub/survey/tok", has_after_photo=True))
    assert "is closed: fixed; x" in closed.text and "https://hub/survey/tok" in closed.text
    assert "photo taken after the work" in closed.text and "now handled" not in closed.text
    no_link = compose(replace(facts, kind="closed", result="fixed"))
    assert "/survey/" not in no_link.text
    assert compose(replace(facts, kind="rejected", reasons="outside the service area")) \
        .text.splitlines()[2].endswith("was not accepted: outside the service area. 未予受理。")


def test_contacts_are_checked():
    assert clean_email(" li@example.org ") == "li@example.org"
    for bad in ("li", "li@", "@example.org", "li@example", "a b@example.org", "x" * 250 + "@e.org"):
        assert clean_email(bad) is None, bad
    assert clean_phone("+86 138-0000-0101") == "+8613800000101"
    assert clean_phone("(021) 5555 1234") == "02155551234"
    for bad in ("12345", "+86 138 abc", "１３８００００", "+" + "1" * 21):
        assert clean_phone(bad) is None, bad


def test_addresses_are_masked():
    assert mask_address("resident@example.org") == "r***@example.org"
    assert mask_address("+8613800000101") == "+86*********01"
    assert mask_address("12345") == "1***"


def test_a_survey_link_is_open_once_until_it_expires_or_the_case_reopens():
    survey = SurveyRow(1, 7, 3, 0, "h", T0, T0 + timedelta(days=14), None, None, None)
    closed = case()
    assert survey_status(survey, closed, T0) == "open"
    assert survey_status(None, None, T0) == "unknown"
    assert survey_status(replace(survey, answered_at=T0, answer="satisfied"), closed, T0) == "answered"
    assert survey_status(survey, closed, T0 + timedelta(days=14)) == "expired"
    assert survey_status(survey, case(state="dispatched", reopen_count=1), T0) == "superseded"
    assert survey_status(survey, case(reopen_count=1), T0) == "superseded"  # closed again since
