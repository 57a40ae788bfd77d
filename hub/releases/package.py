"""A model folder or zip made into a release package, checked the way the agent will
check it, stored under ``releases.dir`` and recorded (``cityops-hub release add``)."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from protocol.ids import is_safe_id
from protocol.releases import (
    MAX_RELEASE_BYTES,
    MAX_RELEASE_CHUNK_BYTES,
    MODEL_FILE,
    PackageProblem,
    ReleaseKind,
    check_agent_package,
    check_model_package,
    sha256_hex,
)

from ..errors import HubError
from .model import ReleaseRow

__all__ = ["PACKAGE_FILES", "ReleaseError", "add_release", "build_package", "read_package"]

# What a model folder may hold for the package (the order they go into the zip).
PACKAGE_FILES = (MODEL_FILE, "labels.txt", "thresholds.json", "training.json")
# A package's zip entries carry this fixed time, so the same folder makes the same bytes.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class ReleaseError(HubError):
    """A release or rollout action that cannot be done; the message says why and what to do."""


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in PACKAGE_FILES:
            if name in files:
                info = zipfile.ZipInfo(name, _ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, files[name])
    return buf.getvalue()


def build_agent_package(path: Path) -> bytes:
    """An agent software release: a wheel of the project, checked with
    :func:`protocol.releases.check_agent_package`."""
    if not path.is_file():
        raise ReleaseError(f"{path}: no such file (name a wheel: python -m pip wheel . --no-deps -w dist)")
    package = path.read_bytes()
    try:
        check_agent_package(package)
    except PackageProblem as exc:
        raise ReleaseError(f"{path}: not a usable agent wheel: {exc}") from None
    return package


def build_package(path: Path, kind: str = ReleaseKind.MODEL.value) -> bytes:
    """The package for ``path``: a model folder (``cityops_detector_int8.tflite``,
    ``labels.txt``, optionally ``thresholds.json`` and ``training.json``; other files are
    left out) zipped, or a ``.zip`` as it is. Checked with
    :func:`protocol.releases.check_model_package`; raises :class:`ReleaseError` with the
    reason and the fix. ``kind`` agent: :func:`build_agent_package`."""
    if kind == ReleaseKind.AGENT.value:
        return build_agent_package(path)
    if path.is_dir():
        files = {n: (path / n).read_bytes() for n in PACKAGE_FILES if (path / n).is_file()}
        if MODEL_FILE not in files:
            raise ReleaseError(f"{path} has no {MODEL_FILE}: name a model folder (like "
                               "vision/models/real) or a .zip package")
        package = _zip(files)
    elif path.is_file():
        package = path.read_bytes()
    else:
        raise ReleaseError(f"{path}: no such file or folder (name a model folder or a .zip package)")
    if len(package) > MAX_RELEASE_BYTES:
        raise ReleaseError(f"{path}: the package is {len(package)} bytes, over the release limit of "
                           f"{MAX_RELEASE_BYTES} (protocol/limits.py): ship a smaller model")
    try:
        check_model_package(package)
    except PackageProblem as exc:
        raise ReleaseError(f"{path}: not a usable model package: {exc}") from None
    return package


def _store_file(folder: Path, name: str, data: bytes) -> None:
    """Write the package atomically (a temporary file renamed into place, synced)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(folder / name)


def add_release(repo: Any, folder: Path, package: bytes, *, name: str, now: datetime, by: str,
                notes: str = "", gate: dict[str, Any] | None = None,
                kind: str = ReleaseKind.MODEL.value) -> ReleaseRow:
    """Record ``package`` as the next version of ``name`` and store its file; inside the
    caller's transaction (the file is written first: a row never names a missing file)."""
    if not is_safe_id(name) or len(name) > 40:
        raise ReleaseError(f"release name {name!r}: use 1-40 characters from A-Z a-z 0-9 _ . - "
                           "starting with a letter or digit (e.g. detector)")
    version = repo.release_next_version(name)
    release_id = f"{name}-{version}"
    chunk = MAX_RELEASE_CHUNK_BYTES
    row = ReleaseRow(release_id=release_id, name=name, version=version, sha256=sha256_hex(package),
                     bytes=len(package), chunk_bytes=chunk, chunks=-(-len(package) // chunk),
                     file=f"{release_id}.{'whl' if kind == ReleaseKind.AGENT.value else 'zip'}",
                     created_at=now, created_by=by, notes=notes[:2000], gate=gate, kind=ReleaseKind(kind).value)
    row.ref()  # the sizes add up and fit the protocol's limits (raises otherwise)
    _store_file(folder, row.file, package)
    repo.release_insert(row)
    return row


def read_package(folder: Path, row: ReleaseRow) -> bytes:
    """A stored package, checked against its recorded SHA-256."""
    path = folder / row.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"release {row.release_id}: cannot read its package {path}: {exc} "
                           "(restore releases.dir from a backup, or add the release again)") from None
    if sha256_hex(data) != row.sha256:
        raise ReleaseError(f"release {row.release_id}: {path} does not match its recorded SHA-256 "
                           "(the file changed on disk; add the release again)")
    return data
