"""Identifiers that travel in topics and messages.

Agent, device, camera, grid and event ids share one safe alphabet, so an id can never
change the meaning of an MQTT topic (``/``, ``+``, ``#``), a file path (``..``) or a SQL
LIKE pattern, and never carries NUL or control characters.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from typing import Annotated

from pydantic import StringConstraints

__all__ = ["ID_PATTERN", "Id", "is_safe_id", "new_boot_id", "new_event_id", "new_secret"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

# An id usable in topics, paths and file names: 1-64 chars from [A-Za-z0-9_.-],
# starting with a letter or digit (so never "." or "..").
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def is_safe_id(value: object) -> bool:
    """True when ``value`` is a string in the shared safe id alphabet."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def new_event_id() -> str:
    """A new event id: 12 hex digits of milliseconds then 12 random hex digits.

    Time-ordered (so ids sort by creation) and unique without coordination.
    """
    return f"{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


def new_boot_id() -> str:
    """A random id for one run of an agent process."""
    return os.urandom(8).hex()


def new_secret(prefix: str, nbytes: int = 24) -> str:
    """A random secret (enrollment token, broker password) that is safe on a command line.

    The prefix names what the secret is (``enr`` for an enrollment token, ``mqp`` for a
    broker password), which helps people and secret scanners recognise it, and means it
    never starts with ``-`` (``token_urlsafe`` alone can, and argparse then reads it as an
    option).
    """
    if not re.fullmatch(r"[a-z]{2,8}", prefix):
        raise ValueError("prefix must be 2-8 lowercase letters")
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
