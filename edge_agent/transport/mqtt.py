"""The real transport: paho-mqtt 2.x driven by the asyncio event loop.

paho's socket callbacks register its socket with the loop (``add_reader`` /
``add_writer``), so every paho callback (CONNACK, PUBACK, messages) runs on the agent's
event-loop thread: no second thread touches the outbox. The blocking part of connecting
(DNS, TCP, the TLS handshake) runs in an executor.

Refused connections are classified: bad user name or password, not authorised, banned,
bad authentication method (the one list in :mod:`protocol.mqttcodes`)
→ :class:`~edge_agent.errors.AuthError` (the session stops retrying and says so);
anything else → :class:`~edge_agent.errors.TransportError` (retried with backoff).
Every paho return code is checked; MQTT v5 PUBACK reason codes (135 not authorised,
149 too large...) fail the publish's future and are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config.sections import MqttConfig
from edge_agent.errors import AuthError, TransportError
from protocol.mqttcodes import auth_refusal

from .base import MessageHandler, Will

__all__ = ["MqttTransport"]

log = logging.getLogger(__name__)



class MqttTransport:
    def __init__(
        self, config: MqttConfig, will: Will, *, client_id: str, username: str | None,
        password: str | None, ca_file: Path | None = None, cert_file: Path | None = None,
        key_file: Path | None = None, max_queued: int = 1000, max_inflight: int = 100,
    ) -> None:
        self.config = config
        self.will = will
        self.client_id = client_id
        self.username = username
        self.password = password
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.max_queued = max_queued
        self.max_inflight = max_inflight
        self.on_message: MessageHandler | None = None
        self.on_disconnect: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._client: mqtt.Client | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._pubacks: dict[int, asyncio.Future[None]] = {}
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._connected = False
        self._closed = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected

    # -- connecting --------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        v5 = self.config.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else True,
        )
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.will_set(self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(self.max_queued)
        if self.config.tls is not None:
            client.tls_set(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            client.tls_insecure_set(self.config.tls.insecure_skip_verify)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    async def connect(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        client = self._client = self._make_client()
        self._connack = loop.create_future()
        host, port = self.config.host, self.config.port
        kwargs: dict[str, Any] = {"keepalive": self.config.keepalive_s}
        if self.config.protocol == "5":
            kwargs["clean_start"] = True
        try:
            rc = await asyncio.wait_for(
                loop.run_in_executor(None, lambda: client.connect(host, port, **kwargs)),
                timeout=self.config.connect_timeout_s,
            )
        except TimeoutError:
            self._teardown()
            raise TransportError(f"no TCP/TLS connection within {self.config.connect_timeout_s:g} s",
                                 host=host, port=port) from None
        except ssl.SSLError as exc:
            self._teardown()
            raise TransportError(f"TLS handshake failed: {exc}", host=host, port=port) from exc
        except (OSError, socket.gaierror) as exc:
            self._teardown()
            raise TransportError(f"cannot connect: {exc.strerror or exc}", host=host, port=port) from exc
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._teardown()
            raise TransportError(f"connect failed: {mqtt.error_string(rc)}", host=host, port=port)
        try:
            reason = await asyncio.wait_for(asyncio.shield(self._connack), self.config.connect_timeout_s)
        except TimeoutError:
            self._teardown()
            raise TransportError("no CONNACK from the broker", host=host, port=port) from None
        except TransportError:
            self._teardown()
            raise
        if reason.is_failure:
            self._teardown()
            if auth_refusal(reason.value):  # retrying will not fix these (protocol.mqttcodes)
                raise AuthError(
                    f"the broker refused the credentials ({reason}); check the credentials file "
                    f"or provision the agent again", host=host, port=port)
            raise TransportError(f"connection refused: {reason}", host=host, port=port)
        self._connected = True

    # -- paho callbacks (all on the loop thread once connected) ------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run on the loop thread (paho calls socket hooks from the connect executor)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self._call(self._register, sock)

    def _register(self, sock: Any) -> None:
        assert self._loop is not None
        if self._client is None:
            return
        self._loop.add_reader(sock, self._read)
        if self._misc is None:
            self._misc = self._loop.create_task(self._misc_loop())

    def _read(self) -> None:
        if self._client is not None:
            self._client.loop_read()

    def _write(self) -> None:
        if self._client is not None:
            self._client.loop_write()

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._call(self._unregister, sock)

    def _unregister(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._call(self._add_writer, sock)

    def _add_writer(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.add_writer(sock, self._write)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._call(self._remove_writer, sock)

    def _remove_writer(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while self._client is not None:
            if self._client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                break
            await asyncio.sleep(1.0)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        was_connected = self._connected
        self._connected = False
        text = str(reason)
        self._fail_pending(TransportError(f"connection lost before the broker acknowledged ({text})"))
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(TransportError(f"connection closed during CONNECT ({text})"))
        self._stop_misc()
        self._closed.set()
        if was_connected and self.on_disconnect is not None:
            self.on_disconnect(text)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        fut = self._pubacks.pop(mid, None)
        if fut is None or fut.done():
            return
        if reason is not None and reason.is_failure:
            log.error("broker refused a publish: %s", reason, extra={"mid": mid})
            fut.set_exception(TransportError(f"broker refused the publish: {reason} ({reason.value})"))
        else:
            fut.set_result(None)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(list(reasons))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(msg.topic, bytes(msg.payload))
        except Exception:  # never raise into the network loop
            log.exception("handler failed for a message on %s", msg.topic)

    # -- using the connection ----------------------------------------------------------
    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> asyncio.Future[None]:
        if self._client is None or not self._connected:
            raise TransportError("not connected")
        assert self._loop is not None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                raise TransportError(f"client queue full ({self.max_queued} messages): slow down")
            raise TransportError(f"publish failed: {mqtt.error_string(info.rc)}")
        fut: asyncio.Future[None] = self._loop.create_future()
        if qos == 0:
            fut.set_result(None)
        else:
            self._pubacks[info.mid] = fut
        return fut

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:
        if self._client is None or not self._connected:
            raise TransportError("not connected")
        assert self._loop is not None
        rc, mid = self._client.subscribe(topics)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise TransportError(f"subscribe failed: {mqtt.error_string(rc)}")
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = fut
        reasons = await asyncio.wait_for(fut, self.config.connect_timeout_s)
        for (topic, _), reason in zip(topics, reasons, strict=False):
            if reason.is_failure:
                raise TransportError(f"subscription to {topic} refused: {reason}")

    async def disconnect(self) -> None:
        if self._client is None:
            return
        if self._connected:
            rc = self._client.disconnect()
            if rc == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), 5)
            else:
                log.debug("disconnect: %s", mqtt.error_string(rc))
        self._teardown()

    # -- helpers -----------------------------------------------------------------------
    def _fail_pending(self, error: TransportError) -> None:
        for fut in list(self._pubacks.values()) + list(self._subacks.values()):
            if not fut.done():
                fut.set_exception(error)
        self._pubacks.clear()
        self._subacks.clear()

    def _stop_misc(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _teardown(self) -> None:
        self._connected = False
        self._stop_misc()
        client, self._client = self._client, None
        if self._sock is not None and self._loop is not None:
            self._unregister(self._sock)
        if client is not None:
            sock = client.socket()
            if sock is not None:  # close without a DISCONNECT: the will stays armed
                with contextlib.suppress(OSError):
                    sock.close()
        self._sock = None
        self._fail_pending(TransportError("transport closed"))
