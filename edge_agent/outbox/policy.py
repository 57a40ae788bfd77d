"""What the outbox gives up when it is full (DESIGN §4): pure decisions.

Clip chunks go first, oldest first: a clip only illustrates an event the hub has. Then
the oldest ``update`` rows (with their snapshots): an update only refines an event the
hub already has or will have. ``new`` and ``end`` rows are never dropped: without
them a case would not open or would not close. When only those are left, the outbox
refuses the incoming event with an error (counted and shown in telemetry) instead of
dropping anything silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DROPPABLE_KINDS", "Candidate", "DropPlan", "plan_drops"]

DROPPABLE_KINDS = ("update",)


@dataclass(frozen=True)
class Candidate:
    """A row the policy may drop (oldest first), with the snapshot row that goes with it."""

    seq: int
    size: int
    snapshot_seq: int | None = None
    snapshot_size: int = 0
    kind: str = "update"  # update | clip


@dataclass(frozen=True)
class DropPlan:
    drop: tuple[int, ...]  # seqs to delete
    dropped_updates: int
    dropped_snapshots: int
    freed_bytes: int
    refuse: bool  # even dropping every candidate does not make room
    dropped_clips: int = 0  # clip chunk rows


def plan_drops(
    *, count: int, size: int, incoming_rows: int, incoming_bytes: int,
    max_rows: int, max_bytes: int, candidates: Iterable[Candidate],
) -> DropPlan:
    """Drop the fewest oldest candidates so the incoming rows fit both caps."""
    need_rows = count + incoming_rows - max_rows
    need_bytes = size + incoming_bytes - max_bytes
    drop: list[int] = []
    updates = snapshots = clips = freed = 0
    for c in candidates:
        if need_rows <= 0 and need_bytes <= 0:
            break
        drop.append(c.seq)
        if c.kind == "clip":
            clips += 1
        else:
            updates += 1
        need_rows -= 1
        need_bytes -= c.size
        freed += c.size
        if c.snapshot_seq is not None:
            drop.append(c.snapshot_seq)
            snapshots += 1
            need_rows -= 1
            need_bytes -= c.snapshot_size
            freed += c.snapshot_size
    refuse = need_rows > 0 or need_bytes > 0
    if refuse:
        return DropPlan((), 0, 0, 0, True)
    return DropPlan(tuple(drop), updates, snapshots, freed, False, clips)
