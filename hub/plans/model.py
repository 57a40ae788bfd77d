"""A response plan: YAML people write, validated like every config.

::

    name: rainstorm-jiuting
    title: Rainstorm response, Jiuting
    kind: rainstorm
    area: {grids: [g-04, g-05]}            # or {polygon: [[lon, lat], ...]}
    points:                                # the "video plan": what to watch and why
      - {agent: underpass-jt1, device: underpass-gauge, purpose: underpass water level}
      - {agent: cam-jt-7, camera: gate, purpose: estate entrance}
    triggers:
      - {type: manual}
      - {type: vital, kind: water_level, level: orange}
      - {type: open_cases, categories: [flood], count: 3}
    actions:
      agent_config:                        # overlay pushed to the agents in scope
        overlay: {telemetry: {interval_s: 10}}
        scope: area                        # area (agents in the area or named in points) | points
      deadlines: {flood: 30}               # minutes; only ever shortens a deadline
      notify: [drainage, emergency]
      pin_board: true

Cross-checks against the taxonomy and the grids are in :mod:`hub.plans.checks`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.ids import Id

from ..vitals.config import Kind
from ..vitals.levels import Level

__all__ = ["Actions", "AgentConfigAction", "Area", "Plan", "PlanKind", "Point", "Trigger"]

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]


class PlanKind(StrEnum):
    RAINSTORM = "rainstorm"
    TYPHOON = "typhoon"
    HOLIDAY_CROWD = "holiday_crowd"
    MAJOR_EVENT = "major_event"
    HAZCHEM = "hazchem"
    HEATWAVE = "heatwave"
    OTHER = "other"


class Area(StrictModel):
    grids: list[str] = Field(default_factory=list, description="grid ids")
    polygon: list[tuple[float, float]] | None = Field(
        None, min_length=3, description="[lon, lat] corners; the grids whose centre lies inside")

    @model_validator(mode="after")
    def _one(self) -> Area:
        if not self.grids and not self.polygon:
            raise ValueError("give grids or a polygon")
        if self.grids and self.polygon:
            raise ValueError("give grids or a polygon, not both")
        return self


class Point(StrictModel):
    """A curated camera or sensor, with why it is watched."""

    agent: Id
    camera: Id | None = None
    device: Id | None = None
    purpose: str = Field(min_length=1, max_length=200)
    place: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _what(self) -> Point:
        if (self.camera is None) == (self.device is None):
            raise ValueError("name exactly one of camera or device")
        return self


class Trigger(StrictModel):
    type: Literal["manual", "vital", "open_cases"]
    kind: Kind | None = Field(None, description="vital: the indicator kind; none: any")
    level: Literal["blue", "yellow", "orange", "red"] | None = Field(
        None, description="vital: activate when an indicator in the area reaches this")
    categories: list[str] = Field(default_factory=list, description="open_cases: category codes")
    count: int | None = Field(None, ge=1, description="open_cases: this many open in the area")

    @model_validator(mode="after")
    def _fields(self) -> Trigger:
        if self.type == "vital" and self.level is None:
            raise ValueError("a vital trigger needs a level (blue, yellow, orange or red)")
        if self.type == "open_cases" and (self.count is None or not self.categories):
            raise ValueError("an open_cases trigger needs categories and a count")
        if self.type != "vital" and (self.kind is not None or self.level is not None):
            raise ValueError("kind and level belong to a vital trigger")
        if self.type != "open_cases" and (self.categories or self.count is not None):
            raise ValueError("categories and count belong to an open_cases trigger")
        return self

    @property
    def threshold(self) -> Level:
        return Level.parse(self.level or "red")


class AgentConfigAction(StrictModel):
    overlay: dict[str, Any] = Field(description="desired-config overlay (JSON merge patch)")
    scope: Literal["area", "points"] = Field(
        "area", description="area: agents in the area and those named in points; points: only those")


class Actions(StrictModel):
    agent_config: AgentConfigAction | None = None
    deadlines: dict[str, int] = Field(
        default_factory=dict, description="category or subcategory → minutes (never lengthens)")
    notify: list[str] = Field(default_factory=list, description="departments told on activation")
    pin_board: bool = Field(True, description="show the plan's board on the status page")


class Plan(StrictModel):
    name: Name
    title: str = Field(min_length=1, max_length=200)
    kind: PlanKind
    description: str = Field("", max_length=4000)
    area: Area
    points: list[Point] = Field(default_factory=list, max_length=500)
    triggers: list[Trigger] = Field(default_factory=lambda: [Trigger(type="manual")], min_length=1)
    actions: Actions = Field(default_factory=Actions)

    def watched_kinds(self) -> set[Kind]:
        return {t.kind for t in self.triggers if t.type == "vital" and t.kind is not None}
