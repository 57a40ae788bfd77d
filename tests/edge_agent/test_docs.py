"""docs/agent.md keeps up with the code: every config key, register-map key, rule, event
subcategory and command the agent has is documented."""

from __future__ import annotations

import re

from agent_testlib import ROOT
from pydantic import BaseModel

from edge_agent.config import AgentConfig, RegisterMap
from edge_agent.rules.engine import build_rules

DOC = (ROOT / "docs" / "agent.md").read_text()


def _keys(model: type[BaseModel], seen: set) -> set[str]:
    out: set[str] = set()
    if model in seen:
        return out
    seen.add(model)
    for name, field in model.model_fields.items():
        out.add(field.alias or name)
        for sub in _models(field.annotation):
            out |= _keys(sub, seen)
    return out


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found += _models(arg)
    return found


def test_every_config_key_is_documented():
    missing = sorted(k for k in _keys(AgentConfig, set()) | _keys(RegisterMap, set())
                     if not re.search(rf"\b{re.escape(k)}\b", DOC))
    assert not missing, f"docs/agent.md does not mention these config keys: {missing}"


def test_every_rule_and_event_subcategory_is_documented():
    from edge_agent.config import DeviceConfig, DeviceRules

    for rule_name in DeviceRules.model_fields:
        assert f"`{rule_name}`" in DOC
    configs = {"water_no_use": {}, "continuous_flow": {}, "level": {"high": 2, "clear_below": 1},
               "smoke_alarm": {"register": "s.a"}, "call_button": {"register": "s.a"}}
    for name, cfg in configs.items():
        (rule,) = build_rules(DeviceConfig(id="d", model="m", tcp={"host": "h"}, rules={name: cfg}))
        assert rule.subcategory in DOC, rule.subcategory
    for code in ("flood.underpass_water_level", "device.offline"):
        assert code in DOC


def test_every_option_of_the_operating_commands_is_documented():
    """run, check-config, provision and outbox: each of their options is in docs/agent.md
    (the training and evaluation commands are documented in docs/camera.md)."""
    from edge_agent.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("run", "check-config", "provision", "outbox"):
        assert f"`cityops-agent {name}" in DOC, name
        for action in sub.choices[name]._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in DOC, f"cityops-agent {name} {option} is not in docs/agent.md"
