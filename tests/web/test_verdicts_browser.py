"""Labelling a snapshot in headless Chromium (Debian's /usr/bin/chromium over the DevTools
protocol): an operator drags a box across a camera snapshot on the case page, the form's
corner inputs take it, and "wrong class" stores that box with the chosen class."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from cdpdriver import Browser
from hubtest import G01, TestAgent, await_for, event
from webtest import PASSWORD, real_jpeg

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not __import__("os").path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]


async def drag(b: Browser, start: tuple[float, float], end: tuple[float, float], steps: int = 5) -> None:
    """A real mouse drag (Chromium turns it into pointer events) between viewport points."""
    await b.send("Input.dispatchMouseEvent", type="mouseMoved", x=start[0], y=start[1])
    await b.send("Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], button="left",
                 buttons=1, clickCount=1)
    for i in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * i / steps
        y = start[1] + (end[1] - start[1]) * i / steps
        await b.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
    await b.send("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left",
                 buttons=0, clickCount=1)


async def test_dragging_a_box_on_the_snapshot_labels_it(hub, tmp_path, artifacts):
    agent = await asyncio.to_thread(TestAgent, hub.broker)
    b = await Browser(tmp_path / "chromium-profile", 1440, 960).start()
    try:
        snap = real_jpeg(3)
        agent.send_snapshot("ev-b", 30, snap)
        agent.send(event(seq=31, event_id="ev-b", where=G01, snapshot=snap, source="cam-9",
                         at=hub.clock.now(), label="water", model="rel-9"))

        def case_with_snapshot(repo):
            row = repo.get_lifecycle("agent-1", "ev-b")
            return row.case_id if row and row.case_id and repo.snapshots_for_case(row.case_id) else None

        case_id = await await_for(lambda: hub.read(case_with_snapshot), what="the case and its snapshot")
        await b.goto(hub.web_url + "login")
        await b.fill("#username", "op")
        await b.fill("#password", PASSWORD)
        await b.click_and_wait("#login-submit")
        await b.goto(f"{hub.web_url}cases/{case_id}")
        await b.wait_for("(() => { const i = document.querySelector('.label-photo img');"
                         " return i && i.complete && i.naturalWidth > 0; })()", what="the snapshot")
        rect = await b.eval("(() => { const i = document.querySelector('.label-photo img');"
                            " i.scrollIntoView({block: 'center'}); const r = i.getBoundingClientRect();"
                            " return [r.left, r.top, r.width, r.height]; })()")
        left, top, width, height = rect
        assert width > 100 and height > 50, rect
        await drag(b, (left + 0.2 * width, top + 0.3 * height), (left + 0.7 * width, top + 0.9 * height))
        corners = await b.eval("['x1','y1','x2','y2'].map(k => parseFloat("
                               "document.querySelector(`.verdict-form input[data-corner=\"${k}\"]`).value))")
        assert corners == pytest.approx([0.2, 0.3, 0.7, 0.9], abs=0.02), corners
        assert await b.eval("!document.querySelector('.label-box.drawn').hidden")
        await b.screenshot(artifacts / "verdict-drawn-box.png", full_page=False)

        await b.eval("document.querySelector('.verdict-form select[name=label]').value = 'flame'")
        await b.click_and_wait(".verdict-form button[value=wrong_class]")
        [ex] = await hub.read(lambda repo: repo.examples_for_case(case_id))
        assert (ex.verdict, ex.label, ex.detected, ex.model) == ("wrong_class", "flame", "water", "rel-9")
        assert list(ex.bbox) == pytest.approx(corners, abs=1e-3)
        assert await b.eval("document.querySelector('.verdicts .v-wrong_class') !== null")
        assert not [m for m in b.console if "exception" in m], b.console
    finally:
        await b.close()
        agent.close()
