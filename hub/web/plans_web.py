"""Response plans and vital signs on the web: the plans pages (list, board, upload and
edit for admins, activate/deactivate for operators), the vital-signs panel and pinned
boards of the overview, and the same as JSON (docs/openapi.yaml)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from protocol.errors import ConfigError

from ..auth.roles import Role
from ..plans.service import PlanError
from ..vitals.charts import level_chart
from ..vitals.config import Kind
from ..vitals.levels import Level
from .common import hub_of, json_response, principal
from .i18n import _
from .pages import page
from .problems import FieldErrors, WebError

__all__ = ["activate_json", "deactivate_json", "notices_json", "plan_action_form", "plan_create_json",
           "plan_export", "plan_json", "plan_page", "plan_save_form", "plan_update_json",
           "plan_upload_form", "plan_versions_json", "plans_json", "plans_page", "vitals_json",
           "vitals_panel"]

LEVEL_NAMES = {lv.value: lv.label for lv in Level}
MAX_PLAN_BYTES = 64 * 1024


def _plan_error(exc: PlanError) -> WebError:
    if "no such plan" in str(exc):
        return WebError(404, "unknown_plan", f"{exc}; see GET /api/v1/plans")
    return WebError(409, "plan_state", str(exc))


def _config_errors(exc: ConfigError, form: str = "plan") -> FieldErrors:
    return FieldErrors({"text": "\n".join(str(p) for p in exc.problems)}, form=form, code="invalid_plan")


# -- vital signs --------------------------------------------------------------------------------
async def vitals_data(hub: Any, hours: float = 6.0) -> dict[str, Any]:
    """Indicators with their charts, levels per grid, and the boards pinned by active plans."""
    since = hub.clock.now() - timedelta(hours=hours)

    def read(repo: Any) -> tuple[list[dict], list[dict]]:
        return repo.vital_levels(), repo.vital_samples(since)

    levels, samples = await hub.read(read)
    by_ind: dict[str, list[tuple[datetime, float]]] = {}
    for s in samples:
        by_ind.setdefault(s["indicator"], []).append((datetime.fromisoformat(s["at"]), s["value"]))
    monitor = hub.vitals.monitor
    indicators = []
    for row in levels:
        ind = monitor.indicators.get(row["indicator"])
        series = by_ind.get(row["indicator"], [])
        quiet = row["kind"] in (Kind.CASE_PRESSURE, Kind.DEVICES_OFFLINE) and not row["level"] \
            and not any(v for _, v in series)
        indicators.append({
            **row, "level_name": LEVEL_NAMES.get(row["level"], "normal"), "quiet": quiet,
            "chart": level_chart(series, ind.grading if ind else None),
            "samples": [{"at": t.isoformat(), "value": v} for t, v in series],
        })
    indicators.sort(key=lambda r: (-r["level"], r["quiet"], r["grid_id"], r["indicator"]))
    areas = {g: LEVEL_NAMES[int(lv)] for g, lv in monitor.area_levels().items()}
    return {"indicators": indicators, "areas": areas}


async def vitals_panel(hub: Any) -> dict[str, Any]:
    """What the overview shows: vital signs, and the boards of active pinned plans."""
    data = await vitals_data(hub)
    boards = []
    for s in await hub.plans.summaries():
        if s["active"] and s["pin_board"]:
            boards.append(await hub.plans.board(s["name"]))
    data["boards"] = boards
    return data


async def vitals_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    data = await vitals_data(hub, hours=float(request.query.get("hours", "6") or 6))
    for row in data["indicators"]:
        row.pop("chart")
    return json_response(data)


# -- plans as JSON ------------------------------------------------------------------------------
def _name(request: web.Request) -> str:
    return request.match_info["name"]


async def _text_of(request: web.Request) -> tuple[str, str]:
    """(plan text, comment): a JSON body ``{"text": ..., "comment": ...}`` or the YAML
    itself (``Content-Type: application/yaml``)."""
    if request.content_length and request.content_length > MAX_PLAN_BYTES:
        raise FieldErrors({"text": _("a plan is at most %(n)s KiB") % {"n": MAX_PLAN_BYTES // 1024}},
                          status=413,
                          code="too_large")
    if request.content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        return (await request.text()), request.query.get("comment", "")
    from .views import _json_body

    body = await _json_body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FieldErrors({"text": _("send the plan's YAML (or JSON) as the string field 'text'")})
    return text, str(body.get("comment", ""))[:500]


async def _save(request: web.Request, text: str, comment: str, name: str | None) -> Any:
    hub = hub_of(request)
    if len(text.encode()) > MAX_PLAN_BYTES:
        raise FieldErrors({"text": _("a plan is at most %(n)s KiB") % {"n": MAX_PLAN_BYTES // 1024}},
                          code="too_large")
    try:
        return await hub.plans.save(text, principal(request).actor, comment, name=name)
    except ConfigError as exc:
        raise _config_errors(exc) from None


async def plans_json(request: web.Request) -> web.Response:
    return json_response({"plans": await hub_of(request).plans.summaries()})


async def plan_json(request: web.Request) -> web.Response:
    try:
        return json_response(await hub_of(request).plans.board(_name(request)))
    except PlanError as exc:
        raise _plan_error(exc) from None


async def plan_create_json(request: web.Request) -> web.Response:
    text, comment = await _text_of(request)
    loaded = await _save(request, text, comment, None)
    return json_response(await hub_of(request).plans.board(loaded.plan.name), status=201)


async def plan_update_json(request: web.Request) -> web.Response:
    name = _name(request)
    try:
        hub_of(request).plans.get(name)
    except PlanError as exc:
        raise _plan_error(exc) from None
    text, comment = await _text_of(request)
    await _save(request, text, comment, name)
    return json_response(await hub_of(request).plans.board(name))


async def plan_versions_json(request: web.Request) -> web.Response:
    name = _name(request)
    hub = hub_of(request)
    try:
        hub.plans.get(name)
    except PlanError as exc:
        raise _plan_error(exc) from None
    return json_response({"name": name, "versions": await hub.read(lambda repo: repo.plan_versions(name))})


async def plan_export(request: web.Request) -> web.Response:
    """The plan (latest or ``?version=N``) as YAML or JSON, to share with the city level."""
    name, hub = _name(request), hub_of(request)
    fmt = request.query.get("format", "yaml")
    if fmt not in ("yaml", "json"):
        raise FieldErrors({"format": _("yaml or json (got %(got)r)") % {"got": fmt[:20]}})
    raw_version = request.query.get("version", "")
    try:
        hub.plans.get(name)
        version = int(raw_version) if raw_version else None
    except PlanError as exc:
        raise _plan_error(exc) from None
    except ValueError:
        raise FieldErrors({"version": _("a version number (got %(got)r)") % {"got": raw_version[:20]}}) from None
    row = await hub.read(lambda repo: repo.plan_text(name, version))
    if row is None:
        raise WebError(404, "unknown_version", _("plan %(name)r has no version %(version)s")
                       % {"name": name, "version": version})
    body = hub.plans.export(name, fmt, row["version"], row["text"])
    ctype = "application/json" if fmt == "json" else "application/yaml"
    return web.Response(text=body, content_type=ctype, headers={
        "Content-Disposition": f'attachment; filename="{name}-v{row["version"]}.{fmt}"'})


async def _act(request: web.Request, action: str, reason: str) -> dict[str, Any]:
    hub, name = hub_of(request), _name(request)
    who = principal(request)
    actor = who.actor
    if who.grids is not None:  # a town or district account: plans act city-wide
        raise WebError(403, "scoped_account", _("a %(level)s account cannot %(action)s plans; plans "
                                               "change agents and deadlines across the city (its "
                                               "command centre does)")
                       % {"level": who.level, "action": action})
    try:
        if action == "activate":
            return await hub.plans.activate(name, actor=actor, reason=reason or "manual")
        return await hub.plans.deactivate(name, actor=actor, reason=reason or "manual")
    except PlanError as exc:
        raise _plan_error(exc) from None


async def activate_json(request: web.Request) -> web.Response:
    from .views import _json_body

    body = await _json_body(request)
    return json_response(await _act(request, "activate", str(body.get("reason", ""))[:200]))


async def deactivate_json(request: web.Request) -> web.Response:
    from .views import _json_body

    body = await _json_body(request)
    return json_response(await _act(request, "deactivate", str(body.get("reason", ""))[:200]))


async def notices_json(request: web.Request) -> web.Response:
    """Plan notices (permission ``plan.notices``): operators, dispatchers and admins see
    every department's (``?department=`` to filter); a handler only its own department's,
    and asking for another's is a 403. Reporters and partner tokens see none."""
    who = principal(request)
    asked = request.query.get("department") or None
    if who.role is Role.HANDLER:
        if asked is not None and asked != who.department:
            raise WebError(403, "other_department", _("plan notices of %(asked)r are not addressed "
                                                     "to %(dep)s") % {"asked": asked, "dep": who.department})
        dep = who.department
        if dep is None:  # a handler always has one; never fall through to 'every notice'
            raise WebError(403, "forbidden", _("a handler without a department sees no notices"))
    else:
        dep = asked
    rows = await hub_of(request).read(lambda repo: repo.plan_notices(dep))
    return json_response({"notices": rows})


# -- pages --------------------------------------------------------------------------------------
async def plans_page(request: web.Request, *, status: int = 200, errors: dict | None = None,
                     values: dict | None = None, flash: str | None = None) -> web.Response:
    hub = hub_of(request)
    return page(request, "plans.html", status=status, title=_("Plans"), plans=await hub.plans.summaries(),
                vitals=await vitals_data(hub), errors=errors or {}, values=values or {}, flash=flash)


async def plan_page(request: web.Request, *, status: int = 200, errors: dict | None = None,
                    values: dict | None = None, flash: str | None = None) -> web.Response:
    hub = hub_of(request)
    name = _name(request)
    try:
        board = await hub.plans.board(name)
        text = hub.plans.get(name).text
    except PlanError as exc:
        raise _plan_error(exc) from None
    if flash is None and request.query.get("saved", "").isdigit():
        flash = _("Saved as version %(n)s.") % {"n": request.query["saved"]}
    elif flash is None and request.query.get("done") in ("activate", "deactivate"):
        flash = _("Plan activated.") if request.query["done"] == "activate" else \
            _("Plan deactivated: every agent's previous config is being restored.")
    return page(request, "plan.html", status=status, title=_("Plan %(name)s") % {"name": name}, board=board, text=text,
                errors=errors or {}, values=values or {}, flash=flash)


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


async def plan_upload_form(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    try:
        loaded = await _save(request, values.get("text", ""), values.get("comment", ""), None)
    except FieldErrors as exc:
        return await plans_page(request, status=exc.status, errors={"plan": exc.fields},
                                values={"plan": values})
    raise web.HTTPSeeOther(f"/plans/{loaded.plan.name}?saved={loaded.version}")


async def plan_save_form(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    name = _name(request)
    try:
        hub_of(request).plans.get(name)
        loaded = await _save(request, values.get("text", ""), values.get("comment", ""), name)
    except PlanError as exc:
        raise _plan_error(exc) from None
    except FieldErrors as exc:
        return await plan_page(request, status=exc.status, errors={"plan": exc.fields},
                               values={"plan": values})
    raise web.HTTPSeeOther(f"/plans/{name}?saved={loaded.version}")


async def plan_action_form(request: web.Request) -> web.StreamResponse:
    values = await _form(request)
    action = request.match_info["action"]
    try:
        await _act(request, action, values.get("reason", "")[:200])
    except WebError as exc:
        return await plan_page(request, status=exc.status, flash=exc.detail)
    raise web.HTTPSeeOther(f"/plans/{_name(request)}?done={action}")
