"""Geometry for the page's inline SVG: the grid map (GeoJSON polygons projected to the
screen) and bar charts. Pure; the templates only draw what these return."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..geo import Grid

__all__ = ["Bar", "GridShape", "MapFrame", "bar_chart", "grid_map", "heat_class", "map_frame"]


@dataclass(frozen=True)
class GridShape:
    grid_id: str
    name: str
    town: str
    d: str  # SVG path
    label_x: float
    label_y: float
    name_zh: str = ""


@dataclass(frozen=True)
class MapFrame:
    """The map's projection: ``x = (lon - lon0) * kx * scale + pad``, ``y = (lat1 - lat) *
    scale + pad``. The one-key report page inverts it to turn a tap into lat/lon."""

    lon0: float
    lat1: float
    kx: float
    scale: float
    pad: float


def map_frame(grids: Sequence[Grid], width: float = 600.0) -> MapFrame:
    x0 = min(g.bbox[0] for g in grids)
    y0 = min(g.bbox[1] for g in grids)
    x1 = max(g.bbox[2] for g in grids)
    y1 = max(g.bbox[3] for g in grids)
    kx = math.cos(math.radians((y0 + y1) / 2))
    span = max((x1 - x0) * kx, y1 - y0) or 1.0
    return MapFrame(x0, y1, kx, width / span, 8.0)


def grid_map(grids: Sequence[Grid], width: float = 600.0) -> tuple[str, list[GridShape]]:
    """(viewBox, shapes): an equirectangular projection scaled by cos(latitude), north up."""
    if not grids:
        return "0 0 1 1", []
    f = map_frame(grids, width)
    x0, y1, kx, scale, pad = f.lon0, f.lat1, f.kx, f.scale, f.pad
    x1 = max(g.bbox[2] for g in grids)
    y0 = min(g.bbox[1] for g in grids)
    h = (y1 - y0) * scale

    def pt(lon: float, lat: float) -> tuple[float, float]:
        return (round((lon - x0) * kx * scale + pad, 1), round((y1 - lat) * scale + pad, 1))

    shapes = []
    for g in grids:
        parts = []
        for poly in g.polygons:
            for ring in poly:
                pts = [pt(lon, lat) for lon, lat in ring]
                parts.append("M" + " L".join(f"{x},{y}" for x, y in pts) + " Z")
        lat_c, lon_c = g.centroid()
        lx, ly = pt(lon_c, lat_c)
        shapes.append(GridShape(g.grid_id, g.name, g.town, " ".join(parts), lx, ly,
                                getattr(g, "name_zh", "")))
    w = (x1 - x0) * kx * scale
    return f"0 0 {round(w + 2 * pad, 1)} {round(h + 2 * pad, 1)}", shapes


def heat_class(count: int, highest: int) -> str:
    """heat-0 (none) .. heat-5 (the most open cases)."""
    if count <= 0:
        return "heat-0"
    if highest <= 1:
        return "heat-3"
    return f"heat-{min(5, 1 + int(4 * count / highest))}"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    x: float
    y: float
    w: float
    h: float
    text: str


def bar_chart(items: Sequence[tuple[str, float | None]], *, top: float | None = None,
              width: float = 560.0, height: float = 160.0, percent: bool = False) -> list[Bar]:
    """Vertical bars in a ``width`` × ``height`` box (labels below, drawn by the template)."""
    if not items:
        return []
    hi = top if top is not None else max((v or 0) for _, v in items) or 1.0
    slot = width / len(items)
    bar_w = max(4.0, slot * 0.6)
    out = []
    for i, (label, value) in enumerate(items):
        v = value or 0.0
        bh = 0.0 if hi == 0 else height * min(1.0, v / hi)
        text = "–" if value is None else (f"{value * 100:.0f}%" if percent else f"{value:g}")
        out.append(Bar(label, value, round(i * slot + (slot - bar_w) / 2, 1),
                       round(height - bh, 1), round(bar_w, 1), round(bh, 1), text))
    return out
