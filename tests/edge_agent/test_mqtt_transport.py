"""The paho transport and the session against a real Mosquitto (the `broker` fixture),
with a stand-in hub that speaks the protocol: birth and will, delivery and acks,
refused credentials, the ACL, TLS-less MQTT 3.1.1, a broker that dies and comes back."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from agent_testlib import PahoHub, until

from edge_agent.config.sections import MqttConfig, OutboxConfig, ReconnectConfig, TelemetryConfig
from edge_agent.errors import AuthError, TransportError
from edge_agent.outbox import Outbox
from edge_agent.session import Session, SessionState
from edge_agent.transport import MqttTransport, Will
from protocol.codec import encode
from protocol.messages import AgentState
from protocol.topics import Channel, agent_topic

pytestmark = pytest.mark.asyncio


def add_agent(broker, agent_id: str) -> str:
    password = secrets.token_urlsafe(18)
    broker.auth.set_user(agent_id, password)
    broker.reload()
    return password


def factory(broker, agent_id, password, protocol="5"):
    cfg = MqttConfig(host=broker.host, port=broker.port, protocol=protocol, keepalive_s=5,
                     connect_timeout_s=2)
    return lambda will: MqttTransport(cfg, will, client_id=agent_id, username=agent_id, password=password)


def session_for(outbox, make, **cfg):
    return Session(outbox.agent_id, outbox, make,
                   outbox_config=OutboxConfig(**{"batch_max_events": 100, **cfg}),
                   telemetry=TelemetryConfig(interval_s=1),
                   reconnect=ReconnectConfig(initial_s=0.05, max_s=0.3), version="t")


@pytest.fixture
def hub(broker):
    h = PahoHub(broker)
    yield h
    h.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_session_delivers_and_the_hub_acks_over_real_mosquitto(broker, hub, tmp_path, draft, protocol):
    password = add_agent(broker, "agent-1")
    outbox = Outbox(tmp_path / "o.sqlite", "agent-1")
    for i in range(250):
        outbox.emit(draft("new", f"ev-{i}"))
    session = session_for(outbox, factory(broker, "agent-1", password, protocol))
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    await until(lambda: outbox.depth == 0, what="backlog delivered and acked")
    outbox.emit(draft("new", "live"))
    await until(lambda: outbox.depth == 0 and any(e.event_id == "live" for e in hub.events))
    await until(lambda: hub.telemetry, what="heartbeat")
    stop.set()
    await asyncio.wait_for(task, 10)
    outbox.close()
    assert len(hub.events) == 251 == len(hub.unique())
    assert [s.state for s in hub.status][-1] == "offline"
    assert hub.status[-1].reason == "shutdown"
    assert hub.bad == []


async def test_will_is_published_when_the_connection_dies(broker, hub):
    password = add_agent(broker, "agent-w")
    will = Will(agent_topic("agent-w", Channel.STATUS), b'{"schema":"cityops.status/1","agent_id":"agent-w",'
                b'"state":"offline","boot_id":"b1","at":"2026-01-01T00:00:00Z","reason":"connection lost"}')
    t = factory(broker, "agent-w", password)(will)
    await t.connect()
    assert t.connected
    t._teardown()  # the socket closes without a DISCONNECT, as when the process dies
    await until(lambda: any(s.state == AgentState.OFFLINE and s.agent_id == "agent-w" for s in hub.status),
                what="the will")


async def test_bad_credentials_are_an_auth_error(broker):
    add_agent(broker, "agent-2")
    make = factory(broker, "agent-2", "wrong-password-123")
    with pytest.raises(AuthError, match="refused the credentials"):
        await make(Will("cityops/v1/agents/agent-2/status", b"x")).connect()
    with pytest.raises(AuthError):
        await factory(broker, "nobody", "x" * 20, "3.1.1")(Will("cityops/v1/agents/nobody/status", b"x")).connect()


async def test_unreachable_broker_is_a_transient_error():
    from hub.broker import free_port

    cfg = MqttConfig(host="127.0.0.1", port=free_port(), connect_timeout_s=1)
    t = MqttTransport(cfg, Will("cityops/v1/agents/a/status", b"x"), client_id="a", username="a", password="p")
    with pytest.raises(TransportError) as info:
        await t.connect()
    assert not isinstance(info.value, AuthError)
    assert "cannot connect" in str(info.value)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_acl_stops_an_agent_publishing_as_another(broker, hub, tmp_path, draft, protocol):
    """MQTT v5: the broker answers PUBACK 135 (not authorised). MQTT 3.1.1 (Mosquitto 2.0):
    it acknowledges and drops the message. Either way nothing arrives at the hub, and an
    outbox would keep the row, because only the hub's ack deletes it."""
    password = add_agent(broker, "agent-a")
    add_agent(broker, "agent-b")
    t = factory(broker, "agent-a", password, protocol)(Will(agent_topic("agent-a", Channel.STATUS), b""))
    await t.connect()
    victim = Outbox(tmp_path / "b.sqlite", "agent-b")  # an event claiming to be agent-b's
    victim.emit(draft("new", "forged"))
    (row,) = victim.take_backlog(1, 1 << 20)
    fut = t.publish(agent_topic("agent-b", Channel.EVENTS), row.payload, qos=1)
    if protocol == "5":
        with pytest.raises(TransportError, match="135"):
            await asyncio.wait_for(fut, 5)
    else:
        await asyncio.wait_for(fut, 5)  # acknowledged, silently dropped
    ok = t.publish(agent_topic("agent-a", Channel.TELEMETRY), b"{}", qos=1)
    await asyncio.wait_for(ok, 5)  # its own topics are fine
    await asyncio.sleep(0.2)
    assert hub.events == []
    await t.disconnect()
    victim.close()


async def test_broker_killed_then_restarted_loses_nothing(broker, tmp_path, draft):
    password = add_agent(broker, "agent-k")
    hub = PahoHub(broker)
    outbox = Outbox(tmp_path / "o.sqlite", "agent-k")
    session = session_for(outbox, factory(broker, "agent-k", password))
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    await until(lambda: session.state == SessionState.CONNECTED)
    for i in range(20):
        outbox.emit(draft("new", f"before-{i}"))
    await until(lambda: outbox.depth == 0)
    hub.close()
    broker.kill()
    await until(lambda: session.state == SessionState.CONNECTING, what="the loss noticed")
    for i in range(30):
        outbox.emit(draft("new", f"during-{i}"))  # taken while the broker is down
    await asyncio.sleep(1.0)  # a few reconnect attempts with backoff
    broker.start()
    hub = PahoHub(broker, client_id="standin-hub-2")
    await until(lambda: outbox.depth == 0, timeout=20, what="backlog delivered after the restart")
    stop.set()
    await asyncio.wait_for(task, 10)
    hub.close()
    outbox.close()
    assert {k for k in hub.unique() if k[0].startswith("during")} == {
        (f"during-{i}", 21 + i) for i in range(30)}


async def test_retained_config_and_status_roundtrip(broker, hub):
    """The hub's retained desired config reaches a subscribing transport."""
    from datetime import UTC, datetime

    from protocol.messages import DesiredConfig

    password = add_agent(broker, "agent-c")
    hub.publish(agent_topic("agent-c", Channel.CONFIG),
                encode(DesiredConfig(agent_id="agent-c", version=2, config={}, issued_at=datetime.now(UTC))),
                retain=True)
    t = factory(broker, "agent-c", password)(Will(agent_topic("agent-c", Channel.STATUS), b""))
    got = []
    t.on_message = lambda topic, payload: got.append((topic, payload))
    await t.connect()
    await t.subscribe([(agent_topic("agent-c", Channel.CONFIG), 1)])
    await until(lambda: got)
    assert got[0][0] == agent_topic("agent-c", Channel.CONFIG)
    await t.disconnect()
