"""Enrollment, the hub's half of provisioning.

``cityops-hub enroll --agent-id ID [--grid G] [--ttl 1h]`` issues a single-use token
that expires; only its sha256 is stored. ``POST /api/v1/enroll`` (see
:mod:`protocol.provisioning`) exchanges it for broker credentials: a fresh password,
stored hashed in the broker's password file (:class:`hub.broker.BrokerAuth`), then the
broker reloads. A token that is unknown, used or expired is refused with a clear code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.ids import is_safe_id, new_secret

from .errors import EnrollmentError
from .store.repo import Repository

__all__ = ["Claim", "claim_token", "issue_token", "parse_ttl", "release_token", "token_hash"]

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


def issue_token(repo: Repository, agent_id: str, grid_id: str | None, ttl: timedelta,
                now: datetime) -> str:
    if not is_safe_id(agent_id):
        raise EnrollmentError("bad_agent_id", f"agent id {agent_id!r} is not a valid id "
                              "(1-64 of A-Z a-z 0-9 _ . -)")
    token = new_secret("enr", 32)
    repo.add_token(token_hash(token), agent_id, grid_id, now, now + ttl)
    return token


@dataclass(frozen=True)
class Claim:
    agent_id: str
    grid_id: str | None
    token_sha256: str


def claim_token(repo: Repository, token: str, now: datetime, used_by: str) -> Claim:
    """Mark the token used and say whom it enrolls; refuse unknown, used, expired."""
    digest = token_hash(token)
    row = repo.get_token(digest)
    if row is None:
        raise EnrollmentError("unknown_token", "this enrollment token is not known to the hub; "
                              "ask an operator for a new one (cityops-hub enroll)")
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
