"""The hub's side of the care loop with a stand-in agent on the real broker: a tier the
agent reached after the acknowledgement tells nobody and is counted, and the agent (by its
own ACL-limited credentials) reads its retained care state."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt
from conftest import AGENT, METER, care_setup
from hubtest import G01, TestAgent, await_for, event, later

from hub.app import Hub
from protocol.codec import decode_care_state
from protocol.topics import Channel, agent_topic

PASSWORD = "agent-password-0123456"


def care_event(seq: int, kind: str = "new", **attrs):
    return event(AGENT, seq, "alarm-1", kind, "elderly_care.water_no_use", later(seq), G01,
                 METER, 1.0, bbox=None, reading=40.0, **attrs)


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
