"""`cityops-agent run` as a real process with a real Mosquitto, a real Modbus simulator
and a stand-in hub: events end to end, clean SIGTERM, kill -9 between write and publish
and between publish and ack (no loss; repeats only as the same event id and seq),
desired config applied and refused."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest
from agent_testlib import MAPS, AgentProcess, PahoHub, until

from edge_agent.outbox.inspect import inspect_outbox
from protocol.codec import encode
from protocol.messages import DesiredConfig
from protocol.topics import Channel, agent_topic
from simulators.modbus import ModbusSimServer, SimulatedDevice

pytestmark = pytest.mark.asyncio

AGENT = "estate-9"


def smoke_map():
    from edge_agent.config import load_register_map

    return load_register_map(MAPS / "smoke_detector.yaml")[0]


def setup_agent(tmp_path, broker, modbus_port: int) -> AgentProcess:
    password = secrets.token_urlsafe(18)
    broker.auth.set_user(AGENT, password)
    broker.reload()
    (tmp_path / "credentials.yaml").write_text(f"username: {AGENT}\npassword: {password}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    config = tmp_path / "agent.yaml"
    devices = "\n".join(f"""\
  - id: smoke-{u}
    model: smoke
    unit_id: {u}
    tcp: {{host: 127.0.0.1, port: {modbus_port}}}
    poll_period_s: 0.05
    rules:
      smoke_alarm: {{register: status.alarm, clear_after_s: 0}}""" for u in (1, 2, 3))
    config.write_text(f"""\
agent:
  id: {AGENT}
  grid_id: grid-3
  location: {{lat: 31.23, lon: 121.47, place: "Estate 9"}}
  data_dir: data
mqtt:
  host: {broker.host}
  port: {broker.port}
  credentials_file: credentials.yaml
  reconnect: {{initial_s: 0.1, max_s: 0.5}}
outbox: {{ack_timeout_s: 30, state_flush_s: 0.1}}
telemetry: {{interval_s: 1}}
logging: {{level: info}}
register_maps:
  smoke: {MAPS}/smoke_detector.yaml
devices:
{devices}
""")
    return AgentProcess(config, tmp_path / "agent.log")


async def toggle_alarms(server, times: int) -> None:
    """Each toggle of a detector's alarm flag is one new and one end event."""
    start = {u: server[u].requests for u in (1, 2, 3)}
    await until(lambda: all(server[u].requests > start[u] + 1 for u in (1, 2, 3)),
                timeout=20, what="the agent polling")
    for i in range(times):
        dev = server[1 + i % 3]
        dev.set_flag("status.alarm", True)
        await asyncio.sleep(0.15)
        dev.set_flag("status.alarm", False)
        await asyncio.sleep(0.15)


async def test_events_flow_and_sigterm_keeps_the_outbox(tmp_path, broker):
    async with ModbusSimServer([SimulatedDevice(u, smoke_map()) for u in (1, 2, 3)]) as server:
        agent = setup_agent(tmp_path, broker, server.port)
        hub = PahoHub(broker)
        try:
            agent.start()
            await until(lambda: any(s.state == "online" for s in hub.status), timeout=20, what="birth")
            await toggle_alarms(server, 2)
            await until(lambda: len(hub.events) == 4, what="new+end twice")
            assert [e.kind.value for e in hub.events] == ["new", "end", "new", "end"]
            assert hub.events[0].event_id == hub.events[1].event_id != hub.events[2].event_id
            assert hub.events[0].location.grid_id == "grid-3"
            await until(lambda: hub.telemetry and hub.telemetry[-1].devices == {
                "smoke-1": "up", "smoke-2": "up", "smoke-3": "up"}, what="telemetry")
            await until(lambda: inspect_outbox(tmp_path / "data" / "outbox.sqlite")["depth"] == 0)
            hub.hub.auto_ack = False  # the hub stops acking: the next events stay in the outbox
            await toggle_alarms(server, 1)
            await until(lambda: len(hub.events) == 6)
            assert agent.terminate() == 0
            assert hub.status[-1].state == "offline" and hub.status[-1].reason == "shutdown"
            info = inspect_outbox(tmp_path / "data" / "outbox.sqlite")
            assert info["depth"] == 2 and info["next_seq"] == 7
            assert "Traceback" not in agent.log()
        finally:
            agent.ensure_stopped()
            hub.close()


async def test_kill9_between_write_and_publish_loses_nothing(tmp_path, broker):
    async with ModbusSimServer([SimulatedDevice(u, smoke_map()) for u in (1, 2, 3)]) as server:
        agent = setup_agent(tmp_path, broker, server.port)
        broker.stop()  # the agent writes but cannot publish
        try:
            agent.start()
            await toggle_alarms(server, 3)
            outbox = tmp_path / "data" / "outbox.sqlite"
            await until(lambda: outbox.exists() and inspect_outbox(outbox)["depth"] == 6, timeout=20)
            agent.kill9()
            written = inspect_outbox(outbox, rows=100)["rows"]
            assert [r["state"] for r in written] == ["pending"] * 6
            broker.start()
            hub = PahoHub(broker)
            agent.start()
            await until(lambda: inspect_outbox(outbox)["depth"] == 0, timeout=20, what="delivered")
            assert hub.unique() == {(r["event_id"], r["seq"]) for r in written}
            assert len(hub.events) == 6
        finally:
            agent.ensure_stopped()
            if "hub" in locals():
                hub.close()


async def test_kill9_between_publish_and_ack_repeats_only_the_same_events(tmp_path, broker):
    async with ModbusSimServer([SimulatedDevice(u, smoke_map()) for u in (1, 2, 3)]) as server:
        agent = setup_agent(tmp_path, broker, server.port)
        hub = PahoHub(broker, auto_ack=False)
        outbox = tmp_path / "data" / "outbox.sqlite"
        try:
            agent.start()
            await toggle_alarms(server, 3)
            await until(lambda: len(hub.events) == 6, timeout=20, what="published, not acked")
            await until(lambda: inspect_outbox(outbox)["by_state"].get("sent") == 6, what="PUBACKed")
            agent.kill9()
            before = hub.keys()
            agent.start()
            await until(lambda: len(hub.events) == 12, timeout=20, what="sent again after the crash")
            assert hub.keys()[6:] == before  # the same (event_id, seq), in the same order
            hub.ack_all()
            await until(lambda: inspect_outbox(outbox)["depth"] == 0, what="deleted after the ack")
            await toggle_alarms(server, 1)
            await until(lambda: len(hub.unique()) == 8, what="new events continue the seq")
            assert max(seq for _, seq in hub.unique()) == 8
        finally:
            agent.ensure_stopped()
            hub.close()


async def test_desired_config_applied_then_a_bad_one_refused(tmp_path, broker):
    async with ModbusSimServer([SimulatedDevice(u, smoke_map()) for u in (1, 2, 3)]) as server:
        agent = setup_agent(tmp_path, broker, server.port)
        hub = PahoHub(broker)
        topic = agent_topic(AGENT, Channel.CONFIG)

        def push(version, config):
            hub.publish(topic, encode(DesiredConfig(agent_id=AGENT, version=version, config=config,
                                                    issued_at=datetime.now(UTC))), retain=True)

        try:
            push(2, {"devices": [{"id": "smoke-1", "model": "smoke", "unit_id": 1,
                                  "tcp": {"host": "127.0.0.1", "port": server.port},
                                  "poll_period_s": 0.05}]})  # only one device, no rules
            agent.start()
            await until(lambda: hub.status and hub.status[-1].config_version == 2, timeout=20)
            await until(lambda: hub.telemetry and set(hub.telemetry[-1].devices) == {"smoke-1"})
            push(3, {"telemetry": {"interval_s": 0}, "devices": [{"id": "x"}]})
            await until(lambda: hub.status[-1].config_error, what="refusal reported")
            status = hub.status[-1]
            assert status.config_version == 2 and status.state == "online"
            assert "v3" in status.config_error and "telemetry.interval_s" in status.config_error
            n = len(hub.telemetry)
            await until(lambda: len(hub.telemetry) > n + 1, what="still running")
            assert set(hub.telemetry[-1].devices) == {"smoke-1"}
        finally:
            agent.ensure_stopped()
            hub.close()
