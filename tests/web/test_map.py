"""The map page (issue 21, the one map): GCJ-02 conversion against the published formula's
reference point, the tile settings and the page's CSP, the marker set (fields, scope,
devices placed) and its live stream (a new case, an escalation, a close). A real hub,
broker and agent; the clock is a FakeClock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hubtest import G01, G05, await_for
from test_supervision import add_scoped, signed_in
from webtest import Client, open_case

from hub.config import MapTiles, WebConfig
from hub.web.mapcoord import in_china, to_gcj02, to_wgs84
from hub.web.mapdata import (
    CaseSpot,
    DeviceSpot,
    case_marker,
    diff_markers,
    place_device,
    projector,
    tile_csp_sources,
)
from protocol.codec import encode
from protocol.messages import Telemetry
from protocol.topics import Channel

DOCS = Path(__file__).resolve().parents[2] / "docs"


# -- GCJ-02 --------------------------------------------------------------------------------------------
def test_gcj02_matches_the_published_reference_point():
    # Tiananmen, WGS-84 (39.915, 116.404): the reference value the common open implementations
    # of the published formula print for it.
    lat, lon = to_gcj02(39.915, 116.404)
    assert lat == pytest.approx(39.91640428150164, abs=1e-12)
    assert lon == pytest.approx(116.41024449916938, abs=1e-12)
    back = to_wgs84(39.91640428150164, 116.41024449916938)
    assert back == pytest.approx((39.915, 116.404), abs=1e-9)


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_320
    dx = (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def test_gcj02_shifts_the_seed_district_a_few_hundred_metres_and_inverts():
    for lat, lon in (G01, G05, (31.03, 121.22), (22.54, 114.06), (45.75, 126.63)):
        g = to_gcj02(lat, lon)
        assert 100 < _metres(g, (lat, lon)) < 1000, (lat, lon, g)
        assert _metres(to_wgs84(*g), (lat, lon)) < 0.001  # under a millimetre
    for outside in ((48.8566, 2.3522), (35.68, 139.69), (-33.87, 151.21)):  # Paris, Tokyo, Sydney
        assert not in_china(*outside)
        assert to_gcj02(*outside) == outside and to_wgs84(*outside) == outside


# -- tiles, presets, CSP ----------------------------------------------------------------------------
def _doc_presets() -> dict[str, dict]:
    """The ``web.map`` presets in docs/web.md (each a ```yaml block under 'Base maps')."""
    text = (DOCS / "web.md").read_text()
    section = text[text.index("### Base maps"):]
    section = section[:section.index("\n## ")]
    out = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        data = yaml.safe_load(block)
        out[block.splitlines()[0].lstrip("# ").strip()] = data
    return out


def test_documented_presets_are_valid_config():
    presets = _doc_presets()
    assert {"OpenStreetMap", "Tianditu", "AMap"} <= set(presets), presets.keys()
    crs = {}
    for name, data in presets.items():
        cfg = WebConfig.model_validate(data["web"])
        assert cfg.map.tiles is not None, name
        crs[name] = cfg.map.tiles.crs
    assert crs["AMap"] == "gcj02" and crs["OpenStreetMap"] == "wgs84"


def test_tile_settings_refuse_bad_templates_and_name_csp_origins():
    with pytest.raises(ValueError, match=r"\{z\}"):
        MapTiles(url="https://tile.example.org/{x}/{y}.png")
    with pytest.raises(ValueError):
        MapTiles(url="javascript:alert(1)//{z}{x}{y}")
    with pytest.raises(ValueError, match="subdomains"):
        MapTiles(url="https://{s}.tile.example.org/{z}/{x}/{y}.png", subdomains="")
    osm = MapTiles(url="https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    assert tile_csp_sources(osm) == ["https://tile.openstreetmap.org"]
    amap = MapTiles(url="https://webrd0{s}.is.autonavi.com/appmaptile?x={x}&y={y}&z={z}&style=8",
                    subdomains="1234", crs="gcj02")
    assert tile_csp_sources(amap) == ["https://*.is.autonavi.com"]
    tdt = MapTiles(url="https://t{s}.tianditu.gov.cn/vec_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
                   overlay_url="https://t{s}.tianditu.gov.cn/cva_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
                   subdomains="01234567")
    assert tile_csp_sources(tdt) == ["https://*.tianditu.gov.cn"]
    assert tile_csp_sources(None) == []


# -- pure marker decisions --------------------------------------------------------------------------------
def test_case_marker_colour_inputs_and_overdue():
    now = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    spot = CaseSpot(7, "escalated", "flood.road_waterlogging", 31.205, 121.405, "g-01", 5,
                    datetime(2026, 7, 1, 8, 0, tzinfo=UTC), "Xinqiao Rd")
    m = case_marker(spot, projector("wgs84"), now)
    assert (m["key"], m["id"], m["level"], m["overdue"]) == ("case:7", 7, 3, True)
    resolved = case_marker(CaseSpot(8, "resolved", "flood.x", 31.2, 121.4, None, 0,
                                    datetime(2026, 7, 1, 8, 0, tzinfo=UTC), None),
                           projector("gcj02"), now)
    assert not resolved["overdue"]  # waiting for a check, not for the department
    assert (resolved["lat"], resolved["lon"]) == pytest.approx(to_gcj02(31.2, 121.4), abs=1e-6)


def test_devices_are_placed_best_source_first():
    d = DeviceSpot("a1", "cam-1", "camera", "up", "g-02")
    kw = dict(gauge_at={}, reported_at={}, gauge_grid_at={}, grid_centre={"g-02": (31.205, 121.415)}.get)
    assert place_device(d, **kw) == (31.205, 121.415, "grid")
    kw["reported_at"] = {("a1", "cam-1"): (31.201, 121.411)}
    assert place_device(d, **kw) == (31.201, 121.411, "event")
    kw["gauge_at"] = {("a1", "cam-1"): (31.2033, 121.4122)}
    assert place_device(d, **kw) == (31.2033, 121.4122, "config")
    assert place_device(DeviceSpot("a2", "m", "sensor", "up", None), gauge_at={}, reported_at={},
                        gauge_grid_at={}, grid_centre=lambda g: None) is None


def test_diff_markers():
    a = {"case:1": {"key": "case:1", "state": "new"}, "case:2": {"key": "case:2", "state": "new"}}
    b = {"case:1": {"key": "case:1", "state": "dispatched"}, "case:3": {"key": "case:3", "state": "new"}}
    ups, gone = diff_markers(a, b)
    assert sorted(m["key"] for m in ups) == ["case:1", "case:3"] and gone == ["case:2"]
    assert diff_markers(b, b) == ([], [])


# -- the API ---------------------------------------------------------------------------------------------
def telemetry(agent, cameras: dict[str, str], devices: dict[str, str]) -> None:
    t = Telemetry(agent_id=agent.agent_id, boot_id="boot-1", at=datetime.now(UTC), uptime_s=12,
                  outbox={"depth": 0}, devices=devices,
                  cameras={k: {"state": v} for k, v in cameras.items()})
    agent.publish(Channel.TELEMETRY, encode(t), qos=0)


@pytest.fixture
async def world(hub, agent):
    await add_scoped(hub)
    agent.birth()
    x = await open_case(hub, agent, 1, where=G01)  # Xinqiao (g-01), camera cam-1
    j = await open_case(hub, agent, 2, where=G05)  # Jiuting (g-05), camera cam-2
    telemetry(agent, {"cam-1": "up", "cam-2": "down"}, {"meter-9": "up"})
    await await_for(lambda: hub.read(lambda r: (a := r.get_agent("agent-1")) is not None
                                     and "cam-2" in a.cameras), what="the telemetry")
    return {"x": x, "j": j}


async def test_markers_for_an_operator(world, client, hub):
    await client.login("op")
    r = await client.get("/api/v1/map")
    assert r.status == 200, r.text
    data = r.json()
    assert data["crs"] == "wgs84" and data["tiles"] is None  # the offline default
    assert {g["grid_id"] for g in data["grids"]} == {f"g-0{i}" for i in range(1, 7)}
    assert all(g["rings"] and g["level"] == "normal" for g in data["grids"])
    markers = {m["key"]: m for m in data["markers"]}
    x = markers[f"case:{world['x']}"]
    stored = await hub.read(lambda r: r.get_case(world["x"]))
    assert (x["kind"], x["id"], x["state"], x["level"]) == ("case", world["x"], stored.state, 0)
    assert (x["lat"], x["lon"]) == pytest.approx(G01)
    assert x["grid_id"] == "g-01" and data["labels"][x["subcategory"]] == "Road waterlogging 道路积水"
    cam1, cam2 = markers["camera:agent-1/cam-1"], markers["camera:agent-1/cam-2"]
    assert (cam1["state"], cam1["placed"], cam1["url"]) == ("up", "event", "/cameras/agent-1/cam-1/live")
    assert (cam1["lat"], cam1["lon"]) == pytest.approx(G01)  # where it reported its case from
    assert cam2["state"] == "down" and (cam2["lat"], cam2["lon"]) == pytest.approx(G05)
    assert "sensor:agent-1/meter-9" not in markers and data["unplaced"] == 1  # nothing says where
    assert data["open_cases"] == 2 and not data["truncated"]


async def test_map_json_and_its_errors_follow_the_spec(world, client, tmp_path, clock):
    from test_api_contract import Checker

    check = Checker(client)
    await check("GET", "/api/v1/map", expect=401)
    await client.login("op")
    await check("GET", "/api/v1/map", expect=200)
    await check("GET", "/api/v1/map/live?since=x", expect=400)
    assert [c[2] for c in check.checked] == [401, 200, 400]


async def test_a_town_account_sees_its_own_grids_only(world, hub):
    xq = await signed_in(hub, "xq")
    try:
        data = (await xq.get("/api/v1/map")).json()
        assert {g["grid_id"] for g in data["grids"]} == {"g-01", "g-02", "g-03"}
        keys = {m["key"] for m in data["markers"]}
        assert f"case:{world['x']}" in keys and f"case:{world['j']}" not in keys
        assert "camera:agent-1/cam-1" in keys and "camera:agent-1/cam-2" not in keys
        assert data["open_cases"] == 1
    finally:
        await xq.close()


async def test_map_needs_view(world, hub):
    anon = Client(hub)
    drain = Client(hub)
    try:
        assert (await anon.get("/api/v1/map")).status == 401
        assert (await anon.get("/map")).status == 303  # to the sign-in page
        await drain.login("drain")
        assert (await drain.get("/api/v1/map")).status == 403
    finally:
        await anon.close()
        await drain.close()


async def test_page_and_vendored_leaflet_come_from_the_hub(world, client):
    await client.login("op")
    page = await client.get("/map")
    assert page.status == 200
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/vendor/leaflet/leaflet.js?v=1.9.4" in srcs
    assert all(s.startswith("/") for s in srcs), srcs  # nothing from another host
    assert "img-src 'self' data:;" in page.headers["Content-Security-Policy"]
    js = await client.get("/static/vendor/leaflet/leaflet.js")
    assert js.status == 200 and "Leaflet 1.9.4" in js.text[:300]
    css = await client.get("/static/vendor/leaflet/leaflet.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert (await client.get("/static/vendor/leaflet/images/layers.png")).status == 200
    for bad in ("/static/vendor/leaflet/../../app.py", "/static/vendor/leaflet/LICENSE-x",
                "/static/vendor/../render.py"):
        assert (await client.get(bad)).status == 404, bad


async def test_gcj02_tiles_shift_markers_and_open_the_csp(tmp_path, clock):
    from webtest import running_hub

    tiles = {"url": "https://webrd0{s}.is.autonavi.com/appmaptile?x={x}&y={y}&z={z}&style=8",
             "subdomains": "1234", "attribution": "© AutoNavi", "crs": "gcj02"}
    async with running_hub(tmp_path, clock, map={"tiles": tiles}) as h:
        c = Client(h)
        try:
            await c.login("op")
            page = await c.get("/map")
            assert "img-src 'self' data: https://*.is.autonavi.com;" in page.headers["Content-Security-Policy"]
            data = (await c.get("/api/v1/map")).json()
            assert data["crs"] == "gcj02" and data["tiles"]["attribution"] == "© AutoNavi"
            g1 = next(g for g in data["grids"] if g["grid_id"] == "g-01")
            assert g1["rings"][0][0] == pytest.approx(list(to_gcj02(31.2, 121.4)), abs=1e-6)
        finally:
            await c.close()


# -- the live stream ------------------------------------------------------------------------------------
class Stream:
    """Reads ``markers`` events of ``GET /api/v1/map/live`` into a queue."""

    def __init__(self, client: Client, since: int = 0) -> None:
        self.client, self.since = client, since
        self.messages: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _read(self) -> None:
        async with self.client.session.get(f"{self.client.base}/api/v1/map/live?since={self.since}") as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            data = None
            async for line in r.content:
                text = line.decode().rstrip("\n")
                if text.startswith("data: "):
                    data = json.loads(text[6:])
                elif text == "" and data is not None:
                    await self.messages.put(data)
                    data = None

    async def until(self, predicate, what: str, timeout: float = 10.0) -> dict:
        async def wait() -> dict:
            while True:
                msg = await self.messages.get()
                if predicate(msg):
                    return msg

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no map message with {what} within {timeout}s") from None


def upserted(msg: dict, key: str) -> dict | None:
    return next((m for m in msg["upserts"] if m["key"] == key), None)


async def test_stream_sends_new_cases_escalations_and_closes(world, client, hub, agent, clock):
    await client.login("op")
    first = (await client.get("/api/v1/map")).json()
    async with Stream(client, first["snapshot"]) as s:
        hello = await s.until(lambda m: True, "the first message")
        assert not hello["reset"]  # it started from the page's own snapshot
        n = await open_case(hub, agent, 3, where=(31.215, 121.425))  # g-06
        msg = await s.until(lambda m: upserted(m, f"case:{n}"), "the new case")
        new = upserted(msg, f"case:{n}")
        assert new["kind"] == "case" and (new["lat"], new["lon"]) == pytest.approx((31.215, 121.425))

        case = await hub.read(lambda r: r.get_case(n))
        clock.set(case.deadline_at)
        clock.advance(minutes=1)
        assert (n, 1) in (await hub.tick()).escalated
        msg = await s.until(lambda m: (u := upserted(m, f"case:{n}")) and u["level"] == 1,
                            "the escalation to the town")

        closed = await client.api("POST", f"/api/v1/cases/{world['x']}/close", {"resolution": "fixed"})
        assert closed.status == 200, closed.text
        await s.until(lambda m: f"case:{world['x']}" in m["removed"], "the closed case removed")


async def test_stream_without_a_known_snapshot_starts_with_a_reset_in_scope(world, hub):
    jt = await signed_in(hub, "jt")
    try:
        async with Stream(jt, since=999_999) as s:
            msg = await s.until(lambda m: True, "the first message")
            assert msg["reset"] and set(msg["levels"]) == {"g-04", "g-05", "g-06"}
            keys = {m["key"] for m in msg["upserts"]}
            assert f"case:{world['j']}" in keys and f"case:{world['x']}" not in keys
    finally:
        await jt.close()


async def test_more_open_cases_than_drawn_keeps_the_newest_and_says_so(world, hub):
    from hub.web.mapview import open_case_rows

    rows, total = await hub.read(lambda r: open_case_rows(r, None, 1))
    assert [row[0] for row in rows] == [world["j"]] and total == 2  # the newer one
    rows, total = await hub.read(lambda r: open_case_rows(r, frozenset({"g-01"}), 5))
    assert [row[0] for row in rows] == [world["x"]] and total == 1


VITALS = """
gradings:
  water_level: {blue: 0.05, yellow: 0.15, orange: 0.25, red: 0.40, confirm: 1}
gauges:
  - {id: jt1-underpass, agent: agent-1, reading: underpass-gauge.level, grid: g-04,
     lat: 31.2150, lon: 121.4050}
"""


async def test_a_gauge_places_its_sensor_and_its_level_colours_the_grid_live(tmp_path, clock):
    from hubtest import TestAgent, make_setup
    from webtest import add_users

    from hub.app import Hub

    (tmp_path / "vitals.yaml").write_text(VITALS)
    h = Hub(make_setup(tmp_path, vitals=str(tmp_path / "vitals.yaml"),
                       web={"port": 0, "live_interval_s": 0.2, "access_log": False}),
            clock=clock, run_scheduler=False)
    await h.start()
    agent = await asyncio.to_thread(TestAgent, h.broker)
    c = Client(h)
    try:
        await add_users(h)
        await c.login("op")
        agent.birth()

        def reading(level: float) -> None:
            t = Telemetry(agent_id="agent-1", boot_id="boot-1", at=datetime.now(UTC), uptime_s=12,
                          outbox={"depth": 0}, devices={"underpass-gauge": "up"},
                          readings={"underpass-gauge.level": level})
            agent.publish(Channel.TELEMETRY, encode(t), qos=0)

        reading(0.0)
        await await_for(lambda: h.read(lambda r: (a := r.get_agent("agent-1")) is not None
                                       and "underpass-gauge" in a.devices),
                        what="the gauge's telemetry")
        first = (await c.get("/api/v1/map")).json()
        gauge = {m["key"]: m for m in first["markers"]}["sensor:agent-1/underpass-gauge"]
        assert (gauge["placed"], gauge["lat"], gauge["lon"]) == ("config", 31.215, 121.405)
        assert first["levels"]["g-04"] == "normal"
        async with Stream(c, first["snapshot"]) as s:
            reading(0.3)  # orange
            msg = await s.until(lambda m: (m.get("levels") or {}).get("g-04") == "orange",
                                "g-04 raised to orange")
            assert msg["levels"]["g-03"] == "normal"
        again = (await c.get("/api/v1/map")).json()
        assert next(g for g in again["grids"] if g["grid_id"] == "g-04")["level"] == "orange"
    finally:
        await c.close()
        agent.close()
        await h.stop()
