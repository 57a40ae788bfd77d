"""The one-key report page (/report) for residents' committees: one form becomes a case
dispatched like any other; every field is checked with the error shown beside it; the
reporter sees only their own reports, with progress and, when closed, the result."""

from __future__ import annotations

import re

import aiohttp
import pytest
from hubtest import G01, G05, OUTSIDE
from webtest import add_users, real_jpeg


def form_key(page: str) -> str:
    return re.search(r'name="report_key" value="([^"]+)"', page).group(1)


async def open_form(client) -> str:
    page = await client.get("/report")
    assert page.status == 200, page.text[:300]
    return form_key(page.text)


def report_form(client, key: str, *, service="garbage.overflow", where=G01, photo: bytes | None = b"",
                address="", grid_id="", note="bin by the school gate is overflowing",
                csrf: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("csrf_token", client.csrf if csrf is None else csrf)
    form.add_field("report_key", key)
    form.add_field("service", service)
    form.add_field("lat", "" if where is None else str(where[0]))
    form.add_field("lon", "" if where is None else str(where[1]))
    form.add_field("address", address)
    form.add_field("grid_id", grid_id)
    form.add_field("note", note)
    if photo is not None:
        form.add_field("photo", real_jpeg(3) if photo == b"" else photo, filename="p.jpg",
                       content_type="image/jpeg")
    return form


async def cases(hub) -> int:
    return (await hub.read(lambda repo: repo.counts()))["cases_total"]


async def test_a_reporter_lands_on_the_form_and_it_is_accessible(hub, client):
    r = await client.login("rep")
    assert r.status == 303 and r.headers["Location"] == "/report"
    page = await client.get("/")
    assert page.status == 303 and page.headers["Location"] == "/report"
    page = await client.get("/report")
    html = page.text
    assert 'name="viewport"' in html and 'id="report-map"' in html
    assert 'capture="environment"' in html and 'accept="image/jpeg' in html
    assert '<script src="/static/report.js' in html and "http://" not in html.split("<main")[1]
    # Every visible control has a label.
    for control in re.findall(r'<(?:input|select|textarea)\b[^>]*>', html):
        if 'type="hidden"' in control:
            continue
        cid = re.search(r'id="([^"]+)"', control).group(1)
        assert f'for="{cid}"' in html, f"no label for #{cid}"
    # Categories: the public ones a person can report, not sensor-only or private ones.
    assert 'value="garbage.overflow"' in html and 'value="roads.pothole"' in html
    assert "elderly_care." not in html and "linkage." not in html and "device." not in html
    assert (await client.get("/static/report.js")).status == 200


async def test_a_report_becomes_a_dispatched_case_the_reporter_can_follow(hub, client):
    await client.login("rep")
    key = await open_form(client)
    r = await client.post("/report", data=report_form(client, key))
    assert r.status == 303, r.text[:500]
    assert r.headers["Location"].startswith("/report?done=")
    rows = await hub.read(lambda repo: repo.external_reports_by("reporter", "rep"))
    assert len(rows) == 1
    case = await hub.read(lambda repo: repo.get_case(rows[0].case_id))
    assert case.state == "dispatched" and case.department == "sanitation"
    assert case.origin_agent == "reporter" and case.before_sha256 is not None
    assert case.deadline_at is not None and case.grid_id == "g-01"
    page = await client.get(r.headers["Location"])
    html = page.text
    assert "Sent." in html and f'id="report-{rows[0].id}"' in html
    assert 'data-state="dispatched"' in html and "Sanitation Company" in html
    assert f"/report/{rows[0].id}/before.jpg" in html
    photo = await client.get(f"/report/{rows[0].id}/before.jpg")
    assert photo.status == 200 and photo.content_type == "image/jpeg"
    # The same form sent twice (a double tap, a resend) is one report.
    r = await client.post("/report", data=report_form(client, key))
    assert r.status == 303 and await cases(hub) == 1
    audit = await hub.read(lambda repo: repo.audit_for_case(case.id))
    assert any(a.actor == "rep" and "overflowing" in a.detail for a in audit)


async def test_address_and_grid_instead_of_a_map_point(hub, client):
    await client.login("rep")
    key = await open_form(client)
    r = await client.post("/report", data=report_form(
        client, key, service="roads.pothole", where=None, address="Jiuting Rd 8", grid_id="g-05"))
    assert r.status == 303, r.text[:400]
    rows = await hub.read(lambda repo: repo.external_reports_by("reporter", "rep"))
    case = await hub.read(lambda repo: repo.get_case(rows[0].case_id))
    assert case.grid_id == "g-05" and case.place == "Jiuting Rd 8"


async def test_an_address_alone_waits_for_an_operator_to_place_it(hub, client):
    # This hub has no gazetteer: the address cannot be placed by name, and the report is
    # still taken (never refused), held new in the operator queue.
    await client.login("rep")
    key = await open_form(client)
    r = await client.post("/report", data=report_form(
        client, key, service="roads.pothole", where=None, address="behind the old water tower"))
    assert r.status == 303, r.text[:400]
    rows = await hub.read(lambda repo: repo.external_reports_by("reporter", "rep"))
    case = await hub.read(lambda repo: repo.get_case(rows[0].case_id))
    assert case.state == "new" and case.queue == "operator" and case.grid_id is None
    assert [c for c, _ in case.screen_reasons] == ["needs_placement"]
    assert case.place == "behind the old water tower"
    page = (await client.get("/report")).text
    assert f'id="report-{rows[0].id}"' in page and 'data-state="new"' in page


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"where": OUTSIDE}, "place", "outside the service area"),
    ({"where": None}, "place", "tap the place on the map"),
    ({"where": ("north", "east")}, "place", "not a pair of numbers"),
    ({"where": None, "grid_id": "g-05"}, "address", "give the address"),
    ({"where": None, "grid_id": "g-99", "address": "x"}, "grid_id", "unknown grid"),
    ({"service": ""}, "service", "choose what the problem is"),
    ({"service": "elderly_care.fall"}, "service", "unknown category"),
    ({"photo": None}, "photo", "needs a photo"),
    ({"photo": b"GIF89a not a jpeg"}, "photo", "not a JPEG"),
    ({"photo": b"\xff\xd8\xff" + b"\0" * (400 * 1024)}, "photo", None),
])
async def test_bad_input_is_shown_beside_the_field(hub, client, change, field, words):
    await client.login("rep")
    key = await open_form(client)
    r = await client.post("/report", data=report_form(client, key, **change))
    assert r.status in (400, 413), r.text[:300]
    assert await cases(hub) == 0
    if r.status == 413:  # over the whole-request limit: the error page says why
        assert "256 KiB" in r.text
        return
    assert 'id="report-error"' in r.text
    error = re.search(r'class="field-error" id="[a-z_]+-error" role="alert">([^<]+)<', r.text)
    assert error and words in error.group(1), (field, error and error.group(1))
    assert f'id="{"place" if field == "place" else field.replace("grid_id", "grid")}-error"' in r.text


async def test_a_large_photo_under_the_request_limit_is_refused_with_the_size(hub, client):
    await client.login("rep")
    key = await open_form(client)
    big = b"\xff\xd8\xff" + b"\0" * (270 * 1024)
    r = await client.post("/report", data=report_form(client, key, photo=big))
    assert r.status == 400 and "at most 256 KiB" in r.text and await cases(hub) == 0


async def test_stale_form_and_missing_csrf(hub, client):
    await client.login("rep")
    r = await client.post("/report", data=report_form(client, "short"))
    assert r.status == 400 and "reload the page" in r.text
    key = await open_form(client)
    r = await client.post("/report", data=report_form(client, key, csrf="wrong"))
    assert r.status == 403 and await cases(hub) == 0


async def test_only_reporters_and_only_their_own_reports(hub, client):
    r = await client.get("/report")
    assert r.status == 303 and r.headers["Location"].startswith("/login")
    for user in ("op", "drain", "admin"):
        await client.login(user)
        assert (await client.get("/report")).status == 403, user
    await add_users(hub, {"rep2": ("reporter", None)})
    await client.login("rep")
    key = await open_form(client)
    await client.post("/report", data=report_form(client, key, where=G05))
    mine = await hub.read(lambda repo: repo.external_reports_by("reporter", "rep"))
    await client.login("rep2")
    page = await client.get("/report")
    assert f'id="report-{mine[0].id}"' not in page.text and "No reports yet" in page.text
    assert (await client.get(f"/report/{mine[0].id}/before.jpg")).status == 404
    await client.login("rep")
    # No after-photo before the case is resolved.
    assert (await client.get(f"/report/{mine[0].id}/after.jpg")).status == 404


async def test_the_result_after_closing(hub, client):
    await client.login("rep")
    key = await open_form(client)
    await client.post("/report", data=report_form(client, key))
    row = (await hub.read(lambda repo: repo.external_reports_by("reporter", "rep")))[0]
    await hub.start_work(row.case_id, actor="sani")
    await hub.resolve(row.case_id, actor="sani", after_jpeg=real_jpeg(9, blob=False))
    await hub.review(row.case_id, fixed=True, actor="op")
    case = await hub.read(lambda repo: repo.get_case(row.case_id))
    assert case.state == "closed"
    page = (await client.get("/report")).text
    assert 'data-state="closed"' in page and 'class="result"' in page
    after = await client.get(f"/report/{row.id}/after.jpg")
    assert after.status == 200 and after.content_type == "image/jpeg"
    assert f"/report/{row.id}/after.jpg" in page
