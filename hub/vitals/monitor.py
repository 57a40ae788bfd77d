"""The vital-signs state (pure: plain data in, level changes out; no I/O, no clock).

Indicators, each with an id ``{kind}.{source}``:

* per gauge: ``water_level.<gauge>``, ``water_rise.<gauge>`` (least-squares slope over
  ``rise_window_min``), ``rainfall.<gauge>``, ``people.<camera gauge>``;
* per grid: ``case_pressure.<grid>`` (open cases), ``devices_offline.<grid>`` (agents
  offline or silent, devices down);
* per area (grid), derived: the highest level of the grid's indicators
  (:meth:`VitalsMonitor.area_levels`), what the map shows and plans may watch.

Feed it with :meth:`observe_readings` (telemetry) and :meth:`observe_counts` (the
periodic counts); each returns the :class:`LevelChange` list and the chart samples due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..geo import GridIndex
from .config import UNITS, Gauge, Kind, VitalsConfig
from .levels import GradeState, Grading, Level, step
from .series import Series

__all__ = ["Indicator", "LevelChange", "Sample", "VitalsMonitor", "indicator_id"]


def indicator_id(kind: Kind, source: str) -> str:
    return f"{kind.value}.{source}"


@dataclass
class Indicator:
    id: str
    kind: Kind
    source: str
    grid: str
    lat: float
    lon: float
    place: str
    unit: str
    grading: Grading
    state: GradeState = field(default_factory=GradeState)
    value: float | None = None
    at: datetime | None = None
    sampled_at: datetime | None = None

    @property
    def level(self) -> Level:
        return self.state.level


@dataclass(frozen=True)
class LevelChange:
    indicator: str
    kind: Kind
    source: str
    grid: str
    lat: float
    lon: float
    place: str
    unit: str
    before: Level
    after: Level
    value: float
    at: datetime


@dataclass(frozen=True)
class Sample:
    indicator: str
    at: datetime
    value: float
    level: Level


@dataclass
class Observed:
    changes: list[LevelChange] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def extend(self, other: Observed) -> None:
        self.changes.extend(other.changes)
        self.samples.extend(other.samples)


class VitalsMonitor:
    def __init__(self, config: VitalsConfig, grids: GridIndex) -> None:
        self.config = config
        self.grids = grids
        self.indicators: dict[str, Indicator] = {}
        self._by_reading: dict[tuple[str, str], list[tuple[Gauge, Indicator]]] = {}
        self._series: dict[str, Series] = {}
        for gauge in config.gauges:
            kinds = [gauge.kind] + ([Kind.WATER_RISE] if gauge.kind == Kind.WATER_LEVEL else [])
            for kind in kinds:
                grading = config.grading(kind, gauge)
                if grading is None:
                    continue
                ind = self._make(kind, gauge.id, gauge.grid, grading, gauge.lat, gauge.lon, gauge.place)
                self._by_reading.setdefault((gauge.agent, gauge.reading), []).append((gauge, ind))
        for grid in grids.grids:
            for kind in (Kind.CASE_PRESSURE, Kind.DEVICES_OFFLINE):
                grading = config.grading(kind)
                if grading is not None:
                    self._make(kind, grid.grid_id, grid.grid_id, grading, None, None, grid.name)

    def _make(self, kind: Kind, source: str, grid: str, grading: Grading, lat: float | None,
              lon: float | None, place: str) -> Indicator:
        if lat is None or lon is None:
            g = self.grids.get(grid)
            lat, lon = g.centroid() if g else (0.0, 0.0)
        ind = Indicator(indicator_id(kind, source), kind, source, grid, lat, lon, place,
                        UNITS[kind], grading)
        self.indicators[ind.id] = ind
        return ind

    # -- state ------------------------------------------------------------------------------
    def restore(self, levels: dict[str, tuple[int, float | None]]) -> None:
        """Levels as stored (after a restart): ``{indicator id: (level, value)}``."""
        for ind_id, (level, value) in levels.items():
            ind = self.indicators.get(ind_id)
            if ind is not None:
                ind.state = GradeState(Level(level))
                ind.value = value

    def area_levels(self) -> dict[str, Level]:
        out: dict[str, Level] = {}
        for ind in self.indicators.values():
            out[ind.grid] = max(out.get(ind.grid, Level.NORMAL), ind.level)
        return out

    def highest(self, kinds: set[Kind] | None, grids: set[str] | None) -> Level:
        """The highest level among indicators of ``kinds`` in ``grids`` (None: any)."""
        out = Level.NORMAL
        for ind in self.indicators.values():
            if (kinds is None or ind.kind in kinds) and (grids is None or ind.grid in grids):
                out = max(out, ind.level)
        return out

    def agent_grids(self) -> dict[str, str]:
        """Agents the vitals file places in a grid (their gauges' grid)."""
        return {g.agent: g.grid for g in self.config.gauges}

    # -- feeding ----------------------------------------------------------------------------
    def _grade(self, ind: Indicator, value: float, at: datetime) -> Observed:
        out = Observed()
        before = ind.level
        ind.state = step(ind.state, value, ind.grading)
        ind.value, ind.at = value, at
        if ind.level != before:
            out.changes.append(LevelChange(ind.id, ind.kind, ind.source, ind.grid, ind.lat, ind.lon,
                                           ind.place, ind.unit, before, ind.level, value, at))
        due = ind.sampled_at is None or (at - ind.sampled_at).total_seconds() >= self.config.sample_every_s
        if due or ind.level != before:
            ind.sampled_at = at
            out.samples.append(Sample(ind.id, at, value, ind.level))
        return out

    def observe_readings(self, agent_id: str, readings: dict[str, float], at: datetime) -> Observed:
        out = Observed()
        for key, value in readings.items():
            for gauge, ind in self._by_reading.get((agent_id, key), ()):
                if ind.kind == Kind.WATER_RISE:
                    series = self._series.setdefault(ind.id, Series(self.config.rise_window_min * 60))
                    series.add(at.timestamp(), value)
                    rate = series.rate_per_hour(self.config.rise_min_span_min * 60)
                    if rate is not None:
                        out.extend(self._grade(ind, round(rate, 4), at))
                elif gauge.kind == ind.kind:
                    out.extend(self._grade(ind, value, at))
        return out

    def observe_counts(self, kind: Kind, counts: dict[str, float], at: datetime) -> Observed:
        """Per-grid counts (grids not named count 0)."""
        out = Observed()
        for ind in self.indicators.values():
            if ind.kind == kind:
                out.extend(self._grade(ind, float(counts.get(ind.grid, 0)), at))
        return out
