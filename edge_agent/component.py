"""What the agent runs: a set of components, each owning one kind of source.

The sensor side provides a Modbus component, the camera side a camera component; the
agent app (``edge_agent/app.py``) builds them from the config, runs them side by side,
merges their telemetry into the heartbeat, and rebuilds them when a new desired config
is applied (stop all, start the new set: atomic from the outside).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .emit import EventSink

__all__ = ["Component"]


class Component(Protocol):
    name: str

    async def run(self, sink: EventSink, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Emit findings to ``sink``. Never let an expected
        failure (a device not answering, a stream dying) escape: report it as an event
        and in telemetry, and keep going."""
        ...

    def telemetry(self) -> dict[str, Any]:
        """This component's part of the heartbeat, as fields of
        :class:`protocol.messages.Telemetry` (e.g. ``{"devices": {...}}`` or
        ``{"cameras": {...}}``); the app merges the parts."""
        ...
