"""The running hub against a real Mosquitto: a test client with an agent's credentials
publishes protocol messages; the hub stores, dedupes, acks after commit, tracks agents,
keeps bad input as dead letters, and shows it all on the page and the JSON API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from hubtest import G05, TestAgent, await_for, event, jpeg, make_setup, sensor_event

from hub.app import Hub
from hub.auth.accounts import create_api_token
from protocol.codec import encode
from protocol.messages import Status
from protocol.topics import Channel


@pytest.fixture
async def agent(hub):
    a = await asyncio.to_thread(TestAgent, hub.broker)
    yield a
    a.close()


async def operator_headers(hub) -> dict[str, str]:
    """An operator's API token: the hub's pages and API are for signed-in people only.
    The pages are read in English (the hub's default is Chinese)."""
    token = getattr(hub, "_test_token", None)
    if token is None:
        departments = set(hub.setup.taxonomy.departments) | set(hub.setup.routing.departments)
        _, token = await hub.write(lambda repo: create_api_token(
            repo, "tests", "operator", hub.clock.now(), departments=departments))
        hub._test_token = token
    return {"Authorization": f"Bearer {token}", "Accept-Language": "en"}


async def get_json(hub, path):
    async with aiohttp.ClientSession(headers=await operator_headers(hub)) as s, \
            s.get(hub.web_url.rstrip("/") + path) as r:
        return r.status, await r.json()


async def test_event_is_stored_once_and_acked_after_commit(hub, agent):
    e = event(snapshot=jpeg(1), where=G05)
    agent.send(e)
    await await_for(lambda: agent.acked(1), what="the hub's ack")
    # The ack came after the commit: a fresh reader sees the row already.
    counts = await hub.read(lambda r: r.counts())
    assert counts["messages_stored"] == 1 and counts["cases_total"] == 1
    agent.send(e)  # redelivery (e.g. the agent's ack timed out)
    await await_for(lambda: len(agent.acks) >= 2, what="second ack")
    counts = await hub.read(lambda r: r.counts())
    assert counts["messages_stored"] == 1 and counts["cases_total"] == 1
    assert hub.writer.stats.duplicates == 1


async def test_batched_replay_with_a_gap_is_acked_with_ranges(hub, agent):
    agent.send(*[sensor_event(seq=s, event_id=f"wm-{s}", source=f"m{s}") for s in (1, 2, 5, 6)])
    await await_for(lambda: agent.acked(6), what="ack of the batch")
    ack = agent.acks[-1]
    assert ack.upto == 2 and ack.ranges == [(5, 6)] and not ack.covers(3)
    row = await hub.read(lambda r: r.get_agent("agent-1"))
    assert row.seq_gaps == 1 and hub.writer.stats.gaps_opened == 1
    agent.send(sensor_event(seq=3, event_id="wm-3", source="m3"), sensor_event(seq=4, event_id="wm-4", source="m4"))
    await await_for(lambda: agent.acks[-1].upto == 6, what="gap filled")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "malformed"),
    (b'{"schema": "cityops.event/2", "seq": 3, "event_id": "e3"}', "unknown_schema"),
    (b'{"pad": "' + b"x" * 9000 + b'"}', "too_large"),
])
async def test_bad_input_is_a_dead_letter_and_the_hub_keeps_going(hub, agent, payload, reason):
    agent.publish(Channel.EVENTS, payload)
    agent.send(event(seq=10, event_id="ok", snapshot=jpeg(2)))
    await await_for(lambda: agent.acked(10), what="ack after bad input")
    rows = await hub.read(lambda r: r.list_dead_letters())
    assert [d.reason for d in rows] == [reason]
    assert rows[0].topic == "cityops/v1/agents/agent-1/events" and rows[0].payload_bytes == len(payload)
    if reason == "unknown_schema":
        assert [(x.seq, x.event_id) for x in agent.rejected()] == [(3, "e3")]
    status, body = await get_json(hub, "/api/v1/dead-letters")
    assert status == 200 and body["dead_letters"][0]["reason"] == reason


async def test_agent_registry_birth_heartbeat_death(hub, agent):
    agent.birth()
    agent.heartbeat(depth=42)
    await await_for(lambda: hub.read(lambda r: (a := r.get_agent("agent-1")) and a.outbox_depth == 42),
                    what="telemetry")
    status, body = await get_json(hub, "/api/v1/agents")
    a = body["agents"][0]
    assert (a["agent_id"], a["shown_state"], a["outbox_depth"], a["version"]) == ("agent-1", "online", 42, "0.1.0")
    agent.birth(state="offline", at=datetime.now(UTC) + timedelta(seconds=1))
    await await_for(lambda: hub.read(lambda r: r.get_agent("agent-1").state == "offline"), what="death")


async def test_snapshot_then_event_links_and_serves_the_photo(hub, agent):
    photo = jpeg(7)
    agent.send_snapshot("ev-1", 1, photo)
    agent.send(event(snapshot=photo))
    await await_for(lambda: agent.acked(1), what="ack")
    status, body = await get_json(hub, "/api/v1/cases/1")
    assert status == 200
    sha = body["snapshots"][0]["sha256"]
    assert body["case"]["before_snapshot"].endswith(f"{sha}.jpg")
    async with aiohttp.ClientSession(headers=await operator_headers(hub)) as s:
        async with s.get(hub.web_url + body["case"]["before_snapshot"].lstrip("/")) as r:
            assert r.status == 200 and await r.read() == photo  # the link the case gives is served
        for gone in (f"snapshots/{sha}.jpg", "api/v1/snapshots/../../etc/passwd"):
            async with s.get(f"{hub.web_url}{gone}") as r:  # the old address is gone; no way out of the folder
                assert r.status == 404


async def test_status_page_and_json_show_the_case(hub, agent):
    agent.birth()
    agent.send(sensor_event())
    await await_for(lambda: agent.acked(1), what="ack")
    async with aiohttp.ClientSession(headers=await operator_headers(hub)) as s, s.get(hub.web_url + "cases") as r:
        html = await r.text()
    assert r.status == 200 and "No water used by an elderly resident" in html and "Civil Affairs Bureau" in html
    async with aiohttp.ClientSession(headers=await operator_headers(hub)) as s, s.get(hub.web_url + "agents") as r:
        html = await r.text()
    assert "agent-1" in html and "online" in html
    status, body = await get_json(hub, "/api/v1/cases?open=1")
    c = body["cases"][0]
    assert (c["state"], c["grid_id"], c["department"]) == ("dispatched", "g-01", "civil_affairs")
    assert c["deadline_at"].startswith("2026-07-01T09:00")
    status, detail = await get_json(hub, f"/api/v1/cases/{c['id']}")
    assert [a["action"] for a in detail["audit"]] == ["opened", "accepted", "dispatched"]
    assert detail["events"][0]["event_id"] == "wm-1"
    assert (await get_json(hub, "/api/v1/cases/999"))[0] == 404
    assert (await get_json(hub, "/healthz")) == (200, {"ok": True, "writer": True, "broker_connected": True,
                                                       "receivers": [True], "backlog": 0,
                                                       "storage_error": None, "writer_restarts": 0,
                                                       "writer_last_failure": None,
                                                       "writer_last_failure_s_ago": None})


async def test_escalation_on_a_fast_clock(hub, agent, clock):
    agent.send(event(where=G05, snapshot=jpeg(3)))  # Jiuting: 60 min deadline
    await await_for(lambda: agent.acked(1), what="ack")
    clock.advance(minutes=61)
    report = await hub.tick()
    assert report.escalated == [(1, 1)]
    _, detail = await get_json(hub, "/api/v1/cases/1")
    assert detail["case"]["state"] == "escalated"
    assert detail["notifications"][-1]["target"] == "town:Jiuting"


async def test_operator_one_key_dispatch_and_illegal_action(hub, agent):
    agent.send(event(confidence=0.1, snapshot=jpeg(4)))
    await await_for(lambda: agent.acked(1), what="ack")
    case = await hub.dispatch(1, department="road_maintenance", actor="op-wang")
    assert (case.state, case.department) == ("dispatched", "road_maintenance")
    from hub.errors import CaseError, IllegalTransition

    with pytest.raises(IllegalTransition, match="dispatched to reopened"):
        await hub.reopen(1, actor="op", reason="x")
    with pytest.raises(CaseError, match="only a resolved case awaits review"):
        await hub.review(1, fixed=True, actor="op")


async def test_messages_sent_while_the_hub_is_down_arrive_when_it_is_back(tmp_path, clock):
    setup = make_setup(tmp_path)
    hub = Hub(setup, clock=clock, run_scheduler=False)
    await hub.start()
    port = hub.broker.hub_port  # the hub's own listener (agents use hub.broker.port)
    # Keep the broker running across the hub restart: the receiver's session is persistent.
    broker = hub.broker
    hub.broker = None
    await hub.stop()
    try:
        agent = await asyncio.to_thread(TestAgent, broker)
        agent.send(event(snapshot=jpeg(5)))
        setup2 = make_setup(tmp_path, broker={"managed": False, "port": port,
                                              "password": hub.hub_password})
        hub2 = Hub(setup2, clock=clock, run_scheduler=False)
        async with hub2:
            await await_for(lambda: agent.acked(1), what="delivery after restart")
            assert (await hub2.read(lambda r: r.counts()))["messages_stored"] == 1
        agent.close()
    finally:
        broker.stop()


async def test_receiver_processes_on_a_shared_subscription(tmp_path, clock):
    setup = make_setup(tmp_path, ingest={"receivers": 2, "batch_wait_ms": 2})
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        agent = await asyncio.to_thread(TestAgent, hub.broker)
        for s in range(1, 41):
            agent.send(sensor_event(seq=s, event_id=f"wm-{s}", source=f"m{s % 7}"))
        await await_for(lambda: agent.acked(40) and agent.acks[-1].upto == 40, timeout=20,
                        what="all 40 acked")
        counts = hub.counts()
        assert counts["messages_stored"] == 40 and counts["ingest"]["duplicates"] == 0
        assert sum(r.received for r in hub.receivers) == 40
        hub.receivers[0].process.kill()  # a receiver that dies is restarted
        await await_for(lambda: hub.receiver_restarts == 1 and hub.health()["ok"], timeout=20,
                        what="receiver restarted")
        for s in range(41, 61):
            agent.send(sensor_event(seq=s, event_id=f"wm-{s}", source=f"m{s % 7}"))
        await await_for(lambda: agent.acks[-1].upto == 60, timeout=20, what="flowing again")
        agent.close()


async def test_retained_birth_is_seen_by_a_hub_that_starts_later(tmp_path, clock, broker):
    agent = await asyncio.to_thread(TestAgent, broker)
    agent.birth()
    setup = make_setup(tmp_path, broker={"managed": False, "port": broker.port,
                                         "password": broker.settings.hub_password})
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        await await_for(lambda: hub.read(lambda r: r.get_agent("agent-1")), what="retained birth")
    agent.close()


async def test_status_with_lwt_json_is_valid_protocol(agent):
    # The death message agents register as their LWT is a plain Status: check our helper
    # speaks the same protocol the hub decodes (guards the tests above).
    s = Status(agent_id="agent-1", state="offline", boot_id="b", at=datetime.now(UTC))
    assert json.loads(encode(s))["schema"] == "cityops.status/1"


async def test_after_a_merge_later_messages_follow_the_events_to_the_surviving_case(hub, agent):
    far = (G05[0] + 0.004, G05[1])
    agent.send(event(seq=1, event_id="a", where=G05, snapshot=jpeg(1)),
               event(seq=2, event_id="b", where=far, snapshot=jpeg(1)))
    await await_for(lambda: agent.acked(2), what="two cases")
    await hub.merge(2, 1, actor="op")
    agent.send(event(seq=3, event_id="b", kind="update", where=far))
    await await_for(lambda: agent.acked(3), what="update acked")
    c1, c2 = await hub.read(lambda r: (r.get_case(1), r.get_case(2)))
    assert (c1.event_count, c2.state) == (3, "merged")


async def test_receiver_process_validates_and_hands_over_records(tmp_path, clock):
    setup = make_setup(tmp_path, ingest={"receivers": 1, "decode_in_receivers": "all"})
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        agent = await asyncio.to_thread(TestAgent, hub.broker)
        agent.send(*[sensor_event(seq=s, event_id=f"wm-{s}") for s in range(1, 6)])
        agent.publish(Channel.EVENTS, b'[{"schema": "cityops.event/1", "seq": 6, "event_id": "x"}]')
        agent.send(event(seq=7, event_id="cam", snapshot=jpeg(1)))
        await await_for(lambda: agent.acks and agent.acks[-1].upto == 7, what="all handled")
        counts = hub.counts()
        assert counts["messages_stored"] == 6 and counts["dead_letters"] == 1
        assert [r.seq for r in agent.rejected()] == [6]
        agent.close()
