"""The hub's side of the care loop with a stand-in agent on the real broker: a tier the
agent reached after the acknowledgement tells nobody and is counted, and the agent (by its
own ACL-limited credentials) reads its retained care state."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt
from caretest import AGENT, METER, care_setup
from hubtest import G01, TestAgent, await_for, event, later

from hub.app import Hub
from protocol.codec import decode_care_state
from protocol.topics import Channel, agent_topic

PASSWORD = "agent-password-0123456"


def care_event(seq: int, kind: str = "new", event_id: str = "alarm-1", source: str = METER,
               **attrs):
    return event(AGENT, seq, event_id, kind, "elderly_care.water_no_use", later(seq), G01,
                 source, 1.0, bbox=None, reading=40.0, **attrs)


def read_retained_care(broker) -> bytes:
    """Log in as the agent (its own credentials) and take the retained care state."""
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"reader-{AGENT}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(AGENT, PASSWORD)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(agent_topic(AGENT, Channel.CARE), qos=1)
    c.on_message = lambda cl, u, msg: (got.append(bytes(msg.payload)), done.set())
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert done.wait(10), "no retained care state for the agent"
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


async def test_a_tier_after_the_acknowledgement_tells_nobody_and_the_agent_reads_its_state(
        tmp_path, clock, smtp, http):
    hub = Hub(care_setup(tmp_path, smtp, http), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        agent = await asyncio.to_thread(TestAgent, hub.broker, AGENT, PASSWORD)
        try:
            agent.send(care_event(1, tier=1, notify="family"))
            await await_for(lambda: agent.acked(1), what="the hub's ack")
            [case] = await hub.read(lambda r: r.list_cases(category="elderly_care"))
            await hub.accept(case.id, actor="op-li")
            # The agent had not heard yet: it reaches tier 2 (sent twice: a redelivery).
            agent.send(care_event(2, "update", tier=2, notify="grid_worker"))
            agent.send(care_event(3, "update", tier=2, notify="grid_worker"))
            await await_for(lambda: agent.acked(3), what="the hub's ack of the tier-2 update")
        finally:
            agent.close()
        [alarm] = await hub.read(lambda r: r.care_alarms_for_case(case.id))
        assert alarm.escalations_after_ack == 1 and alarm.tier_notifications == 1
        assert alarm.tier == 2 and alarm.confirmed_at is None
        audit = await hub.read(lambda r: r.audit_for_case(case.id))
        [late] = [a for a in audit if a.action == "care_escalation_after_ack"]
        assert "tier 2" in late.detail and "op-li" in late.detail
        deliveries = await hub.read(lambda r: r.deliveries_for_case(case.id))
        assert {d.channel for d in deliveries if d.kind == "care_tier"} == {"email"}  # tier 1 only
        state = decode_care_state(await asyncio.to_thread(read_retained_care, hub.broker),
                                  agent_id=AGENT)
        assert [(a.event_id, a.case_id, a.by) for a in state.acknowledged] == [
            ("alarm-1", case.id, "op-li")]
        counts = await hub.read(lambda r: r.care_counts())
        assert counts["escalations_after_ack"] == 1 and counts["tier_notifications"] == 1
    finally:
        await hub.stop()


async def test_automatic_dispatch_is_no_acknowledgement_and_merged_alarms_follow_their_case(
        tmp_path, clock, smtp, http):
    """With auto_accept the hub dispatches care cases itself: that stops no tier. An
    operator merges one resident's case into another's; the handler starting the surviving
    case acknowledges both alarms, and the agent's state names both."""
    hub = Hub(care_setup(tmp_path, smtp, http, auto_accept=True), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        agent = await asyncio.to_thread(TestAgent, hub.broker, AGENT, PASSWORD)
        try:
            agent.send(care_event(1, tier=1), care_event(2, event_id="alarm-2", source="wm-care-102",
                                                         tier=1))
            await await_for(lambda: agent.acked(2), what="the hub's ack")
        finally:
            agent.close()
        first, second = sorted(await hub.read(lambda r: r.list_cases(category="elderly_care")),
                               key=lambda c: c.id)
        assert first.state == second.state == "dispatched"
        counts = await hub.read(lambda r: r.care_counts())
        assert counts["acknowledged"] == 0 and counts["alarms"] == 2
        assert counts["tier_notifications"] == 1  # wm-care-102 is not in the registry:
        [gap] = [a for a in await hub.read(lambda r: r.audit_for_case(second.id))
                 if a.action == "care_notified"]
        assert "nobody told" in gap.detail and "not in the care registry" in gap.detail
        await hub.merge(second.id, first.id, actor="op-li")
        await hub.start_work(first.id, actor="handler-wu")
        alarms = await hub.read(lambda r: r.care_alarms_for_case(first.id))
        assert [(a.event_id, a.acknowledged_by) for a in alarms] == [
            ("alarm-1", "handler-wu"), ("alarm-2", "handler-wu")]
        state = decode_care_state(await asyncio.to_thread(read_retained_care, hub.broker),
                                  agent_id=AGENT)
        assert sorted(a.event_id for a in state.acknowledged) == ["alarm-1", "alarm-2"]
    finally:
        await hub.stop()
