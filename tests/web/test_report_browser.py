"""End to end in headless Chromium at phone width (375 px): a residents' committee
reporter taps the place on the grid map, attaches a phone-sized photo (the page shrinks it
under the hub's 256 KiB) and sends a one-key report; the
case is dispatched to sanitation; the department's handler resolves it with an
after-photo through the handler API; an operator confirms the fix (the hub's default
NoVerifier sends every after-photo to a person); the reporter sees "Closed" with the
result and the after-photo. Screenshots are saved in test-artifacts/."""

from __future__ import annotations

import shutil

import aiohttp
import pytest
from cdpdriver import Browser
from hubtest import G01
from webtest import PASSWORD, Client, make_token, real_jpeg

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not __import__("os").path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]

WIDTH = 375


async def test_one_key_report_from_submission_to_closure(hub, tmp_path, artifacts):
    url = hub.web_url
    api = Client(hub)
    b = await Browser(tmp_path / "chromium-profile", WIDTH, 812).start()
    try:
        await b.goto(url + "login")
        await b.fill("#username", "rep")
        await b.fill("#password", PASSWORD)
        await b.click_and_wait("#login-submit")
        assert await b.eval("location.pathname") == "/report"
        assert await b.eval("document.documentElement.scrollWidth") <= WIDTH, "no sideways scroll"

        # Category, then a tap on the map where G01 is (the page inverts the projection).
        await b.eval("document.querySelector('#service').value = 'garbage.overflow'")
        target = await b.eval(f"""(() => {{
            const m = document.querySelector('#report-map'); m.scrollIntoView({{block: 'center'}});
            const f = m.dataset, p = m.createSVGPoint();
            p.x = ({G01[1]} - f.lon0) * f.kx * f.scale + (+f.pad);
            p.y = (f.lat1 - {G01[0]}) * f.scale + (+f.pad);
            const s = p.matrixTransform(m.getScreenCTM());
            return [s.x, s.y]; }})()""")
        await b.tap(*target)
        await b.wait_for("document.querySelector('#lat').value !== ''", what="the map point")
        lat, lon = float(await b.eval("document.querySelector('#lat').value")), \
            float(await b.eval("document.querySelector('#lon').value"))
        assert abs(lat - G01[0]) < 5e-4 and abs(lon - G01[1]) < 5e-4, (lat, lon)
        assert "grid g-01" in await b.eval("document.querySelector('#point-text').textContent")
        # A phone-sized photo (≈750 KiB, over the hub's 256 KiB): the page shrinks it.
        photo = tmp_path / "bin.jpg"
        photo.write_bytes(real_jpeg(4, 3000, 2250))
        assert photo.stat().st_size > 256 * 1024
        await b.set_file("#photo", photo)
        await b.eval("document.querySelector('#photo').dispatchEvent(new Event('change'))")
        await b.wait_for("document.querySelector('#photo-status').textContent.startsWith('Photo ready')",
                         what="the shrunk photo")
        assert await b.eval("document.querySelector('#photo').files[0].size") <= 256 * 1024
        await b.fill("#note", "bin at the school gate overflowing since morning")
        await b.screenshot(artifacts / "report-1-form-375.png")
        await b.click_and_wait("#report-submit")

        assert "Sent." in await b.eval("document.body.innerText")
        row = (await hub.read(lambda repo: repo.external_reports_by("reporter", "rep")))[0]
        case_id = row.case_id
        card = f"#report-{row.id}"
        assert await b.eval(f"document.querySelector('{card}').dataset.state") == "dispatched"
        text = await b.eval(f"document.querySelector('{card}').innerText")
        assert "Sanitation Company" in text and "Dispatched" in text and "Deadline" in text
        await b.wait_for(f"document.querySelector('{card} img').naturalWidth > 0", what="my photo")
        before = await hub.read(lambda repo: repo.get_case(case_id))
        assert before.before_sha256 is not None
        await b.eval("window.scrollTo(0, 0)")
        await b.screenshot(artifacts / "report-2-dispatched-375.png")

        # The sanitation department resolves it through the handler API, with an after-photo.
        sani = await make_token(hub, "handler", "sanitation", name="sanitation-app")
        r = await api.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token=sani)
        assert r.status == 200, r.text
        form = aiohttp.FormData()
        form.add_field("photo", real_jpeg(5, blob=False), filename="after.jpg",
                       content_type="image/jpeg")
        form.add_field("note", "bin emptied, area swept")
        r = await api.post(f"/api/v1/handler/cases/{case_id}/resolve", data=form, token=sani)
        assert r.status == 200, r.text
        await b.goto(url + "report")
        assert await b.eval(f"document.querySelector('{card}').dataset.state") == "resolved"

        # No photo verifier here, so an operator confirms the fix; the case closes.
        op = await make_token(hub, "operator", name="ops-console")
        r = await api.api("POST", f"/api/v1/cases/{case_id}/review", {"fixed": True}, token=op)
        assert r.status == 200 and r.json()["case"]["state"] == "closed", r.text

        await b.goto(url + "report")
        assert await b.eval(f"document.querySelector('{card}').dataset.state") == "closed"
        text = await b.eval(f"document.querySelector('{card}').innerText")
        assert "Closed" in text and "Result" in text and "fixed" in text
        await b.wait_for(f"document.querySelector('{card} img.after') && "
                         f"document.querySelector('{card} img.after').naturalWidth > 0",
                         what="the after-photo")
        assert await b.eval("document.documentElement.scrollWidth") <= WIDTH
        await b.eval("window.scrollTo(0, 0)")
        await b.screenshot(artifacts / "report-3-closed-375.png")
        assert not [m for m in b.console if "exception" in m.lower()], b.console
    finally:
        await b.close()
        await api.close()
