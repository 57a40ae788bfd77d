"""Open311 GeoReport v2: services from the taxonomy, service requests from cases.

* ``GET services.{json,xml}``: one service per (non-retired) subcategory of the public
  categories (``web.open311.categories``); ``service_code`` is the subcategory code.
* ``GET requests.{json,xml}``: cases of those categories, filtered by
  ``service_request_id``, ``service_code`` (comma lists), ``start_date``, ``end_date``
  (default: the last 90 days) and ``status`` (``open``/``closed``); newest first, 1000
  at most.
* ``POST requests.{json,xml}`` (form-encoded, or multipart with a ``media`` JPEG) with an
  ``api_key`` of an ``open311``/``reporter`` token: an event of source ``open311`` that
  goes through the same screening, merging and dispatch. The answer names the case.
* ``GET requests/{id}.{json,xml}``.

``service_request_id`` is the case id; ``status`` is ``open`` for open case states and
``closed`` for closed, rejected and merged ones (``status_notes`` says which and why);
``expected_datetime`` is the deadline. Errors are the spec's array of ``{code,
description}``. Rendering is pure (:func:`request_item`, :func:`to_xml`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web

from ..auth.accounts import principal_for_token, sha256_hex
from ..auth.roles import Principal
from ..cases.states import OPEN_STATES
from ..engine.reports import Photo, Report, report_source
from ..errors import CaseError
from ..store.repo import CaseFilter, CaseRow
from .common import hub_of
from .problems import FieldErrors, WebError
from .uploads import check_jpeg

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["error_response", "media", "post_request", "request", "request_item", "requests",
           "services", "to_xml"]

CHANNEL = "open311"
MAX_REQUESTS = 1000
_OPEN = {s.value for s in OPEN_STATES}


def _fmt(request: web.Request) -> str:
    return request.match_info.get("fmt", "json")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_xml(root: str, item: str, rows: list[dict[str, Any]]) -> str:
    """GeoReport's XML: ``<root><item><field>value</field>...</item></root>``; a null is an
    empty element, booleans are ``true``/``false``."""
    out = ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>"]
    for row in rows:
        out.append(f"<{item}>")
        for key, value in row.items():
            if value is None:
                out.append(f"<{key}/>")
            elif isinstance(value, bool):
                out.append(f"<{key}>{'true' if value else 'false'}</{key}>")
            else:
                out.append(f"<{key}>{escape(str(value))}</{key}>")
        out.append(f"</{item}>")
    out.append(f"</{root}>")
    return "\n".join(out) + "\n"


def _respond(request: web.Request, root: str, item: str, rows: list[dict[str, Any]],
             status: int = 200) -> web.Response:
    if _fmt(request) == "xml":
        return web.Response(text=to_xml(root, item, rows), status=status,
                            content_type="text/xml", charset="utf-8")
    return web.json_response(rows, status=status)


def error_response(request: web.Request, status: int, description: str) -> web.Response:
    return _respond(request, "errors", "error", [{"code": status, "description": description}],
                    status)


# -- services ----------------------------------------------------------------------------------
def service_list(hub: Hub) -> list[dict[str, Any]]:
    tax = hub.setup.taxonomy
    out = []
    for code in hub.config.web.open311.categories:
        cat = tax.category(code)
        for sub in cat.subcategories:
            if sub.retired:
                continue
            out.append({
                "service_code": sub.code,
                "service_name": sub.name.en,
                "description": f"{sub.name.en} ({sub.name.zh}); {cat.name.en} ({cat.name.zh})",
                "metadata": False,
                "type": "realtime",
                "keywords": f"{cat.code}, {sub.code.split('.', 1)[1].replace('_', ' ')}, {sub.name.zh}",
                "group": cat.name.en,
            })
    return out


def _check_jurisdiction(request: web.Request, hub: Hub, params) -> None:
    given = params.get("jurisdiction_id")
    want = hub.config.web.open311.jurisdiction_id
    if given and want and given != want:
        raise WebError(404, "unknown_jurisdiction", f"jurisdiction_id {given!r} is not served "
                       f"here (this endpoint serves {want!r})")


async def services(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    _check_jurisdiction(request, hub, request.query)
    return _respond(request, "services", "service", service_list(hub))


# -- requests ------------------------------------------------------------------------------------
def status_of(case: CaseRow) -> tuple[str, str | None]:
    if case.state in _OPEN:
        note = {"new": "received; being screened", "accepted": "accepted; waiting to be dispatched",
                "dispatched": f"dispatched to {case.department}",
                "in_progress": f"{case.department} is working on it",
                "escalated": "overdue; escalated", "resolved": "reported fixed; being verified",
                "reopened": "the problem came back; reopened"}.get(case.state)
        return "open", note
    if case.state == "rejected":
        reasons = "; ".join(d for _, d in case.screen_reasons or []) or "not accepted"
        return "closed", f"not accepted: {reasons}"
    if case.state == "merged":
        return "closed", f"duplicate of request {case.merged_into}"
    return "closed", f"closed: {case.resolution or 'fixed'}"


def request_item(case: CaseRow, hub: Hub, base_url: str) -> dict[str, Any]:
    tax = hub.setup.taxonomy
    status, notes = status_of(case)
    try:
        name = tax.subcategory(case.subcategory).name.en
    except KeyError:
        name = case.subcategory
    dep = case.department
    agency = None
    if dep:
        n = tax.departments.get(dep) or hub.setup.routing.departments.get(dep)
        agency = n.en if n else dep
    media = None
    if case.before_sha256 and case.origin_agent == CHANNEL:
        media = f"{base_url}/open311/v2/media/{case.before_sha256}.jpg"
    return {
        "service_request_id": str(case.id),
        "status": status,
        "status_notes": notes,
        "service_name": name,
        "service_code": case.subcategory,
        "description": None,
        "agency_responsible": agency,
        "service_notice": None,
        "requested_datetime": _iso(case.created_at),
        "updated_datetime": _iso(case.updated_at),
        "expected_datetime": _iso(case.deadline_at),
        "address": case.place,
        "address_id": None,
        "zipcode": None,
        "lat": case.lat,
        "long": case.lon,
        "media_url": media,
    }


def _base_url(request: web.Request, hub: Hub) -> str:
    return (hub.config.web.public_url or f"{request.scheme}://{request.host}").rstrip("/")


def _parse_date(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise WebError(400, "bad_date", f"{name} must be a W3C date-time such as "
                       f"2026-07-01T00:00:00Z (got {raw[:40]!r})") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _enabled(hub: Hub) -> None:
    if not hub.config.web.open311.enabled:
        raise WebError(404, "open311_disabled", "Open311 is switched off on this hub")


async def requests(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    q = request.query
    _check_jurisdiction(request, hub, q)
    cfg = hub.config.web.open311
    now = hub.clock.now()
    ids = None
    if q.get("service_request_id"):
        try:
            ids = [int(x) for x in q["service_request_id"].split(",") if x.strip()][:MAX_REQUESTS]
        except ValueError:
            raise WebError(400, "bad_id", "service_request_id is a comma-separated list of "
                           "numbers") from None
    subs = [c.strip() for c in q.get("service_code", "").split(",") if c.strip()] or None
    end = _parse_date("end_date", q["end_date"]) if q.get("end_date") else now
    start = _parse_date("start_date", q["start_date"]) if q.get("start_date") else \
        end - timedelta(days=cfg.max_days)
    if start > end:
        raise WebError(400, "bad_date", "start_date is after end_date")
    if end - start > timedelta(days=cfg.max_days):
        raise WebError(400, "bad_date", f"the date range is at most {cfg.max_days} days")
    status = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
    if any(s not in ("open", "closed") for s in status):
        raise WebError(400, "bad_status", "status is open, closed or open,closed")
    states = None
    if status == ["open"]:
        states = sorted(_OPEN)
    elif status == ["closed"]:
        states = ["closed", "rejected", "merged"]
    f = CaseFilter(states=states, categories=cfg.categories, subcategories=subs, ids=ids,
                   created_from=None if ids else start, created_until=None if ids else end)
    cases, _ = await hub.read(lambda repo: repo.search_cases(f, limit=MAX_REQUESTS,
                                                             with_total=False))
    base = _base_url(request, hub)
    return _respond(request, "service_requests", "request",
                    [request_item(c, hub, base) for c in cases])


async def request(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    _check_jurisdiction(request, hub, request.query)
    case_id = int(request.match_info["request_id"])
    case = await hub.read(lambda repo: repo.get_case(case_id))
    if case is None or case.category not in hub.config.web.open311.categories:
        raise WebError(404, "no_such_request", f"service_request_id {case_id} was not found")
    return _respond(request, "service_requests", "request",
                    [request_item(case, hub, _base_url(request, hub))])


async def _partner(hub: Hub, request: web.Request, params) -> Principal:
    key = params.get("api_key") or ""
    auth = request.headers.get("Authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not isinstance(key, str) or not key:
        raise WebError(403, "no_api_key", "api_key is required to create a request; ask the "
                       "city for one")
    row = await hub.read(lambda repo: repo.get_api_token(sha256_hex(key)))
    if row is None or row.revoked_at is not None:
        raise WebError(403, "bad_api_key", "invalid api_key")
    who = principal_for_token(row)
    if not who.can("report"):
        raise WebError(403, "bad_api_key", f"this api_key ({who.role}) may not create requests")
    return who


def _float(params, name: str, lo: float, hi: float) -> float | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise WebError(400, "bad_location", f"{name} must be a number (got {str(raw)[:20]!r})") from None
    if not lo <= value <= hi:
        raise WebError(400, "bad_location", f"{name} must be between {lo} and {hi}")
    return value


async def post_request(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise WebError(400, "bad_content_type", "send application/x-www-form-urlencoded (or "
                       "multipart/form-data with a media file)")
    params = await request.post()
    _check_jurisdiction(request, hub, params)
    who = await _partner(hub, request, params)
    code = params.get("service_code") or ""
    if not code:
        raise WebError(400, "missing_service_code", "service_code is required (see services.json)")
    public = hub.config.web.open311.categories
    try:
        sub = hub.setup.taxonomy.subcategory(str(code))
    except KeyError:
        sub = None
    if sub is None or sub.retired or sub.category not in public:
        raise WebError(404, "unknown_service_code", f"service_code {str(code)[:64]!r} was not "
                       "found (see services.json)")
    lat, lon = _float(params, "lat", -90, 90), _float(params, "long", -180, 180)
    if lat is None or lon is None:
        raise WebError(400, "missing_location", "lat and long are both required (this hub "
                       "cannot geocode address_string or address_id)")
    photo = None
    media = params.get("media")
    if media is not None and not isinstance(media, str):
        try:
            checked = check_jpeg(media.file.read(), field="media")
        except FieldErrors as exc:
            raise WebError(exc.status, exc.code, exc.detail) from None
        photo = (Photo(checked.sha256, len(checked.data), checked.width, checked.height),
                 checked.data)
    text = str(params.get("description") or "").strip()[:4000]
    attrs = {k: str(params.get(k))[:200] for k in ("email", "first_name", "last_name", "phone",
                                                 "device_id", "account_id", "media_url")
             if params.get(k)}
    report = Report(agent_id=CHANNEL, source=report_source(who.name), subcategory=sub.code,
                    lat=lat, lon=lon, place=str(params.get("address_string") or "")[:200] or None,
                    description=text, photo=photo[0] if photo else None, attributes=attrs)
    try:
        outcome = await hub.report(report, actor=who.actor, photo_jpeg=photo[1] if photo else None)
    except CaseError as exc:
        raise WebError(400, "refused", exc.detail) from None
    notice = {"rejected": "received; it did not pass the quality screen and an operator will "
                          "look at it"}.get(outcome.state, "received; the responsible "
                                                          "department has been notified")
    return _respond(request, "service_requests", "request", [{
        "service_request_id": str(outcome.case_id), "service_notice": notice, "account_id": None}])


async def media(request: web.Request) -> web.Response:
    """A photo a citizen sent with a request (only those: camera snapshots stay private)."""
    hub = hub_of(request)
    sha = request.match_info["sha256"]
    ok = await hub.read(lambda repo: repo.is_report_media(sha, CHANNEL))
    data = await asyncio.to_thread(hub.files.get, sha) if ok else None
    if data is None:
        raise WebError(404, "no_such_media", "no such media")
    return web.Response(body=data, content_type="image/jpeg")
