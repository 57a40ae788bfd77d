"""Releases on the wire: a versioned detector model (later agent software) shipped from
the hub to agents over MQTT, resumable, checked chunk by chunk and as a whole.

Four channels (``protocol/topics.py``):

``release``  hub → agent, QoS 1, retained: :class:`DesiredRelease`, the release the agent
    should run (``release: null`` = the model its config names). Desired state, like
    ``config``: an agent that is offline converges when it comes back.
``fetch``    agent → hub, QoS 1: :class:`ChunkRequest`, "send me chunks first..first+count-1
    of release R". The agent pulls: it asks for a few chunks at a time, so it resumes
    from what it has on disk after a restart or power loss, and the hub never pushes a
    whole model at 1,000 agents at once.
``blobs``    hub → agent, QoS 1: one chunk: a JSON header line (:class:`ReleaseChunkHeader`),
    a newline, the bytes. Each chunk carries its own SHA-256 and the release's.
``release_state`` agent → hub, QoS 1, retained: :class:`ReleaseReport`, where the agent
    stands (downloading, verified, active, failed with the reason, reverted).

An agent release (kind ``agent``) is a wheel of the project's distribution: the agent
unpacks it beside the installed one and restarts into it (``edge_agent/selfupdate.py``);
:func:`check_agent_package` checks it on both sides.

A model release is a zip (the *package*) holding ``cityops_detector_int8.tflite``,
``labels.txt`` and optionally ``thresholds.json`` and ``training.json``: the layout of a
bundled model folder (``vision/models/real``). :func:`check_model_package` checks it on
both sides: the hub before it offers a release, the agent after the SHA-256 matched and
before it unpacks.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from .base import WireModel
from .errors import ProtocolError, Refusal
from .ids import Id
from .limits import (
    MAX_RELEASE_BYTES,
    MAX_RELEASE_CHUNK_BYTES,
    MAX_RELEASE_HEADER_BYTES,
    MAX_RELEASE_MESSAGE_BYTES,
)
from .messages import Message, ShortText, _sane_time

__all__ = [
    "CHUNK_REQUEST_SCHEMA",
    "DESIRED_RELEASE_SCHEMA",
    "FETCH_RESEND_S",
    "FETCH_WINDOW",
    "MAX_RELEASE_BYTES",
    "MAX_RELEASE_CHUNKS",
    "MAX_RELEASE_CHUNK_BYTES",
    "MAX_RELEASE_HEADER_BYTES",
    "MAX_RELEASE_MESSAGE_BYTES",
    "MODEL_FILE",
    "RELEASE_CHUNK_SCHEMA",
    "RELEASE_REPORT_SCHEMA",
    "ChunkRequest",
    "DesiredRelease",
    "PackageProblem",
    "ReleaseChunkHeader",
    "ReleaseKind",
    "ReleaseRef",
    "ReleaseReport",
    "ReleaseState",
    "AGENT_DISTRIBUTION",
    "AgentPackage",
    "check_agent_package",
    "check_model_package",
    "decode_release_chunk",
    "encode_release_chunk",
    "release_chunk",
    "sha256_hex",
    "wanted_runs",
]

DESIRED_RELEASE_SCHEMA = "cityops.release/1"
CHUNK_REQUEST_SCHEMA = "cityops.fetch/1"
RELEASE_CHUNK_SCHEMA = "cityops.blob/1"
RELEASE_REPORT_SCHEMA = "cityops.release_state/1"

MAX_RELEASE_CHUNKS = MAX_RELEASE_BYTES // MAX_RELEASE_CHUNK_BYTES
MAX_FETCH_CHUNKS = 16  # chunks one request may ask for (the agent asks for fewer)
FETCH_WINDOW = 4  # chunks an agent has asked for and not yet received, at most
FETCH_RESEND_S = 10.0  # a chunk not answered this long is asked for again

MODEL_FILE = "cityops_detector_int8.tflite"
_PACKAGE_FILES = frozenset({MODEL_FILE, "labels.txt", "thresholds.json", "training.json"})

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Time = Annotated[datetime, AfterValidator(_sane_time)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ReleaseKind(StrEnum):
    MODEL = "model"  # a detector package (zip), run by the agent's cameras
    AGENT = "agent"  # the agent's own software: a wheel of the project (check_agent_package)


class ReleaseRef(WireModel):
    """What a release is: enough for an agent to fetch it and check what it got."""

    release_id: Id
    kind: ReleaseKind = ReleaseKind.MODEL
    name: ShortText = Field(description="the model's family, e.g. 'detector'")
    version: int = Field(ge=1, le=1_000_000)
    sha256: Sha256 = Field(description="of the whole package")
    bytes: int = Field(gt=0, le=MAX_RELEASE_BYTES)
    chunk_bytes: int = Field(gt=0, le=MAX_RELEASE_CHUNK_BYTES)
    chunks: int = Field(ge=1, le=MAX_RELEASE_CHUNKS)

    @model_validator(mode="after")
    def _chunks_add_up(self) -> ReleaseRef:
        expected = -(-self.bytes // self.chunk_bytes)
        if self.chunks != expected:
            raise ValueError(f"{self.bytes} bytes in chunks of {self.chunk_bytes} make {expected} chunks, "
                             f"not {self.chunks}")
        return self


class DesiredRelease(Message):
    """hub → agent, retained: run this release (``release`` null: the config's own model)."""

    schema_: Literal["cityops.release/1"] = Field(DESIRED_RELEASE_SCHEMA, alias="schema")
    agent_id: Id
    release: ReleaseRef | None = None
    rollout_id: Id | None = Field(None, description="the rollout that set it (shown in reports)")
    issued_at: _Time


class ChunkRequest(Message):
    """agent → hub: send chunks ``first`` .. ``first + count - 1`` of a release."""

    schema_: Literal["cityops.fetch/1"] = Field(CHUNK_REQUEST_SCHEMA, alias="schema")
    agent_id: Id
    release_id: Id
    first: int = Field(ge=0, lt=MAX_RELEASE_CHUNKS)
    count: int = Field(ge=1, le=MAX_FETCH_CHUNKS)
    at: _Time


class ReleaseChunkHeader(Message):
    """The JSON line in front of one chunk of a release."""

    schema_: Literal["cityops.blob/1"] = Field(RELEASE_CHUNK_SCHEMA, alias="schema")
    release_id: Id
    index: int = Field(ge=0, lt=MAX_RELEASE_CHUNKS)
    count: int = Field(ge=1, le=MAX_RELEASE_CHUNKS)
    sha256: Sha256 = Field(description="of this chunk's bytes")
    release_sha256: Sha256

    @model_validator(mode="after")
    def _index_in_range(self) -> ReleaseChunkHeader:
        if self.index >= self.count:
            raise ValueError(f"chunk index {self.index} is not below its count {self.count}")
        return self


class ReleaseState(StrEnum):
    DOWNLOADING = "downloading"  # chunks arriving (``chunks_done`` of ``chunks``)
    VERIFIED = "verified"  # whole package on disk, SHA-256 and contents checked, not yet running
    ACTIVE = "active"  # the cameras run it
    FAILED = "failed"  # ``reason`` says why; the agent runs what it ran before
    REVERTED = "reverted"  # the hub withdrew the release: the config's own model runs again


class ReleaseReport(Message):
    """agent → hub, retained: where this agent stands with the release it was asked for."""

    schema_: Literal["cityops.release_state/1"] = Field(RELEASE_REPORT_SCHEMA, alias="schema")
    agent_id: Id
    release_id: Id | None = Field(None, description="the release this report is about (none: reverted)")
    rollout_id: Id | None = None
    state: ReleaseState
    chunks_done: int = Field(0, ge=0, le=MAX_RELEASE_CHUNKS)
    chunks: int = Field(0, ge=0, le=MAX_RELEASE_CHUNKS)
    active: Id | None = Field(None, description="the release the cameras run now (none: the config's model)")
    reason: Annotated[str, Field(max_length=500)] | None = None
    at: _Time


def wanted_runs(chunks: int, first_missing: int, held: Container[int],
                window: int = FETCH_WINDOW) -> list[tuple[int, int]]:
    """What an agent asks for next, as ``(first, count)`` runs of contiguous chunks: the
    chunks of the window that starts at the first one it lacks, less those it ``held``
    (received, or asked for and not yet overdue). One request per run."""
    runs: list[tuple[int, int]] = []
    for i in range(first_missing, min(chunks, first_missing + window)):
        if i in held:
            continue
        if runs and sum(runs[-1]) == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def release_chunk(package: bytes, ref: ReleaseRef, index: int) -> bytes:
    """The message carrying chunk ``index`` of ``package`` (what the hub publishes)."""
    if not 0 <= index < ref.chunks:
        raise ValueError(f"release {ref.release_id} has chunks 0..{ref.chunks - 1}, not {index}")
    data = package[index * ref.chunk_bytes:(index + 1) * ref.chunk_bytes]
    header = ReleaseChunkHeader(release_id=ref.release_id, index=index, count=ref.chunks,
                                sha256=sha256_hex(data), release_sha256=ref.sha256)
    return encode_release_chunk(header, data)


def encode_release_chunk(header: ReleaseChunkHeader, data: bytes) -> bytes:
    if not data or len(data) > MAX_RELEASE_CHUNK_BYTES:
        raise ProtocolError(Refusal.TOO_LARGE, f"release chunk is {len(data)} bytes "
                            f"(1..{MAX_RELEASE_CHUNK_BYTES})")
    if sha256_hex(data) != header.sha256:
        raise ValueError("release chunk header sha256 does not match the chunk's bytes")
    return header.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n" + data


def decode_release_chunk(payload: bytes) -> tuple[ReleaseChunkHeader, bytes]:
    """Split and check a chunk message: header, size, the chunk's own hash. Raises
    :class:`ProtocolError` with the reason."""
    if len(payload) > MAX_RELEASE_CHUNK_BYTES + MAX_RELEASE_HEADER_BYTES + 1:
        raise ProtocolError(Refusal.TOO_LARGE, f"release chunk message is {len(payload)} bytes, over the limit")
    newline = payload.find(b"\n", 0, MAX_RELEASE_HEADER_BYTES + 1)
    if newline < 0:
        raise ProtocolError(Refusal.MALFORMED, "release chunk message has no JSON header line")
    try:
        header = ReleaseChunkHeader.model_validate_json(payload[:newline], context={"wire": True})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        raise ProtocolError(Refusal.INVALID, f"release chunk header {where}: {first['msg']}", field=where) from None
    data = payload[newline + 1:]
    if not data:
        raise ProtocolError(Refusal.INVALID, "release chunk carries no bytes")
    if sha256_hex(data) != header.sha256:
        raise ProtocolError(Refusal.INVALID, f"release chunk {header.index + 1} of {header.count}: its bytes "
                            "do not match the header's sha256 (corrupted on the way)")
    return header, data


class PackageProblem(ValueError):
    """A model package that cannot be used: the reason reads well in a report."""


def check_model_package(package: bytes) -> dict[str, bytes]:
    """The files of a model package, checked: a zip of at most the known files, with the
    int8 model (a TFLite flatbuffer) and a non-empty ``labels.txt``; ``thresholds.json``, when
    present, a mapping of label to a score in 0..1. Raises :class:`PackageProblem`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(package))
    except zipfile.BadZipFile as exc:
        raise PackageProblem(f"not a zip archive ({exc})") from None
    with archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        unknown = sorted(set(names) - _PACKAGE_FILES)
        if unknown:
            raise PackageProblem(f"unexpected file(s) in the package: {', '.join(unknown)} "
                                 f"(a model package holds {', '.join(sorted(_PACKAGE_FILES))})")
        if sum(i.file_size for i in archive.infolist()) > 4 * MAX_RELEASE_BYTES:
            raise PackageProblem("the package unpacks to more than four times the release size limit")
        try:
            files = {n: archive.read(n) for n in names}
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise PackageProblem(f"cannot unpack: {exc}") from None
    model = files.get(MODEL_FILE)
    if model is None:
        raise PackageProblem(f"the package has no {MODEL_FILE}")
    if model[4:8] != b"TFL3":
        raise PackageProblem(f"{MODEL_FILE} is not a TFLite model (no TFL3 identifier)")
    labels = [x.strip() for x in files.get("labels.txt", b"").decode("utf-8", "replace").splitlines() if x.strip()]
    if not labels:
        raise PackageProblem("the package has no labels.txt, or it is empty")
    if "thresholds.json" in files:
        try:
            scores = json.loads(files["thresholds.json"])["min_score"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PackageProblem(f'thresholds.json is not {{"min_score": {{LABEL: SCORE}}}} ({exc!r})') from None
        if not isinstance(scores, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and 0 < v <= 1 for k, v in scores.items()):
            raise PackageProblem("thresholds.json min_score must map each label to a score in (0, 1]")
    return files


AGENT_DISTRIBUTION = "cityops"  # [project] name in pyproject.toml: the wheel an agent release carries
AGENT_PACKAGES = ("edge_agent", "protocol")  # what a wheel must hold for the agent to run from it


@dataclass(frozen=True)
class AgentPackage:
    """A checked agent wheel: its distribution version and its files (path -> bytes)."""

    name: str
    version: str
    files: dict[str, bytes]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name and ":" not in name


def check_agent_package(package: bytes) -> AgentPackage:
    """An agent release, checked: a wheel (zip) of the ``cityops`` distribution whose
    ``*.dist-info/METADATA`` names it and a version, holding the ``edge_agent`` and
    ``protocol`` packages, every member a plain relative path, within the size limits.
    Raises :class:`PackageProblem` naming what is wrong."""
    if len(package) > MAX_RELEASE_BYTES:
        raise PackageProblem(f"the wheel is {len(package)} bytes, over the release limit of {MAX_RELEASE_BYTES}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(package))
    except zipfile.BadZipFile as exc:
        raise PackageProblem(f"not a wheel: not a zip archive ({exc})") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        unsafe = [i.filename for i in infos if not _safe_member(i.filename)]
        if unsafe:
            raise PackageProblem(f"the wheel has file(s) outside its own tree: {', '.join(unsafe[:5])}")
        if sum(i.file_size for i in infos) > 4 * MAX_RELEASE_BYTES:
            raise PackageProblem("the wheel unpacks to more than four times the release size limit")
        try:
            files = {i.filename: archive.read(i.filename) for i in infos}
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise PackageProblem(f"cannot unpack the wheel: {exc}") from None
    metadata = [n for n in files if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
    if len(metadata) != 1:
        raise PackageProblem(f"not a wheel: {len(metadata)} *.dist-info/METADATA file(s), one expected "
                             "(build it with: python -m pip wheel . --no-deps)")
    headers = email.parser.HeaderParser().parsestr(files[metadata[0]].decode("utf-8", "replace"))
    name, version = (headers.get("Name") or "").strip(), (headers.get("Version") or "").strip()
    if _normalized(name) != AGENT_DISTRIBUTION:
        raise PackageProblem(f"the wheel is of {name or 'no named distribution'!r}, not of the agent's "
                             f"{AGENT_DISTRIBUTION!r}")
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}", version):
        raise PackageProblem(f"the wheel's METADATA has no usable Version ({version!r})")
    missing = [p for p in AGENT_PACKAGES if f"{p}/__init__.py" not in files]
    if missing:
        raise PackageProblem(f"the wheel has no {', '.join(p + '/' for p in missing)} package: it cannot run the agent")
    return AgentPackage(name, version, files)
