"""docs/plans.md keeps up with the code: every plan and vitals key, every kind, every
indicator, the example files."""

from __future__ import annotations

from pathlib import Path

from hub.plans.model import Actions, AgentConfigAction, Area, Plan, PlanKind, Point, Trigger
from hub.vitals.config import SUBCATEGORY, Gauge, Kind, VitalsConfig
from hub.vitals.levels import Grading

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "plans.md").read_text()


def test_every_key_is_documented():
    for model in (Plan, Area, Point, Trigger, Actions, AgentConfigAction, VitalsConfig, Gauge, Grading):
        for name in model.model_fields:
            assert f"{name}:" in DOC or f"`{name}`" in DOC, f"document {model.__name__}.{name} in docs/plans.md"


def test_every_kind_indicator_and_category_is_documented():
    for kind in PlanKind:
        assert kind.value in DOC, kind
    for kind in Kind:
        assert f"`{kind.value}." in DOC, kind
    for sub in set(SUBCATEGORY.values()):
        assert f"`{sub}`" in DOC, sub


def test_the_examples_named_in_the_docs_exist():
    for name in ("hub/examples/plans/rainstorm.yaml", "hub/examples/plans/holiday-crowd.yaml",
                 "hub/examples/vitals.yaml"):
        assert name in DOC and (ROOT / name).exists(), name
