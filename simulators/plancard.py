"""The scorecard's response plans and vital-sign warning levels.

Pure: the plan activations and level changes the hub stored (read by
:mod:`simulators.hubaudit`) in, two plain summaries out, on the scenario's simulated
clock (seconds since its start, like the problems' ``start_s``):

* ``plans`` — one row per activation: which plan, when, by whom and by which trigger,
  and when it ended;
* ``warning_levels`` — the highest level each indicator reached, and every level change.

The hub records why a plan activated as a sentence (``hub/plans/decide.py``: "water_level
reached orange (trigger: orange)", "3 open cases of flood (trigger: 3)"); :func:`trigger`
reads it back. A sentence it does not know is reported as type ``unknown`` with the
sentence itself, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .hubaudit import StoredActivation, StoredIndicator, StoredLevelChange
from .progress import format_duration

__all__ = ["LEVELS", "format_plans", "plan_rows", "trigger", "warning_levels"]

LEVELS = ("normal", "blue", "yellow", "orange", "red")  # hub/vitals/levels.py, lowest first

_VITAL = re.compile(r"^(?P<kind>.+?) reached (?P<reached>\w+) \(trigger: (?P<level>\w+)\)$")
_OPEN = re.compile(r"^(?P<n>\d+) open cases of (?P<cats>.+) \(trigger: (?P<count>\d+)\)$")


def trigger(activated_by: str, reason: str) -> dict[str, Any]:
    """Which trigger activated a plan, from the activation's actor and reason."""
    if activated_by != "auto":
        return {"type": "manual", "by": activated_by}
    if (m := _VITAL.match(reason)) and m["reached"] in LEVELS and m["level"] in LEVELS:
        kind = None if m["kind"] == "a vital sign" else m["kind"]
        return {"type": "vital", "kind": kind, "level": m["level"], "reached": m["reached"]}
    if m := _OPEN.match(reason):
        return {"type": "open_cases", "categories": m["cats"].split(", "), "count": int(m["count"]),
                "open": int(m["n"])}
    return {"type": "unknown"}


def plan_rows(activations: list[StoredActivation], sim: Callable[[datetime], float]) -> list[dict[str, Any]]:
    """One row per activation, in the order they happened; ``sim`` turns a stored time
    into simulated seconds since the scenario's start."""
    rows = []
    for a in sorted(activations, key=lambda a: a.activated_at):
        rows.append({
            "plan": a.plan, "version": a.version,
            "activated_at_s": round(sim(a.activated_at), 1),
            "activated_by": a.activated_by, "trigger": trigger(a.activated_by, a.reason),
            "reason": a.reason,
            "deactivated_at_s": None if a.deactivated_at is None else round(sim(a.deactivated_at), 1),
            "deactivated_by": a.deactivated_by, "deactivate_reason": a.deactivate_reason,
        })
    return rows


def _rank(label: str) -> int:
    if label not in LEVELS:
        raise ValueError(f"unknown warning level {label!r} in the hub's store; the levels are "
                         f"{', '.join(LEVELS)} (hub/vitals/levels.py): update simulators/plancard.py")
    return LEVELS.index(label)


def warning_levels(indicators: list[StoredIndicator], changes: list[StoredLevelChange],
                   sim: Callable[[datetime], float]) -> dict[str, Any]:
    """``highest``: indicator → the highest level it reached (``normal`` for one that
    never left it); ``changes``: every level change in time order."""
    highest: dict[str, str] = {}
    for ind in indicators:
        if not 0 <= ind.level < len(LEVELS):
            raise ValueError(f"indicator {ind.indicator} has level {ind.level} in the hub's store; the levels "
                             f"are 0-{len(LEVELS) - 1} (hub/vitals/levels.py): update simulators/plancard.py")
        highest[ind.indicator] = LEVELS[ind.level]
    ordered = sorted(changes, key=lambda c: c.at)
    for c in ordered:
        best = max((highest.get(c.indicator, "normal"), c.after, c.before), key=_rank)
        highest[c.indicator] = best
    return {
        "highest": dict(sorted(highest.items())),
        "changes": [{"at_s": round(sim(c.at), 1), "indicator": c.indicator, "kind": c.kind,
                     "grid": c.grid, "from": c.before, "to": c.after, "value": c.value}
                    for c in ordered],
    }


def format_plans(summary: dict[str, Any]) -> list[str]:
    """The scorecard's plan and warning lines for people (none when nothing happened)."""
    lines = []
    for row in summary.get("plans", []):
        until = ("" if row["deactivated_at_s"] is None else
                 f", deactivated at {format_duration(row['deactivated_at_s'])} by {row['deactivated_by']}")
        lines.append(f"  plan     {row['plan']} activated at {format_duration(row['activated_at_s'])} "
                     f"by {row['activated_by']} ({row['reason']}){until}")
    levels = summary.get("warning_levels", {"highest": {}, "changes": []})
    raised = {i: lv for i, lv in levels["highest"].items() if lv != "normal"}
    if raised:
        lines.append(f"  warnings {len(levels['changes'])} level change(s); highest: "
                     + ", ".join(f"{i} {lv}" for i, lv in raised.items()))
    return lines
