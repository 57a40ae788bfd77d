"""Small helpers the views share: the hub and principal of a request, query parsing with
clear errors, the case filter of a query string, JSON responses."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth.roles import Principal
from ..cases.states import OPEN_STATES, CaseState
from ..store.repo import CaseFilter
from .i18n import _
from .problems import FieldErrors, WebError
from .security import principal_of
from .serialize import jsonable

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["MAX_LIMIT", "case_filter", "file_response", "hub_of", "json_response", "principal", "query_int"]

MAX_LIMIT = 1000


def hub_of(request: web.Request) -> Hub:
    from .app import HUB_KEY

    return request.app[HUB_KEY]  # type: ignore[return-value]


def principal(request: web.Request) -> Principal:
    who = principal_of(request)
    if who is None:  # the route table said public; the view needs somebody
        raise WebError(401, "not_signed_in", _("sign in first (or send an API token)"))
    return who


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(jsonable(data), status=status)


def query_int(request: web.Request, name: str, default: int, lo: int = 0,
              hi: int = MAX_LIMIT) -> int:
    raw = request.query.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FieldErrors({name: _("must be a whole number (got %(raw)r)") % {"raw": raw[:20]}}) from None
    if not lo <= value <= hi:
        raise FieldErrors({name: _("must be between %(lo)s and %(hi)s (got %(value)s)")
                           % {"lo": lo, "hi": hi, "value": value}})
    return value


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "yes", "on")


def case_filter(request: web.Request, hub: Hub) -> CaseFilter:
    """The case list's filters from the query string; bad values are field errors. A
    scoped account's grids always apply (hub.auth.scope)."""
    q = request.query
    errors: dict[str, str] = {}
    states = [s.strip() for s in q.get("state", "").split(",") if s.strip()]
    known = {s.value for s in CaseState}
    bad = [s for s in states if s not in known]
    if bad:
        errors["state"] = f"unknown state {bad[0]!r}; one of {', '.join(sorted(known))}"
    if _flag(request, "open"):
        open_names = {s.value for s in OPEN_STATES}
        states = ([s for s in states if s in open_names] or ["(none)"]) if states \
            else sorted(open_names)
    level = None
    if q.get("level", "") != "":
        try:
            level = query_int(request, "level", 0, 0, 3)
        except FieldErrors as exc:
            errors.update(exc.fields)
    grid = q.get("grid", "").strip() or None
    if grid and grid not in hub.setup.grids:
        errors["grid"] = f"unknown grid {grid!r}"
    category = q.get("category", "").strip() or None
    if category:
        tax = hub.setup.taxonomy
        try:
            tax.subcategory(category) if "." in category else tax.category(category)
        except KeyError:
            errors["category"] = f"unknown category {category!r}"
    department = q.get("department", "").strip() or None
    text = q.get("q", "").strip()[:100] or None
    if errors:
        raise FieldErrors(errors)
    who = principal_of(request)
    return CaseFilter(
        grid_ids=who.grids if who is not None else frozenset(),  # a scoped account's grids
        states=states or None, grid_id=grid, category=category, department=department,
        queue=q.get("queue", "").strip() or None, level=level,
        overdue_at=hub.clock.now() if _flag(request, "overdue") else None,
        needs_review=_flag(request, "review"), text=text)


def file_response(path: Path | None) -> web.FileResponse:
    """A file the hub serves from a fixed list (``None``: not on it, 404), cached a day."""
    if path is None:
        raise WebError(404, "not_found", _("no such file"))
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "public, max-age=86400"})
