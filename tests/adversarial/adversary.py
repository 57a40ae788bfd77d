"""The harness of the adversarial tests: a real hub, five well-behaved agents that
publish continuously and time every event from publish to the hub's ack, a hostile
agent's raw MQTT connection, an observer that counts what the broker delivered, and
read-only audits of the hub's SQLite file.

Everything here talks to the real broker and reads the real database; nothing reaches
into the hub's internals except its counters (``hub.writer.stats``) and ``health()``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hubtest import make_setup
from malformed import valid_event

from hub.app import Hub
from protocol.codec import decode_ack
from protocol.messages import Ack
from protocol.topics import Channel, agent_topic

NORMAL = [f"normal-{i}" for i in range(1, 6)]
HOSTILE = "hostile-1"
RATE_HZ = 20.0  # events a second from each normal agent (one event per message, as live events go)
P99_BOUND_S = 1.0


def password_of(agent_id: str) -> str:
    return f"pw-{agent_id}-0123456789"


def p99(values: list[float]) -> float:
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def _connect(client: mqtt.Client, host: str, port: int, timeout: float = 10.0, **kw: Any) -> int:
    """Connect and start the loop; the CONNACK reason code (0: accepted)."""
    done = threading.Event()
    out: dict[str, int] = {}

    def on_connect(c, userdata, flags, reason, props) -> None:
        code = reason.value if hasattr(reason, "value") else int(reason)
        out.setdefault("rc", code)
        done.set()

    client.on_connect = on_connect
    client.connect(host, port, **kw)
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise AssertionError(f"no CONNACK from {host}:{port} within {timeout}s")
    return out["rc"]


def _code(reason: Any) -> int:
    return reason.value if hasattr(reason, "value") else int(reason)


# -- a well-behaved agent ------------------------------------------------------------------------

class SteadyAgent:
    """Publishes one valid event every ``1/rate`` s (lifecycles new, update x3, end) and
    records, for every seq, when it was published and when an ack first covered it.

    It never resends: an event the hub loses stays unacknowledged and missing from the
    store, so a loss is seen as a loss, not hidden behind a retry."""

    def __init__(self, host: str, port: int, agent_id: str, rate_hz: float = RATE_HZ) -> None:
        self.agent_id = agent_id
        self.rate_hz = rate_hz
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.acks = 0
        self.rejected: dict[int, str] = {}  # seq -> the hub's reason (a valid event: a failure)
        self.last_seq = 0
        self._unacked: deque[int] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=agent_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(agent_id, password_of(agent_id))
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_ack
        self.host, self.port = host, port

    def start(self) -> SteadyAgent:
        rc = _connect(self.client, self.host, self.port)
        assert rc == 0, f"{self.agent_id}: the broker refused the connection ({rc})"
        granted = threading.Event()
        self.client.on_subscribe = lambda *a: granted.set()
        acks = agent_topic(self.agent_id, Channel.ACKS)
        self.client.subscribe(acks, qos=1)
        assert granted.wait(10), f"{self.agent_id}: no SUBACK"
        self.client.on_connect = lambda c, *a: c.subscribe(acks, qos=1)  # after a reconnect
        self._thread = threading.Thread(target=self._run, name=f"steady-{self.agent_id}", daemon=True)
        self._thread.start()
        return self

    def event(self, seq: int, now: datetime) -> dict[str, Any]:
        lifecycle, step = divmod(seq - 1, 5)
        kind = "new" if step == 0 else "end" if step == 4 else "update"
        return valid_event(self.agent_id, seq, f"{self.agent_id}-lc{lifecycle}", kind=kind,
                           source=f"{self.agent_id}-m{lifecycle % 3}", at=now, step=step)

    def publish(self, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        with self._lock:
            seq = body["seq"]
            self.sent[seq] = time.monotonic()
            self._unacked.append(seq)
            self.last_seq = max(self.last_seq, seq)
        info = self.client.publish(agent_topic(self.agent_id, Channel.EVENTS), payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise AssertionError(f"{self.agent_id}: paho refused seq {seq}: {mqtt.error_string(info.rc)}")

    def _run(self) -> None:
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            n += 1
            self.publish(self.event(self.last_seq + 1, datetime.now(UTC)))
            delay = t0 + n / self.rate_hz - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break

    def _on_ack(self, client, userdata, msg) -> None:
        try:
            ack = decode_ack(msg.payload, agent_id=self.agent_id)
        except Exception:  # noqa: BLE001 - a bad ack is a failure the test reports
            self.bad_ack = msg.payload[:200]
            return
        now = time.monotonic()
        with self._lock:
            self.acks += 1
            self._note(ack, now)

    def _note(self, ack: Ack, now: float) -> None:
        for r in ack.rejected:
            self.rejected[r.seq] = r.reason
        while self._unacked and self._unacked[0] <= ack.upto:
            self.acked.setdefault(self._unacked.popleft(), now)
        if ack.ranges and self._unacked:
            rest = deque()
            for seq in self._unacked:
                if ack.covers(seq):
                    self.acked.setdefault(seq, now)
                else:
                    rest.append(seq)
            self._unacked = rest

    def stop_publishing(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.last_seq

    def published_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for s in self.sent.values() if s >= t)

    def unacked(self) -> list[int]:
        with self._lock:
            return list(self._unacked)

    def latencies(self, t_from: float, t_to: float) -> list[float]:
        """Publish-to-ack times of the events published in [t_from, t_to]; never acked: inf."""
        with self._lock:
            return [self.acked.get(seq, math.inf) - at for seq, at in self.sent.items()
                    if t_from <= at <= t_to]

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """The five normal agents together."""

    def __init__(self, host: str, port: int, ids: Iterable[str] = NORMAL) -> None:
        self.agents = [SteadyAgent(host, port, a) for a in ids]

    def start(self) -> Fleet:
        for a in self.agents:
            a.start()
        return self

    def published_since(self, t: float) -> int:
        return sum(a.published_since(t) for a in self.agents)

    def wait_traffic(self, t: float, events: int, timeout: float = 30.0) -> None:
        """Until the fleet has published ``events`` events since ``t`` (an attack lasts
        at least that much normal traffic)."""
        wait_until(lambda: self.published_since(t) >= events, timeout,
                   f"{events} normal events published during the attack")

    def warmed(self, acks_each: int = 5) -> bool:
        return all(len(a.acked) >= acks_each for a in self.agents)

    def stop(self) -> dict[str, int]:
        return {a.agent_id: a.stop_publishing() for a in self.agents}

    def all_acked(self) -> bool:
        return all(not a.unacked() for a in self.agents)

    def unacked(self) -> dict[str, list[int]]:
        return {a.agent_id: a.unacked()[:10] for a in self.agents if a.unacked()}

    def rejected(self) -> dict[str, dict[int, str]]:
        """Valid events the hub refused, by agent (there should be none)."""
        return {a.agent_id: dict(list(a.rejected.items())[:5]) for a in self.agents if a.rejected}

    def latencies(self, t_from: float, t_to: float) -> list[float]:
        return [x for a in self.agents for x in a.latencies(t_from, t_to)]

    def close(self) -> None:
        for a in self.agents:
            a.close()


# -- the hostile agent's connection ----------------------------------------------------------

class Raw:
    """One MQTT connection with anyone's credentials: publishes pipelined and keeps the
    broker's answer to each (MQTT 5 PUBACK reason codes), subscribes to anything, keeps
    what it receives (acks decoded when they are its own)."""

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 client_id: str | None = None, protocol: int = mqtt.MQTTv5,
                 clean_start: bool = True, session_expiry_s: int = 0,
                 subscribe: Iterable[str] = (), reconnect: bool = True) -> None:
        self.username = username
        self.protocol = protocol
        self.codes: dict[int, int] = {}
        self.received: list[tuple[str, bytes]] = []
        self.acks: list[Ack] = []
        self.disconnects = 0
        self.granted: list[int] = []
        self._cond = threading.Condition()
        cid = client_id if client_id is not None else username
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(50)
        self.client.max_queued_messages_set(0)
        if not reconnect:
            self.client.reconnect_delay_set(3600, 3600)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        kw: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            kw["clean_start"] = clean_start
            if session_expiry_s:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = session_expiry_s
                kw["properties"] = props
        self.connack = _connect(self.client, host, port, **kw)
        topics = list(subscribe)
        if topics and self.connack == 0:
            self.client.subscribe([(t, 1) for t in topics])
            with self._cond:
                self._cond.wait_for(lambda: self.granted, 10)

    def _on_publish(self, client, userdata, mid, reason, props) -> None:
        with self._cond:
            self.codes[mid] = _code(reason)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.received.append((msg.topic, msg.payload))
            if msg.topic == agent_topic(self.username, Channel.ACKS):
                try:
                    self.acks.append(decode_ack(msg.payload, agent_id=self.username))
                except Exception:  # noqa: BLE001 - kept raw in .received
                    pass
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, props) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, props) -> None:
        with self._cond:
            self.granted = [_code(r) for r in reasons]
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Queue a publish; the message id (its answer lands in ``codes``)."""
        while True:
            info = self.client.publish(topic, payload, qos=qos)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                return info.mid
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                raise AssertionError(f"paho refused a publish on {topic}: {mqtt.error_string(info.rc)}")
            with self._cond:
                self._cond.wait(0.05)

    def answers(self, mids: list[int], timeout: float = 60.0) -> list[int]:
        """The broker's reason code for each of ``mids`` (MQTT 3.1.1: always 0)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: all(m in self.codes for m in mids), timeout)
        assert ok, f"the broker answered {sum(m in self.codes for m in mids)} of {len(mids)} publishes"
        return [self.codes[m] for m in mids]

    def send(self, topic: str, payload: bytes, timeout: float = 30.0) -> int:
        return self.answers([self.publish(topic, payload)], timeout)[0]

    def events(self, payload: bytes) -> int:
        """Publish on its own events topic; the message id."""
        return self.publish(agent_topic(self.username, Channel.EVENTS), payload)

    def wait_ack(self, seq: int, timeout: float = 20.0) -> Ack:
        """The first ack that covers ``seq`` (or rejects it)."""
        def found() -> Ack | None:
            for a in self.acks:
                if a.covers(seq) or any(r.seq == seq for r in a.rejected):
                    return a
            return None
        with self._cond:
            ok = self._cond.wait_for(found, timeout)
        assert ok, f"{self.username}: no ack covered seq {seq} within {timeout:.0f}s"
        return found()

    def rejected(self) -> dict[int, str]:
        with self._cond:
            return {r.seq: r.reason for a in self.acks for r in a.rejected}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Observer:
    """The broker's own count of what it accepted: a plain (not shared) subscription with
    the hub's credentials to every agent's events topic, independent of the hub."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.by_topic: Counter[str] = Counter()
        self.digests: Counter[tuple[str, str]] = Counter()
        self._cond = threading.Condition()
        self.raw = Raw(host, port, username, password, client_id="adversarial-observer",
                       subscribe=["cityops/v1/agents/+/events"])
        assert self.raw.connack == 0, f"observer refused: {self.raw.connack}"
        assert self.raw.granted == [1], f"observer subscription not granted: {self.raw.granted}"
        self.raw.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.by_topic[msg.topic] += 1
            self.digests[(msg.topic, hashlib.sha256(msg.payload).hexdigest())] += 1
            self._cond.notify_all()

    def count(self, topic: str) -> int:
        with self._cond:
            return self.by_topic[topic]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            ok = self._cond.wait_for(predicate, timeout)
        assert ok, f"observer: timed out waiting for {what}"

    def close(self) -> None:
        self.raw.close()


# -- the hub ------------------------------------------------------------------------------------

def hub_client_settings(hub: Hub):
    """Where and as whom the hub's own clients connect (the observer does the same)."""
    assert hub.link is not None
    return hub.link.settings


def agent_endpoint(hub: Hub) -> tuple[str, int]:
    """Where agents connect."""
    assert hub.broker is not None
    return hub.broker.host, hub.broker.port


@asynccontextmanager
async def running_hub(tmp: Path, agents: Iterable[str]):
    """A hub as ``hub/examples/hub.yaml`` runs it (managed broker, one receiver process,
    10 ms batches), with ``agents`` given broker credentials."""
    setup = make_setup(tmp, ingest={"receivers": 1, "batch_wait_ms": 10},
                       verification={"kind": "none"}, web={"metrics_public": True})
    hub = Hub(setup, run_scheduler=False)
    await hub.start()
    try:
        assert hub.broker is not None
        hub.broker.auth.set_users({a: password_of(a) for a in agents})
        hub.broker.reload()
        yield hub
    finally:
        await hub.stop()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{'name{labels}': value}`` (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# -- what the hub stored --------------------------------------------------------------------------

def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True, timeout=30)


def stored_seqs(db: Path, agent_id: str) -> list[int]:
    with _ro(db) as c:
        return sorted(r[0] for r in c.execute("SELECT seq FROM messages WHERE agent_id = ?", (agent_id,)))


def dead_letters(db: Path, agent_id: str | None = None) -> dict[str, int]:
    """Dead letters by reason (each counted as many times as it arrived)."""
    sql = "SELECT reason, sum(count) FROM dead_letters"
    args: tuple = ()
    if agent_id is not None:
        sql += " WHERE agent_id = ?"
        args = (agent_id,)
    with _ro(db) as c:
        return {r: int(n) for r, n in c.execute(sql + " GROUP BY reason", args)}


def case_of(db: Path, agent_id: str, event_id: str) -> int | None:
    """The case an event lifecycle was placed in, if any."""
    with _ro(db) as c:
        row = c.execute("SELECT e.case_id FROM events e JOIN cases c ON c.id = e.case_id "
                        "WHERE e.agent_id = ? AND e.event_id = ?", (agent_id, event_id)).fetchone()
    return row[0] if row else None


@dataclass
class Verdict:
    """What the generic checks found, in words a failing assertion can show."""

    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> None:
        if not ok:
            self.problems.append(text)

    def assert_ok(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def exactly_once(db: Path, agent_id: str, last_seq: int) -> str | None:
    """None when seqs 1..last_seq are each stored once; else what is wrong."""
    seqs = stored_seqs(db, agent_id)
    if len(seqs) != len(set(seqs)):
        return f"{agent_id}: a seq is stored twice"
    missing = sorted(set(range(1, last_seq + 1)) - set(seqs))
    extra = sorted(set(seqs) - set(range(1, last_seq + 1)))
    if missing or extra:
        return (f"{agent_id}: {len(missing)} of {last_seq} events lost (first {missing[:8]}); "
                f"{len(extra)} unexpected seqs {extra[:8]}")
    return None


# -- the storm from a process of its own ---------------------------------------------------------

@dataclass
class BlastOrder:
    """What the storm's child process sends, and to whom."""

    host: str  # the agents' listener
    port: int
    hub_host: str  # the hub's own listener (the observer uses the hub's credentials)
    hub_port: int
    hub_user: str
    hub_password: str
    small: list[bytes]  # under the broker's limit: MQTT 5, PUBACK codes kept
    big: list[bytes]  # over it: MQTT 3.1.1 (paho 2.x drops an MQTT 5 connection on the refusal)
    marker: bytes  # a valid event sent last, on the 3.1.1 connection
    marker_seq: int


def blast(order: BlastOrder) -> dict[str, Any]:
    """Run in a child process, so the attacker's and the observer's CPU is not the hub's
    or the normal agents' (one GIL each). The observer subscribes first; the storm goes
    out pipelined; once the hub acks the marker, everything before it has been through
    the broker. Times are ``time.monotonic()`` (one clock for every process here)."""
    topic = agent_topic(HOSTILE, Channel.EVENTS)
    observer = Observer(order.hub_host, order.hub_port, order.hub_user, order.hub_password)
    try:
        v5 = Raw(order.host, order.port, HOSTILE, password_of(HOSTILE),
                 subscribe=[agent_topic(HOSTILE, Channel.ACKS)])
        t_start = time.monotonic()
        try:
            mids = [v5.events(p) for p in order.small]
            codes = v5.answers(mids, 180)
        finally:
            v5.close()
        v3 = Raw(order.host, order.port, HOSTILE, password_of(HOSTILE), protocol=mqtt.MQTTv311,
                 subscribe=[agent_topic(HOSTILE, Channel.ACKS)])
        try:
            for p in order.big:
                v3.events(p)
            v3.events(order.marker)
            ack = v3.wait_ack(order.marker_seq, 120)
        finally:
            v3.close()
        t_end = time.monotonic()
        accepted = sum(c == 0 for c in codes)
        observer.wait(lambda: observer.count(topic) >= accepted + 1, 30,
                      "the broker to deliver the storm to the observer")
        digests = {sha: n for (t, sha), n in observer.digests.items() if t == topic}
    finally:
        observer.close()
    return {"codes": codes, "digests": digests, "ack": ack, "t_start": t_start, "t_end": t_end}
