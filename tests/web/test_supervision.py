"""Supervision (督办, issue 19 part 4) through the web: town and district accounts scoped to
their grids (pages, API, actions, search, the live feed), supervision orders issued,
reminded on the hub's clock, acknowledged and answered (all in the audit), and escalated
cases in their level's queue. A real hub, broker and agent; the clock is a FakeClock."""

from __future__ import annotations

import json

import pytest
from hubtest import G01, G05
from webtest import PASSWORD, Client, _hash, make_token, open_case

from hub.auth.accounts import create_api_token
from hub.store.repo import UserRow

SCOPED = {  # username: (role, level, scope)
    "xq": ("operator", "town", ["Xinqiao"]),
    "jt": ("operator", "town", ["Jiuting"]),
    "sj": ("dispatcher", "district", ["Songjiang"]),
}
XINQIAO, JIUTING = {"g-01", "g-02", "g-03"}, {"g-04", "g-05", "g-06"}


async def add_scoped(hub) -> None:
    now = hub.clock.now()

    def work(repo):
        for name, (role, level, scope) in SCOPED.items():
            repo.add_user(UserRow(username=name, role=role, department=None, display_name=name,
                                  password_hash=_hash(PASSWORD), disabled=False, created_at=now,
                                  level=level, scope=scope))

    await hub.write(work)


@pytest.fixture
async def world(hub, agent):
    await add_scoped(hub)
    x = await open_case(hub, agent, 1, where=G01)  # Xinqiao, drainage
    j = await open_case(hub, agent, 2, where=G05)  # Jiuting
    return {"x": x, "j": j}


async def signed_in(hub, name: str) -> Client:
    c = Client(hub)
    assert (await c.login(name)).status == 303
    return c


async def first_overview(client: Client) -> dict:
    async with client.session.get(client.base + "/api/v1/live") as resp:
        assert resp.status == 200
        data = None
        async for line in resp.content:
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                data = json.loads(text[6:])
            elif text == "" and data is not None:
                return data
    raise AssertionError("the live feed ended without an overview")


async def test_a_town_account_cannot_reach_another_towns_case(hub, world):
    x, j = world["x"], world["j"]
    jt = await signed_in(hub, "jt")
    try:
        # its own case: page, API, an action
        assert (await jt.get(f"/cases/{j}")).status == 200
        assert (await jt.get(f"/api/v1/cases/{j}")).status == 200
        assert (await jt.api("POST", f"/api/v1/cases/{j}/notes", {"text": "on our way"})).status == 200
        # another town's: 404 everywhere, nothing written
        before = len(await hub.read(lambda r: r.audit_for_case(x)))
        page = await jt.get(f"/cases/{x}")
        assert page.status == 404 and "does not exist" in page.text
        api = await jt.get(f"/api/v1/cases/{x}")
        assert (api.status, api.json()["code"]) == (404, "no_such_case")
        note = await jt.api("POST", f"/api/v1/cases/{x}/notes", {"text": "not ours"})
        assert note.status == 404
        form = await jt.form(f"/cases/{x}/note", {"text": "not ours either"})
        assert form.status == 404
        close = await jt.api("POST", f"/api/v1/cases/{x}/close", {"resolution": "fixed"})
        assert close.status == 404
        assert (await jt.get(f"/api/v1/cases/{x}/supervision")).status == 404
        assert len(await hub.read(lambda r: r.audit_for_case(x))) == before
        assert (await hub.read(lambda r: r.get_case(x))).state == "dispatched"
        # lists and search: only its own
        listed = (await jt.get("/api/v1/cases")).json()
        assert [c["id"] for c in listed["cases"]] == [j] and listed["total"] == 1
        found = (await jt.get(f"/api/v1/cases?q=%23{x}")).json()["cases"]
        assert x not in [c["id"] for c in found]
        assert (await jt.get("/api/v1/cases?grid=g-01")).json()["cases"] == []
        html = (await jt.get("/cases?open=1")).text
        assert f'data-case-id="{j}"' in html and f'data-case-id="{x}"' not in html
        grids = {g["grid_id"] for g in (await jt.get("/api/v1/grids")).json()["grids"]}
        assert grids == JIUTING
        # the overview and the live feed count its grids only
        over = (await jt.get("/api/v1/overview")).json()["cases"]
        assert set(over["by_grid"]) <= JIUTING and over["open"] == 1
        live = await first_overview(jt)
        assert set(live["cases"]["by_grid"]) <= JIUTING and live["cases"]["open"] == 1
    finally:
        await jt.close()


async def test_a_scoped_api_token_sees_its_town_only(hub, world):
    _, token = await hub.write(lambda repo: create_api_token(
        repo, "xinqiao-centre", "operator", hub.clock.now(), departments=hub.engine.departments,
        level="town", scope=["Xinqiao"], grids=hub.setup.grids))
    c = Client(hub)
    try:
        assert (await c.get(f"/api/v1/cases/{world['x']}", token=token)).status == 200
        assert (await c.get(f"/api/v1/cases/{world['j']}", token=token)).status == 404
        ids = [k["id"] for k in (await c.get("/api/v1/cases", token=token)).json()["cases"]]
        assert ids == [world["x"]]
        refused = await c.api("POST", f"/api/v1/cases/{world['j']}/notes", {"text": "x"}, token=token)
        assert refused.status == 404
    finally:
        await c.close()


async def test_a_scoped_account_cannot_activate_a_city_plan(hub, world):
    jt = await signed_in(hub, "jt")
    try:
        r = await jt.api("POST", "/api/v1/plans/rainstorm/activate", {"reason": "drill"})
        assert (r.status, r.json()["code"]) == (403, "scoped_account")
    finally:
        await jt.close()


async def test_a_district_account_sees_its_towns_cases(hub, world):
    sj = await signed_in(hub, "sj")
    try:
        ids = {c["id"] for c in (await sj.get("/api/v1/cases")).json()["cases"]}
        assert ids == {world["x"], world["j"]}
        for case_id in ids:
            assert (await sj.get(f"/cases/{case_id}")).status == 200
        over = (await sj.get("/api/v1/overview")).json()["cases"]
        assert over["open"] == 2
    finally:
        await sj.close()


async def test_an_order_is_issued_reminded_acknowledged_and_answered(hub, world, clock):
    j = world["j"]
    sj, jt, xq = [await signed_in(hub, n) for n in ("sj", "jt", "xq")]
    try:
        # a town account may not issue; the district may, to the case's town
        refused = await jt.api("POST", f"/api/v1/cases/{j}/supervision",
                               {"target_kind": "department", "department": "drainage", "note": "x"})
        assert refused.status == 403
        r = await sj.api("POST", f"/api/v1/cases/{j}/supervision",
                         {"target_kind": "town", "note": "standing water for a day: report by noon",
                          "deadline_h": 2})
        assert r.status == 201, r.text
        order = r.json()["order"]
        oid = order["id"]
        assert (order["target"], order["state"], order["issuer_level"]) == ("Jiuting", "issued", "district")
        again = await sj.api("POST", f"/api/v1/cases/{j}/supervision",
                             {"target_kind": "town", "note": "again", "deadline_h": 2})
        assert (again.status, again.json()["code"]) == (409, "already_open")
        # the other town cannot see or touch it; the district is not its addressee
        assert (await xq.api("POST", f"/api/v1/supervision/{oid}/acknowledge", {})).status == 404
        assert (await sj.api("POST", f"/api/v1/supervision/{oid}/acknowledge", {})).status == 403
        # the addressee sees it in its queue and on the case page
        queue = (await jt.get("/api/v1/supervision")).json()
        assert queue["level"] == "town" and [o["id"] for o in queue["orders"]] == [oid]
        assert queue["orders"][0]["can_acknowledge"] is True
        page = (await jt.get(f"/cases/{j}")).text
        assert f'id="order-{oid}"' in page and f"/supervision/{oid}/acknowledge" in page
        ack = await jt.form(f"/supervision/{oid}/acknowledge", {})
        assert ack.status == 303
        assert (await hub.read(lambda r: r.get_supervision_order(oid))).state == "acknowledged"

        # the hub's clock: nothing due yet, then "deadline approaches", then "passed"
        clock.advance(minutes=80)
        assert (await hub.tick()).reminded == []
        clock.advance(minutes=11)  # 1 h 31 min: a quarter of the 2 h is left
        assert (await hub.tick()).reminded == [(oid, "due_soon")]
        assert (await hub.tick()).reminded == []
        clock.advance(minutes=30)
        assert (await hub.tick()).reminded == [(oid, "overdue")]
        clock.advance(minutes=60)
        assert (await hub.tick()).reminded == []
        listed = await jt.get(f"/api/v1/cases/{j}/supervision")
        assert listed.status == 200, listed.text
        shown = listed.json()["orders"][0]
        assert shown["overdue"] is True and shown["can_answer"] is True

        bad = await jt.api("POST", f"/api/v1/supervision/{oid}/answer", {"text": "  "})
        assert bad.status in (400, 422)
        done = await jt.api("POST", f"/api/v1/supervision/{oid}/answer",
                            {"text": "pump truck sent, road clear at 11:40"})
        assert done.status == 200 and done.json()["order"]["state"] == "answered"
        assert (await jt.api("POST", f"/api/v1/supervision/{oid}/answer", {"text": "x"})).status == 409
        assert (await jt.get("/api/v1/supervision")).json()["orders"] == []  # answered: off the queue
        clock.advance(minutes=600)
        assert (await hub.tick()).reminded == []

        audit = await hub.read(lambda r: r.audit_for_case(j))
        steps = [(a.action, a.actor) for a in audit if a.action.startswith("supervision")]
        assert steps == [("supervision_issued", "sj"), ("supervision_acknowledged", "jt"),
                         ("supervision_due_soon", "auto"), ("supervision_overdue", "auto"),
                         ("supervision_answered", "jt")]
        assert all(a.data["order"] == oid for a in audit if a.action.startswith("supervision"))
        notes = await hub.read(lambda r: r.notifications_for_case(j))
        sent = [(n["kind"], n["target"]) for n in notes if n["kind"].startswith("supervision")]
        assert sent == [("supervision", "town:Jiuting"), ("supervision_due_soon", "town:Jiuting"),
                        ("supervision_overdue", "town:Jiuting"), ("supervision_overdue", "sj"),
                        ("supervision_answered", "sj")]
    finally:
        for c in (sj, jt, xq):
            await c.close()


async def test_an_order_to_a_department_is_answered_by_its_handler(hub, world, client):
    j = world["j"]
    op = await signed_in(hub, "op")  # an operator without a level speaks for the city
    try:
        r = await op.form(f"/cases/{j}/supervise", {"target_kind": "department",
                                                    "department": "drainage",
                                                    "note": "third complaint", "deadline_h": "4"})
        assert r.status == 303 and r.headers["Location"].startswith(f"/cases/{j}")
        oid = (await hub.read(lambda repo: repo.supervision_for_case(j)))[0].id
        token = await make_token(hub, "handler", "drainage")
        other = await make_token(hub, "handler", "sanitation", name="sani-tok")
        assert (await client.api("POST", f"/api/v1/supervision/{oid}/answer", {"text": "done"},
                                 token=other)).status == 403
        queue = (await client.get("/api/v1/supervision", token=token)).json()
        assert [o["id"] for o in queue["orders"]] == [oid]
        answered = await client.api("POST", f"/api/v1/supervision/{oid}/answer",
                                    {"text": "crew on site"}, token=token)
        assert answered.status == 200
        assert answered.json()["order"]["acknowledged_by"] == "token:handler-drainage"
        # the form shows a refusal on the case page: a bad deadline
        bad = await op.form(f"/cases/{j}/supervise", {"target_kind": "department",
                                                      "department": "drainage", "note": "x",
                                                      "deadline_h": "9999"})
        assert bad.status == 400 and 'id="form-supervise"' in bad.text
    finally:
        await op.close()


async def test_an_escalated_case_shows_in_its_levels_queue(hub, world, clock):
    j = world["j"]
    sj, jt, xq = [await signed_in(hub, n) for n in ("sj", "jt", "xq")]

    async def escalated(c: Client, query: str = "") -> list[int]:
        r = await c.get("/api/v1/supervision" + query)
        assert r.status == 200, r.text
        return [k["id"] for k in r.json()["escalated"]]

    try:
        assert j not in await escalated(jt) and j not in await escalated(sj)
        case = await hub.read(lambda r: r.get_case(j))
        clock.set(case.deadline_at)
        clock.advance(minutes=1)
        assert (j, 1) in (await hub.tick()).escalated
        assert await escalated(jt) == [j]  # the town has it
        assert j not in await escalated(sj)  # not yet the district's
        assert j not in await escalated(xq)  # another town never
        clock.advance(minutes=hub.config.sla.escalation_step_min)
        assert (j, 2) in (await hub.tick()).escalated
        assert j in await escalated(sj)
        assert j in await escalated(sj, "?level=town")  # a district looks at its towns
        assert j not in await escalated(xq)
        assert (await sj.get("/api/v1/supervision?level=city")).status == 403
        page = await sj.get("/supervision")
        assert page.status == 200 and f'data-case-id="{j}"' in page.text
        notes = await hub.read(lambda r: r.notifications_for_case(j))
        assert ("escalated", "district:Songjiang") in [(n["kind"], n["target"]) for n in notes]
    finally:
        for c in (sj, jt, xq):
            await c.close()


async def test_scoped_accounts_are_made_by_the_admin_api(hub, client):
    assert (await client.login("admin")).status == 303
    r = await client.api("POST", "/api/v1/admin/users", {
        "username": "xq2", "role": "operator", "password": "another-long-password",
        "level": "town", "scope": ["Xinqiao"]})
    assert r.status == 201, r.text
    assert (r.json()["user"]["level"], r.json()["user"]["scope"]) == ("town", ["Xinqiao"])
    bad = await client.api("POST", "/api/v1/admin/users", {
        "username": "xq3", "role": "operator", "password": "another-long-password",
        "level": "town", "scope": ["Atlantis"]})
    assert bad.status == 400 and "Atlantis" in bad.json()["errors"]["scope"]
    missing = await client.api("POST", "/api/v1/admin/users", {
        "username": "xq4", "role": "operator", "password": "another-long-password",
        "level": "town"})
    assert missing.status == 400 and "scope" in missing.json()["errors"]



async def test_the_supervision_api_answers_as_openapi_yaml_says(hub, world, client):
    from test_api_contract import Checker

    j = world["j"]
    sj, jt = [await signed_in(hub, n) for n in ("sj", "jt")]
    try:
        check_sj, check_jt = Checker(sj), Checker(jt)
        r = await check_sj("POST", f"/api/v1/cases/{j}/supervision", expect=201,
                           json_body={"target_kind": "town", "note": "late", "deadline_h": 3})
        oid = r.json()["order"]["id"]
        await check_sj("POST", f"/api/v1/cases/{j}/supervision", expect=409,
                       json_body={"target_kind": "town", "note": "late again"})
        await check_sj("POST", f"/api/v1/cases/{j}/supervision", expect=403,
                       json_body={"target_kind": "district", "note": "not below a district"})
        await check_sj("POST", f"/api/v1/cases/{j}/supervision", expect=400,
                       json_body={"target_kind": "town", "note": "x", "colour": "red"})
        await check_jt("GET", f"/api/v1/cases/{world['x']}", expect=404)
        await check_jt("GET", f"/api/v1/cases/{j}", expect=200)
        await check_jt("GET", f"/api/v1/cases/{j}/supervision", expect=200)
        await check_jt("GET", "/api/v1/supervision", expect=200)
        await check_sj("GET", "/api/v1/supervision?level=town", expect=200)
        await check_sj("GET", "/api/v1/supervision?level=city", expect=403)
        await check_sj("POST", f"/api/v1/supervision/{oid}/acknowledge", expect=403, json_body={})
        await check_jt("POST", f"/api/v1/supervision/{oid}/acknowledge", expect=200, json_body={})
        await check_jt("POST", f"/api/v1/supervision/{oid}/acknowledge", expect=409, json_body={})
        await check_jt("POST", f"/api/v1/supervision/{oid}/answer", expect=200,
                       json_body={"text": "cleared"})
        await check_jt("POST", "/api/v1/supervision/999/answer", expect=404,
                       json_body={"text": "cleared"})
    finally:
        await sj.close()
        await jt.close()
