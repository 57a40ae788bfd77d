"""Grids as GeoJSON polygons, point-in-polygon lookup and distances.

A grids file is a GeoJSON ``FeatureCollection``; each feature is one grid with a
``Polygon`` or ``MultiPolygon`` geometry (holes allowed) and properties ``grid_id``
(required, a safe id), ``name``, ``town`` and ``district`` (the escalation parents).

Point-in-polygon is a ray-crossing test behind a bounding-box filter, written here:
65 district grids need nothing heavier, and it keeps GEOS (shapely) out of the install.
Coordinates are ``[lon, lat]`` as GeoJSON says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from protocol.base import StrictModel
from protocol.config import parse_yaml, problems_from_validation_error
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id

__all__ = ["Grid", "GridIndex", "distance_m", "load_grids", "point_in_polygon"]

EARTH_RADIUS_M = 6_371_008.8

Ring = list[tuple[float, float]]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _in_ring(lon: float, lat: float, ring: Sequence[tuple[float, float]]) -> bool:
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def point_in_polygon(lon: float, lat: float, polygon: Sequence[Ring]) -> bool:
    """True when the point is inside the outer ring and outside every hole."""
    if not polygon or not _in_ring(lon, lat, polygon[0]):
        return False
    return not any(_in_ring(lon, lat, hole) for hole in polygon[1:])


# -- the file format ---------------------------------------------------------------

Position = Annotated[list[float], Field(min_length=2, max_length=3)]


def _check_ring(ring: list[list[float]]) -> list[list[float]]:
    if len(ring) < 4:
        raise ValueError("a polygon ring needs at least 4 positions (first repeated last)")
    if ring[0][:2] != ring[-1][:2]:
        raise ValueError("a polygon ring must end where it starts (repeat the first position)")
    for lon, lat, *_ in ring:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"position [{lon}, {lat}] is not [lon, lat] in degrees")
    return ring


class PolygonGeometry(StrictModel):
    type: Literal["Polygon"]
    coordinates: list[list[Position]] = Field(min_length=1)

    @field_validator("coordinates")
    @classmethod
    def _rings(cls, v: list[list[list[float]]]) -> list[list[list[float]]]:
        return [_check_ring(r) for r in v]


class MultiPolygonGeometry(StrictModel):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Position]]] = Field(min_length=1)

    @field_validator("coordinates")
    @classmethod
    def _rings(cls, v: list[list[list[list[float]]]]) -> list[list[list[list[float]]]]:
        return [[_check_ring(r) for r in poly] for poly in v]


class GridProperties(StrictModel):
    grid_id: Id
    name: str = ""
    name_zh: str = Field("", description="the grid's Chinese name (Chinese pages show it)")
    town: str = Field("", description="the town/street the grid belongs to (first escalation)")
    district: str = Field("", description="the district above the town (second escalation)")


class GridFeature(StrictModel):
    type: Literal["Feature"]
    id: str | int | None = None
    properties: GridProperties
    geometry: PolygonGeometry | MultiPolygonGeometry = Field(discriminator="type")


class GridCollection(StrictModel):
    type: Literal["FeatureCollection"]
    name: str | None = None
    crs: dict[str, Any] | None = None
    features: list[GridFeature] = Field(min_length=1)


@dataclass(frozen=True)
class Grid:
    grid_id: str
    name: str
    town: str
    district: str
    polygons: tuple[tuple[Ring, ...], ...]
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat
    name_zh: str = ""  # the Chinese name, where the grid file gives one

    def contains(self, lat: float, lon: float) -> bool:
        x0, y0, x1, y1 = self.bbox
        if not (x0 <= lon <= x1 and y0 <= lat <= y1):
            return False
        return any(point_in_polygon(lon, lat, poly) for poly in self.polygons)

    def centroid(self) -> tuple[float, float]:
        """(lat, lon) of the bounding box centre: good enough for placing test points."""
        x0, y0, x1, y1 = self.bbox
        return ((y0 + y1) / 2, (x0 + x1) / 2)


_UNSEEN = object()


class GridIndex:
    """Grids with point lookup. Overlapping grids resolve to the first in file order.

    A district has hundreds to thousands of grids, and every new event is located once:
    the lookup tests only the grids whose bounding box covers the point's cell of a
    uniform bucket index (about two grids a cell), and remembers the last few thousand
    points (sensors and cameras report from the same place again and again)."""

    _REMEMBER = 4096

    def __init__(self, grids: Sequence[Grid]) -> None:
        self.grids = list(grids)
        self._by_id = {g.grid_id: g for g in self.grids}
        self._recent: dict[tuple[float, float], Grid | None] = {}
        self._buckets: dict[tuple[int, int], list[Grid]] = {}
        self._origin, self._cell = (0.0, 0.0), (1.0, 1.0)  # no grids: no buckets, nothing found
        if self.grids:
            x0 = min(g.bbox[0] for g in self.grids)
            y0 = min(g.bbox[1] for g in self.grids)
            x1 = max(g.bbox[2] for g in self.grids)
            y1 = max(g.bbox[3] for g in self.grids)
            side = max(1, int(len(self.grids) ** 0.5))
            self._origin = (x0, y0)
            self._cell = (max((x1 - x0) / side, 1e-9), max((y1 - y0) / side, 1e-9))
        for g in self.grids:  # file order within each bucket
            cx0, cy0 = self._cell_of(g.bbox[0], g.bbox[1])
            cx1, cy1 = self._cell_of(g.bbox[2], g.bbox[3])
            for cx in range(cx0, cx1 + 1):
                for cy in range(cy0, cy1 + 1):
                    self._buckets.setdefault((cx, cy), []).append(g)

    def _cell_of(self, lon: float, lat: float) -> tuple[int, int]:
        return (int((lon - self._origin[0]) // self._cell[0]), int((lat - self._origin[1]) // self._cell[1]))

    def __len__(self) -> int:
        return len(self.grids)

    def __contains__(self, grid_id: object) -> bool:
        return grid_id in self._by_id

    def get(self, grid_id: str) -> Grid | None:
        return self._by_id.get(grid_id)

    def locate(self, lat: float, lon: float) -> Grid | None:
        key = (lat, lon)
        recent = self._recent
        found = recent.get(key, _UNSEEN)  # one lookup: another thread may clear it meanwhile
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        found = None
        for grid in self._buckets.get(self._cell_of(lon, lat), ()):
            if grid.contains(lat, lon):
                found = grid
                break
        if len(recent) >= self._REMEMBER:
            recent.clear()  # one atomic step (web threads locate too); it refills in a moment
        recent[key] = found
        return found

    def towns(self) -> set[str]:
        return {g.town for g in self.grids if g.town}

    def districts(self) -> set[str]:
        return {g.district for g in self.grids if g.district}


def _grid_from_feature(feature: GridFeature) -> Grid:
    geometry = feature.geometry
    raw = [geometry.coordinates] if isinstance(geometry, PolygonGeometry) else geometry.coordinates
    polygons = tuple(
        tuple([(float(p[0]), float(p[1])) for p in ring] for ring in poly) for poly in raw
    )
    xs = [x for poly in polygons for x, _ in poly[0]]
    ys = [y for poly in polygons for _, y in poly[0]]
    props = feature.properties
    return Grid(props.grid_id, props.name, props.town, props.district, polygons,
                (min(xs), min(ys), max(xs), max(ys)), props.name_zh)


def parse_grids(text: str, filename: str) -> GridIndex:
    """Parse and validate GeoJSON grids; every problem is reported with file:line:col."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [ConfigProblem(filename, exc.lineno, exc.colno, "", f"not valid JSON: {exc.msg}")]
        ) from None
    try:
        collection = GridCollection.model_validate(data)
    except ValidationError as exc:
        # Positions come from a YAML parse of the same text (JSON is YAML), done only
        # when there is something to point at.
        doc = parse_yaml(text, filename)
        raise ConfigError(problems_from_validation_error(exc, doc, GridCollection)) from None
    seen: dict[str, int] = {}
    problems = []
    for i, feature in enumerate(collection.features):
        gid = feature.properties.grid_id
        if gid in seen:
            doc = parse_yaml(text, filename)
            problems.append(doc.problem(("features", i, "properties", "grid_id"),
                                        f"grid_id {gid!r} is already used by feature {seen[gid]}; "
                                        "give every grid its own id"))
        seen.setdefault(gid, i)
    if problems:
        raise ConfigError(problems)
    return GridIndex([_grid_from_feature(f) for f in collection.features])


def read_config_text(path: str | Path, what: str) -> str:
    """The text of a file people wrote, or a ConfigError naming the file (shared by the
    hub's loaders)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, None, "", f"cannot read {what}: {exc}")]
        ) from None


def load_grids(path: str | Path) -> GridIndex:
    return parse_grids(read_config_text(path, "grids file"), str(path))
