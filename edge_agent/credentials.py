"""The agent's broker credentials: a small YAML file (mode 0600) written by
``cityops-agent provision`` and read at every connection attempt, so provisioning again
takes effect without a restart."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Annotated

from pydantic import Field

from protocol.base import StrictModel
from protocol.config import load_model_file
from protocol.errors import ConfigError
from protocol.ids import Id

from .errors import AuthError

__all__ = ["Credentials", "read_credentials", "write_secret"]

log = logging.getLogger(__name__)


class Credentials(StrictModel):
    username: Id
    password: Annotated[str, Field(min_length=1, max_length=200)]


def read_credentials(path: Path) -> Credentials:
    """Load the credentials file; a missing or invalid one is an AuthError (retrying with
    the same file cannot help)."""
    if not path.exists():
        raise AuthError(f"credentials file {path} not found; run `cityops-agent provision` "
                        "or set mqtt.credentials_file")
    try:
        creds = load_model_file(path, Credentials)
    except ConfigError as exc:
        raise AuthError(f"credentials file is invalid: {exc}") from exc
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("credentials file %s is readable by others (mode %o); chmod 600 it", path, mode)
    return creds


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
