"""Open311 GeoReport v2, shaped as the spec's examples: services from the taxonomy,
requests from cases (JSON and XML), POST with an api_key through the same screening."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import aiohttp
import pytest
from hubtest import G01, G05, T0
from webtest import make_token, open_case, real_jpeg

from hub.web.open311 import to_xml

REQUEST_KEYS = ["service_request_id", "status", "status_notes", "service_name", "service_code",
                "description", "agency_responsible", "service_notice", "requested_datetime",
                "updated_datetime", "expected_datetime", "address", "address_id", "zipcode",
                "lat", "long", "media_url"]


@pytest.fixture
async def partner(hub):
    return await make_token(hub, "open311", name="city app")


async def test_services_json_and_xml(client):
    r = await client.get("/open311/v2/services.json")
    assert r.status == 200 and r.content_type == "application/json"
    services = r.json()
    codes = {s["service_code"] for s in services}
    assert "flood.road_waterlogging" in codes and "roads.pothole" in codes
    assert not any(c.startswith(("elderly_care.", "linkage.", "device.")) for c in codes)  # private
    s = next(x for x in services if x["service_code"] == "flood.road_waterlogging")
    assert list(s) == ["service_code", "service_name", "description", "metadata", "type",
                       "keywords", "group"]
    assert s["service_name"] == "Road waterlogging" and s["metadata"] is False
    assert s["type"] == "realtime" and s["group"] == "Flood and typhoon" and "道路积水" in s["description"]
    x = await client.get("/open311/v2/services.xml")
    assert x.status == 200 and x.content_type == "text/xml"
    assert x.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(x.text.encode())
    assert root.tag == "services" and len(root) == len(services)
    first = root[0]
    assert first.tag == "service" and [c.tag for c in first] == list(s)
    assert root.find("service/metadata").text == "false"


async def test_post_a_request_form_encoded_then_read_it(hub, client, partner):
    r = await client.post("/open311/v2/requests.json", data={
        "api_key": partner, "service_code": "flood.road_waterlogging", "lat": str(G05[0]),
        "long": str(G05[1]), "address_string": "Jiuting Rd 88", "description": "knee-deep water",
        "email": "resident@example.org"})
    assert r.status == 200, r.text
    created = r.json()
    assert len(created) == 1 and list(created[0]) == ["service_request_id", "service_notice", "account_id"]
    rid = created[0]["service_request_id"]
    case = await hub.read(lambda repo: repo.get_case(int(rid)))
    assert case.origin_agent == "open311" and case.origin_source == "city-app"
    # Same screening: no photo, but road waterlogging needs a snapshot → rejected, visible, kept.
    assert case.state == "rejected" and "missing_evidence" in str(case.screen_reasons)
    one = (await client.get(f"/open311/v2/requests/{rid}.json")).json()
    assert len(one) == 1 and list(one[0]) == REQUEST_KEYS
    req = one[0]
    assert req["status"] == "closed" and req["status_notes"].startswith("not accepted")
    assert req["address"] == "Jiuting Rd 88" and req["lat"] == G05[0] and req["long"] == G05[1]
    assert req["requested_datetime"] == "2026-07-01T08:00:00Z"
    audit = await hub.read(lambda repo: repo.audit_for_case(int(rid)))
    assert any(a.action == "report" and "knee-deep" in a.detail for a in audit)


async def test_post_with_a_photo_is_accepted_and_dispatched(hub, client, partner):
    form = aiohttp.FormData()
    for k, v in {"api_key": partner, "service_code": "flood.road_waterlogging",
                 "lat": str(G01[0]), "long": str(G01[1]), "description": "flooded"}.items():
        form.add_field(k, v)
    form.add_field("media", real_jpeg(3), filename="p.jpg", content_type="image/jpeg")
    r = await client.post("/open311/v2/requests.xml", data=form)
    assert r.status == 200, r.text
    root = ET.fromstring(r.text.encode())
    assert root.tag == "service_requests" and root[0].tag == "request"
    rid = root.find("request/service_request_id").text
    assert root.find("request/account_id").text is None
    case = await hub.read(lambda repo: repo.get_case(int(rid)))
    assert case.state == "dispatched" and case.department == "drainage"
    req = (await client.get(f"/open311/v2/requests/{rid}.json")).json()[0]
    assert req["status"] == "open" and req["agency_responsible"] == "Drainage Management Office"
    assert req["expected_datetime"] == (T0 + timedelta(minutes=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    media = req["media_url"]
    assert media.endswith(f"/open311/v2/media/{case.before_sha256}.jpg")
    m = await client.get(media[media.index("/open311"):])
    assert m.status == 200 and m.content_type == "image/jpeg"


async def test_a_second_report_of_the_same_place_merges(hub, client, partner):
    ids = []
    for n in range(2):
        form = aiohttp.FormData()
        for k, v in {"api_key": partner, "service_code": "flood.road_waterlogging",
                     "lat": str(G01[0] + n * 0.0001), "long": str(G01[1])}.items():
            form.add_field(k, v)
        form.add_field("media", real_jpeg(10 + n), filename="p.jpg", content_type="image/jpeg")
        ids.append((await client.post("/open311/v2/requests.json", data=form)).json()[0]["service_request_id"])
    assert ids[0] == ids[1]
    case = await hub.read(lambda repo: repo.get_case(int(ids[0])))
    assert case.event_count == 2


async def test_requests_list_with_filters(hub, client, agent, partner):
    camera_case = await open_case(hub, agent)  # public category, from an agent
    await client.post("/open311/v2/requests.json", data={
        "api_key": partner, "service_code": "garbage.overflow", "lat": str(G05[0]),
        "long": str(G05[1])})
    from hubtest import sensor_event

    agent.send(sensor_event(seq=500, event_id="wm-9"))  # elderly care: never public
    all_ = (await client.get("/open311/v2/requests.json")).json()
    assert {r["service_code"] for r in all_} == {"flood.road_waterlogging", "garbage.overflow"}
    assert all(list(r) == REQUEST_KEYS for r in all_)
    only = (await client.get("/open311/v2/requests.json?service_code=garbage.overflow")).json()
    assert [r["service_code"] for r in only] == ["garbage.overflow"]
    by_id = (await client.get(f"/open311/v2/requests.json?service_request_id={camera_case}")).json()
    assert [r["service_request_id"] for r in by_id] == [str(camera_case)]
    assert by_id[0]["media_url"] is None  # camera snapshots stay private
    open_ = (await client.get("/open311/v2/requests.json?status=open")).json()
    assert {r["status"] for r in open_} == {"open"}
    later = (await client.get("/open311/v2/requests.json?start_date=2026-07-02T00:00:00Z"
                              "&end_date=2026-07-03T00:00:00Z")).json()
    assert later == []
    x = await client.get("/open311/v2/requests.xml?status=open")
    root = ET.fromstring(x.text.encode())
    assert root.tag == "service_requests" and all(c.tag == "request" for c in root)
    assert [c.tag for c in root[0]] == REQUEST_KEYS


@pytest.mark.parametrize(("data", "status", "words"), [
    ({"service_code": "flood.road_waterlogging", "lat": "31.2", "long": "121.4"}, 403, "api_key"),
    ({"api_key": "wrong", "service_code": "flood.road_waterlogging", "lat": "31.2", "long": "121.4"},
     403, "invalid api_key"),
    ({"service_code": "no.such", "lat": "31.2", "long": "121.4"}, 404, "service_code"),
    ({"service_code": "elderly_care.water_no_use", "lat": "31.2", "long": "121.4"}, 404, "service_code"),
    ({"lat": "31.2", "long": "121.4"}, 400, "service_code is required"),
    ({"service_code": "roads.pothole", "address_string": "Main St"}, 400, "lat and long"),
    ({"service_code": "roads.pothole", "lat": "north", "long": "121.4"}, 400, "lat must be a number"),
    ({"service_code": "roads.pothole", "lat": "95", "long": "121.4"}, 400, "between"),
])
async def test_post_errors_are_the_specs_error_array(hub, client, partner, data, status, words):
    data = {"api_key": partner, **data} if "api_key" not in data and status != 403 else data
    before = await hub.read(lambda r: r.counts()["cases_total"])
    r = await client.post("/open311/v2/requests.json", data=data)
    assert r.status == status, r.text
    errors = r.json()
    assert isinstance(errors, list) and errors[0]["code"] == status and words in errors[0]["description"]
    x = await client.post("/open311/v2/requests.xml", data=data)
    root = ET.fromstring(x.text.encode())
    assert root.tag == "errors" and root.find("error/code").text == str(status)
    assert await hub.read(lambda r: r.counts()["cases_total"]) == before


async def test_handler_tokens_cannot_post_reporter_tokens_can(hub, client):
    handler = await make_token(hub, "handler", "drainage")
    data = {"service_code": "roads.pothole", "lat": str(G01[0]), "long": str(G01[1])}
    r = await client.post("/open311/v2/requests.json", data={**data, "api_key": handler})
    assert r.status == 403
    reporter = await make_token(hub, "reporter")
    r = await client.post("/open311/v2/requests.json", data={**data, "api_key": reporter})
    assert r.status == 200


async def test_unknown_request_and_bad_filters(client):
    r = await client.get("/open311/v2/requests/999.json")
    assert r.status == 404 and r.json()[0]["code"] == 404
    r = await client.get("/open311/v2/requests.json?start_date=yesterday")
    assert r.status == 400 and "start_date" in r.json()[0]["description"]
    r = await client.get("/open311/v2/requests.json?status=pending")
    assert r.status == 400
    r = await client.get("/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z"
                         "&end_date=2026-07-01T00:00:00Z")
    assert r.status == 400 and "90 days" in r.json()[0]["description"]


async def test_non_image_media_is_refused(hub, client, partner):
    form = aiohttp.FormData()
    for k, v in {"api_key": partner, "service_code": "roads.pothole", "lat": str(G01[0]),
                 "long": str(G01[1])}.items():
        form.add_field(k, v)
    form.add_field("media", b"%PDF-1.4 not a photo", filename="x.pdf", content_type="application/pdf")
    r = await client.post("/open311/v2/requests.json", data=form)
    assert r.status == 415 and "JPEG" in r.json()[0]["description"]


def test_xml_escapes_and_empties():
    text = to_xml("service_requests", "request", [{"a": "<&>", "b": None, "c": True, "d": 1.5}])
    root = ET.fromstring(text.encode())
    assert root.find("request/a").text == "<&>" and root.find("request/b").text is None
    assert root.find("request/c").text == "true" and root.find("request/d").text == "1.5"
