"""Event clips on the hub (hub/clips.py), through the real broker and hub: an agent's clip
chunks arrive in any order and become one stored, checked MP4 that the case page plays
(a <video> whose source serves video/mp4 with Range support); a corrupt chunk and a
missing one are reported on the case page, never stored as a broken file; retention
removes old clips and their files, but not those of a case still open."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime

import av
import numpy as np
import pytest
from hubtest import G05, await_for
from webtest import open_case

from edge_agent.camera.clips import ClipFrame, ClipJob, encode_mp4
from protocol.clips import ClipChunkHeader, encode_clip_chunk, split_clip
from protocol.topics import Channel

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def real_clip(frames: int = 12) -> tuple[bytes, int]:
    """A real H.264 MP4: a grey street with a bright block moving across, 2 fps."""
    out = []
    for i in range(frames):
        y = np.full((180, 320), 90, np.uint8)
        y[60:120, 20 + 20 * i:60 + 20 * i] = 230
        uv = np.full((90, 320), 128, np.uint8)
        out.append(ClipFrame(i / 2, np.vstack([y, uv])))
    clip = encode_mp4(ClipJob("cam-1", "ev-1", 2.0, T0, out, 2.0, 30))
    return clip.data, clip.frames


def chunk_messages(event_id: str, first_seq: int, data: bytes, chunk_bytes: int,
                   agent_id: str = "agent-1") -> list[tuple[ClipChunkHeader, bytes]]:
    parts = split_clip(data, chunk_bytes)
    digest = hashlib.sha256(data).hexdigest()
    return [(ClipChunkHeader(agent_id=agent_id, event_id=event_id, seq=first_seq + i, index=i,
                             count=len(parts), sha256=hashlib.sha256(p).hexdigest(),
                             clip_sha256=digest, clip_bytes=len(data), width=320, height=180,
                             fps=2.0, frames=12, duration_s=6.0, started_at=T0,
                             event_offset_s=2.0), p) for i, p in enumerate(parts)]


def send(agent, header: ClipChunkHeader, data: bytes, *, payload_data: bytes | None = None) -> None:
    """Publish one chunk; ``payload_data`` replaces its bytes after the header was made
    (a chunk corrupted on the way)."""
    message = encode_clip_chunk(header, data)
    if payload_data is not None:
        message = message[: len(message) - len(data)] + payload_data
    agent.publish(Channel.CLIPS, message, event_id=header.event_id)


async def clips_of(hub, case_id: int):
    return await hub.read(lambda r: r.clips_for_case(case_id))


async def test_chunks_in_any_order_become_a_stored_clip_the_case_page_plays(hub, agent, client):
    case_id = await open_case(hub, agent, n=1)  # event ev-1, seqs 10 and 11
    data, frames = real_clip()
    chunks = chunk_messages("ev-1", 12, data, chunk_bytes=len(data) // 3 + 1)
    assert len(chunks) == 3
    for header, part in (chunks[2], chunks[0], chunks[1]):
        send(agent, header, part)
    await await_for(lambda: all(agent.acked(h.seq) for h, _ in chunks), what="every chunk acknowledged")
    (clip,) = await clips_of(hub, case_id)
    assert clip.state == "stored" and clip.error is None and clip.chunks_received == 3
    stored = hub.clip_files.get(clip.clip_sha256)
    assert stored == data
    assert await hub.read(lambda r: r.clip_chunks(clip.id)) == {}  # the chunks are gone

    await client.login("op")
    page = await client.get(f"/cases/{case_id}")
    assert page.status == 200
    src = re.search(r'<video src="([^"]+)" id="clip-\d+"', page.text).group(1)
    assert src == f"/api/v1/clips/{clip.clip_sha256}.mp4"
    whole = await client.session.get(client.base + src)
    assert whole.status == 200 and whole.content_type == "video/mp4"
    body = await whole.read()
    assert body == data
    part = await client.session.get(client.base + src, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and part.headers["Content-Range"] == f"bytes 0-99/{len(data)}"
    assert len(await part.read()) == 100
    with av.open(io.BytesIO(body)) as f:
        assert f.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in f.decode(video=0)) == frames
    api = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert api["clips"][0]["url"] == src and api["clips"][0]["duration_s"] == 6.0
    assert hub.counts()["ingest"]["clips_stored"] == 1


async def test_a_corrupt_chunk_is_refused_and_the_case_page_says_the_clip_failed(hub, agent, client):
    case_id = await open_case(hub, agent, n=1)
    data, _ = real_clip()
    chunks = chunk_messages("ev-1", 12, data, chunk_bytes=len(data) // 3 + 1)
    (h0, p0), (h1, p1), (h2, p2) = chunks
    send(agent, h0, p0)
    broken = bytes([p1[0] ^ 0xFF]) + p1[1:]
    send(agent, h1, p1, payload_data=broken)
    send(agent, h2, p2)
    await await_for(lambda: any(r.seq == h1.seq for r in agent.rejected()), what="the bad chunk rejected")
    await await_for(lambda: agent.acked(h2.seq), what="the good chunks acknowledged")
    (clip,) = await clips_of(hub, case_id)
    assert clip.state == "failed"
    assert "chunk 2 of 3 refused" in clip.error and "sha256" in clip.error
    assert hub.clip_files.get(clip.clip_sha256) is None  # no broken file
    (rejection,) = [r for r in agent.rejected() if r.seq == h1.seq]
    assert "sha256" in rejection.reason
    dead = await hub.read(lambda r: r.list_dead_letters(limit=10))
    assert any("sha256" in d.detail for d in dead)

    await client.login("op")
    page = await client.get(f"/cases/{case_id}")
    assert "<video" not in page.text
    assert re.search(r'role="alert">Clip failed: chunk 2 of 3 refused', page.text)
    missing = await client.get(f"/api/v1/clips/{clip.clip_sha256}.mp4")
    assert missing.status == 404


async def test_a_clip_missing_a_chunk_is_reported_after_the_wait_not_stored(hub, agent, client, clock):
    case_id = await open_case(hub, agent, n=1)
    data, _ = real_clip()
    chunks = chunk_messages("ev-1", 12, data, chunk_bytes=len(data) // 3 + 1)
    for header, part in chunks[:2]:  # the third never comes (dropped from a full outbox)
        send(agent, header, part)
    await await_for(lambda: agent.acked(chunks[1][0].seq), what="two chunks acknowledged")
    (clip,) = await clips_of(hub, case_id)
    assert clip.state == "partial" and clip.chunks_received == 2
    await client.login("op")
    assert "Clip arriving: 2 of 3 parts" in (await client.get(f"/cases/{case_id}")).text

    await hub.sweep()  # not yet: retention.clips_incomplete_min (60) has not passed
    assert (await clips_of(hub, case_id))[0].state == "partial"
    clock.advance(61 * 60)
    totals = await hub.sweep()
    assert totals["clips_incomplete"] == 1
    (clip,) = await clips_of(hub, case_id)
    assert clip.state == "failed" and clip.error.startswith("chunk(s) 3 of 3 missing after 60 min")
    assert await hub.read(lambda r: r.clip_chunks(clip.id)) == {}
    assert "Clip failed: chunk(s) 3 of 3 missing" in (await client.get(f"/cases/{case_id}")).text


async def test_retention_removes_old_clips_and_their_files_but_not_an_open_cases(hub, agent, clock):
    closed_case = await open_case(hub, agent, n=1)
    open_case_id = await open_case(hub, agent, n=2, where=G05)  # another grid: another case
    data, _ = real_clip()
    for header, part in chunk_messages("ev-1", 30, data, len(data)):
        send(agent, header, part)
    other = data + b"\x00"  # another clip (a different file) for the open case
    for header, part in chunk_messages("ev-2", 31, other, len(other)):
        send(agent, header, part)
    await await_for(lambda: agent.acked(31), what="both clips acknowledged")
    (old,) = await clips_of(hub, closed_case)
    (kept,) = await clips_of(hub, open_case_id)
    assert hub.clip_files.exists(old.clip_sha256) and hub.clip_files.exists(kept.clip_sha256)
    await hub.write(lambda r: r.conn.execute("UPDATE cases SET state = 'closed' WHERE id = ?",
                                             (closed_case,)))

    clock.advance(29 * 86400)
    assert (await hub.sweep())["clips"] == 0  # retention.clips_days: 30
    clock.advance(2 * 86400)
    assert (await hub.sweep())["clips"] == 1
    assert await clips_of(hub, closed_case) == []
    assert not hub.clip_files.exists(old.clip_sha256)
    assert hub.clip_files.exists(kept.clip_sha256)  # its case is still open
