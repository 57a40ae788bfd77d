"""A camera's live view in headless Chromium (Debian's chromium over the DevTools
protocol): an operator opens it, frames from a real agent (through the hub's Mosquitto)
appear in the page, the first within 2 s of the stream opening, and after the view's N
seconds the page says it stopped and no frame follows; "Watch again" starts it anew."""

from __future__ import annotations

import os
import shutil

import pytest
from cdpdriver import Browser
from livetest import CAMERA, camera_agent, live_hub, until, worker
from test_web_browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.asyncio,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]

AGENT = "cam-live-b"
VIEW = ".live-view"


async def test_live_frames_arrive_in_the_page_then_stop_after_n_seconds(tmp_path, artifacts):
    async with live_hub(tmp_path) as hub, camera_agent(tmp_path, hub, AGENT) as app:
        b = await Browser(tmp_path / "chromium-profile", 1280, 900).start()
        try:
            await sign_in(b, hub.web_url, "op")
            await b.goto(f"{hub.web_url}cameras/{AGENT}/{CAMERA}/live?seconds=4")
            await b.wait_for(f"document.querySelector('{VIEW}').dataset.state === 'live'", 10,
                             "the first live frame in the page")
            first = await b.eval(f"document.querySelector('{VIEW}').dataset.firstFrameMs"
                                 f" - document.querySelector('{VIEW}').dataset.openedMs")
            assert first < 2000, f"first frame {first} ms after the stream opened"
            img = await b.eval("(() => { const i = document.querySelector('.live-frame');"
                               " return [i.hidden, i.src.slice(0, 23), i.naturalWidth]; })()")
            assert img[:2] == [False, "data:image/jpeg;base64,"] and img[2] > 0
            assert int(await b.eval(f"document.querySelector('{VIEW}').dataset.lastBytes")) <= 50_000
            assert await b.eval("document.querySelector('.live-again').offsetParent") is None  # not shown
            await b.screenshot(artifacts / "live-1-frames.png", full_page=False)

            await b.wait_for(f"document.querySelector('{VIEW}').dataset.state === 'ended'", 10,
                             "the view ending on its own")
            frames = int(await b.eval(f"document.querySelector('{VIEW}').dataset.frames"))
            assert 2 <= frames <= 5, frames  # 4 s at 1 frame/s
            status = await b.eval("document.querySelector('.live-status').textContent")
            assert "stopped on its own" in status
            assert await b.eval("document.querySelector('.live-again').offsetParent !== null")
            read = worker(app).frames
            await until(lambda: worker(app).frames >= read + 4, 10, "four more camera frames")
            assert int(await b.eval(f"document.querySelector('{VIEW}').dataset.frames")) == frames
            assert hub.live_streams.streams == {}
            await b.screenshot(artifacts / "live-2-ended.png", full_page=False)

            await b.click(".live-again")  # watch again: a new view, new frames
            await b.wait_for(f"document.querySelector('{VIEW}').dataset.state === 'live'", 10,
                             "frames again")
            assert not [m for m in b.console if "exception" in m], b.console
        finally:
            await b.close()
