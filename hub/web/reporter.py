"""One-key reports for residents' committees (``/report``, role ``reporter``).

One form, one step: a category (the public categories' subcategories that a person can
report — none that needs a sensor reading), a place (a tap on the grid map, an address
and its grid, or an address alone: placed by the gazetteer, or held for an operator to
place), a photo (JPEG ≤ 256 KiB; the page shrinks a phone's photo before
sending) and a note. It becomes an event of the pseudo-agent ``reporter`` (source: the
user) that goes through the same screening, merging, routing and dispatch as any other.
A one-time key in the form makes a double tap or a resent form one report, not two.

An optional email or mobile number (offered when ``notify:`` sets up email or SMS) gets
the case's updates and, once closed, the satisfaction survey (hub/engine/reporters.py);
it is kept apart from the event, for ``retention.reporter_contacts_days``.

Below the form the reporter sees their own reports with the case's progress (state,
department, deadline) and, once resolved or closed, the result and the after-photo.
Nobody else's reports, and no camera snapshot, are visible here.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..cases.screening import PLACEMENT
from ..engine.reporters import Contact, clean_email, clean_phone
from ..engine.reports import Photo, Report, ReportKey, report_source
from ..linkage import grid_point
from ..store.repo import CaseRow, ExternalReportRow, Repository
from .common import hub_of, principal
from .i18n import _, current
from .open311 import place_report
from .problems import FieldErrors, WebError
from .serialize import case_json
from .svg import map_frame
from .uploads import MAX_PHOTO_BYTES, checked_jpeg

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["CHANNEL", "photo", "report_page", "services", "submit", "updates_on"]

CHANNEL = "reporter"
LIST_LIMIT = 50
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Service:
    code: str
    en: str
    zh: str
    group_en: str
    group_zh: str
    needs_photo: bool


def services(hub: Hub) -> list[Service]:
    """What a reporter may choose: non-retired subcategories of the public categories
    (``web.open311.categories``) whose rule needs no sensor reading."""
    tax, rules = hub.setup.taxonomy, hub.engine.rules
    out = []
    for code in hub.config.web.open311.categories:
        cat = tax.category(code)
        for sub in cat.subcategories:
            rule = rules[sub.code]
            if sub.retired or "reading" in rule.evidence:
                continue
            out.append(Service(sub.code, sub.name.en, sub.name.zh, cat.name.en, cat.name.zh,
                               "snapshot" in rule.evidence))
    return out


def _follow(repo: Repository, case_id: int) -> CaseRow | None:
    """The case a report lives in now (a merged case points at the one it joined)."""
    case = repo.get_case(case_id)
    for _hop in range(8):
        if case is None or case.state != "merged" or case.merged_into is None:
            break
        case = repo.get_case(case.merged_into)
    return case


def _my_reports(repo: Repository,
                actor: str) -> list[tuple[ExternalReportRow, CaseRow | None, bool]]:
    out = []
    for row in repo.external_reports_by(CHANNEL, actor, LIST_LIMIT):
        life = repo.get_lifecycle(CHANNEL, row.event_id)
        out.append((row, _follow(repo, row.case_id), bool(life and life.snapshot_sha256)))
    return out


async def _render(request: web.Request, *, status: int = 200, errors: dict[str, str] | None = None,
                  values: dict[str, str] | None = None, flash: str | None = None) -> web.Response:
    from .app import RENDER_KEY

    hub = hub_of(request)
    who = principal(request)
    rows = await hub.read(lambda repo: _my_reports(repo, who.actor))
    tax, deps, now = hub.setup.taxonomy, hub.setup.routing.departments, hub.clock.now()
    reports = [{"id": r.id, "received_at": r.received_at, "has_photo": has_photo,
                "case": case_json(c, tax, deps, now) if c else None} for r, c, has_photo in rows]
    grids = hub.setup.grids.grids
    frame = map_frame(grids) if grids else None
    return request.app[RENDER_KEY].page(
        request, "report.html", status=status, title=_("Report a problem"), reports=reports,
        services=services(hub), frame=frame, report_errors=errors or {},
        report_values=values or {}, flash=flash, report_key=secrets.token_urlsafe(18),
        max_photo_kib=MAX_PHOTO_BYTES // 1024, updates_on=updates_on(hub))


def updates_on(hub: Hub) -> list[str]:
    """The channels a reporter may leave a contact for (those set up under ``notify:``)."""
    reporters = hub.engine.reporters
    if reporters is None:
        return []
    return [c for c in ("email", "sms") if c in reporters.outbox.endpoints]


def _contact(hub: Hub, form: Any, errors: dict[str, str]) -> Contact:
    """The optional email and phone for updates; a malformed one is a field error."""
    raw_email, raw_phone = _text(form, "contact_email", 300), _text(form, "contact_phone", 60)
    email, phone = clean_email(raw_email), clean_phone(raw_phone)
    if raw_email and email is None:
        errors["contact_email"] = _("this is not an email address (name@example.org)")
    if raw_phone and phone is None:
        errors["contact_phone"] = _("this is not a mobile number (6 to 20 digits, + allowed)")
    reporters = hub.engine.reporters
    return reporters.reachable(Contact(email, phone)) if reporters is not None else Contact()


async def report_page(request: web.Request) -> web.Response:
    done = request.query.get("done", "")
    flash = None
    if done.isdigit():
        flash = _("Sent. Report %(id)s is below; it updates as the case moves on.") % {"id": done}
    return await _render(request, flash=flash)


def _text(form: Any, name: str, limit: int) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _place(hub: Hub, form: Any,
           errors: dict[str, str]) -> tuple[float, float, str | None, str] | None:
    """(lat, lon, address, how) from a map point, an address with its grid, or an address
    alone (``how``: "point", "gazetteer" or "pending" — an operator places it)."""
    address = _text(form, "address", 200) or None
    raw_lat, raw_lon = _text(form, "lat", 40), _text(form, "lon", 40)
    grid_id = _text(form, "grid_id", 64)
    if raw_lat or raw_lon:
        try:
            lat, lon = float(raw_lat), float(raw_lon)
        except ValueError:
            errors["place"] = _("the map point is not a pair of numbers; tap the map again")
            return None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not hub.setup.in_service_area(lat, lon):
            errors["place"] = _("the point is outside the service area; tap a place inside "
                                 "the district's grids on the map")
            return None
        return lat, lon, address, "point"
    if grid_id:
        grid = hub.setup.grids.get(grid_id)
        if grid is None:
            errors["grid_id"] = _("unknown grid; choose one from the list")
            return None
        if not address:
            errors["address"] = _("give the address (street and number, or a landmark)")
            return None
        lat, lon = grid_point(grid)
        return lat, lon, address, "point"
    if address:
        where = place_report(hub, None, None, address)
        return where.lat, where.lon, address, where.how
    errors["place"] = _("tap the place on the map, or give an address (and its grid if you know it)")
    return None


async def submit(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    who = principal(request)
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k not in ("csrf_token",)}
    errors: dict[str, str] = {}
    by_code = {s.code: s for s in services(hub)}
    code = _text(form, "service", 64)
    service = by_code.get(code)
    if service is None:
        errors["service"] = _("choose what the problem is") if not code else \
            _("unknown category %(code)r; choose one from the list") % {"code": code}
    place = _place(hub, form, errors)
    note = _text(form, "note", 2000)
    checked = None
    upload = form.get("photo")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        try:
            checked = await checked_jpeg(upload.file.read())
        except FieldErrors as exc:
            errors["photo"] = exc.fields.get("photo", exc.detail)
    elif service is not None and service.needs_photo:
        errors["photo"] = _("“%(service)s” needs a photo: take or choose one") % {
            "service": service.zh if current() == "zh_CN" and service.zh else service.en}
    contact = _contact(hub, form, errors)
    key_value = _text(form, "report_key", 64)
    if len(key_value) < 16 or not set(key_value) <= _KEY_CHARS:
        errors["form"] = _("the form is stale; reload the page and send it again")
    if errors:
        return await _render(request, status=400, errors=errors, values=values)
    assert service is not None and place is not None
    lat, lon, address, how = place
    photo = Photo(checked.sha256, len(checked.data), checked.width, checked.height) if checked else None
    # One source per report (user.key): two reports never share a per-source grouping key.
    source = report_source(f"{who.name[:40]}.{key_value[:16]}")
    report = Report(agent_id=CHANNEL, source=source, subcategory=service.code,
                    lat=lat, lon=lon, place=address, description=note, photo=photo,
                    attributes={"reporter": who.name[:200],
                                **({PLACEMENT: how} if how != "point" else {})},
                    contact=contact or None)
    digest = hashlib.sha256(f"{service.code}|{lat}|{lon}|{address}|{note}|"
                            f"{checked.sha256 if checked else ''}|{contact.email}|"
                            f"{contact.phone}".encode()).hexdigest()
    outcome = await hub.report_once(report, ReportKey(CHANNEL, who.name, key_value, digest),
                                    actor=who.actor, photo_jpeg=checked.data if checked else None)
    raise web.HTTPSeeOther(f"/report?done={outcome.report_id}#report-{outcome.report_id}")


async def photo(request: web.Request) -> web.Response:
    """The reporter's own photo (``before``) or the handler's after-photo of the case
    (``after``, once resolved or closed) — only for the reporter who sent the report."""
    hub = hub_of(request)
    who = principal(request)
    report_id = int(request.match_info["report_id"])
    which = request.match_info["which"]

    def load(repo: Repository) -> str | None:
        row = repo.get_external_report_by_id(report_id)
        if row is None or row.channel != CHANNEL or row.actor != who.actor:
            return None
        if which == "before":
            life = repo.get_lifecycle(CHANNEL, row.event_id)
            return life.snapshot_sha256 if life else None
        case = _follow(repo, row.case_id)
        if case is None or case.state not in ("resolved", "closed"):
            return None
        return case.after_sha256

    sha = await hub.read(load)
    data = await asyncio.to_thread(hub.files.get, sha) if sha else None
    if data is None:
        raise WebError(404, "no_such_photo", _("no such photo for your reports"))
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})
