"""The seam between what finds problems (sensor rules, camera tracking) and what delivers
them (the outbox). Finders produce :class:`EventDraft`; an :class:`EventSink` makes it
durable, gives it its per-agent ``seq`` and later publishes it.

:class:`MemorySink` is the in-memory implementation for tests of finders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from protocol.messages import EventKind, Evidence, Location

__all__ = ["ClipDraft", "EventDraft", "EventSink", "MemorySink"]


@dataclass(frozen=True)
class EventDraft:
    """An event as a finder knows it: everything but ``agent_id`` and ``seq``.

    ``snapshot_jpeg``, when present, travels through the same outbox as the event
    (sent first, acknowledged with it); the sink fills ``evidence.snapshot``.
    """

    event_id: str
    kind: EventKind
    category: str
    subcategory: str
    source: str
    observed_at: datetime
    location: Location
    confidence: float = 1.0
    evidence: Evidence = field(default_factory=Evidence)
    attributes: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    snapshot_jpeg: bytes | None = None
    snapshot_size: tuple[int, int] | None = None  # (width, height) of the JPEG


@dataclass(frozen=True)
class ClipDraft:
    """An event's video clip (an H.264 MP4) for the outbox: sent after its event, in
    chunks (:mod:`protocol.clips`), each its own outbox row acknowledged like a snapshot."""

    event_id: str
    data: bytes
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    started_at: datetime | None = None  # wall time of the first frame
    event_offset_s: float = 0.0  # the event's moment, seconds into the clip


class EventSink(Protocol):
    def emit(self, draft: EventDraft) -> int:
        """Make the event durable and queue it for delivery. Returns its seq. When this
        returns, the event survives a crash; it raises (never drops) when it cannot."""
        ...


class MemorySink:
    """Keeps drafts in a list. For tests of rules and trackers."""

    def __init__(self) -> None:
        self.drafts: list[EventDraft] = []
        self.clips: list[ClipDraft] = []

    def add_clip(self, clip: ClipDraft) -> list[int]:
        self.clips.append(clip)
        return [len(self.clips)]

    def emit(self, draft: EventDraft) -> int:
        self.drafts.append(draft)
        return len(self.drafts)

    def kinds(self) -> list[str]:
        return [d.kind.value for d in self.drafts]
