"""A paho client tuned for one job: receiving a flood of small QoS 1 messages.

Stock paho 2.x spends most of a receiver's CPU on system calls, not on MQTT: for every
message it wakes ``select``, reads the fixed header one byte per ``recv`` and the body
with another, writes a wake-up byte to its internal socket pair for the PUBACK, wakes
``select`` again and sends the PUBACK in a TCP segment of its own. At 15,000 messages/s
that is about eight system calls a message on the receiver and a segment a message on
the broker. :class:`ReceiverClient` changes only how bytes move, never what is sent or
when a message counts as received:

* the socket is wrapped by :class:`BufferedSocket`, which reads up to 64 KiB per
  ``recv`` and serves paho's small reads from memory; its ``pending()`` tells paho's loop
  that bytes are waiting (paho already asks that of TLS sockets), so nothing stalls in
  ``select`` while the buffer holds data;
* ``loop_read`` handles every packet already in the buffer instead of one per wake-up,
  then writes what they queued (the PUBACKs) at once;
* packets queued from the loop thread itself (the PUBACKs paho sends after our
  ``on_message`` returned) skip the socket-pair wake-up: the loop writes them right after;
* consecutive PUBACKs waiting to be written leave in one ``send`` (one TCP segment).

A PUBACK still goes out only after ``on_message`` has returned for its message, as in
stock paho, so at-least-once delivery is unchanged: what the hub has not taken is
redelivered by the broker. Everything else (connect, subscribe, keepalive, reconnect,
TLS, publishing from other threads) is paho's own code.

This leans on paho 2.x internals (``_create_socket``, ``_packet_read``,
``_packet_queue``, ``_out_packet``); ``tests/hub/test_fastpaho.py`` pins the behaviour,
and :data:`SUPPORTED` refuses a paho without them (the receiver then uses stock paho).
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["SUPPORTED", "BufferedSocket", "ReceiverClient"]

_CHUNK = 65536
_PUBACK = 0x40
_MAX_PACKETS_PER_READ = 2000  # then let the loop write and check keepalive

SUPPORTED = all(hasattr(mqtt.Client, name) for name in
                ("_create_socket", "_packet_read", "_packet_queue", "_loop_rc_handle"))


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
    """``mqtt.Client`` with the receive-side tuning described in the module docstring."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(_MAX_PACKETS_PER_READ):
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN or self._sock is None:
                break
            if not (isinstance(sock, BufferedSocket) and sock.buffered()):
                break
        if self._out_packet and self._sock is not None:
            return self.loop_write()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        if self._thread is not None and threading.current_thread() is self._thread:
            # Queued by the loop itself (a PUBACK, a PINGREQ): loop_read / the loop write it
            # next, no need to wake select through the socket pair.
            self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                     "to_process": len(packet), "packet": packet, "info": info})
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
            joined = b"".join(parts)
            q.appendleft({"command": _PUBACK, "mid": 0, "qos": 0, "pos": 0,
                          "to_process": len(joined), "packet": joined, "info": None})
        return super().loop_write()
