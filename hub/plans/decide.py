"""Plan decisions (pure): does a trigger fire, which agents are in scope, what desired
config each agent gets on activation and on deactivation, which deadlines apply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.overlay import merge_patch

from ..vitals.levels import Level
from .model import Plan, Trigger

__all__ = ["Desired", "deadline_overrides", "fired", "merge_patch", "push_for", "restore_for",
           "scope_agents"]


def fired(trigger: Trigger, *, level_in_area: Level, open_cases: Mapping[str, int]) -> str | None:
    """Why ``trigger`` fires now (a sentence), or None. ``level_in_area``: the highest
    level of the trigger's indicator kind in the plan's area; ``open_cases``: open cases
    in the area per category."""
    if trigger.type == "vital" and level_in_area >= trigger.threshold:
        what = trigger.kind.value if trigger.kind else "a vital sign"
        return f"{what} reached {level_in_area.label} (trigger: {trigger.threshold.label})"
    if trigger.type == "open_cases" and trigger.count is not None:
        n = sum(open_cases.get(c, 0) for c in trigger.categories)
        if n >= trigger.count:
            return f"{n} open cases of {', '.join(trigger.categories)} (trigger: {trigger.count})"
    return None


def scope_agents(plan: Plan, area: set[str], agent_grids: Mapping[str, str | None]) -> list[str]:
    """Agents that receive the plan's config: those named in its points, and (scope
    ``area``) every known agent whose grid is in the area."""
    named = {p.agent for p in plan.points}
    ac = plan.actions.agent_config
    if ac is None:
        return []
    if ac.scope == "area":
        named |= {a for a, g in agent_grids.items() if g in area}
    return sorted(named)


@dataclass(frozen=True)
class Desired:
    agent_id: str
    version: int
    config: dict[str, Any]
    previous_version: int | None
    previous_config: dict[str, Any] | None


def push_for(agent_id: str, overlay: Mapping[str, Any], current_version: int | None,
             current_config: Mapping[str, Any] | None, highest_version: int) -> Desired:
    """The desired config that applies a plan's overlay on top of what the agent has."""
    merged = merge_patch(dict(current_config or {}), overlay)
    return Desired(agent_id, highest_version + 1, merged, current_version,
                   dict(current_config) if current_config is not None else None)


def restore_for(agent_id: str, previous_config: Mapping[str, Any] | None, highest_version: int) -> Desired:
    """The desired config that puts back what the agent had before the plan (an empty
    overlay when it had none: the agent's own file). A new version, so it applies."""
    return Desired(agent_id, highest_version + 1, dict(previous_config or {}), None, None)


def deadline_overrides(plans: Iterable[Plan]) -> dict[str, int]:
    """The shortest deadline per code over the active plans."""
    out: dict[str, int] = {}
    for plan in plans:
        for code, minutes in plan.actions.deadlines.items():
            out[code] = min(minutes, out.get(code, minutes))
    return out
