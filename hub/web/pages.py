"""The operators' pages: server-rendered HTML (templates in ``templates/``), a little
JavaScript (``static/app.js``) for live regions over server-sent events. Forms post
back here; bad input re-shows the form with the field marked; success redirects
(post/redirect/get) with a flash message."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from ..auth.accounts import principal_for_user, sha256_hex, start_session
from ..auth.errors import AuthError
from ..auth.roles import Role
from ..store.repo import CaseFilter
from .actions import parse_action, perform
from .common import case_filter, file_response, hub_of, principal, query_int
from .i18n import _
from .labels import N_
from .problems import FieldErrors, WebError, error_title
from .render import STATIC_DIR
from .security import (
    PRE_LOGIN_COOKIE,
    csrf_ok,
    pre_login_token,
    session_cookie_name,
    set_cookie,
)
from .serialize import agent_json, case_json
from .uploads import checked_jpeg
from .views import case_detail, month_scores

__all__ = ["agents", "case", "case_action", "cases", "dead_letters", "error_page", "login",
           "login_form", "logout", "my_cases", "overview", "rejected", "safe_next", "scores", "static"]

# English source strings, shown through gettext (the page's language)
FLASH = {
    "accept": N_("Accepted and dispatched by the routing table."),
    "reject": N_("Rejected; the reason is kept on the case."),
    "dispatch": N_("Dispatched."), "reassign": N_("Reassigned."), "review": N_("Verdict recorded."),
    "close": N_("Closed."), "reopen": N_("Reopened and dispatched again."), "note": N_("Note added."),
    "start": N_("Accepted: the case is in progress."),
    "return": N_("Returned to the operators with your reason."),
    "resolve": N_("Resolved: the after-photo goes to verification."),
    "supervise": N_("Supervision order issued; its addressee is notified."),
    "acknowledge": N_("Supervision order acknowledged."),
    "answer": N_("Supervision order answered; the issuer is notified."),
    "satisfaction": N_("Satisfaction recorded; it counts in the month's scores."),
    "verdict": N_("Verdict recorded: the snapshot joins the labelled examples for retraining."),
}


def _render(request: web.Request):
    from .app import RENDER_KEY

    return request.app[RENDER_KEY]


def page(request: web.Request, template: str, **ctx: Any) -> web.Response:
    return _render(request).page(request, template, **ctx)


def error_page(request: web.Request, exc: WebError) -> web.StreamResponse:
    if exc.status == 401 and request.method == "GET":
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    return page(request, "error.html", status=exc.status, title=f"{exc.status} · {error_title(exc.code, exc.status)}", error=exc)


# -- sign-in --------------------------------------------------------------------------------------
def safe_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` when it is a path on this hub, else ``/``.

    Browsers drop tabs and newlines from a URL and read a backslash as a slash, so
    ``/<TAB>/evil.example`` becomes ``//evil.example``, another host. Refused: any control
    character, whitespace or backslash, anything longer than 2,000 characters, and
    whatever does not parse as a bare path starting with exactly one ``/`` (no scheme,
    no host)."""
    if not value or len(value) > 2000:
        return "/"
    if any(ch == "\\" or ch.isspace() or not ch.isprintable() for ch in value):
        return "/"
    if not value.startswith("/") or value.startswith("//"):
        return "/"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return value


def _login_page(request: web.Request, *, status: int = 200, error: str = "",
                username: str = "") -> web.Response:
    token = pre_login_token(request)
    response = page(request, "login.html", status=status, title=_("Sign in"), login_error=error,
                    username=username, login_token=token,
                    next=safe_next(request.query.get("next")))
    hub = hub_of(request)
    set_cookie(response, PRE_LOGIN_COOKIE, token, tls=hub.config.web.tls is not None,
               max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:256]
    if not csrf_ok(request.cookies.get(PRE_LOGIN_COOKIE), str(form.get("csrf_token", ""))):
        return _login_page(request, status=403, username=username,
                           error=_("The sign-in form expired. Please try again."))
    if not username or not password:
        return _login_page(request, status=400, username=username,
                           error=_("Enter your user name and password."))
    from .app import SECURITY_KEY

    state = request.app[SECURITY_KEY]
    remote = request.remote or "?"
    # The attempt counts as a failure from here on (a success gives it back): concurrent
    # guesses cannot all pass the check before the first one is verified.
    verdict = state.limiter.attempt(username, remote, time.monotonic())
    if not verdict.allowed:
        minutes = max(1, round(verdict.retry_after_s / 60))
        text = (_("Too many failed sign-ins for this account. Try again in about %(n)s min, "
                  "or ask an administrator.") if verdict.scope == "account" else
                _("Too many failed sign-ins for your address. Try again in about %(n)s min, "
                  "or ask an administrator."))
        return _login_page(request, status=429, username=username, error=text % {"n": minutes})
    try:
        user = await hub.read(lambda repo: repo.get_user(username))
        ok = await state.passwords.verify(user.password_hash if user else None, password)
    except AuthError as exc:  # busy: not verified, so not a failure
        state.limiter.release(username, remote, verdict)
        response = _login_page(request, status=429, username=username, error=exc.detail)
        response.headers["Retry-After"] = str(exc.retry_after_s or 2)
        return response
    if not ok or user is None or user.disabled:
        return _login_page(request, status=401, username=username,
                           error=_("Wrong user name or password (or the account is disabled)."))
    state.limiter.succeeded(username, remote, verdict, time.monotonic())
    tls = hub.config.web.tls is not None
    old = request.cookies.get(session_cookie_name(tls))
    ttl = timedelta(hours=hub.config.web.session_ttl_h)
    new = await hub.write(lambda repo: start_session(
        repo, user, hub.clock.now(), ttl, previous_sha256=sha256_hex(old) if old else None,
        remote=remote, user_agent=request.headers.get("User-Agent")))
    who = principal_for_user(user)
    target = safe_next(str(form.get("next", "")))
    if target == "/" and who.role is Role.HANDLER:
        target = "/my"
    elif target == "/" and who.role is Role.REPORTER:
        target = "/report"
    response = web.HTTPSeeOther(target)
    set_cookie(response, session_cookie_name(tls), new.cookie_value, tls=tls,
               max_age=int(ttl.total_seconds()))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    who = principal(request)
    if who.session_sha256:
        await hub.write(lambda repo: repo.delete_session(who.session_sha256))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(session_cookie_name(hub.config.web.tls is not None), path="/")
    raise response


# -- overview ---------------------------------------------------------------------------------------
async def overview(request: web.Request) -> web.StreamResponse:
    from .app import LIVE_KEY

    who = principal(request)
    if not who.can("view"):
        if who.role is Role.HANDLER:
            raise web.HTTPSeeOther("/my")
        if who.role is Role.REPORTER:
            raise web.HTTPSeeOther("/report")
        raise WebError(403, "forbidden",
                       _("your role (%(role)s) has no status page") % {"role": who.role})
    hub = hub_of(request)
    feed = request.app[LIVE_KEY]
    data = await feed.for_scope(who.grids)
    recent, _total = await hub.read(lambda repo: repo.search_cases(CaseFilter(grid_ids=who.grids),
                                                              limit=12, with_total=False))
    tax, deps, now = hub.setup.taxonomy, hub.setup.routing.departments, hub.clock.now()
    by_grid = data["cases"]["by_grid"]
    from .plans_web import vitals_panel

    return page(request, "overview.html", title=_("Overview"), data=data, vitals=await vitals_panel(hub),
                recent=[case_json(c, tax, deps, now) for c in recent],
                grid_max=max(by_grid.values(), default=0))


# -- cases ---------------------------------------------------------------------------------------------
async def _case_list(request: web.Request, f: CaseFilter, template: str, **ctx: Any) -> web.Response:
    hub = hub_of(request)
    limit = query_int(request, "limit", 50, 1, 500)
    offset = query_int(request, "offset", 0, 0, 10**9)
    cases, total = await hub.read(lambda repo: repo.search_cases(f, limit=limit, offset=offset))
    tax, deps, now = hub.setup.taxonomy, hub.setup.routing.departments, hub.clock.now()
    query = {k: v for k, v in request.query.items() if k not in ("offset", "partial")}

    def link(off: int) -> str:
        return "?" + urlencode({**query, "offset": off})

    return page(request, template, cases=[case_json(c, tax, deps, now) for c in cases],
                total=total, limit=limit, offset=offset, q=request.query,
                prev_link=link(max(0, offset - limit)) if offset else None,
                next_link=link(offset + limit) if total and offset + limit < total else None,
                **ctx)


async def cases(request: web.Request) -> web.Response:
    hub = hub_of(request)
    try:
        f = case_filter(request, hub)
    except FieldErrors as exc:
        return page(request, "cases.html", status=400, title=_("Cases"), cases=[], total=0,
                    limit=50, offset=0, q=request.query, prev_link=None, next_link=None,
                    errors=exc.fields)
    return await _case_list(request, f, "cases.html", title=_("Cases"))


async def rejected(request: web.Request) -> web.Response:
    f = CaseFilter(states=["rejected"], text=request.query.get("q", "").strip()[:100] or None,
                   grid_ids=principal(request).grids)
    return await _case_list(request, f, "rejected.html", title=_("Rejected events"))


async def my_cases(request: web.Request) -> web.Response:
    who = principal(request)
    states = ["dispatched", "in_progress", "escalated", "reopened", "resolved"]
    if request.query.get("closed") == "1":
        states = ["closed"]
    f = CaseFilter(states=states, department=who.department)
    return await _case_list(request, f, "my.html", title=_("My department's cases"))


async def _case_page(request: web.Request, case_id: int, *, status: int = 200,
                     errors: dict[str, dict[str, str]] | None = None,
                     values: dict[str, Any] | None = None, flash: str | None = None) -> web.Response:
    detail = await case_detail(request, case_id)
    hub = hub_of(request)
    c = detail["case"]
    return page(request, "case.html", status=status, title=_("Case %(id)s") % {"id": case_id}, d=detail, c=c,
                errors=errors or {}, values=values or {}, flash=flash,
                rule=hub.engine.rules[c["subcategory"]])


case_page_with = _case_page  # the supervision forms re-show the case page with their errors


async def case(request: web.Request) -> web.Response:
    case_id = int(request.match_info["case_id"])
    done = request.query.get("done", "")
    return await _case_page(request, case_id, flash=_(FLASH[done]) if done in FLASH else None)


async def case_action(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    who = principal(request)
    case_id = int(request.match_info["case_id"])
    action = request.match_info["action"]
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    try:
        data: dict[str, Any] = dict(values)
        if action == "review":
            data["fixed"] = data.get("fixed") == "yes"
        jpeg = None
        if action == "resolve":
            photo = form.get("photo")
            data.pop("photo", None)
            if photo is not None and not isinstance(photo, str) and photo.filename:
                jpeg = (await checked_jpeg(photo.file.read())).data
        body = parse_action(action, data)
        await perform(hub, who, case_id, action, body, after_jpeg=jpeg)
    except FieldErrors as exc:
        return await _case_page(request, case_id, status=exc.status,
                                errors={action: exc.fields}, values={action: values})
    except WebError as exc:
        if exc.status in (404,) and exc.code == "no_such_case":
            raise
        return await _case_page(request, case_id, status=exc.status,
                                errors={action: {"_": exc.detail}}, values={action: values})
    raise web.HTTPSeeOther(f"/cases/{case_id}?done={action}")


# -- agents, scores, dead letters ---------------------------------------------------------------------
async def agents(request: web.Request) -> web.Response:
    hub = hub_of(request)
    state = request.query.get("state", "").strip() or None
    errors = {}
    if state and state not in ("online", "offline", "stale", "unknown"):
        errors["state"] = "one of online, offline, stale, unknown"
        state = None
    text = request.query.get("q", "").strip()[:64] or None
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    now = hub.clock.now()
    stale_s = hub.config.agents.stale_after_s
    rows, total = await hub.read(lambda repo: repo.search_agents(
        state=state, text=text, stale_before=now - timedelta(seconds=stale_s), limit=limit,
        offset=offset))
    summary = await hub.read(lambda repo: repo.agent_overview(now - timedelta(seconds=stale_s), 0))
    query = {k: v for k, v in request.query.items() if k != "offset"}
    return page(request, "agents.html", status=400 if errors else 200, title=_("Agents"),
                agents=[agent_json(a, now, stale_s) for a in rows], total=total, summary=summary,
                q=request.query, errors=errors, limit=limit, offset=offset,
                prev_link="?" + urlencode({**query, "offset": max(0, offset - limit)}) if offset else None,
                next_link="?" + urlencode({**query, "offset": offset + limit})
                if offset + limit < total else None)


async def scores(request: web.Request) -> web.Response:
    from .svg import bar_chart
    from .views import _month

    hub = hub_of(request)
    by = request.query.get("by", "grid")
    errors = {}
    if by not in ("grid", "department"):
        errors["by"] = "grid or department"
        by = "grid"
    try:
        month = _month(request, hub)
    except FieldErrors as exc:
        errors.update(exc.fields)
        month = hub.clock.now().astimezone(hub.setup.zone).strftime("%Y-%m")
    rows = await month_scores(hub, month, by, principal(request).grids)
    groups = [s for s in rows if s.key != "all"]
    charts = {
        "cases": bar_chart([(s.key, s.cases) for s in groups]),
        "on_time": bar_chart([(s.key, s.on_time_rate) for s in groups], top=1.0, percent=True),
        "closure": bar_chart([(s.key, s.closure_rate) for s in groups], top=1.0, percent=True),
        "hours": bar_chart([(s.key, s.mean_hours_to_close) for s in groups]),
        # reporters answered: their mean satisfaction (1-5) and the share of cases reopened
        "satisfaction": bar_chart([(s.key, s.satisfaction) for s in groups], top=5.0),
        "reopen": bar_chart([(s.key, s.reopen_rate) for s in groups], top=1.0, percent=True),
    }
    return page(request, "scores.html", status=400 if errors else 200, title=_("Grid scoreboard"),
                scores=rows, month=month, by=by, charts=charts, errors=errors)


async def dead_letters(request: web.Request) -> web.Response:
    hub = hub_of(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    rows = await hub.read(lambda repo: repo.list_dead_letters(limit, offset))
    counts = await hub.read(lambda repo: repo.counts_dead_letters())
    return page(request, "dead_letters.html", title=_("Dead letters"), rows=rows, counts=counts,
                limit=limit, offset=offset,
                prev_link=f"?offset={max(0, offset - limit)}" if offset else None,
                next_link=f"?offset={offset + limit}" if offset + limit < counts["rows"] else None)


# -- static files ----------------------------------------------------------------------------------------
_STATIC = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}


async def static(request: web.Request) -> web.StreamResponse:
    return file_response(_STATIC.get(request.match_info["name"]))
