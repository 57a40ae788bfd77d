"""The pages: what operators see and do in HTML. Bad input re-shows the form with the
field marked; actions redirect with a flash; the live feed pushes changes; /metrics and
the access log are what operations needs."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from hubtest import await_for
from webtest import audit_len, open_case, real_jpeg


async def test_overview_shows_cases_map_and_agents(hub, client, agent):
    agent.birth()
    case_id = await open_case(hub, agent)
    await client.login("op")
    r = await client.get("/")
    assert r.status == 200
    html = r.text
    assert f'data-case-id="{case_id}"' in html and "Road waterlogging" in html
    # the taxonomy names both: a Chinese page shows the Chinese one
    zh = (await client.get("/", headers={"Accept-Language": "zh-CN"})).text
    assert "道路积水" in zh and "Road waterlogging" not in zh
    assert 'data-grid="g-01"' in html and "heat-3" in html  # the one grid with a case
    assert 'data-k="cases.open">1<' in html
    assert "agent-1" not in html or "online" in html
    assert "Content-Security-Policy" in r.headers and "script-src 'self'" in r.headers["Content-Security-Policy"]
    wall = await client.get("/?wall=1")
    assert wall.status == 200 and 'class="wall' in wall.text and "exit wall mode" in wall.text


async def test_case_list_filters_search_and_bad_filters(hub, client, agent):
    a = await open_case(hub, agent, 1)
    b = await open_case(hub, agent, 2, sub="garbage.overflow", where=(31.215, 121.415))
    await client.login("op")
    r = await client.get("/cases?category=garbage")
    assert f'data-case-id="{b}"' in r.text and f'data-case-id="{a}"' not in r.text
    r = await client.get("/cases?grid=g-01&open=1")
    assert f'data-case-id="{a}"' in r.text and f'data-case-id="{b}"' not in r.text
    r = await client.get(f"/cases?q=%23{b}")
    assert f'data-case-id="{b}"' in r.text and f'data-case-id="{a}"' not in r.text
    r = await client.get("/cases?state=bogus&grid=g-99")
    assert r.status == 400
    assert "unknown state" in r.text and "unknown grid" in r.text and 'class="invalid"' in r.text


async def test_form_errors_are_shown_on_the_form_and_change_nothing(hub, client, agent):
    case_id = await open_case(hub, agent)
    await hub.return_case(case_id, actor="t", reason="queue")
    await client.login("op")
    before = await audit_len(hub, case_id)
    r = await client.form(f"/cases/{case_id}/reject", {"reason": "   "})
    assert r.status == 400
    assert 'id="reject-reason"' in r.text and 'aria-invalid="true"' in r.text
    assert "field-error" in r.text and "<details class=\"act\" open>" in r.text
    r = await client.form(f"/cases/{case_id}/reopen", {"reason": "x"})
    assert r.status == 409 and "cannot be reopened" in r.text
    assert await audit_len(hub, case_id) == before
    r = await client.form(f"/cases/{case_id}/dispatch", {"department": "drainage"})
    assert r.status == 303 and r.headers["Location"] == f"/cases/{case_id}?done=dispatch"
    page = await client.get(r.headers["Location"])
    assert "Dispatched." in page.text
    assert (await hub.read(lambda r: r.get_case(case_id))).state == "dispatched"


async def test_handler_resolves_on_the_page_with_a_photo(hub, client, agent):
    case_id = await open_case(hub, agent)
    await client.login("drain")
    assert (await client.form(f"/cases/{case_id}/start", {})).status == 303
    bad = aiohttp.FormData()
    bad.add_field("csrf_token", client.csrf)
    bad.add_field("photo", b"not a jpeg", filename="x.png", content_type="image/png")
    r = await client.post(f"/cases/{case_id}/resolve", data=bad)
    assert r.status == 415 and "not a JPEG" in r.text and 'id="photo"' in r.text
    good = aiohttp.FormData()
    good.add_field("csrf_token", client.csrf)
    good.add_field("note", "drain unblocked")
    good.add_field("photo", real_jpeg(4, blob=False), filename="after.jpg", content_type="image/jpeg")
    r = await client.post(f"/cases/{case_id}/resolve", data=good)
    assert r.status == 303
    c = await await_for(lambda: hub.read(lambda r: (x := r.get_case(case_id)) and x.review_reason and x),
                        what="verification")
    assert c.state == "resolved" and c.after_sha256


async def test_admin_pages_add_users_tokens_and_enrollment(hub, client):
    await client.login("admin")
    r = await client.form("/admin/users", {"username": "li", "role": "handler", "password": "short"})
    assert r.status == 400 and 'aria-invalid="true"' in r.text
    assert "department" in r.text and 'value="li"' in r.text and "short" not in r.text.split("form-user")[1][:2000]
    r = await client.form("/admin/users", {"username": "li", "role": "handler",
                                           "department": "drainage", "password": "a-long-password"})
    assert r.status == 200 and "User li (handler) added." in r.text
    r = await client.form("/admin/tokens", {"name": "drainage system", "role": "handler",
                                            "department": "drainage"})
    assert r.status == 200 and 'id="secret-value">cot_' in r.text
    token = r.text.split('id="secret-value">')[1].split("<")[0]
    assert (await client.get("/api/v1/handler/cases", token=token)).status == 200
    again = await client.get("/admin")
    assert token not in again.text  # shown once
    r = await client.form("/admin/enroll", {"agent_id": "box-3", "grid_id": "g-02", "ttl": "1h"})
    assert r.status == 200 and 'id="secret-value">enr_' in r.text
    r = await client.form("/admin/enroll", {"agent_id": "bad id!", "ttl": "1h"})
    assert r.status == 400 and "not a valid id" in r.text


async def test_live_feed_pushes_a_new_case(hub, client, agent):
    await client.login("op")
    url = client.base + "/api/v1/live"
    async with client.session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"

        async def next_event() -> dict:
            data = None
            async for line in resp.content:
                text = line.decode().rstrip("\n")
                if text.startswith("data: "):
                    data = json.loads(text[6:])
                elif text == "" and data is not None:
                    return data
            raise AssertionError("stream ended")

        first = await asyncio.wait_for(next_event(), 10)
        assert first["cases"]["open"] == 0
        case_id = await open_case(hub, agent)
        for _ in range(50):
            ev = await asyncio.wait_for(next_event(), 10)
            if ev["cases"]["latest_case_id"] == case_id:
                break
        assert ev["cases"]["open"] == 1 and ev["cases"]["by_grid"] == {"g-01": 1}
        assert ev["version"] > first["version"]


async def test_metrics_are_prometheus_text(hub, client, agent):
    hub.config.web.metrics_public = True
    await open_case(hub, agent)
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name in ("cityops_ingest_events_total 1", 'cityops_cases_open{state="dispatched"} 1',
                 "cityops_cases_overdue 0", 'cityops_agents{state="online"}',
                 'cityops_queue_depth{queue="writer"}', "cityops_dead_letters 0",
                 'cityops_http_request_duration_seconds_bucket{route="healthz",method="GET",le="+Inf"} 1',
                 "# TYPE cityops_http_request_duration_seconds histogram"):
        assert name in text, name
    mem = {line.split("}")[0].split('"')[1]: float(line.rsplit(" ", 1)[1])
           for line in text.splitlines() if line.startswith("cityops_hub_memory_bytes{")}
    # the test process's resident set, and SQLite's share of it (its page caches and schemas)
    assert 10 * 2**20 < mem["rss"] < 8 * 2**30 and 0 < mem["sqlite"] < mem["rss"]


async def test_access_log_is_structured(hub, client, caplog):
    hub.config.web.access_log = True
    from hub.web import app as web_app

    # The app was built with access_log off (fixture); build the check from a fresh app.
    caplog.set_level(logging.INFO, logger="hub.web.access")
    metrics = web_app.HttpMetrics()
    mw = web_app._access_middleware(metrics, True)  # noqa: SLF001

    class Req:
        method, path, remote = "GET", "/cases", "127.0.0.1"
        match_info = type("M", (), {"route": type("R", (), {"name": "cases_page"})()})()

        def get(self, key, default=None):
            return None

    async def handler(request):
        from aiohttp import web

        return web.Response(text="ok")

    await mw(Req(), handler)
    rec = next(r for r in caplog.records if r.name == "hub.web.access")
    assert rec.status == 200 and rec.route == "cases_page" and rec.http_method == "GET"
    assert isinstance(rec.duration_ms, float)
    assert metrics.requests[("cases_page", "GET", 200)] == 1


async def test_snapshots_need_a_signed_in_user(hub, client, agent):
    case_id = await open_case(hub, agent)
    sha = (await hub.read(lambda r: r.get_case(case_id))).before_sha256
    assert (await client.get(f"/api/v1/snapshots/{sha}.jpg")).status == 401
    await client.login("op")
    r = await client.get(f"/api/v1/snapshots/{sha}.jpg")
    assert r.status == 200 and r.content_type == "image/jpeg"
    assert (await client.get(f"/api/v1/snapshots/{'0' * 64}.jpg")).status == 404


async def test_static_assets_are_served_locally(client):
    for name in ("app.css", "app.js", "favicon.svg"):
        r = await client.get(f"/static/{name}")
        assert r.status == 200, name
    assert (await client.get("/static/../app.py")).status == 404
    css = (await client.get("/static/app.css")).text
    assert "http://" not in css and "https://" not in css  # nothing from the internet
