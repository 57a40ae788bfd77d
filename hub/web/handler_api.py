"""The handler API for departments (``/work/wt/HANDLER_API.md``; OpenAPI in
``docs/openapi.yaml``). A handler token sees and acts only on cases dispatched to its
department: another department's case is a 403, a state that does not allow the action
a 409 (``illegal_transition``), both as problem documents.
"""

from __future__ import annotations

from aiohttp import web

from ..auth.roles import Role
from ..cases.states import CaseState
from ..store.repo import CaseFilter
from .actions import parse_action, perform
from .common import hub_of, json_response, principal, query_int
from .i18n import _
from .problems import FieldErrors, WebError
from .serialize import case_json
from .uploads import checked_jpeg
from .views import _json_body, case_detail

__all__ = ["accept", "get_case", "list_cases", "note", "reject", "resolve"]

DEFAULT_STATES = ("dispatched", "in_progress", "escalated", "reopened", "resolved")


def _department(request: web.Request) -> str:
    who = principal(request)
    if who.role is not Role.HANDLER or not who.department:
        raise WebError(403, "forbidden", _("the handler API needs a handler token of a department"))
    return who.department


async def list_cases(request: web.Request) -> web.Response:
    hub = hub_of(request)
    department = _department(request)
    states = [s.strip() for s in request.query.get("state", "").split(",") if s.strip()]
    known = {s.value for s in CaseState}
    bad = [s for s in states if s not in known]
    if bad:
        raise FieldErrors({"state": _("unknown state %(state)r; one of %(list)s")
                           % {"state": bad[0], "list": ", ".join(sorted(known))}})
    limit = query_int(request, "limit", 500, 1)
    offset = query_int(request, "offset", 0, 0, 10**9)
    f = CaseFilter(states=states or list(DEFAULT_STATES), department=department)
    cases, total = await hub.read(lambda repo: repo.search_cases(f, limit=limit, offset=offset))
    now = hub.clock.now()
    tax, deps = hub.setup.taxonomy, hub.setup.routing.departments
    return json_response({"cases": [case_json(c, tax, deps, now) for c in cases],
                          "total": total, "limit": limit, "offset": offset})


async def get_case(request: web.Request) -> web.Response:
    _department(request)
    return json_response(await case_detail(request, int(request.match_info["case_id"])))


async def _act(request: web.Request, action: str, data: dict, after_jpeg: bytes | None = None):
    hub = hub_of(request)
    _department(request)
    body = parse_action(action, data)
    case = await perform(hub, principal(request), int(request.match_info["case_id"]), action,
                         body, after_jpeg=after_jpeg)
    return json_response({"case": case_json(case, hub.setup.taxonomy,
                                            hub.setup.routing.departments, hub.clock.now())})


async def accept(request: web.Request) -> web.Response:
    """dispatched → in_progress."""
    return await _act(request, "start", await _json_body(request))


async def reject(request: web.Request) -> web.Response:
    """Wrongly dispatched: back to the operator queue, reason kept."""
    return await _act(request, "return", await _json_body(request))


async def note(request: web.Request) -> web.Response:
    return await _act(request, "note", await _json_body(request))


async def resolve(request: web.Request) -> web.Response:
    """multipart/form-data: ``photo`` (JPEG ≤ 256 KiB; required for photo categories),
    ``note``. A JSON body ``{"note": ...}`` works for cases that need no photo."""
    if request.content_type == "multipart/form-data":
        form = await request.post()
        photo = form.get("photo")
        data = {"note": form.get("note", "")} if isinstance(form.get("note", ""), str) else {}
        jpeg = None
        if photo is not None and not isinstance(photo, str):
            jpeg = (await checked_jpeg(photo.file.read())).data
        elif isinstance(photo, str) and photo:
            raise FieldErrors({"photo": _("send the photo as a file part, not as text")},
                              code="bad_photo")
        return await _act(request, "resolve", data, jpeg)
    if request.content_type in ("application/json", ""):
        return await _act(request, "resolve", await _json_body(request))
    raise FieldErrors({"body": _("send multipart/form-data (photo, note), not %(type)s")
                       % {"type": request.content_type}},
                      status=415, code="unsupported_media_type")
