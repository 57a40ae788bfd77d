"""Reporters answered (issue 19, part 3), end to end against a real hub and a real SMTP
server (aiosmtpd with STARTTLS and AUTH, tests/notify/peers.py): an Open311 submitter who
gave an email hears "accepted", "dispatched" and "closed" (with the result, the
after-photo and a one-tap survey link); the link works once; a reused, forged or expired
link is refused; "not fixed" reopens the case; nobody sees another reporter's data."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hubtest import EXAMPLES, G01, G05, await_for, make_config
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from webtest import Client, ScriptedVerifier, add_users, make_token, real_jpeg

from hub.app import Hub
from hub.config import build_setup

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notify"))
from peers import HttpSink, SmtpSink, free_port  # noqa: E402

SPEC = OpenAPI.from_file_path(
    str(Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"),
    config=Config(extra_media_type_deserializers={"application/problem+json": json.loads}))


def check_spec(method: str, path: str, reply) -> None:
    """The answer matches docs/openapi.yaml."""
    SPEC.validate_response(MockRequest("http://localhost", method.lower(), path),
                           MockResponse(reply.text.encode(), status_code=reply.status,
                                        content_type=reply.content_type))

RESIDENT = "resident@example.org"
NEIGHBOUR = "neighbour@example.org"
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/survey/[A-Za-z0-9_\-]+)")


def write_secret(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def survey_config(tmp: Path, smtp: SmtpSink, sms: dict[str, Any] | None = None, **over: Any):
    table = yaml.safe_load((EXAMPLES / "routing.yaml").read_text())
    table["contacts"] = {"departments": {"drainage": [
        {"channel": "email", "address": "drainage@example.org"}]}}
    for shifts in table.get("duty", {}).values():
        for shift in shifts:
            shift.pop("contacts", None)
    routing = tmp / "routing-survey.yaml"
    routing.write_text(yaml.safe_dump(table, allow_unicode=True))
    port = free_port()
    notify = {"retry": {"max_attempts": 3, "initial_s": 60, "max_s": 600, "jitter_s": 0},
              "poll_s": 0.05,
              "email": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
                        "username": smtp.user,
                        "password_file": write_secret(tmp, "smtp.password", smtp.password),
                        "sender": "CityOps <cityops@example.org>", "ca_file": str(smtp.ca_file),
                        "timeout_s": 5}}
    if sms is not None:
        notify["sms"] = sms
    return make_config(tmp, routing=str(routing), notify=notify,
                       web={"port": port, "public_url": f"http://127.0.0.1:{port}",
                            "access_log": False, "live_interval_s": 0.2}, **over)


@pytest.fixture
async def hub(tmp_path, clock, smtp):
    h = Hub(build_setup(survey_config(tmp_path, smtp)), clock=clock, verifier=ScriptedVerifier(),
            run_scheduler=False)
    await h.start()
    await add_users(h)
    yield h
    await h.stop()


@pytest.fixture
async def partner(hub):
    return await make_token(hub, "open311", name="city app")


def mails(smtp: SmtpSink, to: str) -> list[dict[str, Any]]:
    return [m for m in smtp.messages if to in m["to"]]


async def mail_count(smtp: SmtpSink, to: str, n: int, what: str) -> list[dict[str, Any]]:
    await await_for(lambda: len(mails(smtp, to)) >= n, what=what)
    return mails(smtp, to)


async def mail_about(smtp: SmtpSink, to: str, subject_end: str, nth: int = 1) -> dict[str, Any]:
    """The ``nth`` email to ``to`` whose subject contains ``subject_end`` (deliveries run
    concurrently, so their order of arrival is not the order of the events)."""
    def found():
        hits = [m for m in mails(smtp, to) if subject_end in m["subject"]]
        return hits[nth - 1] if len(hits) >= nth else None

    return await await_for(found, what=f"email {nth} to {to} about {subject_end!r}")


async def post_request(client: Client, partner: str, *, email: str | None = RESIDENT,
                       description: str = "knee-deep water at the gate",
                       photo: bool = True, **extra: str) -> int:
    form = aiohttp.FormData()
    fields = {"api_key": partner, "service_code": "flood.road_waterlogging",
              "lat": str(G05[0]), "long": str(G05[1]), "description": description,
              "first_name": "Li", **({"email": email} if email else {}), **extra}
    for k, v in fields.items():
        form.add_field(k, v)
    if photo:
        form.add_field("media", real_jpeg(1), filename="before.jpg", content_type="image/jpeg")
    r = await client.post("/open311/v2/requests.json", data=form)
    assert r.status == 200, r.text
    return int(r.json()[0]["service_request_id"])


async def close_with_photo(hub: Hub, case_id: int) -> None:
    await hub.resolve(case_id, actor="drain", after_jpeg=real_jpeg(7, blob=False))
    await await_for(lambda: hub.read(lambda repo: repo.get_case(case_id).state == "closed"),
                    what="the verifier closing the case")


def path_of(link: str) -> str:
    return "/" + link.split("/", 3)[3]


async def test_open311_submitter_hears_each_step_and_answers_the_survey_once(hub, client, partner,
                                                                            smtp):
    case_id = await post_request(client, partner)
    first = await mail_count(smtp, RESIDENT, 2, "the accepted and dispatched emails")
    accepted = await mail_about(smtp, RESIDENT, ": accepted")
    dispatched = await mail_about(smtp, RESIDENT, ": sent to ")
    assert accepted["subject"] == f"[cityops] Your report {case_id}: accepted"
    assert dispatched["subject"].startswith(f"[cityops] Your report {case_id}: sent to Drainage")
    assert all(m["tls"] and m["auth"] for m in first)  # STARTTLS and AUTH, as configured
    assert "Hello Li," in accepted["body"] and "has been accepted" in accepted["body"]
    assert "due by" in dispatched["body"]
    # The department is told too, but not the reporter's address (separate messages).
    assert all(RESIDENT not in m["body"] for m in smtp.messages)

    await close_with_photo(hub, case_id)
    closed = await mail_about(smtp, RESIDENT, ": closed")
    assert closed["subject"] == f"[cityops] Your report {case_id}: closed"
    assert "fixed; a photo taken after the work confirmed it" in closed["body"]
    link = LINK.search(closed["body"]).group(1)

    # The survey page: the reporter's own request, the result, the after-photo.
    surveyor = Client(hub)
    try:
        page = await surveyor.get(path_of(link))
        assert page.status == 200
        assert f"Your report <b>{case_id}</b>" in page.text and "after.jpg" in page.text
        photo = await surveyor.get(path_of(link) + "/after.jpg")
        assert photo.status == 200 and photo.content_type == "image/jpeg"
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        # A POST without the page's form token (a forged cross-site form) changes nothing.
        bare = await client.post(path_of(link), data={"answer": "satisfied"})
        assert bare.status == 403
        cross = await surveyor.post(path_of(link), data={"answer": "satisfied",
                                                          "csrf_token": form_token},
                                    headers={"Origin": "https://evil.example"})
        assert cross.status == 403
        assert (await hub.read(lambda repo: repo.get_case(case_id))).satisfaction is None

        done = await surveyor.post(path_of(link), data={"answer": "satisfied",
                                                         "csrf_token": form_token})
        assert done.status == 200 and 'id="survey-done"' in done.text
        case = await hub.read(lambda repo: repo.get_case(case_id))
        assert case.satisfaction == 5 and case.state == "closed"

        # The link works once: reused, it is refused (410), on GET and on POST.
        again = await surveyor.get(path_of(link))
        assert again.status == 410 and 'data-reason="answered"' in again.text
        twice = await surveyor.post(path_of(link), data={"answer": "not_fixed",
                                                          "csrf_token": form_token})
        assert twice.status == 410
        case = await hub.read(lambda repo: repo.get_case(case_id))
        assert case.satisfaction == 5 and case.state == "closed" and case.reopen_count == 0

        # A forged token: 404, and its POST changes nothing either.
        forged = path_of(link)[:-6] + ("AAAAAA" if not path_of(link).endswith("AAAAAA") else "BBBBBB")
        assert (await surveyor.get(forged)).status == 404
        assert (await surveyor.post(forged, data={"answer": "not_fixed",
                                                   "csrf_token": form_token})).status == 404
        assert (await surveyor.get(forged + "/after.jpg")).status == 404
    finally:
        await surveyor.close()

    # The token is stored hashed only.
    token = link.rsplit("/", 1)[1]
    rows = await hub.read(lambda repo: repo.conn.execute(
        "SELECT token_sha256 FROM satisfaction_surveys").fetchall())
    assert rows and all(token not in r[0] for r in rows)
    audit = await hub.read(lambda repo: repo.audit_for_case(case_id))
    assert any(a.action == "satisfaction" and a.actor == "reporter (survey)" for a in audit)


async def test_not_fixed_reopens_the_case_and_the_reporter_hears_it_again(hub, client, partner,
                                                                         smtp):
    case_id = await post_request(client, partner, photo=False)
    await mail_count(smtp, RESIDENT, 2, "the first updates")
    await hub.close_case(case_id, actor="op", note="pumped out")
    closed = await mail_about(smtp, RESIDENT, ": closed")
    assert "fixed; an operator confirmed it" in closed["body"]
    assert "pumped out" not in closed["body"]  # an operator's note is not for the public
    link = LINK.search(closed["body"]).group(1)
    page = await client.get(path_of(link))
    assert page.status == 200 and "after.jpg" not in page.text  # no after-photo: none shown
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = await client.post(path_of(link), data={"answer": "not_fixed", "csrf_token": token,
                                               "comment": "still flooded this morning"})
    assert r.status == 200 and "reopened" in r.text
    case = await hub.read(lambda repo: repo.get_case(case_id))
    assert case.state == "dispatched" and case.reopen_count == 1 and case.satisfaction == 1
    audit = await hub.read(lambda repo: repo.audit_for_case(case_id))
    reopened = [a for a in audit if a.action == "reopened"]
    assert reopened and reopened[-1].actor == "reporter (survey)"
    assert "still flooded this morning" in reopened[-1].detail
    # The new cycle is told again: dispatched (n=1).
    await mail_about(smtp, RESIDENT, ": sent to ", nth=2)
    keys = await hub.read(lambda repo: [r[0] for r in repo.conn.execute(
        "SELECT idempotency_key FROM notification_deliveries WHERE kind LIKE 'reporter_%' "
        "ORDER BY id")])
    assert keys == [f"report/{case_id}/accepted/0|email|{RESIDENT}",
                    f"report/{case_id}/dispatched/0|email|{RESIDENT}",
                    f"report/{case_id}/closed/0|email|{RESIDENT}",
                    f"report/{case_id}/dispatched/1|email|{RESIDENT}"]


async def test_an_expired_link_is_refused(hub, client, partner, smtp, clock):
    case_id = await post_request(client, partner, photo=False)
    await hub.close_case(case_id, actor="op")
    closed = await mail_about(smtp, RESIDENT, ": closed")
    link = LINK.search(closed["body"]).group(1)
    clock.advance(15 * 86400)  # web.survey_valid_days: 14
    r = await client.get(path_of(link))
    assert r.status == 410 and 'data-reason="expired"' in r.text


async def test_reporters_see_only_their_own_data(hub, client, partner, smtp):
    first = await post_request(client, partner, description="my secret note about the gate")
    second = await post_request(client, partner, email=NEIGHBOUR, first_name="Wang",
                                description="neighbour's own words", photo=False)
    case_id = (await hub.read(lambda repo: repo.get_case(second))).merged_into or second
    await mail_count(smtp, NEIGHBOUR, 2, "the neighbour's updates")
    await hub.close_case(case_id, actor="op")
    my_link = LINK.search((await mail_about(smtp, RESIDENT, ": closed"))["body"]).group(1)
    their_link = LINK.search((await mail_about(smtp, NEIGHBOUR, ": closed"))["body"]).group(1)
    mine, theirs = mails(smtp, RESIDENT), mails(smtp, NEIGHBOUR)
    # Names as whole words: a survey link's random token may hold "Li" (it once did).
    for m in mine:
        assert NEIGHBOUR not in m["body"] and not re.search(r"\bWang\b", m["body"])
        assert "neighbour's own words" not in m["body"]
    for m in theirs:
        assert RESIDENT not in m["body"] and not re.search(r"\bLi\b", m["body"])
        assert "secret note" not in m["body"]
    # Each gets a link of their own.
    assert my_link != their_link
    # A handler sees the reporters' addresses masked; an operator in full (to call back).
    await client.login("drain")
    handler_view = (await client.get(f"/cases/{first}")).text
    assert RESIDENT not in handler_view and "r***@example.org" in handler_view
    operator = Client(hub)
    try:
        await operator.login("op")
        detail = (await operator.api("GET", f"/api/v1/cases/{first}")).json()
        assert {r["email"] for r in detail["reporters"]} >= {RESIDENT}
    finally:
        await operator.close()


async def test_a_bad_email_is_refused_and_no_contact_means_no_updates(hub, client, partner, smtp):
    form = {"api_key": partner, "service_code": "flood.road_waterlogging",
            "lat": str(G05[0]), "long": str(G05[1]), "description": "water", "email": "not-an-email"}
    r = await client.post("/open311/v2/requests.json", data=form)
    assert r.status == 400 and "not an email address" in r.json()[0]["description"]
    r = await client.post("/open311/v2/requests.json", data={**form, "email": RESIDENT})
    assert "updates will be sent by email" in r.json()[0]["service_notice"]
    # The contact is not an event attribute (the event outlives the contact's retention).
    case_id = int(r.json()[0]["service_request_id"])
    case = await hub.read(lambda repo: repo.get_case(case_id))
    life = await hub.read(lambda repo: repo.get_lifecycle("open311", case.origin_event))
    assert RESIDENT not in str(life.attributes)


async def test_operator_records_satisfaction_taken_by_phone(hub, client, partner, smtp):
    case_id = await post_request(client, partner, photo=False)
    await client.login("op")
    r = await client.form(f"/cases/{case_id}/satisfaction", {"score": "4", "note": "by phone"})
    assert r.status == 409 and "once a case is closed" in r.text
    await hub.close_case(case_id, actor="op")
    page = await client.get(f"/cases/{case_id}")
    assert 'id="form-satisfaction"' in page.text
    r = await client.form(f"/cases/{case_id}/satisfaction", {"score": "4", "note": "by phone"})
    assert r.status == 303
    assert (await hub.read(lambda repo: repo.get_case(case_id))).satisfaction == 4
    r = await client.api("POST", f"/api/v1/cases/{case_id}/satisfaction", {"score": 9})
    assert r.status == 400 and "score" in r.json()["errors"]
    check_spec("POST", f"/api/v1/cases/{case_id}/satisfaction", r)
    r = await client.api("POST", f"/api/v1/cases/{case_id}/satisfaction", {"score": 3,
                                                                          "note": "called back"})
    assert r.status == 200 and r.json()["case"]["satisfaction"] == 3
    check_spec("POST", f"/api/v1/cases/{case_id}/satisfaction", r)
    detail = await client.api("GET", f"/api/v1/cases/{case_id}")
    check_spec("GET", f"/api/v1/cases/{case_id}", detail)
    [reporter] = detail.json()["reporters"]
    assert reporter["email"] == RESIDENT and reporter["name"] == "Li"
    assert [s["answer"] for s in reporter["surveys"]] == [None]  # sent, not answered
    audit = await hub.read(lambda repo: repo.audit_for_case(case_id))
    assert [a.detail for a in audit if a.action == "satisfaction"] == [
        "satisfaction 4/5 (by phone)", "satisfaction 3/5 (called back)"]
    # A handler may not record it.
    handler = Client(hub)
    try:
        await handler.login("drain")
        r = await handler.api("POST", f"/api/v1/cases/{case_id}/satisfaction", {"score": 5})
        assert r.status == 403
    finally:
        await handler.close()


async def test_retention_removes_the_contact_the_link_and_the_address(hub, client, partner, smtp,
                                                                      clock):
    case_id = await post_request(client, partner, photo=False)
    await hub.close_case(case_id, actor="op")
    closed = await mail_about(smtp, RESIDENT, ": closed")
    link = LINK.search(closed["body"]).group(1)
    clock.advance(100 * 86400)
    assert (await hub.sweep())["reporter_contacts"] == 0  # within retention.reporter_contacts_days
    clock.advance(81 * 86400)
    assert (await hub.sweep())["reporter_contacts"] == 1
    assert (await client.get(path_of(link))).status == 404

    def leftovers(repo):
        return (repo.conn.execute("SELECT count(*) FROM reporter_contacts").fetchone()[0],
                repo.conn.execute("SELECT count(*) FROM satisfaction_surveys").fetchone()[0],
                [tuple(r) for r in repo.conn.execute(
                    "SELECT target, idempotency_key, text FROM notification_deliveries "
                    "WHERE kind LIKE 'reporter_%'")])

    contacts, surveys, deliveries = await hub.read(leftovers)
    assert contacts == 0 and surveys == 0 and len(deliveries) == 3
    for target, key, text in deliveries:
        assert target == "r***@example.org" and RESIDENT not in key and "/survey/" not in text


async def answer_survey(client: Client, link: str, answer: str) -> None:
    page = await client.get(path_of(link))
    assert page.status == 200, page.text[:300]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = await client.post(path_of(link), data={"answer": answer, "csrf_token": token})
    assert r.status == 200, r.text[:300]


async def test_satisfaction_and_reopen_rate_in_the_months_scores(hub, client, partner, smtp,
                                                                 clock):
    """A month on a fake clock: three reports in July (one answered satisfied, one not
    satisfied, one not fixed, reopened, closed again and called back by phone: 3), one in
    August; the July and August scores carry their own satisfaction and reopen rate."""
    async def report_and_close(email: str, where: tuple[float, float]) -> tuple[int, str]:
        case_id = await post_request(client, partner, email=email, photo=False,
                                     lat=str(where[0]), long=str(where[1]),
                                     description=f"water again, says {email}")
        await hub.close_case(case_id, actor="op")
        link = LINK.search((await mail_about(smtp, email, ": closed"))["body"]).group(1)
        return case_id, link

    a, link_a = await report_and_close("a@example.org", G05)
    await answer_survey(client, link_a, "satisfied")
    clock.advance(10 * 86400)
    b, link_b = await report_and_close("b@example.org", G01)
    await answer_survey(client, link_b, "not_satisfied")
    clock.advance(10 * 86400)
    c, link_c = await report_and_close("c@example.org", G05)
    await answer_survey(client, link_c, "not_fixed")
    clock.advance(86400)
    await hub.close_case(c, actor="op")
    await hub.record_satisfaction(c, 3, actor="op", note="by phone")
    clock.advance(15 * 86400)  # August
    d, link_d = await report_and_close("d@example.org", G05)
    await answer_survey(client, link_d, "satisfied")

    cases = {x: await hub.read(lambda repo, x=x: repo.get_case(x)) for x in (a, b, c, d)}
    assert [cases[x].satisfaction for x in (a, b, c, d)] == [5, 2, 3, 5]
    assert cases[c].reopen_count == 1 and cases[a].grid_id == cases[c].grid_id != cases[b].grid_id
    await client.login("op")
    july = (await client.get("/api/v1/scores?month=2026-07")).json()["scores"]
    by_key = {s["key"]: s for s in july}
    total = by_key["all"]
    assert total["cases"] == 3
    assert (total["satisfaction"], total["satisfaction_count"]) == (3.333, 3)
    assert total["reopen_rate"] == 0.3333
    g05 = by_key[cases[a].grid_id]
    assert (g05["satisfaction"], g05["satisfaction_count"], g05["reopen_rate"]) == (4.0, 2, 0.5)
    g01 = by_key[cases[b].grid_id]
    assert (g01["satisfaction"], g01["satisfaction_count"], g01["reopen_rate"]) == (2.0, 1, 0.0)
    august = {s["key"]: s for s in (await client.get("/api/v1/scores?month=2026-08")).json()["scores"]}
    assert (august["all"]["cases"], august["all"]["satisfaction"],
            august["all"]["satisfaction_count"], august["all"]["reopen_rate"]) == (1, 5.0, 1, 0.0)
    page = await client.get("/scores?month=2026-07")
    assert page.status == 200 and "Reopen rate" in page.text and "Satisfaction (1-5)" in page.text
    assert "3.3 (3)" in page.text


async def test_one_key_reporter_with_an_email_hears_back(hub, client, smtp):
    await client.login("rep")
    page = await client.get("/report")
    assert 'id="contact_email"' in page.text and 'id="contact_phone"' not in page.text  # no SMS set up
    key = re.search(r'name="report_key" value="([^"]+)"', page.text).group(1)

    def form(email: str) -> aiohttp.FormData:
        f = aiohttp.FormData()
        for k, v in {"csrf_token": client.csrf, "report_key": key,
                     "service": "flood.road_waterlogging", "lat": str(G05[0]),
                     "lon": str(G05[1]), "address": "", "grid_id": "",
                     "note": "the underpass is flooded", "contact_email": email}.items():
            f.add_field(k, v)
        f.add_field("photo", real_jpeg(3), filename="p.jpg", content_type="image/jpeg")
        return f

    bad = await client.post("/report", data=form("secretary at example.org"))
    assert bad.status == 400 and "not an email address" in bad.text
    r = await client.post("/report", data=form("secretary@example.org"))
    assert r.status == 303
    accepted = await mail_about(smtp, "secretary@example.org", ": accepted")
    await mail_about(smtp, "secretary@example.org", ": sent to ")
    assert "Your reports: http://127.0.0.1:" in accepted["body"]  # their own page, signed in


async def test_a_phone_number_gets_the_updates_by_sms(tmp_path, clock, smtp):
    gateway = await HttpSink().start()
    sms = {"url": f"{gateway.base}/sms/send", "headers": {"Authorization": "Bearer {token}"},
           "token_file": write_secret(tmp_path, "sms.token", gateway.sms_token),
           "body": '{"to": "{phone}", "text": "{text}", "ref": "{delivery_id}"}',
           "success_json": {"code": 0}}
    h = Hub(build_setup(survey_config(tmp_path, smtp, sms=sms)), clock=clock, run_scheduler=False)
    await h.start()
    client = Client(h)
    try:
        partner = await make_token(h, "open311", name="city app")
        r = await client.post("/open311/v2/requests.json", data={
            "api_key": partner, "service_code": "flood.road_waterlogging", "lat": str(G05[0]),
            "long": str(G05[1]), "description": "water", "phone": "+86 138-0000-0101"})
        assert "updates will be sent by SMS" in r.json()[0]["service_notice"]
        case_id = int(r.json()[0]["service_request_id"])
        await await_for(lambda: len(gateway.sms) >= 2, what="two SMS")
        await h.close_case(case_id, actor="op")
        await await_for(lambda: len(gateway.sms) >= 3, what="the closed SMS")
        assert {m["to"] for m in gateway.sms} == {"+8613800000101"}
        texts = sorted(m["text"] for m in gateway.sms)
        assert any("has been accepted" in t for t in texts)
        assert any("has been sent to Drainage" in t for t in texts)
        closed = next(t for t in texts if "is closed" in t)
        assert LINK.search(closed)  # the survey link fits in the SMS
        assert not mails(smtp, "+8613800000101")
    finally:
        await client.close()
        await h.stop()
        await gateway.stop()
