"""The map page (一张图): ``GET /map``, its marker set ``GET /api/v1/map`` and the live
stream ``GET /api/v1/map/live`` (server-sent events), and the vendored Leaflet files.

The marker set is what :mod:`hub.web.mapdata` makes of the open cases (inside the
viewer's scope: town and district accounts see their own grids' cases only), the
cameras and sensors of the agents, and the grids with their vital-sign level. It is
computed on a read connection, at most once per live-feed version and scope while
somebody watches (the feed already notices every commit, :mod:`hub.web.live`).

The stream rides on that feed: after each push it sends what changed since it last
sent (``upserts``, ``removed``), so 10,000 markers cost one full set per page load and
then only the cases that moved. A page that loaded the set from ``GET /api/v1/map``
passes its ``snapshot`` id; the stream starts from it when the hub still holds it, else
its first message is a full ``reset``.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth.accounts import principal_now
from ..auth.roles import Principal
from ..store.rows import from_db_time, to_db_time
from ..store.schema import OPEN_STATES_SQL
from ..store.sqlite import SharedReader
from .common import file_response, principal
from .i18n import _
from .live import pump
from .mapdata import (
    CaseSpot,
    DeviceSpot,
    case_marker,
    device_markers,
    diff_markers,
    grid_features,
    place_device,
    projector,
    tile_csp_sources,
    tiles_view,
)
from .problems import WebError
from .render import STATIC_DIR
from .serialize import names

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["MapService", "map_json", "map_page", "map_stream", "open_case_rows",
           "reported_places", "vendor_file"]

log = logging.getLogger(__name__)

PLACES_TTL_S = 60.0  # where devices reported from: re-read at most this often
VENDOR_DIR = STATIC_DIR / "vendor"
_VENDOR = {p.relative_to(VENDOR_DIR).as_posix(): p for p in VENDOR_DIR.rglob("*")
           if p.is_file() and p.name not in ("README.md", "LICENSE")} if VENDOR_DIR.is_dir() else {}


# -- the reads ---------------------------------------------------------------------------------------
CASE_COLUMNS = "id, state, subcategory, lat, lon, grid_id, escalation_level, deadline_at, place"


def open_case_rows(repo: Any, grids: frozenset[str] | None, limit: int) -> tuple[list[tuple], int]:
    """The newest ``limit`` open cases (in ``grids`` when given) as plain rows of
    ``CASE_COLUMNS``, and how many are open."""
    scope, params = "", []
    if grids is not None:
        params = sorted(grids)
        scope = f" AND grid_id IN ({', '.join('?' for _ in params) or 'NULL'})"
    cond = f"state IN {OPEN_STATES_SQL}{scope}"
    cur = repo.conn.cursor()
    cur.row_factory = None  # tuples: compared as they are with the last set's
    # Usually every open case fits: then no sort (the state index's order is fine to draw).
    rows = cur.execute(f"SELECT {CASE_COLUMNS} FROM cases WHERE {cond} LIMIT ?",  # noqa: S608
                       [*params, limit + 1]).fetchall()
    if len(rows) > limit:  # more than drawn: the newest
        rows = cur.execute(f"SELECT {CASE_COLUMNS} FROM cases WHERE {cond} "  # noqa: S608
                           "ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
    total = len(rows) if len(rows) < limit else int(cur.execute(
        f"SELECT count(*) FROM cases WHERE {cond}", params).fetchone()[0])  # noqa: S608
    return rows, total


def _spot(r: tuple) -> CaseSpot:
    return CaseSpot(r[0], r[1], r[2], r[3], r[4], r[5], r[6], from_db_time(r[7]), r[8])


def reported_places(repo: Any) -> dict[tuple[str, str], tuple[float, float]]:
    """(agent, source) → where its latest case was reported (on the cases' origin index)."""
    rows = repo.conn.execute(
        "SELECT origin_agent, origin_source, lat, lon FROM cases WHERE id IN"
        " (SELECT max(id) FROM cases GROUP BY origin_agent, origin_source)").fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def _devices(agents: list[Any], now: Any, stale_s: float) -> list[DeviceSpot]:
    out = []
    for a in agents:
        gone = a.state == "offline" or (a.state == "online" and (
            a.last_seen is None or (now - a.last_seen).total_seconds() > stale_s))
        for cam, info in sorted(a.cameras.items()):
            state = info.get("state", "unknown") if isinstance(info, dict) else "unknown"
            out.append(DeviceSpot(a.agent_id, cam, "camera", "offline" if gone else state, a.grid_id))
        for dev, state in sorted(a.devices.items()):
            if dev not in a.cameras:
                out.append(DeviceSpot(a.agent_id, dev, "sensor", "offline" if gone else state,
                                      a.grid_id))
    return out


# -- the marker sets ---------------------------------------------------------------------------------
@dataclass
class Snapshot:
    id: int
    at: float  # time.monotonic() when computed
    change_marker: int  # the database's data_version on the service's connection then
    grids: frozenset[str] | None
    markers: dict[str, dict[str, Any]]
    levels: dict[str, str]
    labels: dict[str, str]
    open_cases: int
    truncated: bool
    unplaced: int
    fragments: list[str] = field(default_factory=list)  # each marker's JSON, in order
    body: bytes | None = None  # GET /api/v1/map's answer, made once
    gzipped: bytes | None = None


@dataclass
class _Places:
    at: float = -1e9
    reported: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


class MapService:
    """Per app: the marker sets, one per scope, computed again only when the database
    changed (SQLite's ``data_version`` on the service's own read connection) or after
    ``REUSE_S`` (devices go stale and cases overdue as time passes)."""

    KEEP = 8  # recent snapshots a stream may start from
    REUSE_S = 10.0

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tiles = hub.config.web.map.tiles
        self.project = projector(self.tiles.crs if self.tiles else "wgs84")
        self._reader = SharedReader(hub.config.database)
        self._ids = itertools.count(1)
        self._recent: OrderedDict[int, Snapshot] = OrderedDict()
        self._latest: dict[frozenset[str] | None, Snapshot] = {}
        self._places = _Places()
        # case id → (row, overdue, marker, its JSON): an unchanged case is not made again
        self._cases: dict[int, tuple[tuple, bool, dict[str, Any], str]] = {}
        self._lock = asyncio.Lock()
        self._grid_centres = {g.grid_id: g.centroid() for g in hub.setup.grids.grids}
        self._gauge_at, self._gauge_grid_at = self._gauges()
        self._features: dict[str, dict[str, Any]] = {
            f["grid_id"]: f for f in grid_features(hub.setup.grids.grids, {}, self.project)}

    async def stop(self) -> None:
        await asyncio.to_thread(self._reader.close)  # waits for a read still running

    def _gauges(self) -> tuple[dict, dict]:
        at: dict[tuple[str, str], tuple[float, float]] = {}
        grid_at: dict[tuple[str, str], tuple[float, float]] = {}
        for g in self.hub.setup.vitals.gauges:
            key = (g.agent, g.reading.split(".")[0])
            if g.lat is not None and g.lon is not None:
                at.setdefault(key, (g.lat, g.lon))
            elif g.grid in self._grid_centres:
                grid_at.setdefault(key, self._grid_centres[g.grid])
        return at, grid_at

    def grids_for(self, grids: frozenset[str] | None, levels: dict[str, str]) -> list[dict[str, Any]]:
        return [{**f, "level": levels.get(gid, "normal")} for gid, f in self._features.items()
                if grids is None or gid in grids]

    def levels_for(self, grids: frozenset[str] | None) -> dict[str, str]:
        levels = self.hub.vitals.monitor.area_levels()
        return {gid: levels[gid].label if gid in levels else "normal"
                for gid in self._features if grids is None or gid in grids}

    def get(self, snapshot_id: int, grids: frozenset[str] | None) -> Snapshot | None:
        snap = self._recent.get(snapshot_id)
        return snap if snap is not None and snap.grids == grids else None

    async def _marker(self) -> int:
        return await asyncio.to_thread(self._reader.use, lambda repo: repo.change_marker())

    def _fresh(self, snap: Snapshot | None, marker: int) -> bool:
        return (snap is not None and snap.change_marker == marker
                and time.monotonic() - snap.at < self.REUSE_S)

    async def snapshot(self, grids: frozenset[str] | None) -> Snapshot:
        """The marker set of an account with these grids (None: the whole city), shared
        by every viewer of that scope while the database has not changed."""
        if self._fresh(self._latest.get(grids), await self._marker()):
            return self._latest[grids]
        async with self._lock:  # one computation at a time: viewers wait for it, not repeat it
            if self._fresh(self._latest.get(grids), await self._marker()):
                return self._latest[grids]
            snap = await self._compute(grids)
            if len(self._latest) > 256:
                self._latest.clear()
            self._latest[grids] = snap
            self._recent[snap.id] = snap
            while len(self._recent) > self.KEEP:
                self._recent.popitem(last=False)
            return snap

    async def _compute(self, grids: frozenset[str] | None) -> Snapshot:
        hub = self.hub
        cfg = hub.config
        refresh = time.monotonic() - self._places.at > PLACES_TTL_S
        now = hub.clock.now()

        def read(repo: Any) -> tuple[int, list[tuple], int, list[Any], dict | None]:
            marker = repo.change_marker()  # first: the data read next is at least this new
            rows, total = open_case_rows(repo, grids, cfg.web.map.max_cases)
            agents, _ = repo.search_agents(limit=100_000)
            return marker, rows, total, agents, reported_places(repo) if refresh else None

        marker, rows, total, agents, reported = await asyncio.to_thread(self._reader.use, read)
        if reported is not None:
            self._places = _Places(time.monotonic(), reported)
        tax = hub.setup.taxonomy
        labels: dict[str, str] = {}
        for sub in {r[2] for r in rows}:
            n = names(tax, sub)
            labels[sub] = f"{n['en']} {n['zh']}".strip()
        places = self._places.reported
        locate = hub.setup.grids.locate

        def place(d: DeviceSpot):
            return place_device(d, gauge_at=self._gauge_at, reported_at=places,
                                gauge_grid_at=self._gauge_grid_at,
                                grid_centre=self._grid_centres.get)

        def sees(lat: float, lon: float, agent_grid: str | None) -> bool:
            if grids is None:
                return True
            g = locate(lat, lon)
            return (g is not None and g.grid_id in grids) or (agent_grid in grids)

        devices, unplaced = device_markers(
            _devices(agents, now, cfg.agents.stale_after_s), self.project, place, sees)
        markers = {m["key"]: m for m in devices}  # first: a case is drawn over its camera
        fragments = [_json(m) for m in devices]
        cache = self._cases
        if len(cache) > 2 * cfg.web.map.max_cases:
            cache.clear()
        now_s = to_db_time(now)  # stored times are UTC ISO text: they compare as text
        for r in rows:
            overdue = r[7] is not None and r[7] <= now_s and r[1] != "resolved"
            had = cache.get(r[0])
            if had is None or had[1] != overdue or had[0] != r:
                c = _spot(r)
                m = case_marker(c, self.project, now)
                had = cache[r[0]] = (r, overdue, m, _json(m))
            markers[had[2]["key"]] = had[2]
            fragments.append(had[3])
        return Snapshot(next(self._ids), time.monotonic(), marker, grids, markers,
                        self.levels_for(grids), labels, total, total > len(rows), unplaced,
                        fragments)

    def body(self, snap: Snapshot) -> tuple[bytes, bytes]:
        """(JSON, gzipped JSON) of ``GET /api/v1/map`` for this snapshot (run in a thread)."""
        if snap.body is None or snap.gzipped is None:
            data = {**_summary(snap), "crs": self.tiles.crs if self.tiles else "wgs84",
                    "tiles": tiles_view(self.tiles), "grids": self.grids_for(snap.grids, snap.levels),
                    "levels": snap.levels, "labels": snap.labels}
            head = _json(data)[:-1]  # without its closing brace: the markers follow
            raw = (head + ',"markers":[' + ",".join(snap.fragments) + "]}").encode()
            snap.gzipped = gzip.compress(raw, compresslevel=1, mtime=0)  # 5x faster than 6, 1.3x larger
            snap.body = raw
        return snap.body, snap.gzipped


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _service(request: web.Request) -> MapService:
    from .app import MAP_KEY

    return request.app[MAP_KEY]


def _summary(snap: Snapshot) -> dict[str, Any]:
    return {"snapshot": snap.id, "open_cases": snap.open_cases, "truncated": snap.truncated,
            "unplaced": snap.unplaced}


# -- the views ---------------------------------------------------------------------------------------
async def map_page(request: web.Request) -> web.Response:
    from .pages import page

    svc = _service(request)
    tiles = svc.tiles
    response = page(request, "map.html", title="Map", tiles=tiles,
                    leaflet_version=LEAFLET_VERSION)
    extra = tile_csp_sources(tiles)
    if extra:  # the configured tile server's images, and nothing else from outside
        csp = response.headers["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = csp.replace(
            "img-src 'self' data:", "img-src 'self' data: " + " ".join(extra), 1)
    return response


async def map_json(request: web.Request) -> web.Response:
    """The whole marker set: grids (rings and vital-sign level), markers, the tiles."""
    svc = _service(request)
    snap = await svc.snapshot(principal(request).grids)
    raw, gz = await asyncio.to_thread(svc.body, snap)
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=gz, content_type="application/json",
                            headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=raw, content_type="application/json", headers=headers)


async def map_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent ``markers`` events: what changed since the last one (``reset``: the
    whole set). Ends when its principal may no longer view (checked before each push)."""
    from .app import LIVE_KEY

    svc = _service(request)
    hub, feed = svc.hub, request.app[LIVE_KEY]
    who = principal(request)
    try:
        since = int(request.query.get("since", "0") or 0)
    except ValueError:
        raise WebError(400, "bad_since", _("since is the snapshot id of GET /api/v1/map")) from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = feed.subscribe()
    base = svc.get(since, who.grids)
    sent: dict[str, dict[str, Any]] | None = dict(base.markers) if base else None
    levels_sent: dict[str, str] | None = dict(base.levels) if base else None
    labels_sent: set[str] = set(base.labels) if base else set()

    async def allowed() -> Principal | None:
        now = hub.clock.now()
        current = await hub.read(lambda repo: principal_now(repo, who, now, grids=hub.setup.grids))
        return current if current is not None and current.can("view") else None

    first = True

    async def send(current: Principal) -> None:
        nonlocal sent, levels_sent, first
        snap = await svc.snapshot(current.grids)
        reset = sent is None
        upserts, removed = diff_markers(sent or {}, snap.markers)
        msg: dict[str, Any] = {**_summary(snap), "reset": reset, "upserts": upserts,
                               "removed": removed}
        if reset or snap.levels != levels_sent:
            msg["levels"] = snap.levels
        new_labels = {k: v for k, v in snap.labels.items() if k not in labels_sent}
        if new_labels:
            msg["labels"] = new_labels
            labels_sent.update(new_labels)
        quiet = not (reset or first or upserts or removed or "levels" in msg or new_labels)
        sent, levels_sent = snap.markers, snap.levels
        if quiet:
            return  # nothing on the map changed (a commit elsewhere: a session, telemetry)
        text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
        await response.write(f"event: markers\nid: {snap.id}\ndata: {text}\n\n".encode())
        first = False

    async def step(item: Any) -> bool:
        nonlocal who, sent, levels_sent
        current = await allowed()
        if current is None:
            log.info("map stream of %s ended: signed out, expired, disabled or revoked", who.actor)
            return False
        if current.grids != who.grids:  # the scope changed: start over
            sent = levels_sent = None
            labels_sent.clear()
            who = current
        if item is None:
            await response.write(b": keep-alive\n\n")
        else:
            await send(current)
        return True

    return await pump(response, feed, queue, step)


LEAFLET_VERSION = "1.9.4"


async def vendor_file(request: web.Request) -> web.StreamResponse:
    """A vendored library file (``hub/web/static/vendor/``): never a CDN at run time."""
    return file_response(_VENDOR.get(request.match_info["path"]))

