"""Writes that survive a power cut, for the agent's release files (edge_agent/ota.py,
edge_agent/selfupdate.py): a file replaced atomically and synced with its folder, and a
folder's entries synced. Standard library only: the self-update bootstrap imports it
before anything heavy."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or what it held before, never a mix: written beside it,
    synced, renamed over it, the folder synced."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
