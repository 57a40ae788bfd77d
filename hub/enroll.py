"""Enrollment, the hub's half of provisioning.

``cityops-hub enroll --agent-id ID [--grid G] [--ttl 1h]`` issues a single-use token
that expires; only its sha256 is stored. ``POST /api/v1/enroll`` (see
:mod:`protocol.provisioning`) exchanges it for broker credentials: a fresh password,
stored hashed in the broker's password file (:class:`hub.broker.BrokerAuth`), then the
broker reloads. A token that is unknown, used or expired is refused with a clear code.
The hub's own broker user and its pseudo-agents (:data:`protocol.ids.RESERVED_AGENT_IDS`)
are never enrolled: issuing or claiming a token for one is refused (``reserved_agent_id``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.ids import HUB_CLIENT_ID_PREFIX, HUB_USER, is_safe_id, new_secret, reserved_agent_id

from .errors import EnrollmentError
from .store.repo import Repository

__all__ = ["Claim", "check_enrollable", "claim_token", "issue_token", "parse_ttl", "release_token",
           "token_hash"]

_TTL = re.compile(r"^(\d+)\s*([smhd]?)$")


def parse_ttl(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d`` or plain seconds."""
    m = _TTL.fullmatch(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise EnrollmentError("bad_ttl", f"cannot read ttl {text!r}; use e.g. 30m, 1h or 2d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return timedelta(seconds=int(m.group(1)) * unit)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_enrollable(agent_id: str, *, hub_user: str = HUB_USER,
                     hub_client_prefix: str = HUB_CLIENT_ID_PREFIX) -> None:
    """Refuse an agent id that is not a safe id or that the hub keeps for itself
    (:func:`protocol.ids.reserved_agent_id`): enrolling ``hub`` would hand out the broker's
    superuser, enrolling ``open311`` would let a device speak as a hub channel."""
    if not is_safe_id(agent_id):
        raise EnrollmentError("bad_agent_id", f"agent id {agent_id!r} is not a valid id "
                              "(1-64 of A-Z a-z 0-9 _ . -)")
    why = reserved_agent_id(agent_id, hub_user=hub_user, hub_client_prefix=hub_client_prefix)
    if why:
        raise EnrollmentError("reserved_agent_id", f"agent id {agent_id!r} is reserved: {why}; "
                              "give the agent another id")


def issue_token(repo: Repository, agent_id: str, grid_id: str | None, ttl: timedelta,
                now: datetime, *, hub_user: str = HUB_USER,
                hub_client_prefix: str = HUB_CLIENT_ID_PREFIX) -> str:
    """A new single-use token for ``agent_id`` (only its hash is stored). ``hub_user`` and
    ``hub_client_prefix`` are the hub's configured broker user and client id prefix."""
    check_enrollable(agent_id, hub_user=hub_user, hub_client_prefix=hub_client_prefix)
    token = new_secret("enr", 32)
    repo.add_token(token_hash(token), agent_id, grid_id, now, now + ttl)
    return token


@dataclass(frozen=True)
class Claim:
    agent_id: str
    grid_id: str | None
    token_sha256: str


def claim_token(repo: Repository, token: str, now: datetime, used_by: str, *,
                hub_user: str = HUB_USER, hub_client_prefix: str = HUB_CLIENT_ID_PREFIX) -> Claim:
    """Mark the token used and say whom it enrolls; refuse unknown, used, expired, and a
    token for a reserved id (issued before ids were checked, or before a config change)."""
    digest = token_hash(token)
    row = repo.get_token(digest)
    if row is None:
        raise EnrollmentError("unknown_token", "this enrollment token is not known to the hub; "
                              "ask an operator for a new one (cityops-hub enroll)")
    check_enrollable(row.agent_id, hub_user=hub_user, hub_client_prefix=hub_client_prefix)
    if row.used_at is not None:
        raise EnrollmentError("token_used", f"this enrollment token was already used at "
                              f"{row.used_at:%Y-%m-%d %H:%M} UTC; tokens work once")
    if now >= row.expires_at:
        raise EnrollmentError("token_expired", f"this enrollment token expired at "
                              f"{row.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one")
    repo.use_token(digest, now, used_by)
    repo.upsert_agent(row.agent_id, grid_id=row.grid_id, enrolled_at=now,
                      hostname=used_by or None)
    return Claim(row.agent_id, row.grid_id, digest)


def release_token(repo: Repository, token_sha256: str) -> None:
    """Undo a claim whose broker credentials could not be written (token usable again)."""
    repo.release_token(token_sha256)
