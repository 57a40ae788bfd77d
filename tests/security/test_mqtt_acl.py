"""What an agent's credentials cannot read. tests/test_broker.py covers publishing on
another agent's topics and reading another agent's acks; here an agent tries wildcards
and other agents' retained status and config, live events and the broker's $SYS tree,
and receives only its own acks and config."""

from __future__ import annotations

import threading

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
    wanted = ["#", "cityops/#", "cityops/v1/agents/+/events", "cityops/v1/agents/+/status",
              agent_topic("agent-2", Channel.CONFIG), agent_topic("agent-2", Channel.STATUS),
              agent_topic("agent-2", Channel.EVENTS), "$SYS/#", "cityops/v1/agents/agent-2/#",
              agent_topic("agent-1", Channel.ACKS), agent_topic("agent-1", Channel.CONFIG)]
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
        assert {p for _, p in spy.got} == {b"a1-config", b"a1-marker"}, spy.got
    finally:
        spy.close()
