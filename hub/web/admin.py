"""Administration: users, API tokens and agent enrollment tokens — a page with forms and
the same operations as JSON. The ``cityops-hub user``/``token``/``enroll`` commands do
the same from a shell."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth.accounts import add_user, create_api_token, revoke_api_token, set_disabled, set_password
from ..auth.errors import AuthError
from ..auth.roles import TOKEN_ROLES, USER_ROLES
from ..enroll import issue_token, parse_ttl
from ..errors import EnrollmentError
from ..linkage import linkage_token_problem
from .common import hub_of, json_response, principal
from .i18n import _
from .pages import page
from .problems import FieldErrors, WebError
from .serialize import jsonable

__all__ = ["admin_page", "enroll_form", "enroll_json", "enrollment_json", "token_create_form",
           "token_create_json", "token_revoke_form", "token_revoke_json", "tokens_json",
           "user_add_form", "user_add_json", "user_change_form", "user_change_json", "users_json"]


def _departments(hub) -> set[str]:
    return set(hub.engine.departments)


def _scope_of(data: dict[str, Any]) -> tuple[str | None, list[str]]:
    """``level`` and ``scope`` of a form (comma-separated) or a JSON body (a list too)."""
    level = str(data.get("level") or "").strip() or None
    raw = data.get("scope") or []
    if isinstance(raw, str):
        names = raw.split(",")
    elif isinstance(raw, list):
        names = [str(x) for x in raw[:500]]
    else:
        names = [str(raw)]
    return level, [n.strip()[:100] for n in names if n.strip()]


def _user_json(u) -> dict[str, Any]:
    return {"username": u.username, "role": u.role, "department": u.department,
            "level": u.level, "scope": u.scope or [],
            "display_name": u.display_name, "disabled": u.disabled,
            "created_at": u.created_at.isoformat(),
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}


def _token_json(t) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "role": t.role, "department": t.department,
            "level": t.level, "scope": t.scope or [],
            "created_at": t.created_at.isoformat(), "created_by": t.created_by,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}


async def _admin_data(hub) -> dict[str, Any]:
    def load(repo):
        return repo.list_users(), repo.list_api_tokens(), repo.list_enrollment_tokens(50)

    users, tokens, enrollment = await hub.read(load)
    return {"users": users, "tokens": tokens, "enrollment": enrollment}


async def admin_page(request: web.Request, *, status: int = 200, errors=None, values=None,
                     flash: str | None = None, secret: dict[str, str] | None = None) -> web.Response:
    hub = hub_of(request)
    data = await _admin_data(hub)
    return page(request, "admin.html", status=status, title=_("Administration"), **data,
                user_roles=[r.value for r in USER_ROLES], token_roles=[r.value for r in TOKEN_ROLES],
                errors=errors or {}, values=values or {}, flash=flash, secret=secret,
                default_ttl=hub.config.enrollment.default_ttl_s)


def _fields(exc: AuthError | EnrollmentError, default: str) -> dict[str, str]:
    return {getattr(exc, "field", None) or default: exc.detail}


# -- the operations (shared by forms and JSON) ---------------------------------------------------------
async def _add_user(request: web.Request, data: dict[str, Any]):
    hub = hub_of(request)
    dep = (data.get("department") or "").strip() or None
    level, scope = _scope_of(data)
    try:
        return await hub.write(lambda repo: add_user(
            repo, str(data.get("username", "")).strip().lower(), str(data.get("role", "")),
            str(data.get("password", "")), hub.clock.now(), departments=_departments(hub),
            department=dep, display_name=str(data.get("display_name", "")), level=level,
            scope=scope, grids=hub.setup.grids))
    except AuthError as exc:
        raise FieldErrors(_fields(exc, "username"), form="user", code=exc.code) from None


async def _change_user(request: web.Request, data: dict[str, Any]) -> str:
    hub = hub_of(request)
    username, action = request.match_info["username"], request.match_info["action"]
    who = principal(request)
    try:
        if action == "password":
            n = await hub.write(lambda repo: set_password(repo, username, str(data.get("password", "")),
                                                          hub.clock.now()))
            return _("Password of %(user)s changed; %(n)s session(s) ended.") % {"user": username, "n": n}
        if action == "disable" and username == who.name:
            raise AuthError("self", "you cannot disable your own account", field="username")
        n = await hub.write(lambda repo: set_disabled(repo, username, action == "disable"))
        done = (_("%(user)s disabled") if action == "disable" else _("%(user)s enabled")) \
            % {"user": username}
        return done + (_("; %(n)s session(s) ended.") % {"n": n} if n else ".")
    except AuthError as exc:
        status = 404 if exc.code == "unknown_user" else 400
        raise FieldErrors(_fields(exc, "password"), form=f"user-{username}", status=status,
                          code=exc.code) from None


async def _create_token(request: web.Request, data: dict[str, Any]) -> tuple[int, str]:
    hub = hub_of(request)
    who = principal(request)
    dep = (data.get("department") or "").strip() or None
    name, role = str(data.get("name", "")).strip(), str(data.get("role", ""))
    if role == "linkage" and name and (problem := linkage_token_problem(hub.config.web.linkage, name)):
        raise FieldErrors({"name": problem}, form="token", code="bad_name")
    level, scope = _scope_of(data)
    try:
        return await hub.write(lambda repo: create_api_token(
            repo, name, role, hub.clock.now(),
            departments=_departments(hub), department=dep, created_by=who.actor, level=level,
            scope=scope, grids=hub.setup.grids))
    except AuthError as exc:
        raise FieldErrors(_fields(exc, "name"), form="token", code=exc.code) from None


async def _revoke(request: web.Request) -> int:
    hub = hub_of(request)
    token_id = int(request.match_info["token_id"])
    try:
        await hub.write(lambda repo: revoke_api_token(repo, token_id, hub.clock.now()))
    except AuthError as exc:
        raise WebError(404, exc.code, exc.detail) from None
    return token_id


async def _enroll(request: web.Request, data: dict[str, Any]) -> str:
    hub = hub_of(request)
    agent_id = str(data.get("agent_id", "")).strip()
    grid = (str(data.get("grid_id") or "")).strip() or None
    if grid and grid not in hub.setup.grids:
        raise FieldErrors({"grid_id": _("unknown grid %(grid)r") % {"grid": grid}}, form="enroll")
    try:
        ttl = parse_ttl(str(data.get("ttl") or hub.config.enrollment.default_ttl_s))
        return await hub.write(lambda repo: issue_token(
            repo, agent_id, grid, ttl, hub.clock.now(), hub_user=hub.config.broker.username,
            hub_client_prefix=hub.config.ingest.client_id))
    except EnrollmentError as exc:
        field = "ttl" if exc.code == "bad_ttl" else "agent_id"
        raise FieldErrors({field: exc.detail}, form="enroll", code=exc.code) from None


# -- form posts -------------------------------------------------------------------------------------
async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


async def _form_post(request: web.Request, work, form_name: str) -> web.StreamResponse:
    values = await _form(request)
    try:
        flash, secret = await work(values)
    except FieldErrors as exc:
        safe = {k: v for k, v in values.items() if k != "password"}
        return await admin_page(request, status=exc.status, errors={exc.form or form_name: exc.fields},
                                values={exc.form or form_name: safe})
    return await admin_page(request, flash=flash, secret=secret)


async def user_add_form(request: web.Request) -> web.StreamResponse:
    async def work(values):
        u = await _add_user(request, values)
        return _("User %(user)s (%(role)s) added.") % {"user": u.username, "role": u.role}, None

    return await _form_post(request, work, "user")


async def user_change_form(request: web.Request) -> web.StreamResponse:
    async def work(values):
        return await _change_user(request, values), None

    return await _form_post(request, work, f"user-{request.match_info['username']}")


async def token_create_form(request: web.Request) -> web.StreamResponse:
    async def work(values):
        token_id, token = await _create_token(request, values)
        return (_("API token %(id)s created. Copy it now: it is not shown again.") % {"id": token_id},
                {"label": _("API token %(name)s") % {"name": values.get("name")}, "value": token})

    return await _form_post(request, work, "token")


async def token_revoke_form(request: web.Request) -> web.StreamResponse:
    async def work(values):
        return _("API token %(id)s revoked.") % {"id": await _revoke(request)}, None

    return await _form_post(request, work, "token")


async def enroll_form(request: web.Request) -> web.StreamResponse:
    async def work(values):
        token = await _enroll(request, values)
        return (_("Enrollment token for %(agent)s issued. On the agent: %(command)s")
                % {"agent": values.get("agent_id"),
                   "command": "cityops-agent provision --hub https://HUB --token TOKEN --out DIR "
                              "[--ca-file HUB-CA.pem]"},
                {"label": _("enrollment token for %(agent)s") % {"agent": values.get("agent_id")},
                 "value": token})

    return await _form_post(request, work, "enroll")


# -- JSON ----------------------------------------------------------------------------------------------
async def _body(request: web.Request) -> dict[str, Any]:
    from .views import _json_body

    return await _json_body(request)


async def users_json(request: web.Request) -> web.Response:
    data = await _admin_data(hub_of(request))
    return json_response({"users": [_user_json(u) for u in data["users"]]})


async def user_add_json(request: web.Request) -> web.Response:
    u = await _add_user(request, await _body(request))
    return json_response({"user": _user_json(u)}, status=201)


async def user_change_json(request: web.Request) -> web.Response:
    return json_response({"detail": await _change_user(request, await _body(request))})


async def tokens_json(request: web.Request) -> web.Response:
    data = await _admin_data(hub_of(request))
    return json_response({"tokens": [_token_json(t) for t in data["tokens"]]})


async def token_create_json(request: web.Request) -> web.Response:
    token_id, token = await _create_token(request, await _body(request))
    return json_response({"id": token_id, "token": token}, status=201)


async def token_revoke_json(request: web.Request) -> web.Response:
    return json_response({"id": await _revoke(request), "revoked": True})


async def enrollment_json(request: web.Request) -> web.Response:
    data = await _admin_data(hub_of(request))
    return json_response({"tokens": jsonable(data["enrollment"])})


async def enroll_json(request: web.Request) -> web.Response:
    return json_response({"token": await _enroll(request, await _body(request))}, status=201)
