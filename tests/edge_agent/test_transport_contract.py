"""One contract, every transport: the in-memory fake and paho over real Mosquitto must
behave the same where the session relies on it."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from agent_testlib import until

from edge_agent.config.sections import MqttConfig
from edge_agent.errors import AuthError, TransportError
from edge_agent.transport import MemoryBroker, MemoryTransport, MqttTransport, Will
from protocol.topics import Channel, agent_topic

pytestmark = pytest.mark.asyncio

AGENT = "agent-x"


@dataclass
class Rig:
    make: Any  # make(password, will) -> Transport
    password: str
    seen: list  # (topic, payload) observed by a hub-side subscriber
    send: Any  # send(topic, payload): the hub publishes
    kill: Any  # kill(transport): the connection dies without a goodbye


@pytest.fixture(params=["memory", "mosquitto"])
def rig(request):
    password = secrets.token_urlsafe(18)
    seen: list = []
    if request.param == "memory":
        mb = MemoryBroker(passwords={AGENT: password})
        mb.subscribe("cityops/v1/agents/#", lambda t, p: seen.append((t, p)))
        yield Rig(lambda pw, will: MemoryTransport(mb, will, username=AGENT, password=pw), password, seen,
                  lambda t, p: mb.publish(t, p), lambda tr: tr.drop())
        return
    import threading

    import paho.mqtt.client as mqtt

    broker = request.getfixturevalue("broker")
    broker.auth.set_user(AGENT, password)
    broker.reload()
    hub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="contract-hub", protocol=mqtt.MQTTv5)
    hub.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
    ready = threading.Event()
    topics = [("cityops/v1/agents/+/status", 1), ("cityops/v1/agents/+/events", 1)]
    hub.on_connect = lambda c, u, f, rc, p: c.subscribe(topics)
    hub.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    hub.on_message = lambda c, u, m: seen.append((m.topic, bytes(m.payload)))
    hub.connect(broker.host, broker.port)
    hub.loop_start()
    assert ready.wait(10)
    cfg = MqttConfig(host=broker.host, port=broker.port, connect_timeout_s=3)

    def kill(tr):
        tr._teardown()

    yield Rig(lambda pw, will: MqttTransport(cfg, will, client_id=AGENT, username=AGENT, password=pw),
              password, seen, lambda t, p: hub.publish(t, p, qos=1), kill)
    hub.disconnect()
    hub.loop_stop()


def will() -> Will:
    return Will(agent_topic(AGENT, Channel.STATUS), b"offline")


async def test_publish_resolves_on_puback_and_arrives(rig):
    t = rig.make(rig.password, will())
    await t.connect()
    assert t.connected
    await asyncio.wait_for(t.publish(agent_topic(AGENT, Channel.EVENTS), b"[1]", qos=1), 5)
    await until(lambda: (agent_topic(AGENT, Channel.EVENTS), b"[1]") in rig.seen)
    await t.disconnect()
    assert not t.connected
    with pytest.raises(TransportError):
        t.publish(agent_topic(AGENT, Channel.EVENTS), b"[2]", qos=1)


async def test_subscription_receives_what_the_hub_sends(rig):
    t = rig.make(rig.password, will())
    got = []
    t.on_message = lambda topic, payload: got.append(payload)
    await t.connect()
    await t.subscribe([(agent_topic(AGENT, Channel.ACKS), 1)])
    rig.send(agent_topic(AGENT, Channel.ACKS), b"ack-1")
    await until(lambda: got == [b"ack-1"])
    await t.disconnect()


async def test_a_dying_connection_publishes_the_will(rig):
    t = rig.make(rig.password, will())
    await t.connect()
    rig.kill(t)
    await until(lambda: (agent_topic(AGENT, Channel.STATUS), b"offline") in rig.seen, what="the will")
    assert not t.connected


async def test_a_clean_disconnect_does_not_publish_the_will(rig):
    t = rig.make(rig.password, will())
    await t.connect()
    await t.disconnect()
    await asyncio.sleep(0.2)
    assert (agent_topic(AGENT, Channel.STATUS), b"offline") not in rig.seen


async def test_wrong_password_is_an_auth_error(rig):
    with pytest.raises(AuthError):
        await rig.make("not-the-password-123", will()).connect()
