"""Clip chunk messages (protocol/clips.py): the largest fits the broker's message limit,
and every way a chunk can be wrong is refused with its reason."""

from __future__ import annotations

import hashlib
import json

import pytest

from protocol.clips import (
    MAX_CLIP_BYTES,
    MAX_CLIP_CHUNK_BYTES,
    MAX_CLIP_CHUNKS,
    MAX_CLIP_HEADER_BYTES,
    ClipChunkHeader,
    ClipProblem,
    assemble_clip,
    decode_clip_chunk,
    encode_clip_chunk,
    split_clip,
)
from protocol.codec import decode_message
from protocol.errors import ProtocolError, Refusal
from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT
from protocol.topics import Channel, agent_topic


def header(data: bytes, index: int = 0, count: int = 1, **over) -> ClipChunkHeader:
    fields = dict(agent_id="agent-1", event_id="ev-1", seq=7, index=index, count=count,
                  sha256=hashlib.sha256(data).hexdigest(), clip_sha256="a" * 64,
                  clip_bytes=len(data) * count, width=320, height=180, fps=2.0, frames=61,
                  duration_s=30.5)
    return ClipChunkHeader(**{**fields, **over})


def test_the_largest_chunk_message_fits_the_broker_limit():
    data = b"\x00" * MAX_CLIP_CHUNK_BYTES
    h = header(data, index=MAX_CLIP_CHUNKS - 1, count=MAX_CLIP_CHUNKS, agent_id="a" * 64,
               event_id="e" * 64, seq=2**53 - 1, clip_bytes=MAX_CLIP_BYTES)
    assert MAX_CLIP_CHUNKS * MAX_CLIP_CHUNK_BYTES == MAX_CLIP_BYTES  # no header can ask for more
    message = encode_clip_chunk(h, data)
    assert len(message) <= MAX_CLIP_CHUNK_BYTES + MAX_CLIP_HEADER_BYTES + 1 <= BROKER_MESSAGE_SIZE_LIMIT
    with pytest.raises(ProtocolError, match="over the"):
        encode_clip_chunk(header(data + b"\x00"), data + b"\x00")


def test_a_good_chunk_decodes_through_the_codec():
    data = b"mp4-bytes" * 10
    topic = agent_topic("agent-1", Channel.CLIPS, "ev-1")
    got_header, got = decode_message(topic, encode_clip_chunk(header(data), data)).message
    assert got == data and got_header.duration_s == 30.5


@pytest.mark.parametrize(("change", "reason", "words"), [
    (lambda m: m[:-1] + bytes([m[-1] ^ 1]), Refusal.INVALID, "do not match the header's sha256"),
    (lambda m: m.replace(b'"agent_id":"agent-1"', b'"agent_id":"agent-2"'), Refusal.TOPIC_MISMATCH, "agent_id"),
    (lambda m: m.replace(b'"event_id":"ev-1"', b'"event_id":"ev-2"'), Refusal.TOPIC_MISMATCH, "names event"),
    (lambda m: m.replace(b"cityops.clip/1", b"cityops.clip/2"), Refusal.UNKNOWN_SCHEMA, "schema"),
    (lambda m: m.replace(b'"index":0', b'"index":3'), Refusal.INVALID, "not below its count"),
    (lambda m: m.replace(b"\n", b" "), Refusal.MALFORMED, "no JSON header line"),
    (lambda m: m[: m.index(b"\n") + 1], Refusal.INVALID, "carries 0 bytes"),
])
def test_a_bad_chunk_is_refused_with_its_reason(change, reason, words):
    data = b"mp4-bytes" * 10
    message = change(encode_clip_chunk(header(data), data))
    with pytest.raises(ProtocolError) as err:
        decode_clip_chunk(message, agent_id="agent-1", event_id="ev-1")
    assert err.value.reason is reason and words in err.value.detail


def test_assembly_checks_every_chunk_the_size_and_the_hash():
    data = bytes(range(256)) * 9
    parts = split_clip(data, 1000)
    digest = hashlib.sha256(data).hexdigest()
    chunks = dict(enumerate(parts))
    assert assemble_clip(chunks, 3, digest, len(data)) == data
    with pytest.raises(ClipProblem, match=r"chunk\(s\) 2 of 3 missing"):
        assemble_clip({0: parts[0], 2: parts[2]}, 3, digest, len(data))
    with pytest.raises(ClipProblem, match="add up to"):
        assemble_clip({**chunks, 2: parts[2][:-1]}, 3, digest, len(data))
    swapped = {0: parts[1][:1000], 1: parts[0], 2: parts[2]}
    with pytest.raises(ClipProblem, match="does not match its sha256"):
        assemble_clip(swapped, 3, digest, len(data))
    assert json.loads(encode_clip_chunk(header(parts[0]), parts[0]).split(b"\n")[0])["schema"] == "cityops.clip/1"
