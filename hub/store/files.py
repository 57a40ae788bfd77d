"""Snapshot files (and event clips, ``suffix=".mp4"``), content-addressed.

A JPEG is stored at ``{root}/{h[0:2]}/{h[2:4]}/{h}.jpg`` where ``h`` is the sha256 the hub
computed over the bytes itself: no part of a path ever comes from a string an agent
sent. Files are written to a temporary name, fsynced and renamed, before the database
row that names them is committed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["SnapshotFiles"]

_SHA = re.compile(r"^[0-9a-f]{64}$")


class SnapshotFiles:
    def __init__(self, root: str | Path, *, suffix: str = ".jpg") -> None:
        self.root = Path(root)
        self.suffix = suffix

    def path_for(self, sha256: str) -> Path:
        if not _SHA.fullmatch(sha256):
            raise ValueError("a snapshot is addressed by a lowercase hex sha256")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{self.suffix}"

    def put(self, jpeg: bytes) -> str:
        """Store the bytes (idempotent); return the sha256 computed here."""
        sha = hashlib.sha256(jpeg).hexdigest()
        path = self.path_for(sha)
        if path.exists():
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return sha

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path_for(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def exists(self, sha256: str) -> bool:
        try:
            return self.path_for(sha256).exists()
        except ValueError:
            return False

    def delete(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
            return True
        except FileNotFoundError:
            return False
