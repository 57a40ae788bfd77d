"""A bounded storm of malformed messages against a running hub, from an enrolled agent's
own credentials: random bytes, wrong schemas, invalid fields, spoofed agent ids inside
payloads, payloads over the protocol's limits (under and over the broker's), publishes
on other agents' and the hub's topics. Afterwards the hub still ingests valid traffic,
and every bad message is accounted for: a dead letter at the hub, or refused by the
broker (reason code 135 under MQTT 5; over-limit publishes dropped by the broker)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading

import paho.mqtt.client as mqtt
import pytest
from hubtest import TestAgent, await_for, make_setup, sensor_event

from hub.app import Hub
from protocol import limits
from protocol.codec import encode_events
from protocol.topics import Channel, agent_topic

pytestmark = pytest.mark.asyncio
STORM = int(os.environ.get("CITYOPS_STORM_MESSAGES", "240"))
AGENT, PASSWORD = "agent-1", "agent-password-0123456"


class Publisher:
    """One MQTT connection as the agent, recording the broker's answer to each publish."""

    def __init__(self, broker, protocol=mqtt.MQTTv5) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"storm-{protocol}",
                             protocol=protocol)
        self.c.username_pw_set(AGENT, PASSWORD)
        self.c.max_inflight_messages_set(50)
        self.codes: dict[int, int] = {}
        self.cond = threading.Condition()
        ready = threading.Event()
        self.c.on_connect = lambda *a: ready.set()
        self.c.on_publish = self._acked
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert ready.wait(10)

    def _acked(self, client, userdata, mid, reason, props) -> None:
        with self.cond:
            self.codes[mid] = reason.value if hasattr(reason, "value") else int(reason)
            self.cond.notify_all()

    def send(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.codes, 10), topic
            return self.codes[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def bad_payloads(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """(topic, payload) on the agent's own topics that the hub must refuse."""
    good = json.loads(encode_events([sensor_event(agent=AGENT, seq=10_000)]))
    own = [agent_topic(AGENT, c) for c in (Channel.EVENTS, Channel.STATUS, Channel.TELEMETRY)]
    out = []
    for i in range(n):
        kind = i % 7
        topic = rng.choice(own)
        if kind == 0:
            payload = rng.randbytes(rng.randint(0, 600))
        elif kind == 1:
            payload = json.dumps({**good, "schema": f"cityops.event/{rng.randint(2, 99)}", "n": i}).encode()
        elif kind == 2:  # a spoofed agent id inside the payload
            topic = agent_topic(AGENT, Channel.EVENTS)
            payload = json.dumps({**good, "agent_id": f"agent-{rng.randint(2, 9)}", "seq": i + 1}).encode()
        elif kind == 3:
            payload = json.dumps({**good, "seq": -i, "confidence": rng.choice([2, "x", None])}).encode()
        elif kind == 4:  # over the protocol's limit, under the broker's
            topic = agent_topic(AGENT, Channel.EVENTS)
            payload = json.dumps({**good, "seq": i + 1, "attributes": {"pad": "x" * (limits.MAX_EVENT_BYTES + i)}}).encode()
        elif kind == 5:
            topic = agent_topic(AGENT, Channel.SNAPSHOTS, f"ev-{i}")
            payload = b'{"schema":"cityops.snapshot/1"}\n' + rng.randbytes(100)
        else:
            payload = json.dumps({"not": "an event", "i": i}).encode()
        out.append((topic, payload))
    return out


async def test_malformed_storm_is_refused_counted_and_the_hub_keeps_working(tmp_path):
    rng = random.Random(int(os.environ.get("CITYOPS_FUZZ_SEED", "7")))
    hub = Hub(make_setup(tmp_path), run_scheduler=False)
    await hub.start()
    try:
        broker = hub.broker
        broker.auth.set_users({AGENT: PASSWORD, "agent-2": "agent-2-password-0123"})
        broker.reload()
        v5 = Publisher(broker)
        bad = bad_payloads(rng, STORM)
        codes = [v5.send(t, p) for t, p in bad]
        assert set(codes) == {0}, "the broker refused a message on the agent's own topics"
        # Topics that are not the agent's: the broker refuses them (135 not authorised).
        foreign = [agent_topic("agent-2", Channel.EVENTS), agent_topic("agent-2", Channel.STATUS),
                   agent_topic(AGENT, Channel.ACKS), agent_topic(AGENT, Channel.CONFIG),
                   f"cityops/v1/agents/{AGENT}/bogus", "cityops/v1/hub/anything", "$SYS/x", "other/topic"]
        spoofed = [(rng.choice(foreign), encode_events([sensor_event(agent="agent-2", seq=i + 1)]))
                   for i in range(STORM // 4)]
        refused_by_broker = sum(v5.send(t, p) == 135 for t, p in spoofed)
        assert refused_by_broker == len(spoofed)
        v5.close()
        # Over the broker's size limit: dropped by the broker (MQTT 3.1.1: no reason code,
        # and paho 2.x would disconnect on MQTT 5's 149), never seen by the hub.
        v3 = Publisher(broker, mqtt.MQTTv311)
        huge = [v3.send(agent_topic(AGENT, Channel.EVENTS), b"[" + b" " * limits.BROKER_MESSAGE_SIZE_LIMIT + b"]")
                for _ in range(3)]
        v3.close()
        assert len(huge) == 3

        def dead_letters() -> tuple[int, int]:
            with sqlite3.connect(tmp_path / "hub.sqlite") as db:
                return db.execute("SELECT coalesce(sum(count), 0), count(*) FROM dead_letters").fetchone()

        await await_for(lambda: dead_letters()[0] >= len(bad), timeout=30, what="every bad message kept")
        # Valid traffic still flows: a real agent's events are acknowledged and stored.
        agent = TestAgent(broker, AGENT, PASSWORD)
        try:
            agent.send(*[sensor_event(agent=AGENT, seq=s, event_id=f"ok-{s}", source=f"m{s}")
                         for s in range(1, 21)])
            await await_for(lambda: agent.acked(20), timeout=20, what="valid events acknowledged")
        finally:
            agent.close()
        assert hub.health()["ok"]
        total, rows = dead_letters()
        assert total == len(bad), (total, len(bad))  # every bad message, none twice, no good one
        with sqlite3.connect(tmp_path / "hub.sqlite") as db:
            seqs = [r[0] for r in db.execute("SELECT seq FROM messages WHERE agent_id = ?", (AGENT,))]
            assert sorted(seqs) == list(range(1, 21))
            assert db.execute("SELECT count(*) FROM messages WHERE agent_id = 'agent-2'").fetchone()[0] == 0
            reasons = dict(db.execute("SELECT reason, sum(count) FROM dead_letters GROUP BY reason"))
        assert {"malformed", "unknown_schema", "topic_mismatch", "too_large", "invalid"} <= set(reasons)
    finally:
        await hub.stop()
