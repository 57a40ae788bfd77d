"""The transport seam: what the MQTT session needs from a connection to the broker.

:class:`edge_agent.transport.mqtt.MqttTransport` is the real one (paho-mqtt 2.x on the
asyncio loop); :class:`edge_agent.transport.memory.MemoryTransport` is an in-memory fake
with a :class:`~edge_agent.transport.memory.MemoryBroker`, for unit tests of the session.
Both are exercised by the same contract tests.

A transport is one connection attempt's lifetime: ``connect`` (raises
:class:`~edge_agent.errors.AuthError` when the broker refuses the credentials — do not
retry — or :class:`~edge_agent.errors.TransportError` for anything transient), then
``publish``/``subscribe`` until the connection is lost (``on_disconnect`` is called
once) or ``disconnect`` is called. The session makes a new transport to reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MessageHandler", "Transport", "TransportFactory", "Will"]

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Transport(Protocol):
    on_message: MessageHandler | None
    on_disconnect: Callable[[str], None] | None

    @property
    def connected(self) -> bool:
        ...

    async def connect(self) -> None:
        ...

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> asyncio.Future[None]:
        """Queue a message. The future resolves when the broker has it (PUBACK for QoS 1,
        written for QoS 0) and fails with TransportError when it will not. Raises
        TransportError at once when the client cannot even queue it (not connected,
        queue full): every return code is checked."""
        ...

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:
        ...

    async def disconnect(self) -> None:
        """A clean goodbye (the will is not sent)."""
        ...


TransportFactory = Callable[[Will], Transport]
