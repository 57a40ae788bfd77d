"""The handler API exactly as HANDLER_API.md: a department's token lists and acts on its
own cases only; resolve takes a checked after-photo and goes through verification.

Verification runs the hub's default photo verifier (hub/verify; tests/hub/test_photo_verify_hub.py
drives it with rendered before/after pairs) and, to drive the fixed / not-fixed branches
with arbitrary photos, a ScriptedVerifier."""

from __future__ import annotations

import aiohttp
import pytest
from hubtest import G05, await_for
from webtest import ScriptedVerifier, audit_len, make_token, open_case, real_jpeg

from hub.cases.closure import Outcome

CONTRACT_FIELDS = {"id", "state", "category", "subcategory", "grid_id", "department", "handler",
                   "place", "lat", "lon", "created_at", "dispatched_at", "deadline_at",
                   "escalation_level", "before_snapshot", "close_mode"}


@pytest.fixture
async def drain(hub):
    return await make_token(hub, "handler", "drainage", "drainage-system")


def photo_form(data: bytes, note: str = "cleared the drain", name: str = "after.jpg",
               content_type: str = "image/jpeg") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("photo", data, filename=name, content_type=content_type)
    form.add_field("note", note)
    return form


async def test_list_and_get_my_cases(hub, client, agent, drain):
    case_id = await open_case(hub, agent)
    r = await client.get("/api/v1/handler/cases?state=dispatched,in_progress", token=drain)
    assert r.status == 200
    cases = r.json()["cases"]
    assert [c["id"] for c in cases] == [case_id]
    c = cases[0]
    assert set(c) >= CONTRACT_FIELDS
    assert c["state"] == "dispatched" and c["department"] == "drainage" and c["close_mode"] == "photo"
    assert c["created_at"].endswith("+00:00") and c["before_snapshot"].startswith("/api/v1/snapshots/")
    snap = await client.get(c["before_snapshot"], token=drain)
    assert snap.status == 200 and snap.content_type == "image/jpeg"
    one = await client.get(f"/api/v1/handler/cases/{case_id}", token=drain)
    body = one.json()
    assert one.status == 200 and body["case"]["id"] == case_id
    assert {"events", "snapshots", "audit"} <= set(body)
    assert body["snapshots"][0]["url"] == c["before_snapshot"]
    assert [a["action"] for a in body["audit"]][:3] == ["opened", "accepted", "dispatched"]


async def test_other_departments_cases_are_invisible_and_untouchable(hub, client, agent):
    case_id = await open_case(hub, agent)  # drainage's
    sani = await make_token(hub, "handler", "sanitation")
    assert (await client.get("/api/v1/handler/cases", token=sani)).json()["cases"] == []
    before = await audit_len(hub, case_id)
    for path, body in [("", None), ("/accept", {}), ("/notes", {"text": "mine?"}),
                       ("/reject", {"reason": "not ours"})]:
        method = "GET" if body is None else "POST"
        r = await client.api(method, f"/api/v1/handler/cases/{case_id}{path}", body, token=sani)
        assert r.status == 403, path
        assert r.content_type == "application/problem+json"
        assert r.json()["code"] == "other_department"
    assert await audit_len(hub, case_id) == before
    assert (await hub.read(lambda r: r.get_case(case_id))).state == "dispatched"


async def test_without_or_with_a_bad_token_is_401(client, hub, agent):
    case_id = await open_case(hub, agent)
    assert (await client.get("/api/v1/handler/cases")).status == 401
    r = await client.get("/api/v1/handler/cases", token="cot_not-a-real-token")
    assert r.status == 401 and r.json()["code"] == "bad_token"
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token="nope")
    assert r.status == 401
    assert (await hub.read(lambda r: r.get_case(case_id))).state == "dispatched"


async def test_an_operator_token_is_not_a_handler(hub, client):
    op = await make_token(hub, "operator")
    r = await client.get("/api/v1/handler/cases", token=op)
    assert r.status == 403


async def test_accept_note_and_illegal_state(hub, client, agent, drain):
    case_id = await open_case(hub, agent)
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token=drain)
    assert r.status == 200 and r.json()["case"]["state"] == "in_progress"
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token=drain)
    assert r.status == 409 and r.json()["code"] == "illegal_transition"
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/notes",
                         {"text": "crew on site"}, token=drain)
    assert r.status == 200
    audit = await hub.read(lambda r: r.audit_for_case(case_id))
    assert audit[-1].action == "note" and audit[-1].detail == "crew on site"
    assert audit[-1].actor == "token:drainage-system"
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/notes", {"text": ""}, token=drain)
    assert r.status == 400 and "text" in r.json()["errors"]
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/notes", {"txt": "x"}, token=drain)
    assert r.status == 400 and "txt" in r.json()["errors"]


async def test_reject_sends_the_case_back_to_the_operator_queue(hub, client, agent, drain):
    case_id = await open_case(hub, agent)
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/reject", {}, token=drain)
    assert r.status == 400 and "reason" in r.json()["errors"]
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/reject",
                         {"reason": "this road belongs to the highway company"}, token=drain)
    assert r.status == 200
    c = r.json()["case"]
    assert c["state"] == "accepted" and c["department"] is None and c["queue"] == "operator"
    assert "highway company" in c["queue_reason"]
    assert (await client.get("/api/v1/handler/cases", token=drain)).json()["cases"] == []
    audit = await hub.read(lambda r: r.audit_for_case(case_id))
    assert audit[-1].action == "returned" and audit[-1].data["department"] == "drainage"


async def test_resolve_with_a_photo_then_verified_fixed_closes(tmp_path, clock):
    """A scripted verifier says fixed: the case closes by itself."""
    from hubtest import TestAgent, make_setup
    from webtest import Client, add_users

    from hub.app import Hub

    verifier = ScriptedVerifier(Outcome.FIXED)
    hub = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False}), clock=clock,
              verifier=verifier, run_scheduler=False)
    await hub.start()
    agent = client = None
    try:
        await add_users(hub)
        agent = TestAgent(hub.broker)
        client = Client(hub)
        drain = await make_token(hub, "handler", "drainage")
        case_id = await open_case(hub, agent)
        await client.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token=drain)
        r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                              data=photo_form(real_jpeg(99, blob=False)))
        assert r.status == 200, r.text
        assert r.json()["case"]["state"] == "resolved"
        c = await await_for(lambda: hub.read(lambda repo: (x := repo.get_case(case_id))
                                             and x.state == "closed" and x), what="closure")
        assert c.closed_by == "auto_photo" and verifier.calls == 1
        detail = (await client.get(f"/api/v1/handler/cases/{case_id}", token=drain)).json()
        assert detail["case"]["after_snapshot"] and detail["verifications"][0]["outcome"] == "fixed"
    finally:
        if client:
            await client.close()
        if agent:
            agent.close()
        await hub.stop()


async def test_not_fixed_goes_back_to_the_department(tmp_path, clock):
    from hubtest import TestAgent, make_setup
    from webtest import Client

    from hub.app import Hub

    hub = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False}), clock=clock,
              verifier=ScriptedVerifier(Outcome.NOT_FIXED), run_scheduler=False)
    await hub.start()
    agent = TestAgent(hub.broker)
    client = Client(hub)
    try:
        drain = await make_token(hub, "handler", "drainage")
        case_id = await open_case(hub, agent)
        r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                              data=photo_form(real_jpeg(5)))
        assert r.status == 200
        c = await await_for(lambda: hub.read(lambda repo: (x := repo.get_case(case_id))
                                             and x.state == "dispatched" and x.after_sha256 is None
                                             and x), what="sent back")
        assert c.department == "drainage"
        notes = await hub.read(lambda r: r.notifications_for_case(case_id))
        assert notes[-1]["kind"] == "sent_back"
    finally:
        await client.close()
        agent.close()
        await hub.stop()


async def test_uncertain_goes_to_an_operator(hub, client, agent, drain):
    """The default photo verifier cannot align two unrelated photos (noise, no shared
    view): the photo waits for an operator's verdict."""
    case_id = await open_case(hub, agent)
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(real_jpeg(7)))
    assert r.status == 200
    c = await await_for(lambda: hub.read(lambda repo: (x := repo.get_case(case_id))
                                         and x.review_reason and x), what="review")
    assert c.state == "resolved" and "cannot be aligned" in c.review_reason
    op = await make_token(hub, "operator")
    r = await client.api("POST", f"/api/v1/cases/{case_id}/review", {"fixed": True}, token=op)
    assert r.status == 200 and r.json()["case"]["state"] == "closed"


async def test_a_new_after_photo_cannot_clear_an_operators_review(hub, client, agent, drain):
    """Once the verifier handed a case to an operator, the handler cannot take it back by
    sending another photo (it cleared ``review_reason`` before; issue 17, point 24)."""
    case_id = await open_case(hub, agent)
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(real_jpeg(7)))
    assert r.status == 200
    waiting = await await_for(lambda: hub.read(lambda repo: (x := repo.get_case(case_id))
                                               and x.review_reason and x), what="review")
    before = await audit_len(hub, case_id)
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(real_jpeg(8), note="look again"))
    assert r.status == 409 and r.json()["code"] == "awaiting_review", r.text
    assert "operator" in r.json()["detail"]
    case = await hub.read(lambda repo: repo.get_case(case_id))
    assert (case.state, case.review_reason, case.after_sha256) == \
        ("resolved", waiting.review_reason, waiting.after_sha256)
    assert await audit_len(hub, case_id) == before
    op = await make_token(hub, "operator")
    r = await client.api("POST", f"/api/v1/cases/{case_id}/review", {"fixed": False}, token=op)
    assert r.status == 200 and r.json()["case"]["state"] == "dispatched"
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(real_jpeg(8)))
    assert r.status == 200  # sent back: a new photo is welcome again


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"\xff\xd8\xff" + b"\x00" * (256 * 1024), 413, "photo_too_large"),
    (b"GIF89a" + b"\x00" * 100, 415, "not_a_jpeg"),
    (b"\xff\xd8\xff\xe0" + b"garbage" * 50 + b"\xff\xd9", 415, "not_a_jpeg"),
    (b"", 400, "bad_photo"),
])
async def test_bad_photos_are_refused_and_nothing_changes(hub, client, agent, drain, data, status, code):
    case_id = await open_case(hub, agent)
    before = await audit_len(hub, case_id)
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(data))
    assert r.status == status, r.text
    body = r.json()
    assert body["code"] == code and "photo" in body["errors"]
    assert await audit_len(hub, case_id) == before
    assert (await hub.read(lambda r: r.get_case(case_id))).state == "dispatched"


async def test_a_request_over_the_size_limit_is_413(hub, client, agent, drain):
    case_id = await open_case(hub, agent)
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(b"\xff\xd8\xff" + b"\x00" * (400 * 1024)))
    assert r.status == 413 and r.json()["code"] == "too_large"


async def test_photo_categories_need_a_photo_sensor_cases_do_not(hub, client, agent, drain):
    case_id = await open_case(hub, agent)
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/resolve", {"note": "done"},
                         token=drain)
    assert r.status == 400 and r.json()["code"] == "photo_required"
    # A sensor case (underpass water level, close: sensor_clear) resolves without a photo.
    from hubtest import sensor_event

    agent.send(sensor_event(seq=900, event_id="ul-1", source="level-1", where=G05,
                            sub="flood.underpass_water_level"))
    sensor_case = await await_for(lambda: hub.read(lambda r: (x := r.get_lifecycle("agent-1", "ul-1"))
                                                   and x.case_id), what="sensor case")
    r = await client.api("POST", f"/api/v1/handler/cases/{sensor_case}/resolve",
                         {"note": "pumped out"}, token=drain)
    assert r.status == 200 and r.json()["case"]["state"] == "resolved"
