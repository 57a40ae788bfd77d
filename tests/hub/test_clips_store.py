"""Clip chunks in the writer's batch (hub/clips.py over the real SQLite schema): a resent
chunk changes nothing, a chunk of a clip already stored is acknowledged and ignored, the
chunks' seqs are acked and kept for audits, and an agent cannot keep more than
MAX_ARRIVING clips half-sent (their chunks would otherwise pile up in the store)."""

from __future__ import annotations

import hashlib

import pytest
from hubtest import make_setup

from hub.clips import MAX_ARRIVING
from hub.engine.core import CaseEngine
from hub.engine.intake import Ingestor
from hub.ingest.decode import ClipChunkItem, classify
from hub.store.files import SnapshotFiles
from protocol.clips import ClipChunkHeader, encode_clip_chunk, split_clip
from protocol.topics import Channel, agent_topic

AGENT = "agent-1"


@pytest.fixture
def ingestor(tmp_path, clock):
    return Ingestor(CaseEngine(make_setup(tmp_path), clock), SnapshotFiles(tmp_path / "snaps"),
                    SnapshotFiles(tmp_path / "clips", suffix=".mp4"))


def chunks(event_id: str, seq: int, data: bytes, size: int) -> list[tuple[str, bytes]]:
    parts = split_clip(data, size)
    digest = hashlib.sha256(data).hexdigest()
    out = []
    for i, p in enumerate(parts):
        h = ClipChunkHeader(agent_id=AGENT, event_id=event_id, seq=seq + i, index=i, count=len(parts),
                            sha256=hashlib.sha256(p).hexdigest(), clip_sha256=digest, clip_bytes=len(data),
                            width=320, height=180, fps=2.0, frames=3, duration_s=1.5)
        out.append((agent_topic(AGENT, Channel.CLIPS, event_id), encode_clip_chunk(h, p)))
    return out


def apply(ingestor, repo, messages):
    items = [classify(t, p) for t, p in messages]
    assert all(isinstance(i, ClipChunkItem) for i in items)
    with repo.transaction():
        result = ingestor.apply(repo, items)
    ingestor.installed(result)
    return result


def test_resent_and_late_chunks_change_nothing_and_are_acked(ingestor, repo):
    data = bytes(range(256)) * 40
    msgs = chunks("ev-1", 1, data, 4000)  # 3 chunks, seqs 1..3
    r = apply(ingestor, repo, [msgs[0], msgs[0], msgs[1]])  # the first one twice
    (clip,) = [repo.get_clip(1)]
    assert clip.state == "partial" and clip.chunks_received == 2 and clip.seqs == [1, 2]
    assert r.acks[0].upto == 2
    r = apply(ingestor, repo, [msgs[2], msgs[1]])  # the last, then a late resend
    clip = repo.get_clip(1)
    assert clip.state == "stored" and clip.seqs == [1, 2, 3]
    assert ingestor.clips.get(clip.clip_sha256) == data
    assert r.acks[0].upto == 3 and r.counts.clips_stored == 1
    assert repo.clip_chunks(clip.id) == {}


def test_an_agent_cannot_keep_more_than_max_arriving_clips_half_sent(ingestor, repo):
    seq = 1
    for n in range(MAX_ARRIVING):  # each clip's first of two chunks only
        data = n.to_bytes(2, "big") * 100
        apply(ingestor, repo, chunks(f"ev-{n}", seq, data, 150)[:1])
        seq += 2
    assert repo.count_clips("partial", agent_id=AGENT) == MAX_ARRIVING
    r = apply(ingestor, repo, chunks("ev-more", seq, b"x" * 300, 150)[:1])
    assert r.counts.clips_failed == 1
    (crowded,) = [c for c in (repo.get_clip(i) for i in range(1, MAX_ARRIVING + 2)) if c.event_id == "ev-more"]
    assert crowded.state == "failed" and "still arriving" in crowded.error
    assert repo.clip_chunks(crowded.id) == {}
    assert any(a.covers(seq) for a in r.acks)  # acknowledged: the agent does not resend it
