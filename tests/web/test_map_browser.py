"""The map page in headless Chromium (Debian's /usr/bin/chromium over the DevTools protocol):
an operator opens /map, sees the cases, cameras and grids, a new case from a real agent
event through Mosquitto appears without a reload (server-sent events), and a real mouse
click on a case's marker opens the case. Then the time to first render with 10,000 open
cases, over several loads (``performance.now()`` when Leaflet's canvas has drawn them,
from the start of the navigation). Screenshots go to test-artifacts/.

``pytest -m slow -s tests/web/test_map_browser.py -k p95`` prints the 10,000-marker figure
for docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import shutil
from datetime import timedelta

import pytest
from cdpdriver import Browser
from hubtest import G01, G05
from test_map import telemetry
from test_web_browser import sign_in
from webtest import open_case

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]

# True when the canvas pixel at a marker's centre is its fill colour (blended at 0.9).
PIXEL_MATCHES = """(() => {
  const api = window.cityopsMap, key = %r;
  const p = api.pointOf(key), fill = api.styleOf(key).fill;
  const canvas = document.querySelector('#map canvas'), box = canvas.getBoundingClientRect();
  const scale = canvas.width / box.width;
  const px = canvas.getContext('2d').getImageData(Math.round((p.x - box.left) * scale),
                                                  Math.round((p.y - box.top) * scale), 1, 1).data;
  const want = [1, 3, 5].map((i) => parseInt(fill.slice(i, i + 2), 16));
  return px[3] > 200 && want.every((v, i) => Math.abs(v - px[i]) < 40);
})()"""

STATES = ("new", "accepted", "dispatched", "in_progress", "escalated", "resolved", "reopened")


async def seed_cases(hub, n: int) -> None:
    """``n`` open cases spread over the grids (written straight to the store: this is
    about drawing them, not about ingesting them; ingest has its own benchmarks)."""
    grids = hub.setup.grids.grids
    now = hub.clock.now()

    def work(repo) -> None:
        for i in range(n):
            g = grids[i % len(grids)]
            x0, y0, x1, y1 = g.bbox
            fx, fy = (i * 0.6180339887) % 1, (i * 0.4142135623) % 1
            lat, lon = y0 + (y1 - y0) * (0.05 + 0.9 * fy), x0 + (x1 - x0) * (0.05 + 0.9 * fx)
            state = STATES[i % len(STATES)]
            repo.insert_case({
                "state": state, "category": "garbage", "subcategory": "garbage.overflow",
                "group_key": f"bench-{i}", "lat": lat, "lon": lon, "grid_id": g.grid_id,
                "town": g.town, "district": g.district, "origin_agent": "bench",
                "origin_source": f"cam-{i % 50}", "origin_event": f"ev-{i}", "close_mode": "photo",
                "created_at": now, "updated_at": now, "first_event_at": now, "last_event_at": now,
                "deadline_at": now + timedelta(hours=4), "escalation_level": (i // 7) % 4})

    await hub.write(work)


async def test_map_shows_markers_live_and_a_click_opens_the_case(hub, agent, tmp_path, artifacts):
    agent.birth()
    x = await open_case(hub, agent, 1, where=G01)
    j = await open_case(hub, agent, 2, where=G05)
    telemetry(agent, {"cam-1": "up", "cam-2": "down"}, {})
    b = await Browser(tmp_path / "chromium-profile", 1440, 900).start()
    try:
        await sign_in(b, hub.web_url, "op")
        await b.goto(hub.web_url + "map")
        await b.wait_for("window.cityopsMap && window.cityopsMap.firstRenderMs > 0", 15, "the first render")
        for key in (f"case:{x}", f"case:{j}", "camera:agent-1/cam-1"):
            assert await b.eval(f"window.cityopsMap.has('{key}')"), key
        assert await b.eval("window.cityopsMap.gridLevel('g-01')") == "normal"
        assert "open cases" in await b.eval("document.getElementById('map-status').textContent")
        # The canvas really holds the drawing: the pixel under case x has the marker's colour.
        assert await b.eval(PIXEL_MATCHES % f"case:{x}"), "case x's marker is not drawn"
        await b.screenshot(artifacts / "map-1-loaded.png", full_page=False)

        # A new case from a real agent event arrives over server-sent events, no reload.
        loaded = await b.loaded_marker()
        await b.wait_for("document.querySelector('.live-dot.on') !== null", what="the live stream")
        n = await open_case(hub, agent, 3, where=(31.215, 121.425))
        await b.wait_for(f"window.cityopsMap.has('case:{n}')", 15, "the new case on the map")
        assert await b.loaded_marker() == loaded, "the map reloaded instead of updating live"
        await b.screenshot(artifacts / "map-2-live.png", full_page=False)

        # A real mouse click on case x's marker opens the case page.
        point = await b.eval(f"window.cityopsMap.pointOf('case:{x}')")
        await b.tap(point["x"], point["y"])
        await b.wait_for_new_page(loaded)
        assert await b.eval("location.pathname") == f"/cases/{x}"
        assert not [m for m in b.console if "exception" in m], b.console
    finally:
        await b.close()


def p95(values: list[float]) -> float:
    """Nearest rank: the smallest value at or above 95% of the loads."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def first_renders(hub, tmp_path, loads: int, markers: int = 10_000,
                        changed: bool = False) -> list[float]:
    """Times to first render over ``loads`` page loads; ``changed``: a case changes before
    each, so the hub computes the set afresh (else it serves the one it holds)."""
    await seed_cases(hub, markers)
    b = await Browser(tmp_path / "chromium-profile", 1440, 900).start()
    try:
        await sign_in(b, hub.web_url, "op")
        times = []
        for i in range(loads + 1):  # the first load warms the browser's cache of Leaflet
            if changed:
                await hub.write(lambda repo, i=i: repo.update_case(1, escalation_level=i % 4))
            await b.goto(hub.web_url + "map")
            ms = await b.wait_for("window.cityopsMap && window.cityopsMap.firstRenderMs", 30,
                                  "the first render")
            drawn = await b.eval("window.cityopsMap.markers")
            assert drawn >= markers, drawn
            if i:
                times.append(ms)
        assert not [m for m in b.console if "exception" in m], b.console
        return times
    finally:
        await b.close()


async def test_ten_thousand_markers_render(hub, tmp_path, artifacts):
    """Every one of 10,000 cases is drawn, within a bound loose enough for a busy CI
    machine; the target (p95 < 300 ms) is measured by the slow test below."""
    times = await first_renders(hub, tmp_path, loads=3)
    print(f"\nmap, 10,000 markers: first renders {[round(t) for t in times]} ms")
    assert p95(times) < 3000, times


@pytest.mark.slow
@pytest.mark.parametrize("changed", [False, True], ids=["steady", "changed"])
async def test_ten_thousand_markers_first_render_p95(hub, tmp_path, changed):
    """steady: the hub serves the set it holds (nothing changed since the last load, as
    on a wall of screens): the target, p95 < 300 ms. changed: a case changed right before
    every load, so the hub reads the set again (reusing every unchanged case's JSON):
    measured and reported in docs/benchmarks.md, bounded here at 500 ms."""
    times = await first_renders(hub, tmp_path, loads=20, changed=changed)
    print(f"\nmap, 10,000 markers ({'changed' if changed else 'steady'}): first render p95 "
          f"{p95(times):.0f} ms, median {sorted(times)[len(times) // 2]:.0f} ms, max "
          f"{max(times):.0f} ms over {len(times)} loads")
    assert p95(times) < (500 if changed else 300), sorted(times)
