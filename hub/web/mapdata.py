"""What the map page (``/map``) draws, as plain data (pure): markers for open cases,
cameras and sensors, the grids with their vital-sign level, the tile layer, and the
difference between two marker sets that the live stream sends.

Every marker has a ``key`` unique on the map (``case:<id>``, ``camera:<agent>/<source>``,
``sensor:<agent>/<source>``) and its place in the base map's datum: WGS-84 as stored, or
GCJ-02 when the tiles are (:mod:`hub.web.mapcoord`).

Where a camera or sensor stands: the hub is not told where agents put their devices,
so a device is placed, best first, by the vital-signs gauge that reads it (its ``lat`` /
``lon``), by where its latest case was reported (``placed: "event"``), by its gauge's grid
centre, or by its agent's grid centre (``placed: "grid"``, approximate). A device with
none of these is counted in ``unplaced`` and not drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from ..geo import Grid
from .mapcoord import to_gcj02

__all__ = ["CaseSpot", "DeviceSpot", "case_marker", "is_overdue", "device_markers", "device_url", "diff_markers",
           "grid_features", "tile_csp_sources", "tiles_view"]

Project = Callable[[float, float], tuple[float, float]]


def projector(crs: str) -> Project:
    """(lat, lon) in WGS-84 → the base map's datum."""
    if crs == "gcj02":
        def gcj(lat: float, lon: float) -> tuple[float, float]:
            g = to_gcj02(lat, lon)
            return round(g[0], 7), round(g[1], 7)  # 1 cm: the shift's own digits say nothing
        return gcj
    return lambda lat, lon: (lat, lon)  # as stored


@dataclass(frozen=True)
class CaseSpot:
    """An open case as the map needs it (one row of the markers query)."""

    id: int
    state: str
    subcategory: str
    lat: float
    lon: float
    grid_id: str | None
    level: int  # escalation: 0 grid/department, 1 town, 2 district, 3 city
    deadline_at: datetime | None
    place: str | None


def is_overdue(c: CaseSpot, now: datetime) -> bool:
    """Past its deadline and still with the department (a resolved case waits for a check)."""
    return c.deadline_at is not None and now >= c.deadline_at and c.state != "resolved"


def case_marker(c: CaseSpot, project: Project, now: datetime) -> dict[str, Any]:
    """A case's marker; its page is ``/cases/<id>``, its label ``labels[subcategory]`` of
    the set (a label once, not ten thousand times)."""
    lat, lon = project(c.lat, c.lon)
    return {"key": f"case:{c.id}", "kind": "case", "id": c.id, "lat": lat, "lon": lon,
            "state": c.state, "level": min(max(c.level, 0), 3), "overdue": is_overdue(c, now),
            "subcategory": c.subcategory, "grid_id": c.grid_id, "place": c.place or ""}


@dataclass(frozen=True)
class DeviceSpot:
    """A camera or sensor on an agent, with what telemetry says about it."""

    agent_id: str
    source: str
    kind: str  # camera | sensor
    state: str  # up | down | unknown | offline (its agent is offline or stale)
    agent_grid: str | None


def place_device(d: DeviceSpot, *, gauge_at: Mapping[tuple[str, str], tuple[float, float]],
                 reported_at: Mapping[tuple[str, str], tuple[float, float]],
                 gauge_grid_at: Mapping[tuple[str, str], tuple[float, float]],
                 grid_centre: Callable[[str], tuple[float, float] | None]
                 ) -> tuple[float, float, str] | None:
    """(lat, lon, how) in WGS-84, or None when nothing says where the device is."""
    key = (d.agent_id, d.source)
    for table, how in ((gauge_at, "config"), (reported_at, "event"), (gauge_grid_at, "grid")):
        if key in table:
            lat, lon = table[key]
            return lat, lon, how
    if d.agent_grid:
        centre = grid_centre(d.agent_grid)
        if centre is not None:
            return centre[0], centre[1], "grid"
    return None


def device_url(d: DeviceSpot) -> str:
    """Where a click on a device's marker goes: a camera's live view, a sensor's agent."""
    if d.kind == "camera":
        return f"/cameras/{quote(d.agent_id, safe='')}/{quote(d.source, safe='')}/live"
    return "/agents?q=" + quote(d.agent_id, safe="")


def device_markers(devices: Iterable[DeviceSpot], project: Project,
                   place: Callable[[DeviceSpot], tuple[float, float, str] | None],
                   sees: Callable[[float, float, str | None], bool]) -> tuple[list[dict[str, Any]], int]:
    """(markers, unplaced): the devices a viewer may see, placed and projected."""
    out = []
    unplaced = 0
    for d in devices:
        spot = place(d)
        if spot is None:
            unplaced += 1
            continue
        lat, lon, how = spot
        if not sees(lat, lon, d.agent_grid):
            continue
        plat, plon = project(lat, lon)
        out.append({"key": f"{d.kind}:{d.agent_id}/{d.source}", "kind": d.kind,
                    "agent_id": d.agent_id, "source": d.source, "lat": plat, "lon": plon,
                    "state": d.state, "placed": how,
                    "url": device_url(d)})
    return out, unplaced


def grid_features(grids: Sequence[Grid], levels: Mapping[str, str],
                  project: Project) -> list[dict[str, Any]]:
    """Each grid's rings as ``[[lat, lon], ...]`` lists (Leaflet's order) with its vital-sign
    level (``normal`` when no indicator there is raised)."""
    out = []
    for g in grids:
        rings = []
        for poly in g.polygons:
            for ring in poly:
                rings.append([list(project(lat, lon)) for lon, lat in ring])
        out.append({"grid_id": g.grid_id, "name": g.name, "name_zh": g.name_zh, "town": g.town,
                    "district": g.district,
                    "level": levels.get(g.grid_id, "normal"), "rings": rings})
    return out


def diff_markers(before: Mapping[str, dict[str, Any]], after: Mapping[str, dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """(upserts, removed keys) that turn ``before`` into ``after``."""
    upserts = [m for k, m in after.items() if before.get(k) != m]
    removed = [k for k in before if k not in after]
    return upserts, removed


def tiles_view(tiles: Any | None) -> dict[str, Any] | None:
    """The tile settings the page's script needs (None: the blank offline base)."""
    if tiles is None:
        return None
    return {"url": tiles.url, "overlay_url": tiles.overlay_url, "subdomains": tiles.subdomains,
            "attribution": tiles.attribution, "crs": tiles.crs, "max_zoom": tiles.max_zoom}


def _source(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    # A label with {s} (a.tile..., webrd0{s}..., t{s}...) is any subdomain: a CSP wildcard.
    if labels and "{" in labels[0]:
        host = "*." + ".".join(labels[1:])
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def tile_csp_sources(tiles: Any | None) -> list[str]:
    """The origins the page must be allowed to load images from for these tiles."""
    if tiles is None:
        return []
    urls = [tiles.url] + ([tiles.overlay_url] if tiles.overlay_url else [])
    return sorted({_source(u) for u in urls})
