"""How outbox rows become MQTT messages: pure.

Events go in batches (one JSON array, within the protocol's count and size limits);
a snapshot is always a message of its own on its event's snapshot topic, and so is each
chunk of an event's clip on its clips topic. Order is kept: a snapshot goes out before the
event that refers to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.limits import MAX_EVENTS_MESSAGE_BYTES, MAX_EVENTS_PER_MESSAGE
from protocol.topics import Channel, agent_topic

from .store import OutboxRow

__all__ = ["BATCH_BYTES", "OutMessage", "build_messages"]

# Room for the brackets and commas of the largest batch.
BATCH_BYTES = MAX_EVENTS_MESSAGE_BYTES - MAX_EVENTS_PER_MESSAGE - 2


@dataclass(frozen=True)
class OutMessage:
    topic: str
    payload: bytes
    seqs: tuple[int, ...]
    events: int  # event rows carried (0 for a snapshot)


def build_messages(agent_id: str, rows: Sequence[OutboxRow], *, max_events: int = MAX_EVENTS_PER_MESSAGE,
                   max_bytes: int = BATCH_BYTES) -> list[OutMessage]:
    out: list[OutMessage] = []
    batch: list[OutboxRow] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if batch:
            payload = batch[0].payload if len(batch) == 1 else \
                b"[" + b",".join(r.payload for r in batch) + b"]"
            out.append(OutMessage(agent_topic(agent_id, Channel.EVENTS), payload,
                                  tuple(r.seq for r in batch), len(batch)))
        batch, size = [], 0

    for row in rows:
        if row.channel in (Channel.SNAPSHOTS, Channel.CLIPS):
            flush()
            out.append(OutMessage(agent_topic(agent_id, row.channel, row.event_id),
                                  row.payload, (row.seq,), 0))
            continue
        if batch and (len(batch) >= max_events or size + len(row.payload) > max_bytes):
            flush()
        batch.append(row)
        size += len(row.payload)
    flush()
    return out
