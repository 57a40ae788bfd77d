"""GeoReport v2 as a spec-following client walks it: discovery, the service list, every
service definition, POSTs (a point, an address alone, a media_url), GET requests with
each filter, one request, and the errors — checking content types and field names in
both formats, and that every XML answer parses, hostile characters and all.

A hub with the example gazetteer; nothing here knows the hub's internals."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from hubtest import EXAMPLES, G01, G05, OUTSIDE, await_for, event, jpeg, make_setup
from webtest import add_users, make_token

from hub.app import Hub
from protocol.messages import Location

V2 = "/open311/v2"
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords",
                  "group"]
REQUEST_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code",
                  "description", "agency_responsible", "service_notice", "requested_datetime",
                  "updated_datetime", "expected_datetime", "address", "address_id", "zipcode",
                  "lat", "long", "media_url"]
CREATED_FIELDS = ["service_request_id", "service_notice", "account_id"]


@pytest.fixture
async def hub(tmp_path, clock):
    h = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False},
                       gazetteer=str(EXAMPLES / "gazetteer.yaml")), clock=clock, run_scheduler=False)
    await h.start()
    await add_users(h)
    yield h
    await h.stop()


@pytest.fixture
async def api_key(hub):
    return await make_token(hub, "open311", name="conformance client")


async def get_json(client, path: str, status: int = 200):
    r = await client.get(path)
    assert r.status == status, (path, r.status, r.text[:300])
    assert r.content_type == "application/json", (path, r.content_type)
    return r.json()


async def get_xml(client, path: str, status: int = 200) -> ET.Element:
    r = await client.get(path)
    assert r.status == status, (path, r.status, r.text[:300])
    assert r.content_type == "text/xml" and r.headers["Content-Type"].endswith("charset=utf-8")
    assert r.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(r.text.encode())


def assert_json_error(body, code: int) -> str:
    assert isinstance(body, list) and len(body) == 1 and sorted(body[0]) == ["code", "description"]
    assert body[0]["code"] == code and body[0]["description"]
    return body[0]["description"]


def assert_xml_error(root: ET.Element, code: int) -> None:
    assert root.tag == "errors" and [e.tag for e in root] == ["error"]
    assert [c.tag for c in root[0]] == ["code", "description"]
    assert root.find("error/code").text == str(code) and root.find("error/description").text


async def create(client, api_key: str, fmt: str = "json", **fields: str):
    r = await client.post(f"{V2}/requests.{fmt}", data={"api_key": api_key, **fields})
    assert r.status == 200, r.text[:300]
    if fmt == "xml":
        root = ET.fromstring(r.text.encode())
        assert root.tag == "service_requests" and [c.tag for c in root[0]] == CREATED_FIELDS
        return root.find("request/service_request_id").text
    body = r.json()
    assert len(body) == 1 and list(body[0]) == CREATED_FIELDS and body[0]["account_id"] is None
    return body[0]["service_request_id"]


async def test_discovery_names_the_endpoint_and_its_formats(client):
    doc = await get_json(client, f"{V2}/discovery.json")
    assert sorted(doc) == ["changeset", "contact", "endpoints", "key_service"]
    assert doc["changeset"].endswith("Z") and "token" in doc["key_service"]
    [endpoint] = doc["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["type"] == "production"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    assert endpoint["url"] == client.base + V2
    root = await get_xml(client, f"{V2}/discovery.xml")
    assert root.tag == "discovery" and root.find("endpoints/endpoint/url").text == endpoint["url"]
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == endpoint["formats"]


async def test_services_and_every_service_definition(client):
    services = await get_json(client, f"{V2}/services.json")
    assert services and all(list(s) == SERVICE_FIELDS for s in services)
    assert all(s["type"] in ("realtime", "batch", "blackbox") for s in services)
    root = await get_xml(client, f"{V2}/services.xml")
    assert root.tag == "services" and [c.tag for c in root[0]] == SERVICE_FIELDS
    assert len(root) == len(services)
    for s in services:
        code = s["service_code"]
        definition = await get_json(client, f"{V2}/services/{code}.json")
        assert definition == {"service_code": code, "attributes": []}
        assert s["metadata"] is False  # no attributes to ask for
        x = await get_xml(client, f"{V2}/services/{code}.xml")
        assert x.tag == "service_definition" and x.find("service_code").text == code
        assert x.find("attributes") is not None and len(x.find("attributes")) == 0
    assert_json_error(await get_json(client, f"{V2}/services/no.such.json", 404), 404)
    assert_json_error(await get_json(client, f"{V2}/services/elderly_care.fall.json", 404), 404)
    assert_xml_error(await get_xml(client, f"{V2}/services/no.such.xml", 404), 404)


async def test_post_then_get_requests_with_every_filter(hub, client, api_key):
    # POST with a point, with an address alone (known, unknown), with media_url.
    by_point = await create(client, api_key, service_code="flood.road_waterlogging",
                            lat=str(G01[0]), long=str(G01[1]), description="road under water")
    by_name = await create(client, api_key, "xml", service_code="roads.pothole",
                           address_string="Huting N Rd 200", description="pothole")
    held = await create(client, api_key, service_code="garbage.overflow",
                        address_string="the lane behind the mill", description="rubbish heap")
    url = "https://img.example.org/r/9.jpg"
    with_media = await create(client, api_key, service_code="garbage.overflow", lat=str(G05[0]),
                              long=str(G05[1]), description="bins", media_url=url)
    everything = await get_json(client, f"{V2}/requests.json")
    assert all(list(r) == REQUEST_FIELDS for r in everything)
    got = {r["service_request_id"]: r for r in everything}
    assert set(got) == {by_point, by_name, held, with_media}
    assert all(r["status"] == "open" for r in everything)  # valid reports are never closed at once
    assert got[by_point]["description"] == "road under water"
    assert (got[by_point]["lat"], got[by_point]["long"]) == G01
    assert got[by_name]["address"] == "Huting N Rd 200" and got[by_name]["lat"] is not None
    assert got[held]["lat"] is None and got[held]["long"] is None
    assert got[held]["address"] == "the lane behind the mill"
    assert got[with_media]["media_url"] == url
    for r in everything:
        assert r["requested_datetime"].endswith("Z") and r["updated_datetime"].endswith("Z")
    # service_request_id (a list; the other filters are then ignored)
    pick = await get_json(client, f"{V2}/requests.json?service_request_id={by_point},{held}"
                                  "&status=closed")
    assert {r["service_request_id"] for r in pick} == {by_point, held}
    # service_code (a list)
    codes = await get_json(client, f"{V2}/requests.json?service_code=garbage.overflow,roads.pothole")
    assert {r["service_request_id"] for r in codes} == {by_name, held, with_media}
    # start_date / end_date with a timezone: T0 is 2026-07-01T08:00Z = 16:00 in Shanghai
    window = "start_date=" + quote("2026-07-01T15:00:00+08:00") + "&end_date=" + \
        quote("2026-07-01T17:00:00+08:00")
    assert len(await get_json(client, f"{V2}/requests.json?{window}")) == 4
    before = "start_date=2026-06-01T00:00:00Z&end_date=" + quote("2026-07-01T15:59:00+08:00")
    assert await get_json(client, f"{V2}/requests.json?{before}") == []
    # status
    assert len(await get_json(client, f"{V2}/requests.json?status=open")) == 4
    assert await get_json(client, f"{V2}/requests.json?status=closed") == []
    assert len(await get_json(client, f"{V2}/requests.json?status=open,closed")) == 4
    # one request, both formats
    [one] = await get_json(client, f"{V2}/requests/{with_media}.json")
    assert one == got[with_media]
    root = await get_xml(client, f"{V2}/requests/{with_media}.xml")
    assert root.tag == "service_requests" and [c.tag for c in root[0]] == REQUEST_FIELDS
    root = await get_xml(client, f"{V2}/requests.xml")
    assert len(root) == 4 and all(r.tag == "request" for r in root)
    held_xml = next(r for r in root if r.find("service_request_id").text == held)
    assert held_xml.find("lat").text is None  # null: an empty element


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_errors_are_the_specs_in_each_format(client, api_key, fmt):
    async def check(method: str, path: str, code: int, **kw):
        r = await client.request(method, path, **kw)
        assert r.status == code, (method, path, r.status, r.text[:200])
        if fmt == "json":
            assert r.content_type == "application/json", (path, r.content_type)
            return assert_json_error(r.json(), code), r
        assert r.content_type == "text/xml", (path, r.content_type)
        assert_xml_error(ET.fromstring(r.text.encode()), code)
        return None, r

    await check("GET", f"{V2}/requests/999999.{fmt}", 404)
    await check("GET", f"{V2}/requests/abc.{fmt}", 404)
    await check("GET", f"{V2}/requests/{'9' * 30}.{fmt}", 404)
    await check("GET", f"{V2}/services/nope.{fmt}", 404)
    await check("GET", f"{V2}/no-such-resource.{fmt}", 404)
    await check("GET", f"{V2}/requests.{fmt}?service_request_id=1,x", 400)
    for naive in ("2026-07-01T08:00:00", "2026-07-01"):
        words, _ = await check("GET", f"{V2}/requests.{fmt}?start_date={naive}", 400)
        assert words is None or "timezone" in words
    await check("GET", f"{V2}/requests.{fmt}?end_date=2026-07-01T08:00:00&start_date="
                       "2026-06-30T08:00:00Z", 400)
    _, r = await check("DELETE", f"{V2}/requests.{fmt}", 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]
    missing = [
        ({}, 403),  # no api_key
        ({"api_key": api_key}, 400),  # no service_code
        ({"api_key": api_key, "service_code": "roads.pothole"}, 400),  # no location
        ({"api_key": api_key, "service_code": "roads.pothole", "long": "121.4"}, 400),
        ({"api_key": api_key, "service_code": "nope", "lat": "31.2", "long": "121.4"}, 404),
    ]
    for data, code in missing:
        await check("POST", f"{V2}/requests.{fmt}", code, data=data)


async def test_hostile_characters_never_break_the_xml(hub, client, api_key, agent):
    hostile = "Gate\x0c\x01 3\x00\x1b\ufffe"
    await create(client, api_key, service_code="roads.pothole", lat=str(G01[0]),
                 long=str(G01[1]), address_string=hostile, description=f"hole {hostile}",
                 first_name="\x07Li")
    await create(client, api_key, service_code="roads.pothole", address_string=hostile,
                 description="no place known")
    # An agent's event whose place carries control characters, too.
    ev = event(seq=1, event_id="cam-ev", sub="garbage.overflow", where=G05, snapshot=jpeg(4))
    ev = ev.model_copy(update={"location": Location(lat=G05[0], lon=G05[1], place="Lane\x0b 5")})
    agent.send(ev)
    await await_for(lambda: agent.acked(1), what="the hub's ack")
    root = await get_xml(client, f"{V2}/requests.xml")
    assert len(root) == 3
    texts = [e.text for r in root for e in r if e.text]
    assert "Gate 3" in texts and "hole Gate 3" in texts and "Lane 5" in texts
    assert not any(ch in t for t in texts for ch in "\x00\x01\x0c\x1b\ufffe")
    # And a request outside the service area is answered, closed with the reason.
    rid = await create(client, api_key, service_code="roads.pothole", lat=str(OUTSIDE[0]),
                       long=str(OUTSIDE[1]), description="far away")
    [one] = await get_json(client, f"{V2}/requests/{rid}.json")
    assert one["status"] == "closed" and "outside the service area" in one["status_notes"]
