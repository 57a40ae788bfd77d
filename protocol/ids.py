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
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
    "HUB_CLIENT_ID_PREFIX",
    "HUB_USER",
    "ID_PATTERN",
    "RESERVED_AGENT_IDS",
    "Id",
    "is_safe_id",
    "new_boot_id",
    "new_event_id",
    "new_secret",
    "reserved_agent_id",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

# An id usable in topics, paths and file names: 1-64 chars from [A-Za-z0-9_.-],
# starting with a letter or digit (so never "." or "..").
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def is_safe_id(value: object) -> bool:
    """True when ``value`` is a string in the shared safe id alphabet."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


HUB_USER = "hub"  # the hub's broker user name unless broker.username says otherwise
HUB_CLIENT_ID_PREFIX = "cityops-hub"  # the hub's MQTT client ids unless ingest.client_id says otherwise

#: Ids an agent may never have, and why: the hub's own broker user, and the pseudo-agents
#: whose events the hub makes itself (each hub channel's constant is checked against
#: this list by tests/hub/test_enroll_cli.py). The one list: enrollment
#: (``hub/enroll.py``) and the broker's password file (``hub/broker.py``) both ask
#: :func:`reserved_agent_id`.
RESERVED_AGENT_IDS: Mapping[str, str] = MappingProxyType({
    HUB_USER: "it is the hub's own broker user, which may read and write every topic",
    "open311": "it is the hub's channel for Open311 service requests",
    "reporter": "it is the hub's channel for residents' committee reports",
    "linkage": "it is the hub's channel for emergency systems' linked incidents",
    "vitals": "it is the hub's channel for vital-sign level changes",
})


def reserved_agent_id(agent_id: str, *, hub_user: str = HUB_USER,
                      hub_client_prefix: str = HUB_CLIENT_ID_PREFIX) -> str | None:
    """Why ``agent_id`` may not be an agent's id, or None when it may.

    Compared without case, so no agent can look like a hub channel in a list. Besides
    :data:`RESERVED_AGENT_IDS`: the hub's configured broker user (``hub_user``), and the
    hub's MQTT client ids (``hub_client_prefix`` and ``hub_client_prefix-*``), which a
    broker that binds client ids to user names would hand to the agent.
    """
    key = agent_id.casefold()
    if key == hub_user.casefold():
        return RESERVED_AGENT_IDS[HUB_USER]
    if key in RESERVED_AGENT_IDS:
        return RESERVED_AGENT_IDS[key]
    prefix = hub_client_prefix.casefold()
    if key == prefix or key.startswith(prefix + "-"):
        return (f"it is (or begins like) the hub's own MQTT client ids ({hub_client_prefix}-*), "
                "so the broker could take the agent for one of the hub's connections")
    return None


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
