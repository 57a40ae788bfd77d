"""Who is asking, and may they: the authentication, permission and CSRF middleware.

* ``Authorization: Bearer <token>``: an API token (departments, Open311 partners,
  monitoring). No cookie, so no CSRF check.
* The session cookie (HttpOnly, SameSite=Strict, Secure under TLS, ``__Host-`` prefix
  then): a signed-in user. Every state-changing request made with it must carry the
  session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).

Every route names a permission in the route table; a request without the permission is
refused here, before its view runs, so a refused request changes nothing.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth.accounts import principal_for_token, principal_for_user, sha256_hex, valid_session
from ..auth.passwords import PasswordChecker
from ..auth.ratelimit import LoginLimiter
from ..auth.roles import Principal
from .i18n import _
from .problems import WebError

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["PRINCIPAL", "SecurityState", "csrf_ok", "pre_login_token", "principal_of",
           "security_middleware", "session_cookie_name"]

# aiohttp 3.12+ types request storage keys; older versions take a string.
PRINCIPAL: Any = (web.RequestKey("principal", object) if hasattr(web, "RequestKey")
                  else "cityops.principal")
PRE_LOGIN_COOKIE = "cityops_login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY_S = 60.0


@dataclass
class SecurityState:
    """Per-app state: the login limiter, the password checker's pool and when each
    session was last marked used."""

    limiter: LoginLimiter
    touched: dict[str, float]
    token_touched: dict[int, float]
    passwords: PasswordChecker


def session_cookie_name(tls: bool) -> str:
    return "__Host-cityops_session" if tls else "cityops_session"


def set_cookie(response: web.StreamResponse, name: str, value: str, *, tls: bool,
               max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=tls)


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def pre_login_token(request: web.Request) -> str:
    """The double-submit token of the sign-in form (there is no session yet)."""
    return request.cookies.get(PRE_LOGIN_COOKIE) or secrets.token_urlsafe(24)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(expected.encode(), given.encode())


async def _from_bearer(hub: Hub, state: SecurityState, token: str) -> Principal:
    row = await hub.read(lambda repo: repo.get_api_token(sha256_hex(token)))
    if row is None or row.revoked_at is not None:
        raise WebError(401, "bad_token", _("the API token is unknown or revoked; ask an "
                                           "administrator for one (cityops-hub token create)"),
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    now_m = time.monotonic()
    if now_m - state.token_touched.get(row.id, -1e9) > TOUCH_EVERY_S:
        state.token_touched[row.id] = now_m
        await hub.write(lambda repo: repo.touch_api_token(row.id, hub.clock.now()))
    return principal_for_token(row, grids=hub.setup.grids)


async def _from_cookie(hub: Hub, state: SecurityState, value: str) -> Principal | None:
    cfg = hub.config.web
    now = hub.clock.now()
    found = await hub.read(lambda repo: valid_session(
        repo, value, now, timedelta(minutes=cfg.session_idle_min)))
    if found is None:
        return None
    session, user = found
    now_m = time.monotonic()
    if now_m - state.touched.get(session.id_sha256, -1e9) > TOUCH_EVERY_S:
        state.touched[session.id_sha256] = now_m
        if len(state.touched) > 50_000:
            state.touched.clear()
        await hub.write(lambda repo: repo.touch_session(session.id_sha256, now))
    return principal_for_user(user, session, grids=hub.setup.grids)


async def authenticate(request: web.Request, hub: Hub, state: SecurityState) -> Principal | None:
    auth = request.headers.get("Authorization", "")
    if auth:
        scheme, _sep, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebError(401, "bad_token", _("use 'Authorization: Bearer <token>'"),
                           headers={"WWW-Authenticate": "Bearer"})
        return await _from_bearer(hub, state, token.strip())
    value = request.cookies.get(session_cookie_name(hub.config.web.tls is not None))
    if value:
        return await _from_cookie(hub, state, value)
    return None


async def _csrf_given(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def security_middleware(hub: Hub, state: SecurityState, route_info: dict[str, Any]):
    @web.middleware
    async def middleware(request: web.Request, handler):
        info = route_info.get(request.match_info.route.name or "")
        permission = info.permission if info else "public"
        principal = await authenticate(request, hub, state)
        request[PRINCIPAL] = principal
        if permission != "public":
            if principal is None:
                raise WebError(401, "not_signed_in", _("sign in first (or send an API token)"))
            if not principal.can(permission):
                raise WebError(403, "forbidden", _("your role (%(role)s) may not do this (%(what)s)")
                               % {"role": principal.role, "what": permission})
        # Public routes that change state carry their own credential (the sign-in form's
        # double-submit token, an enrollment token, an Open311 api_key).
        if (permission != "public" and principal is not None and principal.kind == "user"
                and request.method not in SAFE_METHODS
                and not csrf_ok(principal.csrf, await _csrf_given(request))):
            raise WebError(403, "csrf", _("the form's security token is missing or stale; "
                                             "reload the page and try again"))
        return await handler(request)

    return middleware
