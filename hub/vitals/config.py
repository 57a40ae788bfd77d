"""The vital-signs file (``vitals:`` in the hub config): which readings are watched and
how each indicator is graded.

::

    rise_window_min: 30
    gradings:                         # defaults per indicator kind
      water_level: {yellow: 0.15, orange: 0.3, red: 0.45, hysteresis: 0.05}
      water_rise:  {yellow: 0.2, orange: 0.4, red: 0.8, hysteresis: 0.1}   # m per hour
      case_pressure: {blue: 3, yellow: 5, orange: 8, red: 12, hysteresis: 1}
    gauges:
      - id: jt1-underpass             # the indicator's source id
        agent: underpass-jt1          # the agent whose telemetry carries the reading
        reading: underpass-gauge.level  # device.register, as in telemetry ``readings``
        kind: water_level             # water_level | rainfall | people
        grid: g-04
        grading: {yellow: 0.1, red: 0.4}   # optional: overrides the kind's grading
      - id: xq-station-square
        agent: xinqiao-station-cams   # a camera agent: its people counts are readings too
        reading: station-square.people  # <camera>.people, or <camera>.<zone>.people (count zone)
        kind: people
        grid: g-03

Cross-checks (grids exist; a kind that is graded) live in :func:`check_vitals`, so a bad
file stops ``cityops-hub check-config`` with ``file:line:col`` errors.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id

from ..geo import GridIndex, read_config_text
from .levels import Grading

__all__ = ["Gauge", "Kind", "SUBCATEGORY", "VitalsConfig", "check_vitals", "load_vitals"]


class Kind(StrEnum):
    WATER_LEVEL = "water_level"  # metres, per gauge
    WATER_RISE = "water_rise"  # metres per hour, per water-level gauge (derived)
    RAINFALL = "rainfall"  # mm per hour, where a gauge reports it
    PEOPLE = "people"  # persons counted by a camera's detector
    CASE_PRESSURE = "case_pressure"  # open cases per grid
    DEVICES_OFFLINE = "devices_offline"  # agents offline + devices down per grid


# The taxonomy subcategory of a level change of each kind (protocol/taxonomy.yaml).
SUBCATEGORY = {
    Kind.WATER_LEVEL: "vital_signs.water_level",
    Kind.WATER_RISE: "vital_signs.water_level",
    Kind.RAINFALL: "vital_signs.rainfall",
    Kind.PEOPLE: "vital_signs.crowd",
    Kind.CASE_PRESSURE: "vital_signs.case_pressure",
    Kind.DEVICES_OFFLINE: "vital_signs.devices_offline",
}

UNITS = {Kind.WATER_LEVEL: "m", Kind.WATER_RISE: "m/h", Kind.RAINFALL: "mm/h", Kind.PEOPLE: "",
         Kind.CASE_PRESSURE: "", Kind.DEVICES_OFFLINE: ""}


class Gauge(StrictModel):
    """One watched reading."""

    id: Id = Field(description="source id of the indicator (unique)")
    agent: Id = Field(description="the agent whose telemetry carries the reading")
    reading: Id = Field(description="key in the agent's telemetry readings: a sensor's device.register, "
                        "or a camera's people count <camera>.people / <camera>.<zone>.people")
    kind: Kind = Kind.WATER_LEVEL
    grid: str = Field(description="grid the gauge stands in (its area)")
    place: str = Field("", max_length=200)
    lat: float | None = Field(None, ge=-90, le=90, description="default: the grid's centre")
    lon: float | None = Field(None, ge=-180, le=180)
    grading: Grading | None = Field(None, description="overrides the kind's grading")
    rise_grading: Grading | None = Field(None, description="water_level: overrides water_rise")

    @model_validator(mode="after")
    def _kinds(self) -> Gauge:
        if self.kind not in (Kind.WATER_LEVEL, Kind.RAINFALL, Kind.PEOPLE):
            raise ValueError(f"a gauge reads water_level, rainfall or people, not {self.kind.value}")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class VitalsConfig(StrictModel):
    rise_window_min: float = Field(30, gt=0, le=24 * 60, description="rate of rise over this window")
    rise_min_span_min: float = Field(10, gt=0, description="a rate needs samples spanning this long")
    history_h: float = Field(12, gt=0, le=24 * 14, description="samples kept for the charts")
    sample_every_s: float = Field(60, gt=0, description="chart samples at most this often per indicator")
    gradings: dict[Kind, Grading] = Field(default_factory=dict, description="per kind; a kind "
                                          "without a grading is not watched")
    gauges: list[Gauge] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> VitalsConfig:
        seen: set[str] = set()
        for g in self.gauges:
            if g.id in seen:
                raise ValueError(f"gauge id {g.id!r} is used twice")
            seen.add(g.id)
        return self

    def grading(self, kind: Kind, gauge: Gauge | None = None) -> Grading | None:
        if gauge is not None:
            if kind == Kind.WATER_RISE and gauge.rise_grading is not None:
                return gauge.rise_grading
            if kind == gauge.kind and gauge.grading is not None:
                return gauge.grading
        return self.gradings.get(kind)


def _problem(doc: Document | None, where: tuple, message: str) -> ConfigProblem:
    if doc is not None:
        return doc.problem(where, message)
    return ConfigProblem("<vitals>", None, None, ".".join(map(str, where)), message)


def check_vitals(config: VitalsConfig, doc: Document | None, grids: GridIndex) -> None:
    problems = []
    for i, g in enumerate(config.gauges):
        if g.grid not in grids:
            where = ("gauges", i, "grid")
            message = f"unknown grid {g.grid!r}; it is not in the grids file"
            problems.append(_problem(doc, where, message))
        if config.grading(g.kind, g) is None:
            where = ("gauges", i, "kind")
            message = f"no grading for {g.kind.value}: add gradings.{g.kind.value} or this gauge's grading"
            problems.append(_problem(doc, where, message))
    if problems:
        raise ConfigError(problems)


def load_vitals(path: str | Path, grids: GridIndex) -> VitalsConfig:
    doc = parse_yaml(read_config_text(path, "vitals file"), str(path))
    config = validate_document(VitalsConfig, doc)
    check_vitals(config, doc, grids)
    return config
