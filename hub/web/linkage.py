"""``POST /api/v1/incidents``: linked incidents from emergency systems (the shell around
:mod:`hub.linkage`).

A ``linkage`` API token posts one incident as JSON; it becomes an event of the
pseudo-agent ``linkage`` (source: the sending system) that goes through the same
screening, merging, routing and dispatch as an agent's event. ``(source_system,
external_id)`` is idempotent: the first post answers 201, a repeat 200 with the same
case, a repeat with a different body 409. A token files only under its partner's source
systems (:func:`hub.linkage.source_system_refusal`, 403), so no partner can take another's
incident ids. Every refusal is a problem document naming the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from ..engine.reports import Report, ReportKey, report_source
from ..linkage import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Incident,
    check_signature,
    check_times,
    grid_point,
    incident_digest,
    map_type,
    source_system_refusal,
)
from .common import hub_of, json_response, principal
from .problems import FieldErrors, WebError, field_errors_from
from .serialize import case_json

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["CHANNEL", "post_incident"]

CHANNEL = "linkage"


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_type != "application/json":
        raise WebError(415, "unsupported_media_type", "send the incident as JSON with "
                       f"'Content-Type: application/json' (got {request.content_type or 'none'!r})")
    if request.content_length is not None and request.content_length > limit:
        raise WebError(413, "too_large", f"the body is {request.content_length} bytes; an incident "
                       f"is at most {limit} bytes (shorten the description; photos go by photo_url)")
    body = await request.read()  # bounded by the app's client_max_size as well
    if len(body) > limit:
        raise WebError(413, "too_large", f"the body is over {limit} bytes; an incident is at most "
                       f"{limit} bytes (shorten the description; photos go by photo_url)")
    return body


def _check_partner_signature(hub: Hub, request: web.Request, partner_name: str,
                             body: bytes) -> None:
    cfg = hub.config.web.linkage
    partner = cfg.partners.get(partner_name)
    if partner is None or partner.secret_env is None:
        return
    ts, sig = request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
    if not partner.require_signature and not (ts or sig):
        return
    secret = os.environ.get(partner.secret_env)
    if not secret:
        raise WebError(503, "no_partner_secret", f"the hub has no signing secret for this partner: "
                       f"the administrator must set {partner.secret_env}")
    problem = check_signature(secret, ts, sig, body, hub.clock.now().timestamp(),
                              cfg.signature_window_s)
    if problem:
        raise WebError(401, "bad_signature", problem)


def _parse(body: bytes) -> Incident:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldErrors({"body": f"not valid JSON ({str(exc)[:80]}); send one incident "
                           "object, see docs/web.md 'Linked incidents'"}) from None
    if not isinstance(data, dict):
        raise FieldErrors({"body": "send one incident as a JSON object"})
    try:
        return Incident.model_validate(data)
    except ValidationError as exc:
        raise field_errors_from(exc) from None


def _report(hub: Hub, incident: Incident, partner: str) -> Report:
    cfg = hub.config.web.linkage
    errors: dict[str, str] = {}
    sub = map_type(cfg.types, incident.source_system, incident.type)
    if sub is None:
        known = ", ".join(sorted(cfg.types)) or "none"
        errors["type"] = (f"no mapping for type {incident.type!r} from {incident.source_system!r} "
                          f"(mapped: {known}); ask the hub's administrator to add it to "
                          "web.linkage.types")
    errors.update(check_times(incident, hub.clock.now(), cfg))
    loc = incident.location
    grid = None
    if loc.grid_id is not None:
        grid = hub.setup.grids.get(loc.grid_id)
        if grid is None:
            errors["location.grid_id"] = (f"unknown grid {loc.grid_id!r}; GET /api/v1/grids "
                                          "lists them (or send lat and lon)")
    if errors:
        raise FieldErrors(errors)
    assert sub is not None
    if loc.lat is not None and loc.lon is not None:
        lat, lon = loc.lat, loc.lon
    else:
        assert grid is not None
        lat, lon = grid_point(grid)
    attrs: dict[str, Any] = {"source_system": incident.source_system,
                             "external_id": incident.external_id[:200], "type": incident.type,
                             "partner": partner[:200]}
    if incident.photo_url:
        attrs["photo_url"] = incident.photo_url
    if loc.lat is None:
        attrs["located_by"] = "grid"
    return Report(agent_id=CHANNEL, source=incident_source(incident),
                  subcategory=sub, lat=lat, lon=lon, place=loc.address,
                  description=incident.description, attributes=attrs,
                  observed_at=incident.occurred_at)


def incident_source(incident: Incident) -> str:
    """The event's source id: one per incident (``police-110.P0042``), so incidents of one
    system never share a grouping key; a hash stands in for an id outside the safe alphabet."""
    plain = f"{incident.source_system}.{incident.external_id}"
    if len(plain) <= 64 and report_source(plain) == plain:
        return plain
    digest = hashlib.sha256(incident.external_id.encode()).hexdigest()[:16]
    return f"{incident.source_system[:47]}.{digest}"


async def post_incident(request: web.Request) -> web.Response:
    hub = hub_of(request)
    cfg = hub.config.web.linkage
    if not cfg.enabled:
        raise WebError(404, "linkage_disabled", "the linked incident feed is switched off on this "
                       "hub (web.linkage.enabled)")
    who = principal(request)
    body = await _read_body(request, cfg.max_body_bytes)
    _check_partner_signature(hub, request, who.name, body)
    incident = _parse(body)
    refusal = source_system_refusal(cfg, who.name, incident.source_system)
    if refusal:  # a source_system (and so its incident ids) belongs to one partner
        raise WebError(403, "forbidden_source_system", refusal)
    report = _report(hub, incident, who.name)
    key = ReportKey(CHANNEL, incident.source_system, incident.external_id,
                    incident_digest(incident))
    outcome = await hub.report_once(report, key, actor=who.actor)
    if outcome.conflict:
        raise WebError(409, "external_id_reused", f"{incident.source_system} incident "
                       f"{incident.external_id!r} was received before with different content "
                       f"(case {outcome.case_id}); send updates to the operators, or use a new "
                       "external_id for a new incident")
    case = await hub.read(lambda repo: repo.get_case(outcome.case_id))
    assert case is not None
    view = case_json(case, hub.setup.taxonomy, hub.setup.routing.departments, hub.clock.now())
    return json_response({
        "incident": {"source_system": incident.source_system,
                     "external_id": incident.external_id, "subcategory": report.subcategory,
                     "event_id": outcome.event_id, "case_id": outcome.case_id,
                     "duplicate": outcome.duplicate,
                     "accepted": case.state not in ("new", "rejected"),
                     "screen_reasons": view["screen_reasons"]},
        "case": view,
    }, status=200 if outcome.duplicate else 201)
