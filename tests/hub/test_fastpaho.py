"""The receive-tuned paho client (hub/ingest/fastpaho.py) over a real Mosquitto: every
message arrives once and in order, nothing waits in the read-ahead buffer, large messages
survive, and every message is acknowledged to the broker (nothing is redelivered). Each
runs twice: messages through paho's own reader to ``on_message``, and through the fast
path straight from the read-ahead buffer to ``on_raw_publish`` (what the hub uses)."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.ingest.fastpaho import SUPPORTED, BufferedSocket, ReceiverClient

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="this paho lacks the internals fastpaho tunes")

TOPIC = "cityops/v1/agents/a-1/events"


def _wait(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Sub:
    """A persistent-session subscriber on ReceiverClient (or stock paho)."""

    def __init__(self, broker, cls=ReceiverClient, client_id: str = "fast-sub", raw: bool = False) -> None:
        self.broker, self.cls, self.client_id, self.raw = broker, cls, client_id, raw
        self.got: list[bytes] = []
        self.topics: list[str] = []
        self.client: mqtt.Client | None = None

    def start(self) -> Sub:
        c = self.cls(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(self.broker.settings.hub_user, self.broker.settings.hub_password)
        subscribed = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        if self.raw:
            c.on_raw_publish = self._take
        else:
            c.on_message = lambda cl, u, msg: self._take(msg.topic, msg.payload)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        c.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        c.loop_start()
        assert subscribed.wait(10), "no SUBACK"
        self.client = c
        return self

    def _take(self, topic: str, payload: bytes) -> None:
        self.topics.append(topic)
        self.got.append(payload)

    def stop(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client.loop_stop()


def _publisher(broker) -> mqtt.Client:
    p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fast-pub", protocol=mqtt.MQTTv5)
    p.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
    p.max_inflight_messages_set(500)
    p.connect(broker.host, broker.port)
    p.loop_start()
    return p


def _publish_all(pub: mqtt.Client, payloads: list[bytes]) -> None:
    infos = []
    for body in payloads:
        info = pub.publish(TOPIC, body, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        infos.append(info)
    for info in infos:
        info.wait_for_publish(30)


PATHS = pytest.mark.parametrize("raw", [False, True], ids=["paho-reader", "fast-path"])


@PATHS
def test_a_flood_arrives_once_in_order_and_is_acknowledged(broker, raw):
    sub = Sub(broker, raw=raw).start()
    pub = _publisher(broker)
    payloads = [f'{{"n":{i}}}'.encode() + b"x" * (i % 300) for i in range(5000)]
    _publish_all(pub, payloads)
    _wait(lambda: len(sub.got) >= len(payloads), what="the flood")
    assert sub.got == payloads
    assert set(sub.topics) == {TOPIC}
    # The last message of a burst is not left waiting in the read-ahead buffer: a lone
    # message after a pause arrives promptly.
    time.sleep(0.2)
    t0 = time.monotonic()
    _publish_all(pub, [b"lone"])
    _wait(lambda: sub.got[-1:] == [b"lone"], timeout=2, what="a lone message")
    assert time.monotonic() - t0 < 2
    sub.stop()
    # Every message was PUBACKed: the broker redelivers nothing to the same session.
    _publish_all(pub, [b"marker"])
    again = Sub(broker, raw=raw).start()
    _wait(lambda: b"marker" in again.got, what="the marker")
    time.sleep(0.3)
    assert again.got == [b"marker"]
    again.stop()
    pub.disconnect()
    pub.loop_stop()


@PATHS
def test_unacknowledged_messages_are_redelivered_when_the_handler_never_returned(broker, raw):
    """A PUBACK leaves only after the handler returned: messages held by a handler that
    blocks when the connection dies are delivered again to the next session."""
    sub = Sub(broker, raw=raw).start()
    release = threading.Event()
    seen: list[bytes] = []

    def blocking(payload: bytes) -> None:
        seen.append(payload)
        if payload == b"m-3":
            release.wait(10)  # the hub's writer is full: paho's loop waits here

    assert sub.client is not None
    if raw:
        sub.client.on_raw_publish = lambda topic, payload: blocking(payload)
    else:
        sub.client.on_message = lambda cl, u, msg: blocking(msg.payload)
    pub = _publisher(broker)
    _publish_all(pub, [f"m-{i}".encode() for i in range(10)])
    _wait(lambda: b"m-3" in seen, what="m-3 in the handler")
    sub.client.socket().shutdown(socket.SHUT_RDWR)  # the connection dies mid-handler
    release.set()
    sub.client.loop_stop()
    again = Sub(broker, raw=raw).start()
    _wait(lambda: b"m-9" in again.got, what="redelivery")
    assert b"m-3" in again.got  # taken but never acknowledged: the broker sent it again
    assert set(seen[:3]) | set(again.got) >= {f"m-{i}".encode() for i in range(10)}
    again.stop()
    pub.disconnect()
    pub.loop_stop()


@PATHS
def test_a_large_message_survives_the_read_ahead(broker, raw):
    sub = Sub(broker, raw=raw).start()
    pub = _publisher(broker)
    big = bytes(range(256)) * 800  # 200 KiB (a snapshot-sized message), over three read-ahead chunks
    _publish_all(pub, [b"before", big, b"after"])
    _wait(lambda: len(sub.got) >= 3, what="three messages")
    assert sub.got == [b"before", big, b"after"]
    sub.stop()
    pub.disconnect()
    pub.loop_stop()


@PATHS
def test_fast_path_takes_every_qos_and_messages_with_properties(broker, raw):
    """QoS 0 and 1 with and without MQTT v5 properties come off the fast path; QoS 2 (left
    to paho's reader and its PUBREC/PUBREL exchange) reaches the same callback; topics and
    payloads are intact and nothing is redelivered afterwards."""
    sub = Sub(broker, raw=raw).start()
    pub = _publisher(broker)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 600
    props.ContentType = "application/json"
    props.UserProperty = [("trace", "x" * 200)]  # long enough to need a two-byte length
    other = "cityops/v1/agents/a-2/events"
    sent: list[tuple[str, bytes, int]] = []
    infos = []
    for i in range(300):  # within the publisher's in-flight window
        topic = TOPIC if i % 3 else other
        qos = (0, 1, 1, 2)[i % 4]
        body = f"q{qos}-{i}".encode()
        info = pub.publish(topic, body, qos=qos, properties=props if i % 2 else None)
        infos.append(info)
        sent.append((topic, body, qos))
    for info in infos:
        info.wait_for_publish(30)
    assert sub.client is not None
    sub.client.subscribe(other, qos=2)  # after the fact: only the next round reaches it
    time.sleep(0.3)
    want = sum(1 for t, _, _ in sent if t == TOPIC)
    _wait(lambda: len(sub.got) >= want, what=f"the first round ({len(sub.got)} of {want}: {sorted(set(b for t, b, q in sent if t == TOPIC) - set(sub.got))[:40]})")
    got = dict(zip(sub.got, sub.topics, strict=True))
    for topic, body, _qos in sent:
        if topic == TOPIC:
            assert got.pop(body) == TOPIC
    assert not got
    for qos in (0, 1):  # each QoS in publish order (QoS 2 completes on its own schedule)
        mine = [b for t, b, q in sent if t == TOPIC and q == qos]
        assert [b for b in sub.got if b.startswith(f"q{qos}-".encode())] == mine
    sub.got.clear()
    sub.topics.clear()
    for i, qos in enumerate((1, 2, 0, 1)):
        pub.publish(other, f"late-{i}".encode(), qos=qos, properties=props).wait_for_publish(10)
    _wait(lambda: len(sub.got) >= 4, what="the second round")
    assert sorted(sub.got) == [f"late-{i}".encode() for i in range(4)]
    assert set(sub.topics) == {other}
    sub.stop()
    again = Sub(broker, raw=True).start()
    time.sleep(0.5)
    assert again.got == []  # every QoS 1 and 2 message was acknowledged
    again.stop()
    pub.disconnect()
    pub.loop_stop()


def test_buffered_socket_serves_small_reads_from_one_recv():
    a, b = socket.socketpair()
    try:
        a.sendall(b"\x30\x05hello\x30\x02hi")
        time.sleep(0.05)
        s = BufferedSocket(b)
        assert s.recv(1) == b"\x30"
        assert s.pending() == 10  # read ahead: the rest is in memory
        assert s.recv(1) == b"\x05" and s.recv(5) == b"hello"
        assert s.recv(100) == b"\x30\x02hi"  # never more than was buffered
        assert s.pending() == 0
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(1)  # empty buffer, nothing on the wire: paho's "try again"
        a.close()
        assert s.recv(1) == b""  # the peer closed
        assert s.fileno() == b.fileno()  # everything else is the socket's own
    finally:
        b.close()
