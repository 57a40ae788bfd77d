"""Plans as config (strict, file:line:col errors, cross-checks), the pure decisions, and
the store's versions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.config import load_setup
from hub.plans.checks import area_grids, load_plans_dir, parse_plan
from hub.plans.decide import (
    deadline_overrides,
    fired,
    merge_patch,
    push_for,
    restore_for,
    scope_agents,
)
from hub.plans.model import Trigger
from hub.store.sqlite import SqliteRepository
from hub.vitals.levels import Level
from protocol.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "hub" / "examples"
SETUP = load_setup(EXAMPLES / "hub.yaml")
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def parse(text: str, name: str = "plan.yaml"):
    return parse_plan(text, name, SETUP.taxonomy, SETUP.grids, SETUP.departments)


def test_the_example_plans_load_and_name_their_areas():
    assert set(SETUP.plans) == {"rainstorm", "holiday-crowd"}
    rain, _ = SETUP.plans["rainstorm"]
    assert area_grids(rain, SETUP.grids) == {"g-04", "g-05"}
    crowd, _ = SETUP.plans["holiday-crowd"]
    assert area_grids(crowd, SETUP.grids) == {"g-01", "g-02", "g-03"}  # a polygon


def test_errors_point_at_file_line_column_and_name_the_fix():
    text = """name: storm
title: Storm
kind: rainstrom
area: {grids: [g-04, g-99]}
triggers:
  - {type: vital, level: purple}
  - {type: open_cases, categories: [floods], count: 2}
actions:
  deadlines: {flod: 10}
  notify: [plumbers]
  pin_bord: true
"""
    with pytest.raises(ConfigError) as info:
        parse(text)
    msg = str(info.value)
    assert "plan.yaml:3:1 kind" in msg and "rainstorm" in msg
    assert "plan.yaml:6:" in msg and "triggers[0].level" in msg
    assert "plan.yaml:11:3 actions.pin_bord" in msg and "pin_board" in msg
    # Cross-checks come once the shape is right, each at its place.
    fixed = text.replace("rainstrom", "rainstorm").replace("purple", "red").replace("pin_bord", "pin_board")
    with pytest.raises(ConfigError) as info:
        parse(fixed)
    msg = str(info.value)
    assert "plan.yaml:4:22 area.grids[1]: unknown grid 'g-99'" in msg
    assert "plan.yaml:7:37 triggers[1].categories[0]: unknown category 'floods'" in msg
    assert "plan.yaml:9:15 actions.deadlines.flod" in msg
    assert "actions.notify[0]: unknown department 'plumbers'" in msg


def test_trigger_shapes_are_checked():
    with pytest.raises(ValueError, match="needs a level"):
        Trigger(type="vital")
    with pytest.raises(ValueError, match="categories and a count"):
        Trigger(type="open_cases", count=2)
    with pytest.raises(ValueError, match="belong to a vital trigger"):
        Trigger(type="manual", level="red")


def test_a_plans_folder_with_two_plans_of_one_name_is_refused(tmp_path):
    text = (EXAMPLES / "plans" / "rainstorm.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(ConfigError, match="defined twice"):
        load_plans_dir(tmp_path, SETUP.taxonomy, SETUP.grids, SETUP.departments)


def test_triggers_fire_on_levels_and_case_counts():
    vital = Trigger(type="vital", kind="water_level", level="orange")
    assert fired(vital, level_in_area=Level.YELLOW, open_cases={}) is None
    assert "reached orange" in fired(vital, level_in_area=Level.ORANGE, open_cases={})
    assert fired(vital, level_in_area=Level.RED, open_cases={}) is not None
    cases = Trigger(type="open_cases", categories=["flood", "roads"], count=3)
    assert fired(cases, level_in_area=Level.RED, open_cases={"flood": 2}) is None
    assert "3 open cases" in fired(cases, level_in_area=Level.NORMAL, open_cases={"flood": 2, "roads": 1})
    assert fired(Trigger(type="manual"), level_in_area=Level.RED, open_cases={"flood": 9}) is None


def test_scope_is_the_area_plus_named_points_or_only_the_points():
    rain, _ = SETUP.plans["rainstorm"]
    grids = {"underpass-jt1": "g-04", "cam-9": "g-05", "underpass-xq3": "g-03", "new": None}
    assert scope_agents(rain, {"g-04", "g-05"}, grids) == ["cam-9", "underpass-jt1", "underpass-jt2"]
    crowd, _ = SETUP.plans["holiday-crowd"]
    assert scope_agents(crowd, {"g-01", "g-02", "g-03"}, grids) == ["underpass-xq3", "xinqiao-station-cams"]


def test_push_merges_onto_what_the_agent_has_and_restore_puts_it_back():
    d = push_for("a", {"telemetry": {"interval_s": 2}}, 4, {"telemetry": {"interval_s": 9},
                                                              "outbox": {"max_events": 5}}, 6)
    assert d.version == 7 and d.previous_version == 4
    assert d.config == {"telemetry": {"interval_s": 2}, "outbox": {"max_events": 5}}
    back = restore_for("a", d.previous_config, 7)
    assert back.version == 8 and back.config == {"telemetry": {"interval_s": 9}, "outbox": {"max_events": 5}}
    assert restore_for("b", None, 3).config == {}
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"c": None}, "d": [1]}) == {"a": {"b": 1}, "d": [1]}


def test_deadlines_take_the_shortest_of_the_active_plans():
    rain, _ = SETUP.plans["rainstorm"]
    crowd, _ = SETUP.plans["holiday-crowd"]
    assert deadline_overrides([rain, crowd]) == {"flood": 20, "flood.underpass_water_level": 15,
                                                 "community_safety": 20, "roads": 30}
    assert deadline_overrides([]) == {}


def test_the_store_keeps_every_version_and_one_open_activation_per_plan():
    repo = SqliteRepository.memory()
    try:
        with repo.transaction():
            assert repo.save_plan_version("rainstorm", "v1 text", T0, "admin") == 1
            assert repo.save_plan_version("rainstorm", "v2 text", T0, "admin", "shorter deadlines") == 2
        assert [v["version"] for v in repo.plan_versions("rainstorm")] == [2, 1]
        assert repo.plan_text("rainstorm", 1)["text"] == "v1 text"
        assert repo.plan_text("rainstorm")["text"] == "v2 text"
        with repo.transaction():
            first = repo.add_activation("rainstorm", 2, T0, "auto", "level")
        with pytest.raises(Exception, match="UNIQUE"), repo.transaction():
            repo.add_activation("rainstorm", 2, T0, "auto", "again")
        with repo.transaction():
            repo.close_activation(first, T0, "op", "over")
            repo.add_activation("rainstorm", 2, T0, "op", "again")
        assert len(repo.activations("rainstorm")) == 2
    finally:
        repo.close()
