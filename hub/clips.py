"""Event clips on the hub: reassemble an agent's clip chunks (:mod:`protocol.clips`) into
an MP4 file, check it, and keep it for its case page; give up on clips whose chunks never
all arrive; remove old clips by the retention policy.

Each chunk is its own outbox row on the agent, acknowledged in the batch it arrives in
(like a snapshot): the hub holds the chunks in ``clip_chunks`` until the last one is in,
then writes the file, named by the sha256 the hub computed (never a name an agent sent),
and deletes the chunks. What can go wrong stays visible on the case page and in the dead
letters, never as a broken file:

* a chunk whose bytes do not match its own hash is refused (a dead letter, its seq
  rejected in the ack) and its clip marked ``failed`` with that reason;
* chunks that do not add up to the clip's size or hash: ``failed``, with the reason;
* chunks that never all arrive (``retention.clips_incomplete_min``): ``failed``, naming
  the missing ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from protocol.clips import ClipProblem, assemble_clip

from .ingest.decode import ClipChunkItem
from .store.files import SnapshotFiles
from .store.repo import Repository

__all__ = ["MAX_ARRIVING", "ChunkOutcome", "apply_chunk", "clip_files", "fail_stale_clips", "purge_clips"]

log = logging.getLogger(__name__)

MAX_ARRIVING = 16  # an agent's clips still missing chunks, at most (a real agent has a few)


@dataclass(frozen=True)
class ChunkOutcome:
    clip_id: int
    state: str  # partial | stored | failed | late (the clip was already complete or failed)
    error: str | None = None


def clip_files(root: str | Path) -> SnapshotFiles:
    """The content-addressed store of clip files (``{root}/ab/cd/{sha256}.mp4``)."""
    return SnapshotFiles(root, suffix=".mp4")


def apply_chunk(repo: Repository, files: SnapshotFiles, item: ClipChunkItem, now: datetime) -> ChunkOutcome:
    """Keep one chunk inside the writer's transaction; complete the clip when it is the last."""
    h = item.header
    clip = repo.clip_row(item.agent_id, h.event_id, h.clip_sha256)
    if clip is None:
        # An agent's clips arriving at once are bounded, so chunks held for clips that
        # never complete cannot fill the store (at most MAX_ARRIVING x 4 MiB an agent).
        crowded = item.refusal is None and repo.count_clips("partial", agent_id=item.agent_id) >= MAX_ARRIVING
        clip_id = repo.add_clip(
            item.agent_id, h.event_id, h.clip_sha256, chunk_count=h.count, clip_bytes=h.clip_bytes,
            width=h.width, height=h.height, fps=h.fps, frames=h.frames, duration_s=h.duration_s,
            started_at=h.started_at if h.started_at and h.started_at.tzinfo else None,
            event_offset_s=h.event_offset_s, at=now)
        state, count, size = "partial", h.count, h.clip_bytes
    else:
        clip_id, state, count, size = clip.id, clip.state, clip.chunk_count, clip.clip_bytes
    if state != "partial":
        return ChunkOutcome(clip_id, "late")
    if clip is None and crowded:
        return _fail(repo, clip_id, item, f"refused: {MAX_ARRIVING} clips of this agent are "
                     "still arriving (a clip's chunks must all come before many more clips start)", now)
    if item.refusal is not None:
        error = f"chunk {h.index + 1} of {h.count} refused: {item.refusal.detail}"
        return _fail(repo, clip_id, item, error, now)
    if h.count != count or h.clip_bytes != size:
        error = (f"chunk {h.index + 1} says the clip has {h.count} chunks of {h.clip_bytes} bytes; "
                 f"its first chunk said {count} of {size}")
        return _fail(repo, clip_id, item, error, now)
    held = repo.add_clip_chunk(clip_id, h.index, h.seq, item.data)
    if held < count:
        return ChunkOutcome(clip_id, "partial")
    try:
        data = assemble_clip(repo.clip_chunks(clip_id), count, h.clip_sha256, size)
    except ClipProblem as exc:
        return _fail(repo, clip_id, item, str(exc), now)
    files.put(data)  # fsynced and renamed before the row that names it commits
    repo.finish_clip(clip_id, state="stored", error=None, at=now)
    return ChunkOutcome(clip_id, "stored")


def _fail(repo: Repository, clip_id: int, item: ClipChunkItem, error: str, now: datetime) -> ChunkOutcome:
    log.warning("clip of agent %s event %s failed: %s", item.agent_id, item.header.event_id, error)
    repo.finish_clip(clip_id, state="failed", error=error[:500], at=now)
    return ChunkOutcome(clip_id, "failed", error)


def fail_stale_clips(repo: Repository, now: datetime, after_min: float, limit: int = 1000) -> int:
    """Clips still missing chunks ``after_min`` minutes after their first: failed, naming
    the chunks that never came (the agent dropped them from a full outbox, or the hub
    refused them). Returns how many."""
    stale = repo.stale_partial_clips(now - timedelta(minutes=after_min), limit)
    for clip in stale:
        have = repo.clip_chunks(clip.id)
        try:
            assemble_clip(have, clip.chunk_count, clip.clip_sha256, clip.clip_bytes)
            error = "incomplete"  # not reached: a complete clip is never partial
        except ClipProblem as exc:
            error = f"{exc} after {after_min:g} min; the clip is not playable"
        log.warning("clip of agent %s event %s failed: %s", clip.agent_id, clip.event_id, error)
        repo.finish_clip(clip.id, state="failed", error=error[:500], at=now)
    return len(stale)


def purge_clips(repo: Repository, before: datetime, limit: int = 1000) -> tuple[int, list[str]]:
    """Delete clip rows older than ``before`` (but a case's still open): how many, and the
    sha256s of the files no row needs any more, for the caller to delete after the commit."""
    return repo.purge_clips(before, limit)
