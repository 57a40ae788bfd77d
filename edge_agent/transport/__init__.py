"""The transport seam (:mod:`.base`), the paho-mqtt transport (:mod:`.mqtt`) and the
in-memory fake (:mod:`.memory`)."""

from .base import MessageHandler, Transport, TransportFactory, Will
from .memory import MemoryBroker, MemoryTransport, topic_matches
from .mqtt import MqttTransport

__all__ = [
    "MemoryBroker",
    "MemoryTransport",
    "MessageHandler",
    "MqttTransport",
    "Transport",
    "TransportFactory",
    "Will",
    "topic_matches",
]
