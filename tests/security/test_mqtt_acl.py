"""What an agent's credentials cannot read. tests/test_broker.py covers publishing on
another agent's topics and reading another agent's acks; here an agent tries wildcards
and other agents' retained status, config and care state, live events and the broker's
$SYS tree, and receives only its own acks, config and care state; it can neither join
the hub's shared group nor take the hub's client ids, and the hub user cannot log in
where agents do."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt

from protocol.topics import Channel, agent_topic

PW = {"agent-1": "pw-agent-1-0123456", "agent-2": "pw-agent-2-0123456"}


class Sub:
    def __init__(self, broker, user, password, topics):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{user}", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.got: list[tuple[str, bytes]] = []
        self.granted: list[int] = []
        self.event = threading.Event()
        ready = threading.Event()

        def on_connect(c, u, f, rc, p):
            c.subscribe([(t, 1) for t in topics])

        def on_subscribe(c, u, mid, rcs, p):
            self.granted = [r.value for r in rcs]
            ready.set()

        def on_message(c, u, msg):
            self.got.append((msg.topic, msg.payload))
            self.event.set()

        self.c.on_connect, self.c.on_subscribe, self.c.on_message = on_connect, on_subscribe, on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert ready.wait(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def publish(broker, user, password, topic, payload, retain=False):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_an_agent_reads_nothing_but_its_own_acks_and_config(broker):
    broker.auth.set_users(PW)
    broker.reload()
    hub_user, hub_pw = broker.settings.hub_user, broker.settings.hub_password
    # Retained state of agent-2 that agent-1 must not read.
    publish(broker, "agent-2", PW["agent-2"], agent_topic("agent-2", Channel.STATUS), b"a2-status", retain=True)
    publish(broker, hub_user, hub_pw, agent_topic("agent-2", Channel.CONFIG), b"a2-config", retain=True)
    publish(broker, hub_user, hub_pw, agent_topic("agent-1", Channel.CONFIG), b"a1-config", retain=True)
    publish(broker, hub_user, hub_pw, agent_topic("agent-2", Channel.CARE), b"a2-care", retain=True)
    publish(broker, hub_user, hub_pw, agent_topic("agent-1", Channel.CARE), b"a1-care", retain=True)
    wanted = ["#", "cityops/#", "cityops/v1/agents/+/events", "cityops/v1/agents/+/status",
              agent_topic("agent-2", Channel.CONFIG), agent_topic("agent-2", Channel.STATUS),
              agent_topic("agent-2", Channel.EVENTS), "$SYS/#", "cityops/v1/agents/agent-2/#",
              agent_topic("agent-2", Channel.CARE), agent_topic("agent-1", Channel.ACKS),
              agent_topic("agent-1", Channel.CONFIG), agent_topic("agent-1", Channel.CARE)]
    spy = Sub(broker, "agent-1", PW["agent-1"], wanted)
    try:
        publish(broker, "agent-2", PW["agent-2"], agent_topic("agent-2", Channel.EVENTS), b"a2-event")
        publish(broker, hub_user, hub_pw, agent_topic("agent-2", Channel.ACKS), b"a2-ack")
        publish(broker, hub_user, hub_pw, agent_topic("agent-1", Channel.ACKS), b"a1-marker")
        settle = threading.Event()
        while not any(p == b"a1-marker" for _, p in spy.got):
            assert spy.event.wait(5), spy.got
            spy.event.clear()
        settle.wait(0.3)  # anything else in flight would arrive by now
        # (overlapping subscriptions deliver a message once per matching filter)
        assert {p for _, p in spy.got} == {b"a1-config", b"a1-care", b"a1-marker"}, spy.got
    finally:
        spy.close()


# -- the hub's own clients: shared group and client ids (issue 17, points 9 and 10) -------------
#
# Against the hub's managed broker: the hub's clients sit on a loopback listener of their
# own; on the agents' listener an agent's client id is its user name.

HUB_GROUP_FILTERS = ["$share/hub/cityops/v1/agents/+/events", "$share/hub/cityops/v1/agents/+/telemetry",
                     "$share/hub/cityops/v1/agents/+/snapshots/+", "$share/cityops-hub/cityops/#"]


def _agent_client(broker, user, client_id=None, *, clean=True):
    """An agent-credentialed client that stays connected (paho reconnects it if kicked)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"x-{user}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, PW[user])
    state = {"connects": 0, "got": [], "rc": None}
    up = threading.Event()

    def on_connect(cl, u, f, rc, p):
        state["rc"], state["connects"] = rc, state["connects"] + 1
        up.set()

    c.on_connect = on_connect
    c.on_message = lambda cl, u, msg: state["got"].append((msg.topic, msg.payload))
    c.connect(broker.host, broker.port, clean_start=clean)
    c.loop_start()
    assert up.wait(5)
    return c, state


def _sent_and_acked(hub, n: int, first_seq: int = 1):
    """agent-2 sends ``n`` events (one a message); True when the hub acked every one."""
    from hubtest import TestAgent, sensor_event

    agent = TestAgent(hub.broker, "agent-2", PW["agent-2"])
    try:
        for s in range(first_seq, first_seq + n):
            agent.send(sensor_event(agent="agent-2", seq=s, event_id=f"e-{s}", source=f"m{s}"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if agent.acks and agent.acks[-1].upto >= first_seq + n - 1:
                return True
            time.sleep(0.02)
        return False
    finally:
        agent.close()


def _count_link_disconnects(hub) -> list[int]:
    drops = [0]
    inner = hub.link.client.on_disconnect

    def on_disconnect(*args):
        drops[0] += 1
        inner(*args)

    hub.link.client.on_disconnect = on_disconnect
    return drops


async def test_an_agent_cannot_join_the_hubs_shared_group(hub):
    """An agent subscribing to the hub's shared group (by its configured name, or any
    other) receives nothing, and the hub still receives every event of another agent."""
    hub.broker.auth.set_users(PW)
    hub.broker.reload()
    thief, seen = await asyncio.to_thread(_agent_client, hub.broker, "agent-1")
    try:
        done = threading.Event()
        thief.on_subscribe = lambda *a: done.set()
        thief.subscribe([(f, 1) for f in HUB_GROUP_FILTERS])
        assert await asyncio.to_thread(done.wait, 5)
        assert await asyncio.to_thread(_sent_and_acked, hub, 20), "the hub lost events to the thief"
        assert (await hub.read(lambda r: r.counts()))["messages_stored"] == 20
        assert seen["got"] == []
    finally:
        thief.disconnect()
        thief.loop_stop()


async def test_an_agent_cannot_take_the_hubs_client_ids_or_log_in_as_the_hub(hub):
    """An agent that connects with the hub's client ids (with a persistent session, and
    paho reconnecting it whenever it is pushed off) gets its user name as client id: the
    hub's link never drops and the hub keeps receiving and acking. The hub user cannot
    log in on the agents' listener, nor an agent on the hub's."""
    from hub.broker import mqtt_probe

    hub.broker.auth.set_users(PW)
    hub.broker.reload()
    drops = _count_link_disconnects(hub)
    prefix = hub.config.ingest.client_id
    squatters = []
    try:
        for cid in (f"{prefix}-link", f"{prefix}-recv-0"):
            squatters.append(await asyncio.to_thread(_agent_client, hub.broker, "agent-1", cid,
                                                     clean=False))
            await asyncio.sleep(0.3)  # a pushed-off hub client would be gone by now
        assert await asyncio.to_thread(_sent_and_acked, hub, 10)
        assert drops == [0] and hub.health()["ok"], hub.health()
        # The two squatters are one client ("agent-1"): the second pushed the first off.
        assert squatters[0][1]["connects"] >= 1 and squatters[1][1]["connects"] >= 1
    finally:
        for c, _ in squatters:
            c.disconnect()
            c.loop_stop()
    b = hub.broker
    hub_user, hub_pw = b.settings.hub_user, b.settings.hub_password
    assert await asyncio.to_thread(mqtt_probe, b.host, b.port, hub_user, hub_pw) in (4, 5)
    assert await asyncio.to_thread(mqtt_probe, b.hub_host, b.hub_port, "agent-1", PW["agent-1"]) in (4, 5)
    assert await asyncio.to_thread(mqtt_probe, b.hub_host, b.hub_port, hub_user, hub_pw) == 0
