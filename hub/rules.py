"""Per-category case rules: the taxonomy's defaults, overridden by the hub config.

The taxonomy (``protocol/taxonomy.yaml``) gives every subcategory a minimum confidence,
the evidence it needs, a merge radius and window, a deadline, a default department and
a close mode. The hub config's ``screening.rules`` may override any of them for a whole
category (``flood``) or one subcategory (``flood.road_waterlogging``); the subcategory
entry wins over the category entry, which wins over the taxonomy.

:func:`resolve_rules` turns that into one :class:`CaseRule` per subcategory, which the
pure screening, merging, SLA and closure functions read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field, model_validator

from protocol.base import StrictModel
from protocol.taxonomy import CloseMode, Evidence, Taxonomy

__all__ = [
    "CaseRule",
    "MaintenanceWindow",
    "MergeScope",
    "RepeatOffender",
    "RuleOverride",
    "ScreeningConfig",
    "resolve_rules",
]


class MergeScope(StrEnum):
    AREA = "area"  # events of any source within the radius join one case
    SOURCE = "source"  # only events from the same agent and source join (per resident, per meter)


class RuleOverride(StrictModel):
    """Overrides for one category or subcategory; every field is optional."""

    min_confidence: float | None = Field(None, ge=0, le=1)
    evidence: list[Evidence] | None = Field(None, description="evidence an event must carry")
    merge_radius_m: float | None = Field(None, ge=0)
    merge_window_min: float | None = Field(None, ge=0)
    merge_scope: MergeScope | None = Field(
        None, description="area (default; 'source' when the radius is 0) or source"
    )
    deadline_min: int | None = Field(None, gt=0)
    department: str | None = None
    close: CloseMode | None = None
    clear_hold_s: float | None = Field(
        None, ge=0, description="how long a sensor source must stay clear before the case closes"
    )
    auto_accept: bool | None = Field(
        None, description="false: every event of this kind waits for an operator"
    )


class MaintenanceWindow(StrictModel):
    """While a window is active, matching events are rejected with reason maintenance_window."""

    name: str = Field(min_length=1, max_length=200)
    start: AwareDatetime
    end: AwareDatetime
    grids: list[str] = Field(default_factory=list, description="empty: every grid")
    agents: list[str] = Field(default_factory=list, description="empty: every agent")
    sources: list[str] = Field(
        default_factory=list, description="'agent_id/source' pairs; empty: every source"
    )
    categories: list[str] = Field(
        default_factory=list, description="category or subcategory codes; empty: every one"
    )

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def matches(self, *, at: datetime, grid_id: str | None, agent_id: str, source: str,
                subcategory: str) -> bool:
        if not (self.start <= at < self.end):
            return False
        if self.grids and grid_id not in self.grids:
            return False
        if self.agents and agent_id not in self.agents:
            return False
        if self.sources and f"{agent_id}/{source}" not in self.sources:
            return False
        category = subcategory.split(".", 1)[0]
        return not self.categories or subcategory in self.categories or category in self.categories


class RepeatOffender(StrictModel):
    """A source whose cases were rejected or closed as false alarms ``max_false`` times
    within ``window_h`` hours has its next events rejected (reason repeat_offender)."""

    enabled: bool = True
    max_false: int = Field(5, ge=1)
    window_h: float = Field(24, gt=0)


class ScreeningConfig(StrictModel):
    rules: dict[str, RuleOverride] = Field(
        default_factory=dict, description="category or subcategory code → overrides"
    )
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    repeat_offender: RepeatOffender = Field(default_factory=RepeatOffender)
    clear_hold_s: float = Field(300, ge=0, description="default hold time for sensor closure")


@dataclass(frozen=True)
class CaseRule:
    """Everything the engine needs to know about one subcategory."""

    subcategory: str
    category: str
    min_confidence: float
    evidence: frozenset[str]
    merge_radius_m: float
    merge_window_min: float
    merge_scope: MergeScope
    deadline_min: int
    department: str
    close: CloseMode
    clear_hold_s: float
    auto_accept: bool


def resolve_rules(tax: Taxonomy, screening: ScreeningConfig) -> dict[str, CaseRule]:
    """One :class:`CaseRule` per subcategory (retired ones included: old cases need them)."""
    out: dict[str, CaseRule] = {}
    for sub in tax.subcategories():
        layers = [screening.rules.get(sub.category), screening.rules.get(sub.code)]

        def pick(name: str, default, layers=layers):
            value = default
            for layer in layers:
                if layer is not None and getattr(layer, name) is not None:
                    value = getattr(layer, name)
            return value

        radius = pick("merge_radius_m", sub.merge.radius_m)
        scope = pick("merge_scope", MergeScope.AREA if radius > 0 else MergeScope.SOURCE)
        out[sub.code] = CaseRule(
            subcategory=sub.code,
            category=sub.category,
            min_confidence=pick("min_confidence", sub.min_confidence),
            evidence=frozenset(e.value for e in pick("evidence", sub.evidence)),
            merge_radius_m=radius,
            merge_window_min=pick("merge_window_min", sub.merge.window_min),
            merge_scope=MergeScope(scope),
            deadline_min=pick("deadline_min", sub.deadline_min),
            department=pick("department", sub.department),
            close=CloseMode(pick("close", sub.close)),
            clear_hold_s=pick("clear_hold_s", screening.clear_hold_s),
            auto_accept=pick("auto_accept", True),
        )
    return out
