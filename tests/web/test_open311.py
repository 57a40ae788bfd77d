"""Open311 GeoReport v2, shaped as the spec's examples: services from the taxonomy,
requests from cases (JSON and XML), POST with an api_key through the same screening."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import aiohttp
import pytest
from hubtest import EXAMPLES, G01, G05, T0, make_setup
from webtest import Client, add_users, make_token, open_case, real_jpeg

from hub.app import Hub
from hub.gazetteer import stand_in_point
from hub.web.open311 import to_xml, xml_safe
from hub.web.throttle import TokenBuckets

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
    # Each report is its own source (the token's name, then a report's own suffix).
    assert case.origin_agent == "open311" and case.origin_source.startswith("city-app.")
    # A person's report is screened as a report: a text without a photo is a valid report
    # (a camera's event without a snapshot would be rejected); it is dispatched.
    assert case.state == "dispatched" and case.department == "drainage"
    one = (await client.get(f"/open311/v2/requests/{rid}.json")).json()
    assert len(one) == 1 and list(one[0]) == REQUEST_KEYS
    req = one[0]
    assert req["status"] == "open" and req["description"] == "knee-deep water"
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
    ({"service_code": "roads.pothole"}, 400, "a location is required"),
    ({"service_code": "roads.pothole", "lat": "31.2"}, 400, "lat and long together"),
    ({"service_code": "roads.pothole", "lat": "nan", "long": "121.4"}, 400, "between"),
    ({"service_code": "roads.pothole", "lat": "31.2", "long": "121.4",
      "media_url": "javascript:alert(1)"}, 400, "media_url"),
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
    # A time without a timezone is refused, not read as UTC (the hub runs on Asia/Shanghai).
    for naive in ("2026-07-01T00:00:00", "2026-07-01"):
        r = await client.get(f"/open311/v2/requests.json?start_date={naive}")
        assert r.status == 400 and "no timezone" in r.json()[0]["description"], naive
        x = await client.get(f"/open311/v2/requests.xml?end_date={naive}")
        assert x.status == 400 and x.content_type == "text/xml"
        assert ET.fromstring(x.text.encode()).find("error/code").text == "400"
    r = await client.get("/open311/v2/requests.json?start_date=2026-06-30T10:00:00%2B08:00")
    assert r.status == 200
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


# -- reports, places, limits (issue 17: points 18, 20, 25-30) -------------------------------------

@pytest.fixture
async def ghub(tmp_path, clock):
    """A hub with the example gazetteer and a bucket of 4 POSTs a minute per token."""
    h = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False,
                                      "open311": {"posts_per_min": 4}},
                       gazetteer=str(EXAMPLES / "gazetteer.yaml")), clock=clock, run_scheduler=False)
    await h.start()
    await add_users(h)
    yield h
    await h.stop()


@pytest.fixture
async def gclient(ghub):
    c = Client(ghub)
    yield c
    await c.close()


async def post(client, token: str, fmt: str = "json", **fields: str):
    return await client.post(f"/open311/v2/requests.{fmt}", data={"api_key": token, **fields})


async def test_description_and_media_url_are_returned(hub, client, partner):
    url = "https://photos.example.org/reports/77.jpg"
    r = await post(client, partner, service_code="garbage.overflow", lat=str(G01[0]),
                   long=str(G01[1]), description="bins full since Monday", media_url=url)
    rid = r.json()[0]["service_request_id"]
    one = (await client.get(f"/open311/v2/requests/{rid}.json")).json()[0]
    assert one["description"] == "bins full since Monday" and one["media_url"] == url
    listed = next(x for x in (await client.get("/open311/v2/requests.json")).json()
                  if x["service_request_id"] == rid)
    assert listed["description"] == "bins full since Monday" and listed["media_url"] == url
    root = ET.fromstring((await client.get(f"/open311/v2/requests/{rid}.xml")).text.encode())
    assert root.find("request/description").text == "bins full since Monday"
    assert root.find("request/media_url").text == url


async def test_an_address_alone_is_placed_by_the_gazetteer(ghub, gclient):
    token = await make_token(ghub, "open311", name="city app")
    r = await post(gclient, token, service_code="roads.pothole", address_string="九亭路 88号",
                   description="deep pothole by the bus stop")
    assert r.status == 200, r.text
    rid = r.json()[0]["service_request_id"]
    case = await ghub.read(lambda repo: repo.get_case(int(rid)))
    assert case.grid_id == "g-05" and (case.lat, case.lon) == (31.215, 121.415)
    assert case.state == "dispatched" and case.place == "九亭路 88号"
    one = (await gclient.get(f"/open311/v2/requests/{rid}.json")).json()[0]
    assert (one["lat"], one["long"], one["address"]) == (31.215, 121.415, "九亭路 88号")


async def test_an_unknown_address_is_held_for_an_operator_never_refused(ghub, gclient):
    token = await make_token(ghub, "open311", name="city app")
    op = await make_token(ghub, "operator")
    r = await post(gclient, token, service_code="roads.pothole",
                   address_string="behind the old water tower", description="pothole")
    assert r.status == 200, r.text
    assert "operator will place it" in r.json()[0]["service_notice"]
    rid = int(r.json()[0]["service_request_id"])
    case = await ghub.read(lambda repo: repo.get_case(rid))
    assert case.state == "new" and case.queue == "operator" and case.grid_id is None
    assert [c for c, _ in case.screen_reasons] == ["needs_placement"]
    assert "gazetteer" in case.queue_reason
    one = (await gclient.get(f"/open311/v2/requests/{rid}.json")).json()[0]
    assert one["status"] == "open" and one["lat"] is None and one["long"] is None
    assert "waiting for an operator" in one["status_notes"]
    # Operators see it in their queue.
    queued = (await gclient.get("/api/v1/cases?queue=operator", token=op)).json()
    assert rid in [c["id"] for c in queued["cases"]]
    # Its stand-in point joins nothing: a second unknown address and a report at the
    # stand-in point itself each get their own case.
    r2 = await post(gclient, token, service_code="roads.pothole",
                    address_string="near the blue kiosk", description="another pothole")
    lat, lon = stand_in_point(ghub.setup.grids)
    r3 = await post(gclient, token, service_code="roads.pothole", lat=str(lat), long=str(lon),
                    description="pothole here")
    ids = {rid, int(r2.json()[0]["service_request_id"]), int(r3.json()[0]["service_request_id"])}
    assert len(ids) == 3
    # An operator accepts it: it is dispatched by the category's department.
    await ghub.accept(rid, actor="op")
    case = await ghub.read(lambda repo: repo.get_case(rid))
    assert case.state == "dispatched" and case.department == "road_maintenance"


async def test_citizen_reports_have_their_own_screen(hub, client, partner):
    text_only = await post(client, partner, service_code="flood.road_waterlogging",
                           lat=str(G01[0]), long=str(G01[1]), description="water over the kerb")
    case = await hub.read(lambda repo: repo.get_case(int(text_only.json()[0]["service_request_id"])))
    assert case.state == "dispatched"  # not "the event carries no bbox, snapshot"
    empty = await post(client, partner, service_code="garbage.overflow", lat=str(G05[0]),
                       long=str(G05[1]))
    spam = await post(client, partner, service_code="roads.pothole", lat=str(G05[0]),
                      long=str(G05[1]),
                      description="cheap pills http://a.example http://b.example http://c.example")
    for r, code in ((empty, "no_content"), (spam, "spam")):
        case = await hub.read(lambda repo, r=r: repo.get_case(int(r.json()[0]["service_request_id"])))
        assert case.state == "rejected" and [c for c, _ in case.screen_reasons] == [code]
        assert "did not pass" in r.json()[0]["service_notice"]


async def test_bad_reports_from_one_key_do_not_silence_the_next(hub, client, partner):
    for n in range(6):  # rejected reports (nothing said), more than repeat_offender.max_false
        r = await post(client, partner, service_code="flood.road_waterlogging",
                       lat=str(G01[0] + n * 0.001), long=str(G01[1]))
        case = await hub.read(lambda repo, r=r: repo.get_case(int(r.json()[0]["service_request_id"])))
        assert case.state == "rejected"
    r = await post(client, partner, service_code="flood.road_waterlogging", lat=str(G05[0]),
                   long=str(G05[1]), description="road flooded at the crossing")
    case = await hub.read(lambda repo: repo.get_case(int(r.json()[0]["service_request_id"])))
    assert case.state == "dispatched", case.screen_reasons


async def test_posts_are_limited_per_token_with_429_and_retry_after(ghub, gclient):
    token = await make_token(ghub, "open311", name="busy app")
    other = await make_token(ghub, "open311", name="quiet app")
    for n in range(4):
        r = await post(gclient, token, service_code="roads.pothole", lat=str(G01[0]),
                       long=str(G01[1]), description=f"pothole {n}")
        assert r.status == 200, r.text
    r = await post(gclient, token, service_code="roads.pothole", lat=str(G01[0]),
                   long=str(G01[1]), description="pothole 5")
    assert r.status == 429 and r.content_type == "application/json"
    assert 1 <= int(r.headers["Retry-After"]) <= 15
    assert r.json()[0]["code"] == 429 and "retry" in r.json()[0]["description"]
    x = await post(gclient, token, "xml", service_code="roads.pothole", lat=str(G01[0]),
                   long=str(G01[1]), description="pothole 6")
    assert x.status == 429 and x.content_type == "text/xml" and "Retry-After" in x.headers
    assert ET.fromstring(x.text.encode()).find("error/code").text == "429"
    r = await post(gclient, other, service_code="roads.pothole", lat=str(G01[0]),
                   long=str(G01[1]), description="pothole elsewhere")
    assert r.status == 200  # the bucket is the token's, not everyone's


def test_token_buckets_refill_at_the_rate():
    now = [0.0]
    buckets = TokenBuckets(6, clock=lambda: now[0])  # 6 a minute: one back every 10 s
    assert [buckets.take("a") for _ in range(6)] == [0.0] * 6
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") == 0.0
    now[0] = 5.0
    assert buckets.take("a") == pytest.approx(5.0)
    now[0] = 10.0
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0


async def test_the_same_post_twice_is_one_request(hub, client, partner):
    fields = {"service_code": "roads.pothole", "lat": str(G01[0]), "long": str(G01[1]),
              "description": "pothole at the gate"}
    a = (await post(client, partner, **fields)).json()[0]["service_request_id"]
    b = (await post(client, partner, **fields)).json()[0]["service_request_id"]
    assert a == b and await hub.read(lambda r: r.counts()["cases_total"]) == 1


async def test_control_characters_never_break_the_xml(hub, client, partner):
    await post(client, partner, service_code="roads.pothole", lat=str(G01[0]), long=str(G01[1]),
               address_string="Jiuting Rd\x0c\x01 88", description="hole\x00\x1b here\ufffe")
    x = await client.get("/open311/v2/requests.xml")
    root = ET.fromstring(x.text.encode())  # raised "not well-formed" before
    req = root.find("request")
    assert req.find("address").text == "Jiuting Rd 88" and req.find("description").text == "hole here"
    json_ = (await client.get("/open311/v2/requests.json")).json()
    assert json_[0]["address"] == "Jiuting Rd\x0c\x01 88"  # JSON escapes them; kept as sent


def test_xml_drops_every_character_xml_forbids():
    hostile = "a\x00b\x08c\x0b\x0c\x1f\ud800\udfff\ufffe\uffffd\t\n\re\U0001f600"
    root = ET.fromstring(to_xml("service_requests", "request", [{"place": hostile}]).encode())
    assert root.find("request/place").text == "abcd\t\n\ne\U0001f600"
    assert xml_safe("<&>") == "&lt;&amp;&gt;"
