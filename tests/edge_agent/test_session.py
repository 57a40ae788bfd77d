"""The MQTT session against the in-memory broker: birth and will, live events before
the backlog, a bounded in-flight window, hub acks, ack timeouts, reconnects, refused
credentials, full client queues, desired config, bad messages."""

from __future__ import annotations

import asyncio

import pytest
from agent_testlib import StandInHub, until

from edge_agent.config.sections import OutboxConfig, ReconnectConfig, TelemetryConfig
from edge_agent.outbox import Outbox
from edge_agent.session import Hooks, Session, SessionState
from edge_agent.transport import MemoryBroker, MemoryTransport
from protocol.codec import decode_status, encode
from protocol.messages import DesiredConfig, Status
from protocol.topics import Channel, agent_topic

pytestmark = pytest.mark.asyncio

AGENT = "agent-1"


@pytest.fixture
def broker():
    return MemoryBroker()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", AGENT, synchronous="normal")
    yield box
    box.close()


def make_session(outbox, broker, *, attempts=None, password="", max_queued=0, hooks=None, **cfg):
    def factory(will):
        if attempts is not None:
            attempts.append(will)
        return MemoryTransport(broker, will, username=AGENT, password=password, max_queued=max_queued)

    return Session(
        AGENT, outbox, factory,
        outbox_config=OutboxConfig(**{"batch_max_events": 50, "max_in_flight": 2, **cfg}),
        telemetry=TelemetryConfig(interval_s=1), reconnect=ReconnectConfig(initial_s=0.01, max_s=0.05),
        version="test", hooks=hooks,
    )


def hub_on(broker, **kw):
    hub = StandInHub(broker.publish, **kw)
    broker.subscribe("cityops/v1/agents/#", hub.on_message)
    return hub


async def start(session):
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    return stop, task


async def finish(stop, task):
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_birth_retained_clean_goodbye_and_will(outbox, broker, draft):
    hub = hub_on(broker)
    session = make_session(outbox, broker)
    stop, task = await start(session)
    await until(lambda: session.state == SessionState.CONNECTED)
    birth = decode_status(broker.retained[agent_topic(AGENT, Channel.STATUS)])
    assert (birth.state, birth.version, birth.boot_id) == ("online", "test", session.boot_id)
    # A dropped connection publishes the will (offline, connection lost) and reconnects.
    broker.clients[0].drop()
    assert decode_status(broker.retained[agent_topic(AGENT, Channel.STATUS)]).reason == "connection lost"
    await until(lambda: session.stats.connects == 2)
    await until(lambda: decode_status(broker.retained[agent_topic(AGENT, Channel.STATUS)]).state == "online")
    await finish(stop, task)
    last = decode_status(broker.retained[agent_topic(AGENT, Channel.STATUS)])
    assert (last.state, last.reason) == ("offline", "shutdown")
    assert [s.state for s in hub.status] == ["online", "offline", "online", "offline"]


async def test_backlog_is_batched_acked_and_deleted(outbox, broker, draft):
    for i in range(120):
        outbox.emit(draft("new", f"ev-{i}"))
    hub = hub_on(broker)
    session = make_session(outbox, broker)
    stop, task = await start(session)
    await until(lambda: outbox.depth == 0, what="outbox drained")
    await finish(stop, task)
    assert hub.keys() == [(f"ev-{i}", i + 1) for i in range(120)]
    assert hub.messages == 3  # 50 + 50 + 20


async def test_in_flight_window_bounds_the_replay_and_live_events_jump_the_queue(outbox, broker, draft):
    for i in range(500):
        outbox.emit(draft("new", f"old-{i}"))
    hub = hub_on(broker, auto_ack=False)
    session = make_session(outbox, broker)
    stop, task = await start(session)
    await until(lambda: hub.messages == 2)
    await asyncio.sleep(0.1)
    assert hub.messages == 2  # max_in_flight: no more until the hub acks
    outbox.emit(draft("new", "live-1"))
    await until(lambda: any(e.event_id == "live-1" for e in hub.events), what="live event")
    assert hub.messages == 3 and hub.events[-1].event_id == "live-1"
    for _ in range(20):
        hub.ack_all()
        await asyncio.sleep(0.01)
    await until(lambda: outbox.depth == 0)
    await finish(stop, task)
    assert len(hub.unique()) == 501 and len(hub.events) == 501  # no duplicates


async def test_unacked_rows_are_sent_again_after_the_ack_timeout(outbox, broker, draft):
    outbox.emit(draft("new", "ev-1"))
    hub = hub_on(broker, auto_ack=False)
    session = make_session(outbox, broker, ack_timeout_s=0.2)
    stop, task = await start(session)
    await until(lambda: len(hub.events) >= 2, what="a resend")
    assert hub.keys()[:2] == [("ev-1", 1), ("ev-1", 1)]  # the same event id and seq
    hub.ack_all()
    await until(lambda: outbox.depth == 0)
    await finish(stop, task)


async def test_broker_down_then_back_loses_nothing(outbox, broker, draft):
    hub = hub_on(broker)
    attempts = []
    session = make_session(outbox, broker, attempts=attempts)
    stop, task = await start(session)
    await until(lambda: session.state == SessionState.CONNECTED)
    broker.hold_pubacks = True
    for i in range(10):
        outbox.emit(draft("new", f"a-{i}"))
    await until(lambda: len(hub.events) == 10)
    broker.go_down()  # PUBACKs never came: the rows are pending again
    for i in range(10):
        outbox.emit(draft("new", f"b-{i}"))  # written while the broker is down
    n = len(attempts)
    await until(lambda: len(attempts) >= n + 3, what="retries with backoff")
    assert session.state == SessionState.CONNECTING
    broker.hold_pubacks = False
    broker.come_up()
    await until(lambda: outbox.depth == 0, what="everything delivered")
    await finish(stop, task)
    assert hub.unique() == {(f"a-{i}", i + 1) for i in range(10)} | {(f"b-{i}", i + 11) for i in range(10)}


async def test_refused_credentials_stop_retrying(outbox, broker, tmp_path):
    broker.passwords = {AGENT: "right"}
    attempts = []
    session = make_session(outbox, broker, attempts=attempts, password="wrong")
    session.credentials_path = tmp_path / "credentials.yaml"
    stop, task = await start(session)
    await until(lambda: session.state == SessionState.AUTH_FAILED)
    await asyncio.sleep(0.3)
    assert len(attempts) == 1
    assert "Bad user name or password" in session.last_error
    await finish(stop, task)


async def test_full_client_queue_is_retried_not_lost(outbox, broker, draft):
    hub = hub_on(broker)
    session = make_session(outbox, broker, max_queued=1, max_in_flight=5)
    stop, task = await start(session)
    await until(lambda: session.state == SessionState.CONNECTED)
    broker.hold_pubacks = True
    for i in range(5):
        outbox.emit(draft("new", f"ev-{i}"))
    await until(lambda: session.stats.publish_errors > 0, what="queue full")
    broker.hold_pubacks = False
    for _ in range(50):
        broker.release_pubacks()
        await asyncio.sleep(0.01)
        if outbox.depth == 0:
            break
    await until(lambda: outbox.depth == 0)
    await finish(stop, task)
    assert hub.unique() == {(f"ev-{i}", i + 1) for i in range(5)}


async def test_desired_config_is_applied_and_reported(outbox, broker):
    applied = []
    state = {"config_version": None, "config_error": None}

    async def apply(desired: DesiredConfig):
        applied.append(desired.version)
        if desired.config.get("bad"):
            state["config_error"] = "telemetry.interval_s: must be >= 1"
        else:
            state.update(config_version=desired.version, config_error=None)

    hooks = Hooks(status_fields=lambda: dict(state), apply_config=apply)
    session = make_session(outbox, broker, hooks=hooks)
    from datetime import UTC, datetime
    topic = agent_topic(AGENT, Channel.CONFIG)
    broker.publish(topic, encode(DesiredConfig(agent_id=AGENT, version=3, config={},
                                               issued_at=datetime.now(UTC))), retain=True)
    stop, task = await start(session)
    status_topic = agent_topic(AGENT, Channel.STATUS)
    await until(lambda: status_topic in broker.retained
                and decode_status(broker.retained[status_topic]).config_version == 3)
    broker.publish(topic, encode(DesiredConfig(agent_id=AGENT, version=4, config={"bad": 1},
                                               issued_at=datetime.now(UTC))), retain=True)
    await until(lambda: decode_status(broker.retained[status_topic]).config_error)
    status: Status = decode_status(broker.retained[status_topic])
    assert status.config_version == 3 and "interval_s" in status.config_error
    await finish(stop, task)
    assert applied == [3, 4]


async def test_bad_and_foreign_messages_are_counted_and_ignored(outbox, broker, draft):
    session = make_session(outbox, broker)
    stop, task = await start(session)
    await until(lambda: session.state == SessionState.CONNECTED)
    broker.publish(agent_topic(AGENT, Channel.ACKS), b"{not json")
    broker.publish(agent_topic(AGENT, Channel.ACKS), b'{"schema": "cityops.ack/1", "agent_id": "agent-2", "at": "2026-01-01T00:00:00Z"}')
    await until(lambda: session.stats.bad_messages == 2)
    assert session.state == SessionState.CONNECTED
    await finish(stop, task)


async def test_heartbeat_carries_outbox_and_component_parts(outbox, broker, draft):
    outbox.emit(draft("new", "x"))
    hub = hub_on(broker, auto_ack=False)
    hooks = Hooks(telemetry_parts=lambda: {"devices": {"wm-1": "down"}, "rejected_readings": 3})
    session = make_session(outbox, broker, hooks=hooks)
    stop, task = await start(session)
    await until(lambda: hub.telemetry)
    await finish(stop, task)
    tele = hub.telemetry[0]
    assert tele.devices == {"wm-1": "down"} and tele.rejected_readings == 3
    assert tele.outbox.depth == 1 and tele.boot_id == session.boot_id
