"""Event clips on the wire: an H.264 MP4 of the seconds around a camera event, cut into
chunks that travel as outbox rows like snapshots (``cityops/v1/agents/{agent_id}/clips/{event_id}``,
QoS 1, each chunk its own seq, acknowledged by the hub's ack).

A chunk message is a JSON header line (:class:`ClipChunkHeader`), a newline, then the
chunk's bytes. Every chunk names the whole clip (its sha256, size and chunk count), so
the hub can reassemble it from chunks in any order and check the result: a chunk whose
bytes do not match its own hash is refused (and the clip reported failed), a clip whose
chunks do not add up to the hash it names is never stored as a file.

The limits below keep one chunk message under the broker's ``message_size_limit`` (a
test checks it), and a whole clip small enough for a slow uplink: 30 s of 320x180 at
2 fps is about 50 kB, 8-120 kB by scene (docs/camera.md, "Event clips").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from .errors import ProtocolError, Refusal
from .ids import Id
from .limits import KIB, MAX_SEQ
from .messages import Message, _sane_time

__all__ = [
    "CLIP_SCHEMA",
    "MAX_CLIP_BYTES",
    "MAX_CLIP_CHUNKS",
    "MAX_CLIP_CHUNK_BYTES",
    "MAX_CLIP_HEADER_BYTES",
    "ClipChunkHeader",
    "ClipProblem",
    "assemble_clip",
    "decode_clip_chunk",
    "encode_clip_chunk",
    "split_clip",
]

CLIP_SCHEMA = "cityops.clip/1"
MAX_CLIP_CHUNK_BYTES = 128 * KIB  # the video bytes of one chunk message
MAX_CLIP_HEADER_BYTES = 2 * KIB  # its JSON header line
MAX_CLIP_CHUNKS = 32  # MAX_CLIP_BYTES / MAX_CLIP_CHUNK_BYTES: no clip needs more
MAX_CLIP_BYTES = 4 * 1024 * KIB  # a whole clip (the agent's encoder stays far below)

_Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Time = Annotated[datetime, AfterValidator(_sane_time)]


class ClipChunkHeader(Message):
    """The JSON line in front of one chunk of an event's clip."""

    schema_: Literal["cityops.clip/1"] = Field(CLIP_SCHEMA, alias="schema")
    agent_id: Id
    event_id: Id = Field(description="the camera event the clip shows")
    seq: int = Field(ge=1, le=MAX_SEQ, strict=True)
    index: int = Field(ge=0, lt=MAX_CLIP_CHUNKS, description="this chunk's place, from 0")
    count: int = Field(ge=1, le=MAX_CLIP_CHUNKS, description="chunks in the clip")
    sha256: _Sha256 = Field(description="of this chunk's bytes")
    clip_sha256: _Sha256 = Field(description="of the whole clip")
    clip_bytes: int = Field(gt=0, le=MAX_CLIP_BYTES)
    content_type: Literal["video/mp4"] = "video/mp4"
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    fps: float = Field(gt=0, le=60)
    frames: int = Field(ge=1, le=100_000)
    duration_s: float = Field(ge=0, le=3600)
    started_at: _Time | None = Field(None, description="wall time of the clip's first frame")
    event_offset_s: float = Field(0.0, ge=0, le=3600, description="the event's moment, seconds into the clip")

    @model_validator(mode="after")
    def _index_in_range(self) -> ClipChunkHeader:
        if self.index >= self.count:
            raise ValueError(f"chunk index {self.index} is not below its count {self.count}")
        return self


class ClipProblem(ValueError):
    """A clip that cannot be assembled: the reason reads well on the case page."""


def split_clip(data: bytes, chunk_bytes: int = MAX_CLIP_CHUNK_BYTES) -> list[bytes]:
    """``data`` cut into pieces of at most ``chunk_bytes`` (at least one piece)."""
    if not data:
        raise ValueError("an empty clip has no chunks")
    if not 1 <= chunk_bytes <= MAX_CLIP_CHUNK_BYTES:
        raise ValueError(f"chunk size must be 1..{MAX_CLIP_CHUNK_BYTES} bytes")
    if len(data) > MAX_CLIP_BYTES:
        raise ProtocolError(Refusal.TOO_LARGE, f"clip is {len(data)} bytes, over the {MAX_CLIP_BYTES}-byte limit")
    parts = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    if len(parts) > MAX_CLIP_CHUNKS:
        raise ProtocolError(Refusal.TOO_LARGE, f"clip needs {len(parts)} chunks, over the limit of {MAX_CLIP_CHUNKS}")
    return parts


def encode_clip_chunk(header: ClipChunkHeader, data: bytes) -> bytes:
    """A chunk message: the JSON header, a newline, the chunk's bytes."""
    if len(data) > MAX_CLIP_CHUNK_BYTES:
        raise ProtocolError(Refusal.TOO_LARGE, f"clip chunk is {len(data)} bytes, over the {MAX_CLIP_CHUNK_BYTES}-byte limit")
    if hashlib.sha256(data).hexdigest() != header.sha256:
        raise ValueError("clip chunk header sha256 does not match the chunk's bytes")
    head = header.model_dump_json(by_alias=True, exclude_none=True).encode()
    if len(head) > MAX_CLIP_HEADER_BYTES:
        raise ProtocolError(Refusal.TOO_LARGE, f"clip chunk header is {len(head)} bytes, over {MAX_CLIP_HEADER_BYTES}")
    return head + b"\n" + data


def read_clip_header(payload: bytes) -> ClipChunkHeader:
    """The header of a chunk message (nothing about its bytes checked). Raises ProtocolError."""
    if len(payload) > MAX_CLIP_CHUNK_BYTES + MAX_CLIP_HEADER_BYTES + 1:
        raise ProtocolError(Refusal.TOO_LARGE, f"clip chunk message is {len(payload)} bytes, over the limit")
    newline = payload.find(b"\n", 0, MAX_CLIP_HEADER_BYTES + 1)
    if newline < 0:
        raise ProtocolError(Refusal.MALFORMED, "clip chunk message has no JSON header line")
    try:
        return ClipChunkHeader.model_validate_json(payload[:newline], context={"wire": True})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        if first["type"] in ("json_invalid", "json_type"):
            raise ProtocolError(Refusal.MALFORMED, f"clip chunk header is not valid JSON: {first['msg']}") from None
        if where == "schema":
            raise ProtocolError(Refusal.UNKNOWN_SCHEMA, f"clip chunk schema is not supported here; this side speaks {CLIP_SCHEMA!r}",
                                field="schema") from None
        raise ProtocolError(Refusal.INVALID, f"clip chunk header {where}: {first['msg']}", field=where) from None


def decode_clip_chunk(
    payload: bytes, *, agent_id: str | None = None, event_id: str | None = None
) -> tuple[ClipChunkHeader, bytes]:
    """Split and check a chunk message: header, bytes, the topic's agent and event, the
    chunk's hash. Raises :class:`ProtocolError` with the reason."""
    header = read_clip_header(payload)
    data = payload[payload.find(b"\n") + 1:]
    if agent_id is not None and header.agent_id != agent_id:
        raise ProtocolError(Refusal.TOPIC_MISMATCH, f"clip chunk says agent_id {header.agent_id!r} but was "
                            f"published on agent {agent_id!r}'s topic", field="agent_id")
    if event_id is not None and header.event_id != event_id:
        raise ProtocolError(Refusal.TOPIC_MISMATCH, f"clip chunk names event {header.event_id!r} but the topic "
                            f"names {event_id!r}", field="event_id")
    if not data or len(data) > MAX_CLIP_CHUNK_BYTES:
        raise ProtocolError(Refusal.INVALID, f"clip chunk carries {len(data)} bytes (1..{MAX_CLIP_CHUNK_BYTES})")
    if hashlib.sha256(data).hexdigest() != header.sha256:
        raise ProtocolError(Refusal.INVALID, f"clip chunk {header.index + 1} of {header.count}: "
                            "its bytes do not match the header's sha256 (corrupted on the way)")
    return header, data


def assemble_clip(chunks: Mapping[int, bytes], count: int, clip_sha256: str, clip_bytes: int) -> bytes:
    """The whole clip from its chunks, checked: every index present, the size and the hash
    the chunks named. Raises :class:`ClipProblem` saying what is wrong."""
    missing = [i + 1 for i in range(count) if i not in chunks]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ClipProblem(f"chunk(s) {shown} of {count} missing")
    data = b"".join(chunks[i] for i in range(count))
    if len(data) != clip_bytes:
        raise ClipProblem(f"the chunks add up to {len(data)} bytes, not the {clip_bytes} the clip named")
    if hashlib.sha256(data).hexdigest() != clip_sha256:
        raise ClipProblem("the reassembled clip does not match its sha256 (a chunk was altered)")
    return data
