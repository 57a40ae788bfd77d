"""Users, login sessions and API tokens over the repository.

Writes run inside the writer's transaction (``hub.write(lambda repo: ...)``) or, for the
``cityops-hub user``/``token`` commands, a short second writer like ``enroll``. Secrets
are never stored: passwords as Argon2id hashes, session ids and API tokens as sha256
(they are 256-bit random values, so a fast hash is enough).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from protocol.ids import new_secret

from ..store.repo import ApiTokenRow, Repository, SessionRow, UserRow
from .errors import AuthError
from .passwords import check_password_rules, hash_password
from .roles import NEEDS_DEPARTMENT, TOKEN_ROLES, USER_ROLES, Principal, Role
from .scope import check_level_scope, resolve_scope

__all__ = [
    "NewSession",
    "add_user",
    "create_api_token",
    "principal_for_token",
    "principal_for_user",
    "principal_now",
    "revoke_api_token",
    "set_disabled",
    "set_password",
    "set_scope",
    "sha256_hex",
    "start_session",
    "valid_session",
]

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{1,31}$")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}$")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_role(role: str, department: str | None, allowed: Collection[Role],
                departments: Collection[str]) -> Role:
    try:
        r = Role(role)
    except ValueError:
        raise AuthError("bad_role", f"unknown role {role!r}; one of "
                        f"{', '.join(x.value for x in allowed)}", field="role") from None
    if r not in allowed:
        raise AuthError("bad_role", f"role {role!r} is not available here; one of "
                        f"{', '.join(x.value for x in allowed)}", field="role")
    if r in NEEDS_DEPARTMENT and not department:
        raise AuthError("department_required", f"a {r} is scoped to a department: "
                        "give --department", field="department")
    if department and department not in departments:
        raise AuthError("unknown_department", f"unknown department {department!r}; known: "
                        f"{', '.join(sorted(departments))}", field="department")
    return r


# -- users ------------------------------------------------------------------------------------------
def add_user(repo: Repository, username: str, role: str, password: str, now: datetime, *,
             departments: Collection[str], department: str | None = None,
             display_name: str = "", level: str | None = None, scope: Collection[str] = (),
             grids: Any = None) -> UserRow:
    """``level`` and ``scope`` (town/district/city and the names they cover) are checked
    against ``grids`` (the hub's :class:`hub.geo.GridIndex`)."""
    if not USERNAME.fullmatch(username or ""):
        raise AuthError("bad_username", "a user name is 2-32 of a-z 0-9 _ . - "
                        "(starting with a letter or digit)", field="username")
    r = _check_role(role, department, USER_ROLES, departments)
    level, names = _level_scope(r, level, scope, grids)
    if repo.get_user(username) is not None:
        raise AuthError("user_exists", f"user {username!r} exists already; "
                        "use `cityops-hub user passwd` to change the password", field="username")
    check_password_rules(password, username)
    row = UserRow(username=username, role=r.value,
                  department=department if r in NEEDS_DEPARTMENT or department else None,
                  display_name=display_name.strip()[:80], password_hash=hash_password(password),
                  disabled=False, created_at=now, password_changed_at=now, level=level,
                  scope=names)
    repo.add_user(row)
    return row


def _level_scope(role: Role, level: str | None, scope: Collection[str],
                 grids: Any) -> tuple[str | None, list[str]]:
    if not level and not any(s.strip() for s in scope):
        return None, []
    if grids is None:
        raise AuthError("bad_scope", "scopes are checked against the grids file; none given")
    return check_level_scope(role.value, level or None, scope, grids)


def set_scope(repo: Repository, username: str, level: str | None, scope: Collection[str],
              grids: Any) -> UserRow:
    """Give a user a command level and scope (or none: ``level=None``). Sessions stay:
    the scope is read again on every request."""
    user = _user(repo, username)
    lv, names = _level_scope(Role(user.role), level, scope, grids)
    repo.update_user(username, level=lv, scope=names)
    return _user(repo, username)


def _user(repo: Repository, username: str) -> UserRow:
    user = repo.get_user(username)
    if user is None:
        raise AuthError("unknown_user", f"no user {username!r}; see `cityops-hub user list`",
                        field="username")
    return user


def set_password(repo: Repository, username: str, password: str, now: datetime) -> int:
    """Change a password; every session of the user ends. Returns sessions ended."""
    _user(repo, username)
    check_password_rules(password, username)
    repo.update_user(username, password_hash=hash_password(password), password_changed_at=now)
    return repo.delete_sessions_for_user(username)


def set_disabled(repo: Repository, username: str, disabled: bool = True) -> int:
    """Disable (or enable) a user; disabling ends every session. Returns sessions ended."""
    _user(repo, username)
    repo.update_user(username, disabled=disabled)
    return repo.delete_sessions_for_user(username) if disabled else 0


def principal_for_user(user: UserRow, session: SessionRow | None = None, *,
                       grids: Any = None) -> Principal:
    """The principal of a user; its scope resolves against ``grids`` (without them a
    scoped user sees nothing: scopes fail closed)."""
    return Principal("user", user.username, Role(user.role), user.department,
                     user.display_name or user.username,
                     session.id_sha256 if session else None, session.csrf if session else None,
                     level=user.level, grids=resolve_scope(user.level, user.scope or (), grids))


# -- sessions -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    row: SessionRow


def start_session(repo: Repository, user: UserRow, now: datetime, ttl: timedelta, *,
                  previous_sha256: str | None = None, remote: str | None = None,
                  user_agent: str | None = None) -> NewSession:
    """A fresh session id at every sign-in (no fixation): any session the browser
    presented before is deleted, never promoted."""
    if previous_sha256:
        repo.delete_session(previous_sha256)
    value = secrets.token_urlsafe(32)
    row = SessionRow(id_sha256=sha256_hex(value), username=user.username,
                     csrf=secrets.token_urlsafe(32), created_at=now, expires_at=now + ttl,
                     last_seen_at=now, remote=(remote or "")[:64] or None,
                     user_agent=(user_agent or "")[:200] or None)
    repo.add_session(row)
    repo.update_user(user.username, last_login_at=now)
    return NewSession(value, row)


def valid_session(repo: Repository, cookie_value: str, now: datetime,
                  idle: timedelta) -> tuple[SessionRow, UserRow] | None:
    """The session and its user, when the cookie names a live session of an enabled user."""
    if not cookie_value or len(cookie_value) > 128:
        return None
    session = repo.get_session(sha256_hex(cookie_value))
    if session is None or session.expires_at <= now or session.last_seen_at + idle <= now:
        return None
    user = repo.get_user(session.username)
    if user is None or user.disabled:
        return None
    return session, user


# -- API tokens ---------------------------------------------------------------------------------------
def create_api_token(repo: Repository, name: str, role: str, now: datetime, *,
                     departments: Collection[str], department: str | None = None,
                     created_by: str = "cli", level: str | None = None,
                     scope: Collection[str] = (), grids: Any = None) -> tuple[int, str]:
    """Returns (token id, the token). The token is shown once; only its hash is kept."""
    if not TOKEN_NAME.fullmatch(name or ""):
        raise AuthError("bad_name", "a token name is 1-64 of letters, digits, space _ . -",
                        field="name")
    r = _check_role(role, department, TOKEN_ROLES, departments)
    level, names = _level_scope(r, level, scope, grids)
    token = new_secret("cot", 32)
    token_id = repo.add_api_token(sha256_hex(token), name, r.value, department, now, created_by,
                                  level=level, scope=names)
    return token_id, token


def revoke_api_token(repo: Repository, token_id: int, now: datetime) -> None:
    if not repo.revoke_api_token(token_id, now):
        raise AuthError("unknown_token", f"no active API token with id {token_id}; "
                        "see `cityops-hub token list`")


def principal_for_token(row: ApiTokenRow, *, grids: Any = None) -> Principal:
    return Principal("token", row.name, Role(row.role), row.department, row.name,
                     token_id=row.id, token_sha256=row.token_sha256, level=row.level,
                     grids=resolve_scope(row.level, row.scope or (), grids))


def principal_now(repo: Repository, who: Principal, now: datetime, *,
                  grids: Any = None) -> Principal | None:
    """``who`` as the database has it now, for a request that outlives its check (the
    live feed): None once the session has ended (sign-out, password change, disabling)
    or expired, the user is disabled or gone, or the token is revoked. The role and
    department are read again too. An open stream is use of its session, so the idle
    limit does not apply here; the absolute expiry does. The scope is resolved again
    against ``grids`` too."""
    if who.kind == "user":
        session = repo.get_session(who.session_sha256) if who.session_sha256 else None
        if session is None or session.expires_at <= now or session.username != who.name:
            return None
        user = repo.get_user(session.username)
        if user is None or user.disabled:
            return None
        return principal_for_user(user, session, grids=grids)
    row = repo.get_api_token(who.token_sha256) if who.token_sha256 else None
    if row is None or row.revoked_at is not None or row.id != who.token_id:
        return None
    return principal_for_token(row, grids=grids)
