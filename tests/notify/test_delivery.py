"""Notification delivery against real peers: an SMTP server with STARTTLS and AUTH, a
webhook receiver that checks the HMAC, stand-ins for the WeCom, DingTalk and Feishu robot
servers, and an SMS gateway. Cases come from a test agent over the real broker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hubtest import G05, await_for
from notifytest import dispatched_case, notify_setup, rows, secret, settled

from hub.app import Hub


async def test_dispatch_is_delivered_on_every_department_channel(hub, smtp, http):
    case_id = await dispatched_case(hub)
    got = await settled(hub, case_id, 3)
    by_channel = {d.channel: d for d in got}
    assert {d.state for d in got} == {"sent"} and set(by_channel) == {"email", "webhook", "wecom"}
    assert all(d.attempts == 1 and d.kind == "dispatched" and d.sent_at for d in got)
    # Email: over STARTTLS, after AUTH, with the delivery id as Message-ID.
    [mail] = smtp.messages
    email = by_channel["email"]
    assert mail["to"] == ["drainage@example.org"] and mail["tls"] and mail["auth"] is True
    assert smtp.logins == [smtp.user]
    assert mail["message_id"] == f"<{email.wire_id}@cityops.notify>"
    assert f"case {case_id}" in mail["subject"] and "flood.road_waterlogging" in mail["body"]
    # Webhook: verified by the receiver (HMAC, replay window), keyed by the delivery id.
    [hook] = http.webhooks
    assert hook["delivery_id"] == by_channel["webhook"].wire_id
    assert hook["fields"]["case_id"] == case_id and hook["kind"] == "dispatched"
    [robot] = http.robots
    assert robot["vendor"] == "wecom" and f"case {case_id}" in robot["text"]
    notes = await hub.read(lambda r: r.notifications_for_case(case_id))
    dispatched = [n for n in notes if n["kind"] == "dispatched"]
    assert dispatched[0]["delivered_at"] is not None
    counts = await hub.read(lambda r: r.delivery_counts())
    assert counts == {("sent", "email"): 1, ("sent", "webhook"): 1, ("sent", "wecom"): 1}


async def test_escalation_reaches_the_town_leads_by_signed_dingtalk_and_sms(hub, http, clock):
    case_id = await dispatched_case(hub)
    await settled(hub, case_id, 3)
    clock.advance(minutes=61)  # the Jiuting waterlogging route's deadline is 60 min
    report = await hub.tick()
    assert (case_id, 1) in report.escalated
    got = [d for d in await settled(hub, case_id, 5) if d.kind == "escalated"]
    assert {(d.channel, d.target, d.state) for d in got} == {
        ("dingtalk", "jiuting-leads", "sent"), ("sms", "+8613800000001", "sent")}
    assert [r["vendor"] for r in http.robots] == ["wecom", "dingtalk"]
    [sms] = http.sms
    sms_row = next(d for d in got if d.channel == "sms")
    assert sms["to"] == "+8613800000001" and sms["ref"] == sms_row.wire_id
    assert f"case {case_id}" in sms["text"]


async def test_a_bad_address_is_dead_with_the_servers_reason(hub, smtp):
    smtp.refuse.add("drainage@example.org")
    case_id = await dispatched_case(hub)
    got = await settled(hub, case_id, 3)
    email = next(d for d in got if d.channel == "email")
    assert email.state == "dead" and email.attempts == 1  # permanent: not retried
    assert "550" in email.last_error and "no such mailbox" in email.last_error
    assert smtp.messages == []
    assert hub.notifier.stats.dead == {"email": 1}


async def test_a_robot_that_refuses_the_signature_is_dead_with_the_vendors_words(
        tmp_path, clock, smtp, http):
    bad = secret(tmp_path, "ding-wrong", "SECnot-the-right-one")
    setup = notify_setup(tmp_path, smtp, http)
    setup.config.notify.dingtalk["jiuting-leads"].secret_file = __import__("pathlib").Path(bad)
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        case_id = await dispatched_case(hub)
        await settled(hub, case_id, 3)
        clock.advance(minutes=61)
        await hub.tick()
        got = await settled(hub, case_id, 5)
        ding = next(d for d in got if d.channel == "dingtalk")
        assert ding.state == "dead" and ding.attempts == 1
        assert "310000" in ding.last_error and "sign not match" in ding.last_error
        assert http.refused == ["dingtalk sign"]
        assert next(d for d in got if d.channel == "sms").state == "sent"


async def test_a_channel_down_for_ten_minutes_is_delivered_when_it_is_back(hub, http, clock):
    await http.stop()  # the receiver (and the robot stand-ins) are down
    case_id = await dispatched_case(hub)

    async def row(channel):
        return next(d for d in await rows(hub, case_id) if d.channel == channel)

    await await_for(lambda: _state(row("webhook"), "failed"), what="first attempt failed")
    first = await row("webhook")
    assert first.attempts == 1 and first.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert "ClientConnectorError" in first.last_error or "Connect" in first.last_error
    # Not retried before it is due: the schedule is in the row.
    await hub.notifier.pass_once()
    assert (await row("webhook")).attempts == 1
    # Ten minutes of outage: each due retry fails and the wait doubles (60, 120, 240 s).
    for _ in range(10):
        clock.advance(minutes=1)
        hub.notifier.wake()
        await asyncio.sleep(0.1)
        due = (await row("webhook")).next_attempt_at
        await await_for(lambda d=due: _after(row("webhook"), clock.now()), what="retry settled")
    down = await row("webhook")
    assert down.state == "failed" and down.attempts == 4  # at 0, 1, 3 and 7 minutes
    await http.start()  # back
    clock.advance(seconds=(down.next_attempt_at - clock.now()).total_seconds())
    hub.notifier.wake()
    await await_for(lambda: _state(row("webhook"), "sent"), what="delivered after recovery")
    assert (await row("webhook")).attempts == 5 and len(http.webhooks) == 1
    assert (await row("email")).state == "sent"  # the other channels were not held up


async def _state(coro, state):
    return (await coro).state == state


async def _after(coro, now):
    d = await coro
    return d.state != "sending" and (d.next_attempt_at is None or d.next_attempt_at > now)


async def test_a_hub_restart_mid_delivery_loses_nothing_and_receivers_dedupe(
        tmp_path, clock, smtp, http):
    http.hold = asyncio.Event()  # the receiver takes the webhook but does not answer yet
    setup = notify_setup(tmp_path, smtp, http)
    setup.config.notify.webhooks["drainage-system"].timeout_s = 60
    hub = await Hub(setup, clock=clock, run_scheduler=False).start()
    try:
        # One case in each Jiuting grid (g-04, g-05, g-06): three dispatches to drainage.
        ids = [await dispatched_case(hub, seq=i, where=(G05[0], 121.395 + i * 0.01)) for i in (1, 2, 3)]
        await await_for(lambda: len(http.webhooks) == 3, what="three webhooks received, unanswered")
    finally:
        await hub.stop()  # stops between send and record: the three rows stay "sending"
    pending = await _read_rows(setup)
    assert {d.state for d in pending if d.channel == "webhook"} == {"sending"}
    http.hold.set()
    hub = await Hub(setup, clock=clock, run_scheduler=False).start()
    try:
        assert hub.notifier.stats.requeued_at_start >= 3
        for case_id in ids:
            await settled(hub, case_id, 3, states=("sent",))
        everything = await rows(hub)
    finally:
        await hub.stop()
    assert len(everything) == 9 and {d.state for d in everything} == {"sent"}
    hooks = [d for d in everything if d.channel == "webhook"]
    # At-least-once: the three in the window were sent twice; the key lets the receiver act once.
    assert len(http.webhooks) == 6
    assert http.unique_ids() == {d.wire_id for d in hooks} and len(http.unique_ids()) == 3
    assert all(d.attempts == 2 for d in hooks)
    # Every email arrived; any resent one carries the same Message-ID.
    assert {m["message_id"] for m in smtp.messages} == {
        f"<{d.wire_id}@cityops.notify>" for d in everything if d.channel == "email"}


async def _read_rows(setup):
    from hub.store.sqlite import SqliteRepository

    repo = SqliteRepository(setup.config.database, writer=False)
    try:
        return repo.list_deliveries(limit=1000)
    finally:
        repo.close()


async def test_deliveries_show_in_the_case_json_the_case_page_and_metrics(hub, smtp):
    import aiohttp

    from hub.auth.accounts import create_api_token

    smtp.refuse.add("drainage@example.org")
    case_id = await dispatched_case(hub)
    await settled(hub, case_id, 3)
    deps = set(hub.setup.departments)
    _, token = await hub.write(lambda repo: create_api_token(
        repo, "tests", "operator", hub.clock.now(), departments=deps))
    base = hub.web_url.rstrip("/")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        async with s.get(f"{base}/api/v1/cases/{case_id}") as r:
            assert r.status == 200
            detail = await r.json()
        async with s.get(f"{base}/metrics") as r:
            metrics = await r.text()
        async with s.get(f"{base}/cases/{case_id}") as r:
            page = await r.text()
    shown = {d["channel"]: d for d in detail["deliveries"]}
    assert shown["webhook"]["state"] == "sent" and shown["webhook"]["attempts"] == 1
    assert shown["email"]["state"] == "dead" and "550" in shown["email"]["last_error"]
    assert 'cityops_notifications{state="sent"} 2' in metrics
    assert 'cityops_notifications{state="dead"} 1' in metrics
    assert 'cityops_notifications_sent_total{channel="webhook"} 1' in metrics
    assert "email drainage@example.org: <b>dead</b>" in page and "no such mailbox" in page
