"""The care registry (file:line:col errors, contacts checked against notify:), the hub's
pure decision per alarm message, and the call button's tiers on the agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.config.rules import AlarmRuleConfig, NotifyTier
from edge_agent.rules import Sample, call_button_rule
from hub.care import (
    AlarmFacts,
    CareMessage,
    CareStep,
    decide,
    load_care,
    parse_care,
    parse_message,
)
from protocol.errors import ConfigError

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)

GOOD = """\
contacts:
  wang-family:
    name: 王女士 / Ms Wang
    role: family
    reach:
      - {channel: email, address: wang@example.org}
  grid-li:
    name: 李明 / Li Ming
    role: grid_worker
    reach: [{channel: wecom, address: grid-g01}]
residents:
  - agent: agent-1
    source: wm-101
    ref: "1-101"
    tiers: {1: [wang-family], 2: [grid-li]}
"""


def test_the_registry_names_each_tiers_contacts():
    reg = parse_care(GOOD, "care.yaml", {"email": None, "wecom": {"grid-g01"}})
    assert [k for k, _ in reg.tier_contacts("agent-1", "wm-101", 1)] == ["wang-family"]
    assert [c.role for _, c in reg.tier_contacts("agent-1", "wm-101", 2)] == ["grid_worker"]
    assert reg.tier_contacts("agent-1", "wm-101", 3) == []
    assert reg.tier_contacts("agent-1", "other", 1) == [] and reg.resident("x", "y") is None


@pytest.mark.parametrize(("text", "endpoints", "expected"), [
    (GOOD.replace("[grid-li]}", "[grid-li, nobody]}"), None,
     "care.yaml:15:5 residents[0].tiers[2][1]: unknown contact 'nobody'"),
    (GOOD, {"email": None}, "care.yaml:10:14 contacts.grid-li.reach[0].channel: channel wecom is "
                            "not set up in hub.yaml"),
    (GOOD, {"email": None, "wecom": {"other"}}, "no wecom named 'grid-g01'"),
    (GOOD.replace("wang@example.org", "wang"), None, "is not an email address"),
    (GOOD.replace("role: family", "role: cousin"), None, "contacts.wang-family.role"),
    (GOOD + "  - {agent: agent-1, source: wm-101, tiers: {1: [grid-li]}}\n", None,
     "residents[1]: agent-1/wm-101 is listed twice"),
    (GOOD.replace("{1: [wang-family]", "{0: [wang-family]"), None, "care.yaml:15:5 residents[0].tiers[0]: Input should be greater than or equal to 1"),
    (GOOD.replace("ref:", "name_of_resident:"), None, "name_of_resident"),
])
def test_registry_errors_point_at_the_place(text, endpoints, expected):
    with pytest.raises(ConfigError) as err:
        parse_care(text, "care.yaml", endpoints)
    assert expected in str(err.value), str(err.value)


def test_the_example_registry_loads_and_names_the_demo_meter():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "hub" / "examples" / "care.yaml"
    reg = load_care(example, {"email": None, "sms": None, "wecom": {"grid-g01"}})
    tiers = [[c.role for _, c in reg.tier_contacts("demo-agent-1", "wm-demo-101", n)] for n in (1, 2, 3)]
    assert tiers == [["grid_worker"], ["family"], ["community_doctor"]]
    with pytest.raises(ConfigError, match="channel wecom is not set up"):
        load_care(example, {"email": None, "sms": None})


FRESH = AlarmFacts(frozenset(), acknowledged=False, confirmed=False, ended=False)


def test_a_tier_is_told_once_and_after_the_acknowledgement_only_counted():
    new = parse_message("new", '{"tier": 1, "notify": "family"}')
    assert decide(FRESH, new) == CareStep(notify_tier=1)
    seen = AlarmFacts(frozenset({1}), False, False, False)
    assert decide(seen, new) == CareStep()  # redelivered: nothing again
    tier2 = parse_message("update", {"tier": 2})
    assert decide(seen, tier2) == CareStep(notify_tier=2)
    acked = AlarmFacts(frozenset({1}), True, False, False)
    assert decide(acked, tier2) == CareStep(after_ack_tier=2)


def test_the_agents_confirmation_and_the_end():
    acked = AlarmFacts(frozenset({1, 2}), True, False, False)
    confirm = parse_message("update", {"tier": 2, "acknowledged": True, "acknowledged_by": "op"})
    assert decide(acked, confirm) == CareStep(confirm=True)
    assert decide(AlarmFacts(frozenset({1, 2}), True, True, False), confirm) == CareStep()
    end = parse_message("end", {"reason": "water_used"})
    assert decide(acked, end) == CareStep(end_reason="water_used")
    ended = AlarmFacts(frozenset({1}), False, False, True)
    assert decide(ended, parse_message("update", {"tier": 3})) == CareStep()  # late: ignored


@pytest.mark.parametrize(("attrs", "kind", "tier"), [
    (None, "new", 1), ("not json", "new", 1), ({"tier": 0}, "new", 1), ({"tier": True}, "update", None),
    ({"tier": 9}, "update", None), ({"tier": "2"}, "update", None), ({"tier": 3}, "update", 3),
])
def test_a_message_without_a_sane_tier(attrs, kind, tier):
    assert parse_message(kind, attrs) == CareMessage(kind, tier, False, None)


def _press(rule, state, at, on):
    return rule.step(state, Sample(at, {"status.call": 1.0 if on else 0.0}))


def test_a_call_button_with_tiers_escalates_until_acknowledged_and_cancelling_ends_it():
    rule = call_button_rule(AlarmRuleConfig(register="status.call", clear_after_s=30, tiers=[
        NotifyTier(notify="family", after_min=0), NotifyTier(notify="grid_worker", after_min=5),
        NotifyTier(notify="community_doctor", after_min=10)]))
    s, d = _press(rule, rule.initial(), T0, True)
    assert d.kind == "new" and d.attributes["tier"] == 1 and d.attributes["notify"] == "family"
    s, d = _press(rule, s, T0 + timedelta(minutes=4), True)
    assert d is None
    s, d = _press(rule, s, T0 + timedelta(minutes=5), True)
    assert d.kind == "update" and d.attributes["tier"] == 2
    s, d = rule.acknowledge(s, "op-li", (T0 + timedelta(minutes=6)).timestamp())
    assert d.kind == "update" and d.attributes["acknowledged"] is True and d.attributes["tier"] == 2
    s, d = _press(rule, s, T0 + timedelta(minutes=11), True)
    assert d is None  # no tier 3
    s, d = _press(rule, s, T0 + timedelta(minutes=12), False)  # cancelled at the button
    s, d = _press(rule, s, T0 + timedelta(minutes=12, seconds=31), False)
    assert d.kind == "end" and d.attributes["reason"] == "cleared"


def test_a_call_button_without_tiers_says_no_tier_and_tiers_must_escalate():
    rule = call_button_rule(AlarmRuleConfig(register="status.call"))
    _, d = _press(rule, rule.initial(), T0, True)
    assert "tier" not in d.attributes
    with pytest.raises(ValueError, match="tiers must escalate"):
        AlarmRuleConfig(register="status.call", tiers=[
            NotifyTier(notify="family", after_min=0), NotifyTier(notify="doctor", after_min=0)])
