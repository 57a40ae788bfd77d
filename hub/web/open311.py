"""Open311 GeoReport v2: services from the taxonomy, service requests from cases.

* ``GET discovery.{json,xml}``: the service discovery document (changeset, contact,
  key_service, one production endpoint with both formats).
* ``GET services.{json,xml}``: one service per (non-retired) subcategory of the public
  categories (``web.open311.categories``); ``service_code`` is the subcategory code.
* ``GET services/{service_code}.{json,xml}``: its service definition (no extra
  attributes, so ``metadata`` is false and ``attributes`` empty).
* ``GET requests.{json,xml}``: cases of those categories, filtered by
  ``service_request_id`` (alone: the others are then ignored, as the spec says),
  ``service_code`` (comma lists), ``start_date``, ``end_date`` (with a timezone; default
  the last 90 days) and ``status`` (``open``/``closed``); newest first, 1000 at most.
* ``POST requests.{json,xml}`` (form-encoded, or multipart with a ``media`` JPEG) with an
  ``api_key`` of an ``open311``/``reporter`` token: an event of source ``open311`` that
  goes through the reports' screening (hub/cases/screening.py), merging and dispatch.
  Located by ``lat``/``long``, or by ``address_string`` alone through the gazetteer
  (hub/gazetteer.py) or, when no entry matches, held for an operator to place. Each
  report is its own source; each token has a bucket of ``posts_per_min``; the same body
  from the same token within ten minutes is the same request.
* ``GET requests/{id}.{json,xml}``.

``service_request_id`` is the case id; ``status`` is ``open`` for open case states and
``closed`` for closed, rejected and merged ones (``status_notes`` says which and why);
``expected_datetime`` is the deadline. Every error, 404 and 405 included, is the spec's
array of ``{code, description}`` (``<errors><error>`` in XML) with the format's content
type. XML never carries a character XML 1.0 forbids (:func:`xml_safe`). Rendering is
pure (:func:`request_item`, :func:`to_xml`, :func:`xml_document`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web

from ..auth.accounts import principal_for_token, sha256_hex
from ..auth.roles import Principal
from ..cases.merging import is_held_key
from ..cases.screening import PLACEMENT, PLACEMENT_PENDING, REPORT_CHANNELS
from ..cases.states import OPEN_STATES
from ..engine.reporters import Contact, clean_email, clean_phone
from ..engine.reports import Photo, Report, ReportKey, report_source
from ..errors import CaseError
from ..gazetteer import stand_in_point
from ..store.repo import CaseFilter, CaseRow, Repository
from .common import hub_of
from .problems import FieldErrors, WebError
from .throttle import TokenBuckets
from .uploads import checked_jpeg

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["STATE_KEY", "Open311State", "discovery", "error_response", "media", "post_request",
           "request", "request_item", "requests", "service_definition", "services", "to_xml",
           "xml_document", "xml_safe"]

CHANNEL = "open311"
MAX_REQUESTS = 1000
MAX_ID = 2**63 - 1  # SQLite's integer range: a larger id names no case
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
FORMATS = ["text/xml", "application/json"]
DUPLICATE_WINDOW_S = 600  # the same body from the same token within it is one request
_OPEN = {s.value for s in OPEN_STATES}


@dataclass
class Open311State:
    """Per app: when the service list last changed (discovery's changeset) and the POST
    buckets per token."""

    changeset: datetime
    buckets: TokenBuckets

    @classmethod
    def for_hub(cls, hub: Hub) -> Open311State:
        return cls(hub.clock.now(), TokenBuckets(hub.config.web.open311.posts_per_min))


STATE_KEY: web.AppKey = web.AppKey("open311", Open311State)


# -- rendering ---------------------------------------------------------------------------------
# Everything outside XML 1.0's Char production: C0 controls but tab, LF and CR; lone
# surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A list's element name → its items' element name.
_ITEMS = {"services": "service", "service_requests": "request", "errors": "error",
          "attributes": "attribute", "values": "value", "endpoints": "endpoint",
          "formats": "format"}


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow (a form feed or a NUL in an
    address must not make the whole feed unreadable), then escaped."""
    return escape(_NOT_XML.sub("", text))


def _element(out: list[str], tag: str, value: Any, items: dict[str, str]) -> None:
    if value is None:
        out.append(f"<{tag}/>")
    elif isinstance(value, bool):
        out.append(f"<{tag}>{'true' if value else 'false'}</{tag}>")
    elif isinstance(value, dict):
        out.append(f"<{tag}>")
        for key, inner in value.items():
            _element(out, key, inner, items)
        out.append(f"</{tag}>")
    elif isinstance(value, list):
        item = items.get(tag, "item")
        out.append(f"<{tag}>")
        for inner in value:
            _element(out, item, inner, items)
        out.append(f"</{tag}>")
    else:
        out.append(f"<{tag}>{xml_safe(str(value))}</{tag}>")


def xml_document(root: str, value: dict[str, Any] | list[Any],
                 items: dict[str, str] | None = None) -> str:
    """GeoReport's XML: a dict is an element per key, a list repeats its item element
    (``services`` → ``service``, ...); a null is an empty element, booleans are
    ``true``/``false``."""
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    _element(out, root, value, {**_ITEMS, **(items or {})})
    return "\n".join(out) + "\n"


def to_xml(root: str, item: str, rows: list[dict[str, Any]]) -> str:
    """``<root><item>...</item>...</root>`` (the list answers)."""
    return xml_document(root, rows, {root: item})


def _fmt(request: web.Request) -> str:
    fmt = request.match_info.get("fmt")
    if fmt:
        return fmt
    return "xml" if request.path.endswith(".xml") else "json"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _respond(request: web.Request, root: str, value: dict[str, Any] | list[Any],
             status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if _fmt(request) == "xml":
        return web.Response(text=xml_document(root, value), status=status,
                            content_type="text/xml", charset="utf-8", headers=headers)
    return web.json_response(value, status=status, headers=headers)


def error_response(request: web.Request, status: int, description: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return _respond(request, "errors", [{"code": status, "description": description}], status,
                    headers)


# -- discovery and services -------------------------------------------------------------------------
def _base_url(request: web.Request, hub: Hub) -> str:
    return (hub.config.web.public_url or f"{request.scheme}://{request.host}").rstrip("/")


def _enabled(hub: Hub) -> None:
    if not hub.config.web.open311.enabled:
        raise WebError(404, "open311_disabled", "Open311 is switched off on this hub")


def _check_jurisdiction(hub: Hub, params) -> None:
    given = params.get("jurisdiction_id")
    want = hub.config.web.open311.jurisdiction_id
    if given and want and given != want:
        raise WebError(404, "unknown_jurisdiction", f"jurisdiction_id {str(given)[:64]!r} is "
                       f"not served here (this endpoint serves {want!r})")


def discovery_document(hub: Hub, base_url: str, changeset: datetime) -> dict[str, Any]:
    cfg = hub.config.web.open311
    return {
        "changeset": _iso(changeset),
        "contact": cfg.contact or "the city operations centre that runs this hub",
        "key_service": cfg.key_service or "ask the hub's administrator for an open311 token "
                                          "(cityops-hub token create --role open311)",
        "endpoints": [{
            "specification": SPEC_URL,
            "url": f"{base_url}/open311/v2",
            "changeset": _iso(changeset),
            "type": "production",
            "formats": list(FORMATS),
        }],
    }


async def discovery(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    state = request.app[STATE_KEY]
    return _respond(request, "discovery",
                    discovery_document(hub, _base_url(request, hub), state.changeset))


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


def _public_service(hub: Hub, code: str):
    """The subcategory behind a public service code, or None."""
    try:
        sub = hub.setup.taxonomy.subcategory(code)
    except KeyError:
        return None
    if sub.retired or sub.category not in hub.config.web.open311.categories:
        return None
    return sub


async def services(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    _check_jurisdiction(hub, request.query)
    return _respond(request, "services", service_list(hub))


async def service_definition(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    _check_jurisdiction(hub, request.query)
    code = request.match_info["service_code"]
    if _public_service(hub, code) is None:
        raise WebError(404, "unknown_service_code", f"service_code {code[:64]!r} was not found "
                       "(see services.json)")
    # No service asks for more than the standard fields: metadata is false, no attributes.
    return _respond(request, "service_definition", {"service_code": code, "attributes": []})


# -- requests ------------------------------------------------------------------------------------
def status_of(case: CaseRow) -> tuple[str, str | None]:
    if case.state in _OPEN:
        if case.state == "new" and case.queue:
            return "open", f"received; waiting for an operator: {case.queue_reason or 'review'}"
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


def _attributes(raw: dict[str, Any] | str | None) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def request_item(case: CaseRow, hub: Hub, base_url: str,
                 report: dict[str, Any] | None = None) -> dict[str, Any]:
    """One service request. ``report``: the attributes of the person's report that opened
    the case (its text and ``media_url``), None for a case a camera or sensor opened."""
    tax = hub.setup.taxonomy
    status, notes = status_of(case)
    try:
        sub = tax.subcategory(case.subcategory)
        name, name_zh = sub.name.en, sub.name.zh
    except KeyError:
        name, name_zh = case.subcategory, ""
    dep = case.department
    agency = None
    if dep:
        n = tax.departments.get(dep) or hub.setup.routing.departments.get(dep)
        agency = n.en if n else dep
    media = None
    if case.before_sha256 and case.origin_agent == CHANNEL:
        media = f"{base_url}/open311/v2/media/{case.before_sha256}.jpg"
    if report is not None:
        description = str(report.get("description") or "") or None
        media = media or (str(report["media_url"]) if report.get("media_url") else None)
    else:
        description = f"{name}{f' ({name_zh})' if name_zh else ''}, detected automatically"
    placed = not is_held_key(case.group_key)  # a held report's point is a stand-in
    return {
        "service_request_id": str(case.id),
        "status": status,
        "status_notes": notes,
        "service_name": name,
        "service_code": case.subcategory,
        "description": description,
        "agency_responsible": agency,
        "service_notice": None,
        "requested_datetime": _iso(case.created_at),
        "updated_datetime": _iso(case.updated_at),
        "expected_datetime": _iso(case.deadline_at),
        "address": case.place,
        "address_id": None,
        "zipcode": None,
        "lat": case.lat if placed else None,
        "long": case.lon if placed else None,
        "media_url": media,
    }


def _with_reports(repo: Repository, cases: list[CaseRow]) -> list[tuple[CaseRow, dict | None]]:
    out = []
    for case in cases:
        report = None
        if case.origin_agent in REPORT_CHANNELS:
            life = repo.get_lifecycle(case.origin_agent, case.origin_event)
            report = _attributes(life.attributes if life else None)
        out.append((case, report))
    return out


def parse_date(name: str, raw: str) -> datetime:
    """A W3C date-time with its timezone (``Z`` or ``±hh:mm``), as GeoReport requires: a
    time without one is refused, never guessed."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WebError(400, "bad_date", f"{name} must be a W3C date-time such as "
                       f"2026-07-01T08:00:00+08:00 (got {raw[:40]!r})") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise WebError(400, "bad_date", f"{name} has no timezone (got {raw[:40]!r}); add Z "
                       "or an offset such as +08:00")
    return value


def _request_id(raw: str) -> int | None:
    """A case id from the outside: digits only, within SQLite's range; else None."""
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


async def requests(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    q = request.query
    _check_jurisdiction(hub, q)
    cfg = hub.config.web.open311
    if q.get("service_request_id"):  # the spec: every other filter is then ignored
        raw = [x for x in q["service_request_id"].split(",") if x.strip()][:MAX_REQUESTS]
        ids = [_request_id(x) for x in raw]
        if any(i is None for i in ids):
            raise WebError(400, "bad_id", "service_request_id is a comma-separated list of "
                           "request ids (numbers)")
        f = CaseFilter(categories=cfg.categories, ids=[i for i in ids if i is not None])
    else:
        now = hub.clock.now()
        subs = [c.strip() for c in q.get("service_code", "").split(",") if c.strip()] or None
        end = parse_date("end_date", q["end_date"]) if q.get("end_date") else now
        start = parse_date("start_date", q["start_date"]) if q.get("start_date") else \
            end - timedelta(days=cfg.max_days)
        if start > end:
            raise WebError(400, "bad_date", "start_date is after end_date")
        if end - start > timedelta(days=cfg.max_days):
            raise WebError(400, "bad_date", f"the date range is at most {cfg.max_days} days")
        status = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
        if any(s not in ("open", "closed") for s in status):
            raise WebError(400, "bad_status", "status is open, closed or open,closed")
        states = None
        if set(status) == {"open"}:
            states = sorted(_OPEN)
        elif set(status) == {"closed"}:
            states = ["closed", "rejected", "merged"]
        f = CaseFilter(states=states, categories=cfg.categories, subcategories=subs,
                       created_from=start, created_until=end)

    def load(repo: Repository) -> list[tuple[CaseRow, dict | None]]:
        cases, _ = repo.search_cases(f, limit=MAX_REQUESTS, with_total=False)
        return _with_reports(repo, cases)

    rows = await hub.read(load)
    base = _base_url(request, hub)
    return _respond(request, "service_requests", [request_item(c, hub, base, r) for c, r in rows])


async def request(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    _check_jurisdiction(hub, request.query)
    raw = request.match_info["request_id"]
    case_id = _request_id(raw)
    if case_id is None:
        raise WebError(404, "no_such_request", f"service_request_id {raw[:40]!r} was not found "
                       "(request ids are numbers)")

    def load(repo: Repository) -> list[tuple[CaseRow, dict | None]]:
        case = repo.get_case(case_id)
        return _with_reports(repo, [case]) if case is not None else []

    rows = await hub.read(load)
    if not rows or rows[0][0].category not in hub.config.web.open311.categories:
        raise WebError(404, "no_such_request", f"service_request_id {case_id} was not found")
    case, report = rows[0]
    return _respond(request, "service_requests",
                    [request_item(case, hub, _base_url(request, hub), report)])


# -- creating a request ----------------------------------------------------------------------------
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


def _throttle(request: web.Request, who: Principal) -> None:
    state = request.app[STATE_KEY]
    wait = state.buckets.take(who.token_id)
    if wait > 0:
        after = TokenBuckets.retry_after(wait)
        raise WebError(429, "too_many_requests", f"this api_key sent more than "
                       f"{int(state.buckets.size)} requests in a minute; retry in {after} s",
                       headers={"Retry-After": after})


def _float(params, name: str, lo: float, hi: float) -> float | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise WebError(400, "bad_location", f"{name} must be a number (got {str(raw)[:20]!r})") from None
    if not lo <= value <= hi:  # NaN fails too
        raise WebError(400, "bad_location", f"{name} must be between {lo} and {hi}")
    return value


def _text(params, name: str, limit: int) -> str:
    value = params.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _media_url(params) -> str | None:
    raw = params.get("media_url")
    if raw in (None, ""):
        return None
    url = str(raw).strip()
    if (len(url) > 200 or not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f<>\"]+", url)):
        raise WebError(400, "bad_media_url", "media_url must be an http(s) URL of at most 200 "
                       "characters")
    return url


def _contact(hub: Hub, params) -> Contact:
    """The submitter's ``email``, ``phone`` and ``first_name`` (GeoReport's fields), checked
    (a malformed one is a 400, never silently dropped), and kept only where a channel set up
    on this hub can reach them."""
    raw_email, raw_phone = _text(params, "email", 300), _text(params, "phone", 60)
    email, phone = clean_email(raw_email), clean_phone(raw_phone)
    if raw_email and email is None:
        raise WebError(400, "bad_email", f"email {raw_email[:60]!r} is not an email address")
    if raw_phone and phone is None:
        raise WebError(400, "bad_phone", f"phone {raw_phone[:30]!r} is not a phone number "
                       "(6 to 20 digits, optionally with a leading +)")
    name = re.sub(r"[\x00-\x1f\x7f]", "", _text(params, "first_name", 60)).strip() or None
    reporters = hub.engine.reporters
    if reporters is None:
        return Contact()
    return reporters.reachable(Contact(email, phone, name))


def _updates_notice(hub: Hub, params, contact: Contact) -> str:
    """What the submitter will hear back, said in the reply."""
    on = [w for w, v in (("email", contact.email), ("SMS", contact.phone)) if v]
    if on:
        return f"; updates will be sent by {' and '.join(on)}"
    if _text(params, "email", 300) or _text(params, "phone", 60):
        return "; this hub sends no updates to the contact given"
    return ""


@dataclass(frozen=True)
class Placement:
    lat: float
    lon: float
    how: str  # "point" | "gazetteer" | "pending"
    place_name: str | None = None  # the gazetteer entry


def place_report(hub: Hub, lat: float | None, lon: float | None, address: str) -> Placement:
    """Where a report goes: its point; else its address through the gazetteer; else a
    stand-in point, held for an operator to place."""
    if lat is not None and lon is not None:
        return Placement(lat, lon, "point")
    match = hub.setup.gazetteer.find(address) if address else None
    if match is not None:
        return Placement(match.lat, match.lon, "gazetteer", match.name)
    lat, lon = stand_in_point(hub.setup.grids)
    return Placement(lat, lon, PLACEMENT_PENDING)


async def post_request(request: web.Request) -> web.Response:
    hub = hub_of(request)
    _enabled(hub)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise WebError(400, "bad_content_type", "send application/x-www-form-urlencoded (or "
                       "multipart/form-data with a media file)")
    params = await request.post()
    _check_jurisdiction(hub, params)
    who = await _partner(hub, request, params)
    _throttle(request, who)
    code = _text(params, "service_code", 200)
    if not code:
        raise WebError(400, "missing_service_code", "service_code is required (see services.json)")
    sub = _public_service(hub, code)
    if sub is None:
        raise WebError(404, "unknown_service_code", f"service_code {code[:64]!r} was not "
                       "found (see services.json)")
    lat, lon = _float(params, "lat", -90, 90), _float(params, "long", -180, 180)
    address = _text(params, "address_string", 200)
    if (lat is None) != (lon is None):
        raise WebError(400, "missing_location", "give lat and long together (or only "
                       "address_string)")
    if lat is None and not address:
        raise WebError(400, "missing_location", "a location is required: lat and long, or "
                       "address_string (address_id alone is not known here)")
    media_url = _media_url(params)
    photo = None
    upload = params.get("media")
    if upload is not None and not isinstance(upload, str):
        try:
            checked = await checked_jpeg(upload.file.read(), field="media")
        except FieldErrors as exc:
            raise WebError(exc.status, exc.code, exc.detail) from None
        photo = (Photo(checked.sha256, len(checked.data), checked.width, checked.height),
                 checked.data)
    where = place_report(hub, lat, lon, address)
    text = _text(params, "description", 4000)
    contact = _contact(hub, params)
    # The submitter's name, email and phone are not event attributes: the event outlives the
    # contact's retention. They are kept apart, only when the hub can answer on them.
    attrs: dict[str, str | int | float | bool | None] = {
        k: _text(params, k, 200) for k in ("device_id", "account_id") if _text(params, k, 200)}
    if media_url:
        attrs["media_url"] = media_url
    if where.how != "point":
        attrs[PLACEMENT] = where.how
    if where.place_name:
        attrs["gazetteer"] = where.place_name
    # Each report is its own source: one bad report never weighs on the next (screening of
    # reports counts no repeat offenders; the token's bucket limits a flood instead).
    report = Report(agent_id=CHANNEL, source=report_source(f"{who.name[:40]}.{secrets.token_hex(4)}"),
                    subcategory=sub.code, lat=where.lat, lon=where.lon, place=address or None,
                    description=text, photo=photo[0] if photo else None, attributes=attrs,
                    contact=contact or None)
    now = hub.clock.now()
    body = json.dumps([code, lat, lon, address, text, media_url, sorted(attrs.items()),
                       photo[0].sha256 if photo else None,
                       [contact.email, contact.phone, contact.name]], default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()
    key = ReportKey(CHANNEL, f"token-{who.token_id}",
                    f"{int(now.timestamp()) // DUPLICATE_WINDOW_S}.{digest[:40]}", digest)
    try:
        outcome = await hub.report_once(report, key, actor=who.actor,
                                        photo_jpeg=photo[1] if photo else None)
    except CaseError as exc:
        raise WebError(400, "refused", exc.detail) from None
    if outcome.state == "rejected":
        notice = "received; it did not pass the quality screen and an operator will look at it"
    elif outcome.state == "new" and where.how == PLACEMENT_PENDING:
        notice = ("received; the address matched no known road or community, so an operator "
                  "will place it on the map")
    elif outcome.state == "new":
        notice = "received; an operator will look at it"
    else:
        notice = "received; the responsible department has been notified"
    notice += _updates_notice(hub, params, contact)
    return _respond(request, "service_requests", [{
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
