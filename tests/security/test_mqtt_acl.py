"""What an agent's credentials cannot read. tests/test_broker.py covers publishing on
another agent's topics and reading another agent's acks; here an agent tries wildcards
and other agents' retained status, config and care state, live events and the broker's
$SYS tree, and receives only its own acks, config and care state; it can neither join
the hub's shared group nor take the hub's client ids, and the hub user cannot log in
where agents do; the same holds for an external broker run from `cityops-hub broker
write-config`'s files."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
import yaml

from protocol.topics import Channel, agent_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "hub" / "examples"

PW = {"agent-1": "pw-agent-1-0123456", "agent-2": "pw-agent-2-0123456",
      "agent-3": "pw-agent-3-0123456"}


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


def _sent_and_acked(hub, n: int, first_seq: int = 1, broker=None):
    """agent-2 sends ``n`` events (one a message); True when the hub acked every one."""
    from hubtest import TestAgent, sensor_event

    agent = TestAgent(broker or hub.broker, "agent-2", PW["agent-2"])
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


# -- an external broker: `cityops-hub broker write-config` (issue 17, point 10) ---------------
#
# The operator runs Mosquitto on the files write-config wrote (as systemd would: the
# binary on that mosquitto.conf, nothing else); the hub connects as an external broker.

HUB_PW = "hub-password-of-the-external-broker"


def _external_hub_yaml(tmp, agents_port: int, hub_port: int | None) -> Path:
    broker = {"managed": False, "data_dir": str(tmp / "broker"), "host": "127.0.0.1",
              "port": agents_port}
    if hub_port is not None:
        broker["hub_port"] = hub_port
    data = {"broker": broker, "database": str(tmp / "hub.sqlite"),
            "snapshots_dir": str(tmp / "snapshots"), "web": {"port": 0, "access_log": False},
            "grids": str(EXAMPLES / "grids.geojson"), "routing": str(EXAMPLES / "routing.yaml"),
            "ingest": {"receivers": 0, "batch_wait_ms": 2}}
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _two_free_ports() -> tuple[int, int]:
    from hub.broker import free_port

    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def _wait_accepted(host: str, port: int, user: str, password: str, proc=None) -> None:
    from hub.broker import mqtt_probe

    deadline = time.monotonic() + 10
    while mqtt_probe(host, port, user, password) != 0:
        assert proc is None or proc.poll() is None, "mosquitto exited"
        assert time.monotonic() < deadline, f"{user} not accepted on {host}:{port}"
        time.sleep(0.05)


@pytest.fixture
def external(tmp_path, monkeypatch):
    """write-config's files for a hub.yaml with broker.hub_port, and a Mosquitto run on them."""
    from hub.broker import find_mosquitto
    from hub.cli import main

    monkeypatch.setenv("CITYOPS_HUB_BROKER_PASSWORD", HUB_PW)
    agents_port, hub_port = _two_free_ports()
    path = _external_hub_yaml(tmp_path, agents_port, hub_port)
    assert main(["broker", "write-config", "--config", str(path)]) == 0
    conf = tmp_path / "broker" / "mosquitto.conf"
    with open(tmp_path / "mosquitto.stderr", "wb") as err:
        proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)],  # noqa: S603
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        _wait_accepted("127.0.0.1", hub_port, "hub", HUB_PW, proc)
        yield SimpleNamespace(path=path, conf=conf, proc=proc, agents_port=agents_port,
                              hub_port=hub_port, data_dir=tmp_path / "broker")
    finally:
        proc.terminate()
        proc.wait(10)


def test_write_config_gives_the_hub_a_listener_and_files_of_its_own(tmp_path, monkeypatch, capsys):
    """The external broker's files: the hub's listener on broker.hub_host:hub_port knows the
    hub user alone; the agents' listener knows agents alone and binds their client ids to
    their user names. An existing one-listener passwd is migrated: its agents are kept, the
    hub user moves out."""
    from hub.broker import verify_password
    from hub.cli import main

    monkeypatch.setenv("CITYOPS_HUB_BROKER_PASSWORD", HUB_PW)
    path = _external_hub_yaml(tmp_path, 1883, 1884)
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    (data_dir / "passwd").write_text("agent-1:$7$101$c2FsdA==$aGFzaA==\nhub:$7$101$c2FsdA==$b2xk\n")
    assert main(["broker", "write-config", "--config", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hub_listener"] == "127.0.0.1:1884" and out["agents_listener"] == "127.0.0.1:1883"
    conf = (data_dir / "mosquitto.conf").read_text().splitlines()
    assert "per_listener_settings true" in conf
    hub_at, agents_at = conf.index("listener 1884 127.0.0.1"), conf.index("listener 1883 127.0.0.1")
    assert hub_at < agents_at
    hub_part, agents_part = conf[hub_at:agents_at], conf[agents_at:]
    assert f"password_file {data_dir / 'passwd.hub'}" in hub_part
    assert f"acl_file {data_dir / 'acl.hub'}" in hub_part
    assert f"password_file {data_dir / 'passwd'}" in agents_part
    assert f"acl_file {data_dir / 'acl'}" in agents_part
    assert "use_username_as_clientid true" in agents_part
    assert "allow_anonymous false" in hub_part and "allow_anonymous false" in agents_part
    agents = dict(line.split(":", 1) for line in (data_dir / "passwd").read_text().splitlines())
    assert list(agents) == ["agent-1"]
    hub_file = dict(line.split(":", 1) for line in (data_dir / "passwd.hub").read_text().splitlines())
    assert list(hub_file) == ["hub"] and verify_password(HUB_PW, hub_file["hub"])
    assert "user hub" not in (data_dir / "acl").read_text().splitlines()
    assert "user hub" in (data_dir / "acl.hub").read_text().splitlines()


def test_write_config_without_a_hub_listener_says_what_to_set(tmp_path, monkeypatch, capsys):
    from hub.cli import main

    monkeypatch.setenv("CITYOPS_HUB_BROKER_PASSWORD", HUB_PW)
    path = _external_hub_yaml(tmp_path, 1883, None)
    assert main(["broker", "write-config", "--config", str(path)]) == 1
    assert "broker.hub_port" in capsys.readouterr().err
    assert not (tmp_path / "broker" / "mosquitto.conf").exists()


async def test_an_external_broker_from_write_config_keeps_agents_off_the_hubs_clients(external, clock):
    """A hub on an external Mosquitto run from write-config's files: an agent that connects
    with the hub's client ids (persistent session, reconnecting whenever pushed off) and
    subscribes to the hub's shared group disturbs nothing: the hub's link never drops and
    another agent's events are all stored and acked. The hub user cannot log in on the
    agents' listener, nor an agent on the hub's."""
    from hub.app import Hub
    from hub.broker import mqtt_probe
    from hub.config import build_setup, load_config

    config, _ = load_config(external.path)
    config.broker.reload_command = ["kill", "-HUP", str(external.proc.pid)]  # systemctl reload
    hub = Hub(build_setup(config), clock=clock, run_scheduler=False)
    await hub.start()
    squatters = []
    try:
        assert hub.link.settings.port == external.hub_port
        auth = hub.broker_auth
        broker = SimpleNamespace(host="127.0.0.1", port=external.agents_port, auth=auth,
                                 reload=auth.reload)
        await asyncio.to_thread(auth.set_users, PW)
        await asyncio.to_thread(auth.reload)
        for user in PW:
            await asyncio.to_thread(_wait_accepted, broker.host, broker.port, user, PW[user])
        drops = _count_link_disconnects(hub)
        prefix = hub.config.ingest.client_id
        # (two agents: one agent's two connections would push each other off for ever)
        for user, cid in (("agent-1", f"{prefix}-link"), ("agent-3", f"{prefix}-recv-0")):
            squatters.append(await asyncio.to_thread(_agent_client, broker, user, cid,
                                                     clean=False))
            await asyncio.sleep(0.3)  # a pushed-off hub client would be gone by now
        thief, seen = squatters[-1]
        done = threading.Event()
        thief.on_subscribe = lambda *a: done.set()
        thief.subscribe([(f, 1) for f in HUB_GROUP_FILTERS])
        assert await asyncio.to_thread(done.wait, 5)
        assert await asyncio.to_thread(_sent_and_acked, hub, 20, broker=broker)
        assert drops == [0] and hub.health()["ok"], hub.health()
        assert (await hub.read(lambda r: r.counts()))["messages_stored"] == 20
        assert seen["got"] == []
    finally:
        for c, _ in squatters:
            c.disconnect()
            c.loop_stop()
        await hub.stop()
    probe = functools.partial(asyncio.to_thread, mqtt_probe, "127.0.0.1")
    assert await probe(external.agents_port, "hub", HUB_PW) in (4, 5)
    assert await probe(external.hub_port, "agent-1", PW["agent-1"]) in (4, 5)
    assert await probe(external.hub_port, "hub", HUB_PW) == 0


async def test_an_external_broker_without_a_hub_listener_is_warned_about(broker, tmp_path, clock,
                                                                        caplog):
    """An existing external setup (one listener for hub and agents, no broker.hub_port)
    still runs, and start-up says what is at risk and how to fix it."""
    from hub.app import Hub
    from hub.config import build_setup, load_config

    path = _external_hub_yaml(tmp_path, broker.port, None)
    config, _ = load_config(path, env={"CITYOPS_HUB_BROKER_PASSWORD": broker.settings.hub_password})
    config.broker.data_dir = broker.settings.data_dir
    hub = Hub(build_setup(config), clock=clock, run_scheduler=False)
    with caplog.at_level(logging.WARNING, logger="hub.app"):
        await hub.start()
    try:
        warned = [r.getMessage() for r in caplog.records if "broker.hub_port" in r.getMessage()]
        assert len(warned) == 1, caplog.text
        assert "cityops-hub-link" in warned[0] and "push them off" in warned[0]
        assert "broker write-config" in warned[0]
        assert await asyncio.to_thread(_sent_and_acked, hub, 3, broker=broker)
    finally:
        await hub.stop()


def test_external_broker_warnings_name_the_hub_user_left_in_the_agents_file(tmp_path):
    from hub.broker import external_broker_warnings

    args = {"hub_user": "hub", "client_id_prefix": "cityops-hub",
            "password_path": tmp_path / "passwd"}
    assert external_broker_warnings(hub_port=1884, agent_users=["agent-1"], **args) == []
    (left,) = external_broker_warnings(hub_port=1884, agent_users=["agent-1", "hub"], **args)
    assert str(tmp_path / "passwd") in left and "write-config" in left
    (shared,) = external_broker_warnings(hub_port=None, agent_users=["agent-1"], **args)
    assert "broker.hub_port" in shared


def test_the_hubs_listener_must_be_its_own(tmp_path):
    from hubtest import make_config
    from pydantic import ValidationError

    external = {"managed": False, "port": 1883, "password": HUB_PW}
    with pytest.raises(ValidationError, match="must differ from broker.host:port"):
        make_config(tmp_path, broker={**external, "hub_port": 1883})
    with pytest.raises(ValidationError, match="hub listener needs its port"):
        make_config(tmp_path, broker={**external, "hub_port": 0})
    assert make_config(tmp_path, broker={**external, "hub_port": 1884}).broker.hub_port == 1884


async def test_a_managed_hub_listens_for_itself_on_broker_hub_port(tmp_path, clock):
    from hubtest import make_setup

    from hub.app import Hub
    from hub.broker import mqtt_probe

    _, hub_port = _two_free_ports()
    async with Hub(make_setup(tmp_path, broker={"hub_port": hub_port}), clock=clock,
                   run_scheduler=False) as hub:
        assert hub.broker.hub_port == hub_port and hub.link.settings.port == hub_port
        s = hub.broker.settings
        assert await asyncio.to_thread(mqtt_probe, "127.0.0.1", hub_port, s.hub_user,
                                       s.hub_password) == 0
