"""An in-memory broker and transport: the fake behind the transport seam.

Enough MQTT for the session's unit tests: topic filters with ``+`` and ``#``, retained
messages, QoS 1 acknowledgements (optionally held back), a will delivered when a client
is dropped, refused connections (bad credentials or transient), and a per-client cap on
unacknowledged publishes that fails like paho's ``MQTT_ERR_QUEUE_SIZE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.errors import AuthError, TransportError

from .base import MessageHandler, Will

__all__ = ["MemoryBroker", "MemoryTransport", "topic_matches"]


def topic_matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


@dataclass
class _Sub:
    pattern: str
    handler: MessageHandler


@dataclass
class MemoryBroker:
    """Shared by every fake client of a test."""

    up: bool = True
    passwords: dict[str, str] = field(default_factory=dict)  # empty: anyone may connect
    hold_pubacks: bool = False  # True: QoS 1 publishes wait for release_pubacks()
    retained: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, bytes]] = field(default_factory=list)  # every publish, in order
    _subs: list[_Sub] = field(default_factory=list)
    _held: list[Callable[[], None]] = field(default_factory=list)
    clients: list[MemoryTransport] = field(default_factory=list)

    def subscribe(self, pattern: str, handler: MessageHandler) -> None:
        """A test-side subscriber (the stand-in hub). Gets retained messages at once."""
        self._subs.append(_Sub(pattern, handler))
        for topic, payload in list(self.retained.items()):
            if topic_matches(pattern, topic):
                handler(topic, payload)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.log.append((topic, payload))
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for sub in list(self._subs):
            if topic_matches(sub.pattern, topic):
                sub.handler(topic, payload)

    def release_pubacks(self) -> None:
        held, self._held = self._held, []
        for ack in held:
            ack()

    def go_down(self) -> None:
        """The broker dies: every client loses its connection (wills are published)."""
        self.up = False
        for client in list(self.clients):
            client.drop("broker down")

    def come_up(self) -> None:
        self.up = True


class MemoryTransport:
    def __init__(self, broker: MemoryBroker, will: Will, *, username: str = "", password: str = "",
                 max_queued: int = 0) -> None:
        self.broker = broker
        self.will = will
        self.username = username
        self.password = password
        self.max_queued = max_queued  # 0: unlimited
        self.on_message: MessageHandler | None = None
        self.on_disconnect: Callable[[str], None] | None = None
        self._connected = False
        self._unacked = 0
        self._pending: list[asyncio.Future[None]] = []

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        await asyncio.sleep(0)
        if not self.broker.up:
            raise TransportError("connection refused (broker down)")
        if self.broker.passwords and self.broker.passwords.get(self.username) != self.password:
            raise AuthError("Bad user name or password: check the credentials file")
        self._connected = True
        self.broker.clients.append(self)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> asyncio.Future[None]:
        if not self._connected:
            raise TransportError("not connected")
        if self.max_queued and self._unacked >= self.max_queued:
            raise TransportError("client queue full (MQTT_ERR_QUEUE_SIZE)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.broker.publish(topic, payload, retain)
        if qos == 0:
            fut.set_result(None)
            return fut
        self._unacked += 1
        self._pending.append(fut)

        def ack() -> None:
            self._unacked -= 1
            if not fut.done():
                fut.set_result(None)
            if fut in self._pending:
                self._pending.remove(fut)

        if self.broker.hold_pubacks:
            self.broker._held.append(ack)
        else:
            loop.call_soon(ack)
        return fut

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:
        if not self._connected:
            raise TransportError("not connected")
        for pattern, _qos in topics:
            self.broker.subscribe(pattern, self._deliver)

    def _deliver(self, topic: str, payload: bytes) -> None:
        if self._connected and self.on_message is not None:
            asyncio.get_running_loop().call_soon(self.on_message, topic, payload)

    async def disconnect(self) -> None:
        self._close()

    def drop(self, reason: str = "connection lost") -> None:
        """The connection breaks: the broker publishes the will."""
        if not self._connected:
            return
        self._close()
        self.broker.publish(self.will.topic, self.will.payload, self.will.retain)
        if self.on_disconnect is not None:
            self.on_disconnect(reason)

    def _close(self) -> None:
        self._connected = False
        if self in self.broker.clients:
            self.broker.clients.remove(self)
        self.broker._subs = [s for s in self.broker._subs if getattr(s.handler, "__self__", None) is not self]
        for fut in self._pending:
            if not fut.done():
                fut.set_exception(TransportError("connection lost before PUBACK"))
        self._pending.clear()
        self._unacked = 0
