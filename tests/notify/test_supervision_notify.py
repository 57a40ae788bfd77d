"""Supervision (督办) notifications reach people (issue 19): an order to a town tells the
town's leads, to a district the district's leads, to a department its contacts; its
reminders (due soon, overdue) tell the addressee again, and the overdue one and the answer
tell the issuing account, which has no contact of its own, through the operators'.
Real receivers (a DingTalk robot, an SMS gateway, SMTP, a Feishu robot), a real broker and
agent; the hub's clock is a FakeClock and its tick is run by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hubtest import await_for
from notifytest import dispatched_case, notify_setup, rows

from hub.app import Hub
from hub.engine import supervision as sup

DISTRICT_PHONE = "+8613800000009"
CONTACTS = {
    "departments": {"drainage": [{"channel": "email", "address": "drainage@example.org"}],
                    "emergency": [{"channel": "email", "address": "emergency@example.org"}]},
    "operators": [{"channel": "feishu", "address": "operators"}],
    "leads": {"town": {"Jiuting": [{"channel": "dingtalk", "address": "jiuting-leads"}]},
              "district": {"Songjiang": [{"channel": "sms", "address": DISTRICT_PHONE}]}},
}
CITY = sup.Who("city-chief", "city", None, False, None, True)
JIUTING = sup.Who("jt-lead", "town", None, False, frozenset({"g-04", "g-05", "g-06"}), True)


@pytest.fixture
async def hub(tmp_path, clock, smtp, http):
    h = Hub(notify_setup(tmp_path, smtp, http, contacts=CONTACTS), clock=clock, run_scheduler=False)
    await h.start()
    yield h
    await h.stop()


async def supervision_rows(hub, case_id: int, n: int):
    async def check():
        got = [d for d in await rows(hub, case_id) if d.kind.startswith("supervision")]
        return got if len(got) == n and all(d.state == "sent" for d in got) else None
    return await await_for(check, timeout=20, what=f"{n} supervision deliveries sent")


async def issue(hub, case_id: int, kind: str, minutes: int, department: str | None = None) -> int:
    order = await hub.write(lambda repo: sup.issue(
        hub.engine, repo, case_id, CITY, target_kind=kind, department=department,
        note="the underpass is still flooded: report what is being done", deadline=timedelta(minutes=minutes)))
    return order.id


async def test_orders_reminders_and_answers_reach_their_addressees(hub, smtp, http, clock):
    case_id = await dispatched_case(hub)  # Jiuting (town), Songjiang (district), drainage
    town = await issue(hub, case_id, "town", 120)
    await issue(hub, case_id, "district", 20)
    await issue(hub, case_id, "department", 120, department="emergency")
    got = await supervision_rows(hub, case_id, 3)
    assert {(d.kind, d.channel, d.target) for d in got} == {
        ("supervision", "dingtalk", "jiuting-leads"),  # the town's leads
        ("supervision", "sms", DISTRICT_PHONE),  # the district's
        ("supervision", "email", "emergency@example.org"),  # the department's
    }
    [robot] = [r for r in http.robots if r["vendor"] == "dingtalk"]
    assert f"case {case_id} supervision order" in robot["text"] and "city-chief" in robot["text"]
    [text] = [s["text"] for s in http.sms if s["to"] == DISTRICT_PHONE]
    assert "answer by" in text
    [mail] = [m for m in smtp.messages if m["to"] == ["emergency@example.org"]]
    assert "supervision order" in mail["subject"]

    # a quarter of the district order's 20 minutes left: reminded; past it: overdue, and
    # the issuing account (no contact of its own) hears through the operators' robot
    clock.advance(minutes=16)
    await hub.tick()
    clock.advance(minutes=5)
    await hub.tick()
    got = await supervision_rows(hub, case_id, 6)
    later = {(d.kind, d.channel, d.target) for d in got} - {
        ("supervision", "dingtalk", "jiuting-leads"), ("supervision", "sms", DISTRICT_PHONE),
        ("supervision", "email", "emergency@example.org")}
    assert later == {("supervision_due_soon", "sms", DISTRICT_PHONE),
                     ("supervision_overdue", "sms", DISTRICT_PHONE),
                     ("supervision_overdue", "feishu", "operators")}
    assert any("deadline passed" in r["text"] for r in http.robots if r["vendor"] == "feishu")

    # the town answers its order: the issuer hears, again through the operators
    await hub.write(lambda repo: sup.answer(hub.engine, repo, town, JIUTING, "pumps running since 09:40"))
    got = await supervision_rows(hub, case_id, 7)
    answered = [d for d in got if d.kind == "supervision_answered"]
    assert [(d.channel, d.target) for d in answered] == [("feishu", "operators")]
    assert any(f"order {town} answered by jt-lead" in r["text"] for r in http.robots
               if r["vendor"] == "feishu")
    assert not [d for d in await rows(hub) if d.kind.startswith("supervision") and d.state != "sent"]
