"""An event clip plays on the case page in headless Chromium (Debian's /usr/bin/chromium):
the agent's H.264 MP4, sent in chunks through the real broker and stored by the hub, is
in a <video> beside the before/after photos and reaches the playing state, its time
moving on. A screenshot is saved in test-artifacts/."""

from __future__ import annotations

import os
import shutil

import pytest
from cdpdriver import Browser
from hubtest import await_for
from test_clips_web import chunk_messages, real_clip, send
from webtest import PASSWORD, open_case

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]


async def test_the_case_page_plays_the_events_clip(hub, agent, tmp_path, artifacts):
    case_id = await open_case(hub, agent, n=1)
    data, frames = real_clip(frames=16)
    chunks = chunk_messages("ev-1", 12, data, chunk_bytes=len(data) // 2 + 1)
    for header, part in chunks:
        send(agent, header, part)
    await await_for(lambda: all(agent.acked(h.seq) for h, _ in chunks), what="the chunks acknowledged")
    (clip,) = await hub.read(lambda r: r.clips_for_case(case_id))
    assert clip.state == "stored"

    b = await Browser(tmp_path / "chromium-profile", 1440, 960).start()
    try:
        await b.goto(hub.web_url + "login")
        await b.fill("#username", "op")
        await b.fill("#password", PASSWORD)
        await b.click_and_wait("#login-submit")
        await b.goto(f"{hub.web_url}cases/{case_id}")
        assert await b.eval("document.querySelector('#photos video') !== null")
        assert await b.eval("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64000d\"')") != ""
        state = await b.eval("""new Promise(resolve => {
            const v = document.querySelector('#photos video');
            v.muted = true;
            v.addEventListener('playing', () => resolve('playing'), {once: true});
            v.addEventListener('error', () => resolve('error ' + (v.error && v.error.code)), {once: true});
            v.play().catch(e => resolve('refused ' + e));
        })""")
        assert state == "playing", state
        await b.wait_for("document.querySelector('#photos video').currentTime > 1.0", 15, "the clip's time moving on")
        info = await b.eval("""(() => { const v = document.querySelector('#photos video');
            return [v.videoWidth, v.videoHeight, v.duration, v.error === null]; })()""")
        assert info[:2] == [320, 180] and info[2] == pytest.approx(frames / 2, abs=0.1) and info[3]
        await b.screenshot(artifacts / "clip-case-page.png", full_page=False)
        assert not [m for m in b.console if "exception" in m], b.console
    finally:
        await b.close()
