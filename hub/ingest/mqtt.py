"""Thin paho-mqtt 2.x shells: the hub's MQTT clients.

* :class:`MqttClient` — one MQTT v5 connection with the hub's credentials (TLS when
  configured), automatic reconnect with backoff, refused connections classified (bad
  credentials are reported, not retried in a tight loop), every publish return code
  checked.
* :class:`Receiver` — subscribes to agent channels (as a shared subscription
  ``$share/{group}/...`` so several receivers split the load) and hands raw
  ``(topic, payload)`` pairs to a sink in batches. It does nothing else in paho's
  network thread: decoding and storing happen in the writer. When the sink falls behind,
  the receiver blocks paho's loop, so TCP pushes back on the broker instead of memory
  growing without bound.

Nothing here raises into paho's network loop.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.mqttcodes import auth_refusal
from protocol.topics import QOS, Channel, subscription

from ..broker import BrokerError
from .fastpaho import SUPPORTED as FAST_PAHO
from .fastpaho import ReceiverClient

__all__ = ["MqttClient", "MqttSettings", "Receiver", "ReceiverSettings"]

log = logging.getLogger(__name__)

Raw = tuple[str, bytes]


@dataclass
class MqttSettings:
    host: str
    port: int
    username: str
    password: str
    client_id: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 0  # >0: a persistent session the broker keeps while we are away
    tls: bool = False


class MqttClient:
    def __init__(self, settings: MqttSettings, *, subscriptions: Sequence[tuple[str, int]] = (),
                 on_message: Callable[[str, bytes], None] | None = None,
                 max_queued: int = 50_000, client_class: type[mqtt.Client] = mqtt.Client) -> None:
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.failure: str | None = None
        self.publish_failures = 0
        c = client_class(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         protocol=mqtt.MQTTv5)
        c.username_pw_set(settings.username, settings.password)
        if settings.tls or settings.ca_file:
            c.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file,
                      keyfile=settings.key_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.max_queued_messages_set(max_queued)
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._granted
        c.on_message = self._message
        self.client = c

    # -- paho callbacks (never raise) ------------------------------------------------------------
    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.failure = f"broker refused the connection: {reason} ({reason.value})"
            log.error("%s: %s", self.settings.client_id, self.failure)
            if auth_refusal(reason.value):  # the one list: protocol.mqttcodes
                # Wrong credentials do not fix themselves: stop instead of hammering.
                client.disconnect()
            return
        self.failure = None
        self.connected.set()
        if self.subscriptions:
            rc, _ = client.subscribe([(t, q) for t, q in self.subscriptions])
            if rc != mqtt.MQTT_ERR_SUCCESS:
                log.error("subscribe failed: %s", mqtt.error_string(rc))
        else:
            self.subscribed.set()

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        self.connected.clear()
        if reason.value != 0:
            log.warning("%s disconnected: %s", self.settings.client_id, reason)

    def _granted(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(r) for r in reason_codes if r.is_failure]
        if bad:
            self.failure = f"subscription refused: {', '.join(bad)}"
            log.error("%s: %s", self.settings.client_id, self.failure)
        self.subscribed.set()

    def _message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, msg.payload)
        except Exception:
            log.exception("message handler failed on %s", msg.topic)

    # -- life ------------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        s = self.settings
        props = None
        if s.session_expiry_s:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry_s
        try:
            self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s,
                                      clean_start=not s.session_expiry_s, properties=props)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach the broker at {s.host}:{s.port}: {exc}") from exc
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.subscribed.is_set():
                return
            if self.failure and "refused" in self.failure:
                break
            time.sleep(0.02)
        self.stop()
        raise BrokerError(
            f"{s.client_id}: could not connect and subscribe to {s.host}:{s.port} within "
            f"{timeout:.0f}s: {self.failure or 'no answer (is the broker running?)'}"
        )

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            # paho closes the wake-up socket pair that loop_start opened only when the
            # client object is finalised, which may be much later: close it now, so a
            # process that starts and stops links (tests, reloads) does not run its file
            # descriptors past select()'s limit of 1024 (paho's loop then dies silently).
            reset = getattr(self.client, "_reset_sockets", None)
            if reset is not None:
                reset()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish. False (and counted) when paho refuses it: not connected with a
        full queue, or flooded (``MQTT_ERR_QUEUE_SIZE``)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.publish_failures += 1
            log.warning("publish to %s refused by paho: %s", topic, mqtt.error_string(info.rc))
            return False
        return True


@dataclass
class ReceiverSettings:
    mqtt: MqttSettings
    channels: list[str] = field(default_factory=lambda: [
        Channel.EVENTS.value, Channel.TELEMETRY.value, Channel.SNAPSHOTS.value, Channel.CLIPS.value])
    shared_group: str | None = "hub"
    handover: int = 500  # messages per hand-over under load
    flush_s: float = 0.003  # a message waits at most about this long before a hand-over
    decode: str = "all"  # in a receiver process: "all", "batches" or "none"


class Receiver:
    """Receive agent messages and hand them to ``sink`` in batches.

    paho's network thread appends each message to a buffer and hands the buffer over
    itself once it holds ``handover`` messages; a flusher thread hands over whatever
    waited longer than ``flush_s``. When ``sink`` blocks (the writer is full), paho's
    loop blocks with it and stops reading the socket: TCP pushes back on the broker.
    Hand-overs keep arrival order.
    """

    def __init__(self, settings: ReceiverSettings, sink: Callable[[list[Raw]], None]) -> None:
        self.settings = settings
        self.sink = sink
        subs = [(subscription(ch, shared_group=settings.shared_group), QOS[Channel(ch)])
                for ch in settings.channels]
        # The receive-tuned paho client (fewer system calls a message; see fastpaho).
        self.mqtt = MqttClient(settings.mqtt, subscriptions=subs,
                               client_class=ReceiverClient if FAST_PAHO else mqtt.Client)
        client = self.mqtt.client
        if isinstance(client, ReceiverClient):
            client.on_raw_publish = self._on_raw  # the hot path: PUBLISH bytes straight here
        else:
            client.on_message = lambda c, u, msg: self._on_raw(msg.topic, msg.payload)
        self._buf: list[Raw] = []
        self._buf_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._oldest = 0.0
        self._stop = threading.Event()
        self.received = 0
        self._flusher = threading.Thread(target=self._flush_loop, name="hub-receiver-flush",
                                         daemon=True)

    def _on_raw(self, topic: str, payload: bytes) -> None:
        with self._buf_lock:
            if not self._buf:
                self._oldest = time.monotonic()
            self._buf.append((topic, payload))
            self.received += 1
            full = len(self._buf) >= self.settings.handover
        if full:
            self._hand_over()

    def _hand_over(self) -> None:
        with self._send_lock:
            with self._buf_lock:
                batch, self._buf = self._buf, []
            if not batch:
                return
            try:
                self.sink(batch)
            except Exception:
                log.exception("receiver sink failed; %d messages not handed over", len(batch))

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.settings.flush_s):
            if self._buf and time.monotonic() - self._oldest >= self.settings.flush_s:
                self._hand_over()
        self._hand_over()

    def alive(self) -> bool:
        return self._flusher.is_alive() and self.mqtt.connected.is_set()

    def start(self, timeout: float = 10.0) -> None:
        self._flusher.start()
        self.mqtt.start(timeout)

    def stop(self) -> None:
        """Stop receiving, then hand over what is buffered."""
        self.mqtt.stop()
        self._stop.set()
        self._flusher.join(10)
