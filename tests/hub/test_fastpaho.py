"""The receive-tuned paho client (hub/ingest/fastpaho.py) over a real Mosquitto: every
message arrives once and in order, nothing waits in the read-ahead buffer, large messages
survive, and every message is acknowledged to the broker (nothing is redelivered)."""

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

    def __init__(self, broker, cls=ReceiverClient, client_id: str = "fast-sub") -> None:
        self.broker, self.cls, self.client_id = broker, cls, client_id
        self.got: list[bytes] = []
        self.client: mqtt.Client | None = None

    def start(self) -> Sub:
        c = self.cls(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(self.broker.settings.hub_user, self.broker.settings.hub_password)
        subscribed = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda cl, u, msg: self.got.append(msg.payload)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        c.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        c.loop_start()
        assert subscribed.wait(10), "no SUBACK"
        self.client = c
        return self

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


def test_a_flood_arrives_once_in_order_and_is_acknowledged(broker):
    sub = Sub(broker).start()
    pub = _publisher(broker)
    payloads = [f'{{"n":{i}}}'.encode() + b"x" * (i % 300) for i in range(5000)]
    _publish_all(pub, payloads)
    _wait(lambda: len(sub.got) >= len(payloads), what="the flood")
    assert sub.got == payloads
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
    again = Sub(broker).start()
    _wait(lambda: b"marker" in again.got, what="the marker")
    time.sleep(0.3)
    assert again.got == [b"marker"]
    again.stop()
    pub.disconnect()
    pub.loop_stop()


def test_unacknowledged_messages_are_redelivered_when_the_handler_never_returned(broker):
    """A PUBACK leaves only after on_message returned: messages held by a handler that
    blocks when the connection dies are delivered again to the next session."""
    sub = Sub(broker).start()
    release = threading.Event()
    seen: list[bytes] = []

    def blocking(cl, u, msg):
        seen.append(msg.payload)
        if msg.payload == b"m-3":
            release.wait(10)  # the hub's writer is full: paho's loop waits here

    assert sub.client is not None
    sub.client.on_message = blocking
    pub = _publisher(broker)
    _publish_all(pub, [f"m-{i}".encode() for i in range(10)])
    _wait(lambda: b"m-3" in seen, what="m-3 in the handler")
    sub.client.socket().shutdown(socket.SHUT_RDWR)  # the connection dies mid-handler
    release.set()
    sub.client.loop_stop()
    again = Sub(broker).start()
    _wait(lambda: b"m-9" in again.got, what="redelivery")
    assert b"m-3" in again.got  # taken but never acknowledged: the broker sent it again
    assert set(seen[:3]) | set(again.got) >= {f"m-{i}".encode() for i in range(10)}
    again.stop()
    pub.disconnect()
    pub.loop_stop()


def test_a_large_message_survives_the_read_ahead(broker):
    sub = Sub(broker).start()
    pub = _publisher(broker)
    big = bytes(range(256)) * 800  # 200 KiB (a snapshot-sized message), over three read-ahead chunks
    _publish_all(pub, [b"before", big, b"after"])
    _wait(lambda: len(sub.got) >= 3, what="three messages")
    assert sub.got == [b"before", big, b"after"]
    sub.stop()
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
