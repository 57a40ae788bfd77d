"""End to end in headless Chromium (Debian's /usr/bin/chromium over the DevTools
protocol): an operator signs in, watches a case arrive live from a real agent event
through Mosquitto, dispatches it; a drainage handler accepts it and resolves it with an
after-photo; the case closes on the page without a reload. Screenshots are saved in
test-artifacts/.

The hub runs with a ScriptedVerifier that answers "fixed", only to drive the UI through
the automatic-closure branch; NoVerifier (the default) would send the photo to an operator.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from cdpdriver import Browser
from hubtest import G01, TestAgent, await_for, event, make_config
from webtest import PASSWORD, ScriptedVerifier, add_users, real_jpeg

from hub.app import Hub
from hub.cases.closure import Outcome
from hub.config import build_setup

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not __import__("os").path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]


@pytest.fixture
async def queue_hub(tmp_path):
    """Unroutable cases wait for an operator (routing fallback: queue)."""
    cfg = make_config(tmp_path, web={"port": 0, "live_interval_s": 0.2, "access_log": False})
    routing = tmp_path / "routing.yaml"
    routing.write_text(routing.read_text().replace("fallback: taxonomy", "fallback: queue"))
    hub = Hub(build_setup(cfg), verifier=ScriptedVerifier(Outcome.FIXED), run_scheduler=False)
    await hub.start()
    await add_users(hub)
    yield hub
    await hub.stop()


async def sign_in(b: Browser, url: str, user: str) -> None:
    await b.goto(url + "login")
    await b.fill("#username", user)
    await b.fill("#password", PASSWORD)
    await b.click_and_wait("#login-submit")


async def test_operator_dispatches_handler_resolves_case_closes(queue_hub, tmp_path, artifacts):
    hub = queue_hub
    url = hub.web_url
    agent = await asyncio.to_thread(TestAgent, hub.broker)
    b = await Browser(tmp_path / "chromium-profile", 1440, 960).start()
    try:
        agent.birth()
        await sign_in(b, url, "op")
        assert await b.eval("location.pathname") == "/"
        loaded = await b.loaded_marker()
        await b.wait_for("window.cityopsLive && window.cityopsLive.version > 0", what="the live feed")

        # A real event through the broker: snapshot first, then the detection.
        before = real_jpeg(1)
        agent.send_snapshot("ev-e2e", 1, before)
        agent.send(event(seq=2, event_id="ev-e2e", where=G01, snapshot=before, source="cam-7",
                         at=hub.clock.now()))
        case_id = await await_for(lambda: hub.read(lambda r: (x := r.get_lifecycle("agent-1", "ev-e2e"))
                                                   and x.case_id), what="the case")
        await b.wait_for(f"document.querySelector('#recent [data-case-id=\"{case_id}\"]') !== null",
                         15, "the new case on the overview")
        assert await b.loaded_marker() == loaded, "the page reloaded instead of updating live"
        await b.wait_for("document.querySelector('[data-grid-count=\"g-01\"]').textContent === '1'",
                         what="the map count")
        await b.wait_for("document.querySelector('[data-k=\"cases.operator_queue\"]').textContent === '1'",
                         what="the dispatch queue count")
        await b.screenshot(artifacts / "e2e-1-overview-live.png")

        # One-key dispatch (no route matches this case, so the operator picks the department).
        await b.click_and_wait(f"#recent [data-case-id=\"{case_id}\"] a")
        assert "waiting in the operator queue" in await b.eval("document.body.innerText")
        await b.eval("document.querySelector('#form-dispatch select').value = 'drainage'")
        await b.click_and_wait("#btn-dispatch")
        assert "Dispatched." in await b.eval("document.body.innerText")
        await b.wait_for("document.querySelector('#head .st-dispatched') !== null", what="dispatched")
        await b.screenshot(artifacts / "e2e-2-dispatched.png")

        # The department's handler takes it and resolves it with an after-photo.
        await b.click_and_wait("form[action='/logout'] button")
        await sign_in(b, url, "drain")
        assert await b.eval("location.pathname") == "/my"
        await b.click_and_wait(f"[data-case-id=\"{case_id}\"] a")
        await b.click_and_wait("#btn-start")
        await b.wait_for("document.querySelector('#head .st-in_progress') !== null", what="in progress")
        after = tmp_path / "after.jpg"
        after.write_bytes(real_jpeg(2, blob=False))
        await b.set_file("#photo", after)
        await b.fill("#form-resolve textarea", "drain cleared, road dry")
        await b.click_and_wait("#btn-resolve")
        loaded = await b.loaded_marker()
        await b.wait_for("document.querySelector('#head .st-closed') !== null", 20,
                         "the case to close on the page")
        assert await b.loaded_marker() == loaded, "closing should show up live, without a reload"
        await b.wait_for("document.querySelector('#after-photo') !== null", what="the after-photo")
        text = await b.eval("document.body.innerText")
        assert "fixed" in text.lower() and "drain cleared, road dry" in text
        await b.screenshot(artifacts / "e2e-3-closed.png")
        case = await hub.read(lambda r: r.get_case(case_id))
        assert case.state == "closed" and case.closed_by == "auto_photo"
        assert not [m for m in b.console if "exception" in m], b.console
    finally:
        await b.close()
        agent.close()


async def test_wall_mode_and_a_bad_sign_in(queue_hub, tmp_path, artifacts):
    b = await Browser(tmp_path / "chromium-profile", 1920, 1080).start()
    try:
        await b.goto(queue_hub.web_url + "login")
        await b.fill("#username", "op")
        await b.fill("#password", "wrong-password")
        await b.click_and_wait("#login-submit")
        assert "Wrong user name or password" in await b.eval("document.querySelector('#login-error').innerText")
        await b.screenshot(artifacts / "e2e-0-bad-sign-in.png", full_page=False)
        await sign_in(b, queue_hub.web_url, "op")
        await b.goto(queue_hub.web_url + "?wall=1")
        assert await b.eval("document.body.classList.contains('wall')")
        await b.wait_for("document.querySelector('.live-dot.on') !== null", what="live")
        await b.screenshot(artifacts / "e2e-4-wall.png", full_page=False)
    finally:
        await b.close()
