"""A paho client tuned for one job: receiving a flood of small QoS 1 messages.

Stock paho 2.x spends most of a receiver's CPU outside MQTT's real work: for every
message it wakes ``select``, reads the fixed header one byte per ``recv`` and the body
with another, builds a ``Properties`` object (the largest single cost), an
``MQTTMessage``, writes a wake-up byte to its internal socket pair for the PUBACK, wakes
``select`` again and sends the PUBACK in a TCP segment of its own. Measured here that is
about 50-70 µs of CPU a message, which capped a plain paho subscriber at 10,000-18,000
messages/s while Mosquitto itself used a tenth of a core. :class:`ReceiverClient` changes
only how bytes move, never what is sent or when a message counts as received:

* the socket is wrapped by :class:`BufferedSocket`, which reads up to 64 KiB per
  ``recv`` and serves paho's small reads from memory; its ``pending()`` tells paho's loop
  that bytes are waiting (paho already asks that of TLS sockets), so nothing stalls in
  ``select`` while the buffer holds data;
* with :attr:`ReceiverClient.on_raw_publish` set, complete QoS 0/1 PUBLISH packets are
  taken straight from that buffer: topic, packet id and payload are sliced out, the MQTT
  v5 properties skipped (the hub reads none; paho ignores incoming topic aliases too),
  and the callback gets ``(topic, payload)``; about 5 µs a message instead of 50-70.
  Everything else (CONNACK, SUBACK, PINGRESP, QoS 2, a packet not fully read yet,
  anything malformed) goes through paho's own reader and checks;
* PUBACKs are written in groups (one ``send``, one TCP segment for up to
  ``_PUBACK_EVERY`` of them) while the rest of the buffer is handled, so the broker
  refills its in-flight window without waiting for the whole buffer;
* packets queued from the loop thread itself skip the socket-pair wake-up: the loop
  writes them right after, consecutive PUBACKs in one ``send``.

A PUBACK still goes out only after the callback has returned for its message, as in
stock paho, so at-least-once delivery is unchanged: what the hub has not taken is
redelivered by the broker. Connect, subscribe, keepalive, reconnect, TLS and publishing
from other threads are paho's own code.

This leans on paho 2.x internals (``_create_socket``, ``_packet_read``, ``_in_packet``,
``_packet_queue``, ``_out_packet``, ``_handle_on_message``); ``tests/hub/test_fastpaho.py``
pins the behaviour on both paths, and :data:`SUPPORTED` refuses a paho without them (the
receiver then uses stock paho).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["SUPPORTED", "BufferedSocket", "ReceiverClient"]

_CHUNK = 65536
_PUBACK = 0x40
_MAX_PACKETS_PER_READ = 2000  # then let the loop write and check keepalive
_PUBACK_EVERY = 32  # messages handled from the buffer between PUBACK writes
_PUBACK_PACKET = struct.Struct("!BBH")


def _entry(command: int, packet: bytes | bytearray, mid: int = 0, qos: int = 0,
           info: mqtt.MQTTMessageInfo | None = None) -> dict[str, Any]:
    """An entry of paho's outgoing queue (``_out_packet``), shaped as paho builds them."""
    return {"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet),
            "packet": packet, "info": info}


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``buf[i:]``: (value, index after it), or (-1, i)
    when it is not complete before ``end`` or longer than four bytes."""
    value, shift = 0, 0
    for k in range(i, min(end, i + 4)):
        byte = buf[k]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, k + 1
        shift += 7
    return -1, i

SUPPORTED = all(hasattr(mqtt.Client, name) for name in
                ("_create_socket", "_packet_read", "_packet_queue", "_loop_rc_handle",
                 "_handle_on_message")) and hasattr(mqtt, "time_func")


class BufferedSocket:
    """A socket whose ``recv`` reads ahead in 64 KiB chunks (everything else is the
    socket's own)."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data = self._sock.recv(max(n, _CHUNK))  # BlockingIOError / ssl errors pass through
            if not data:
                return data
            self._buf, pos = data, 0
        out = self._buf[pos:pos + n]
        self._pos = pos + len(out)
        return out

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        """Bytes readable without touching the network (paho's loop skips ``select``)."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReceiverClient(mqtt.Client):
    """``mqtt.Client`` with the receive-side tuning described in the module docstring.

    Set :attr:`on_raw_publish` to take messages as ``(topic, payload)`` on the fast path;
    left ``None``, every packet goes through paho's own code to ``on_message``."""

    on_raw_publish: Callable[[str, bytes], None] | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        buffered = isinstance(sock, BufferedSocket)
        fast = buffered and self.on_raw_publish is not None and not self._manual_ack
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        handled = 0
        while handled < _MAX_PACKETS_PER_READ:
            if fast and self._in_packet["command"] == 0 and sock.buffered():
                taken = self._take_publishes(sock)
                handled += taken
                if self._sock is None:
                    break
                if taken and not sock.buffered():
                    break  # all read-ahead handled; select tells when more arrives
            rc = self._packet_read()
            handled += 1
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN or self._sock is None:
                break
            if not (buffered and sock.buffered()):
                break
        if self._out_packet and self._sock is not None:
            return self.loop_write()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _take_publishes(self, sock: BufferedSocket) -> int:
        """Handle the complete QoS 0/1 PUBLISH packets at the head of the read-ahead
        buffer straight from its bytes; stop at anything else (another packet type, QoS 2,
        a packet not fully read yet, anything odd), which paho's own reader then takes
        with its usual checks. Each message's PUBACK is queued after the callback returned
        for it, and PUBACKs leave every :data:`_PUBACK_EVERY` messages so the broker
        refills its in-flight window while the rest are handled."""
        buf, pos, end = sock._buf, sock._pos, len(sock._buf)
        v5 = self._protocol == mqtt.MQTTv5
        deliver = self.on_raw_publish
        acks: list[bytes] = []
        taken = 0
        try:
            while pos < end:
                cmd = buf[pos]
                qos = (cmd >> 1) & 3
                if cmd & 0xF0 != 0x30 or qos == 2 or qos == 3:
                    break
                length, i = _varint(buf, pos + 1, end)
                if length < 0:
                    break
                stop = i + length
                if stop > end or length < 2:
                    break
                tlen = (buf[i] << 8) | buf[i + 1]
                j = i + 2 + tlen
                mid = 0
                if qos:
                    if j + 2 > stop:
                        break
                    mid = (buf[j] << 8) | buf[j + 1]
                    j += 2
                if v5:
                    plen, j = _varint(buf, j, stop)
                    if plen < 0:
                        break
                    j += plen  # properties: nothing the hub reads (paho ignores topic aliases too)
                if j > stop:
                    break
                try:
                    topic = buf[i + 2:i + 2 + tlen].decode("utf-8")
                except UnicodeDecodeError:
                    break  # paho's reader reports it
                payload = buf[j:stop]
                pos = sock._pos = stop
                self._deliver(deliver, topic, payload)
                taken += 1
                if qos:
                    acks.append(_PUBACK_PACKET.pack(_PUBACK, 2, mid))
                    if len(acks) >= _PUBACK_EVERY:
                        self._queue_pubacks(acks)
                        acks = []
                        if self._sock is None:
                            break  # the write found the connection gone: the broker resends the rest
        finally:
            if acks:
                self._queue_pubacks(acks)
            if taken:
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
        return taken

    def _queue_pubacks(self, acks: list[bytes]) -> None:
        if self._sock is None:
            return  # connection gone: PUBACKs belong to it, the broker resends those messages
        self._out_packet.append(_entry(_PUBACK, b"".join(acks)))
        self.loop_write()

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # Messages paho's own reader handled (QoS 2, partly read packets) reach the same
        # callback as the fast path's.
        deliver = self.on_raw_publish
        if deliver is None:
            super()._handle_on_message(message)
            return
        self._deliver(deliver, message.topic, message.payload)

    def _deliver(self, deliver: Callable[[str, bytes], None], topic: str, payload: bytes) -> None:
        """Call the callback as paho calls ``on_message``: under its callback lock, an
        exception logged and re-raised unless ``suppress_exceptions``."""
        with self._in_callback_mutex:
            try:
                deliver(topic, payload)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_raw_publish: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        if self._thread is not None and threading.current_thread() is self._thread:
            # Queued by the loop itself (a PUBACK, a PINGREQ): loop_read / the loop write it
            # next, no need to wake select through the socket pair.
            self._out_packet.append(_entry(command, packet, mid, qos, info))
            self._call_socket_register_write()
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_queue(command, packet, mid, qos, info)

    def loop_write(self) -> mqtt.MQTTErrorCode:
        q = self._out_packet
        if len(q) > 1 and (q[0]["command"] & 0xF0) == _PUBACK and q[0]["pos"] == 0 \
                and (q[1]["command"] & 0xF0) == _PUBACK:
            parts = []
            while q and (q[0]["command"] & 0xF0) == _PUBACK and q[0]["pos"] == 0:
                parts.append(q.popleft()["packet"])
            q.appendleft(_entry(_PUBACK, b"".join(parts)))
        return super().loop_write()
