"""The scorecard's plans and warning levels, on hand-made stores: which trigger activated
a plan, read back from the hub's own sentence, and each indicator's highest level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.plans.decide import fired
from hub.plans.model import Trigger
from hub.vitals.levels import Level
from simulators.hubaudit import StoreAudit, StoredActivation, StoredIndicator, StoredLevelChange
from simulators.plancard import LEVELS, format_plans, trigger, warning_levels
from simulators.scoring import scorecard

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def sim(when: datetime) -> float:
    return (when - T0).total_seconds()


def change(indicator: str, s: float, before: str, after: str, value: float = 0.3) -> StoredLevelChange:
    return StoredLevelChange(indicator, "water_level", "g-04", at(s), before, after, value)


def test_levels_are_the_hubs():
    assert [lv.label for lv in Level] == list(LEVELS)


def test_the_trigger_is_read_back_from_the_sentence_the_hub_writes():
    vital = fired(Trigger(type="vital", kind="water_level", level="orange"),
                  level_in_area=Level.RED, open_cases={})
    assert trigger("auto", vital) == {"type": "vital", "kind": "water_level", "level": "orange", "reached": "red"}
    anything = fired(Trigger(type="vital", level="yellow"), level_in_area=Level.YELLOW, open_cases={})
    assert trigger("auto", anything)["kind"] is None
    cases = fired(Trigger(type="open_cases", categories=["flood", "road"], count=3),
                  level_in_area=Level.NORMAL, open_cases={"flood": 2, "road": 2})
    assert trigger("auto", cases) == {"type": "open_cases", "categories": ["flood", "road"], "count": 3, "open": 4}
    assert trigger("duty-lee", "manual") == {"type": "manual", "by": "duty-lee"}
    assert trigger("auto", "the moon was full") == {"type": "unknown"}


def test_highest_levels_and_changes_in_time_order():
    indicators = [StoredIndicator("water_level.jt1", "water_level", "g-04", 0),
                  StoredIndicator("water_level.creek", "water_level", "g-05", 2),
                  StoredIndicator("case_pressure.g-04", "case_pressure", "g-04", 0)]
    changes = [change("water_level.jt1", 900, "yellow", "red", 0.45),
               change("water_level.jt1", 600, "normal", "yellow"),
               change("water_level.jt1", 1500, "red", "normal", 0.01),
               change("water_level.creek", 700, "normal", "yellow", 3.95)]
    out = warning_levels(indicators, changes, sim)
    # back to normal now, but it was red; one never warned; one still yellow
    assert out["highest"] == {"case_pressure.g-04": "normal", "water_level.creek": "yellow",
                              "water_level.jt1": "red"}
    assert [(c["at_s"], c["indicator"], c["from"], c["to"]) for c in out["changes"]] == [
        (600.0, "water_level.jt1", "normal", "yellow"), (700.0, "water_level.creek", "normal", "yellow"),
        (900.0, "water_level.jt1", "yellow", "red"), (1500.0, "water_level.jt1", "red", "normal")]


def test_a_level_the_scorecard_does_not_know_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="simulators/plancard.py"):
        warning_levels([], [change("water_level.jt1", 1, "normal", "purple")], sim)
    with pytest.raises(ValueError, match="level 7"):
        warning_levels([StoredIndicator("x", "water_level", "g-04", 7)], [], sim)


def test_the_scorecard_lists_activations_on_the_scenario_clock():
    audit = StoreAudit(activations=[
        StoredActivation("rainstorm", 2, at(9000), "auto", "3 open cases of flood (trigger: 3)",
                         at(30_000), "duty-lee", "the water has gone"),
        StoredActivation("rainstorm", 2, at(40_000), "auto", "water_level reached red (trigger: orange)",
                         None, None, None)],
        indicators=[StoredIndicator("water_level.jt1", "water_level", "g-04", 4)],
        level_changes=[change("water_level.jt1", 39_000, "normal", "red", 0.5)])
    card = scorecard([], [], audit, T0, horizon=50_000)
    first, second = card["plans"]
    assert (first["activated_at_s"], first["deactivated_at_s"], first["deactivated_by"]) == (9000.0, 30_000.0, "duty-lee")
    assert first["trigger"]["type"] == "open_cases" and second["trigger"]["type"] == "vital"
    assert second["deactivated_at_s"] is None and second["version"] == 2
    assert card["warning_levels"]["highest"] == {"water_level.jt1": "red"}
    text = "\n".join(format_plans(card))
    assert "rainstorm activated at 2h30m by auto (3 open cases of flood (trigger: 3))" in text
    assert "highest: water_level.jt1 red" in text


def test_nothing_to_say_without_plans_or_warnings():
    card = scorecard([], [], StoreAudit(indicators=[StoredIndicator("x", "water_level", "g-04", 0)]), T0, 10)
    assert card["plans"] == [] and format_plans(card) == []
