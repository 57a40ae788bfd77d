"""JSON views: read from the repository (read-only connections in worker threads), call
the hub for actions. No logic of their own; shapes come from :mod:`serialize`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from protocol.ids import new_secret
from protocol.provisioning import EnrollRequest, EnrollResponse, MqttEndpoint

from ..auth.roles import CASE_ACTIONS, case_actions
from ..enroll import claim_token, release_token
from ..errors import EnrollmentError
from ..memory import rss_bytes, sqlite_bytes
from ..scores import month_bounds, score_cases
from .actions import load_case_for, parse_action, perform
from .common import case_filter, hub_of, json_response, principal, query_int
from .i18n import _
from .live import overview, stream
from .metrics import ingest_samples, notify_samples, render
from .problems import FieldErrors, WebError, problem
from .serialize import agent_json, clip_view, jsonable, snapshot_url
from .serialize import case_json as case_view
from .supervision import order_json, supervise_offer
from .survey import delivery_view, reporters_view
from .verdicts import labels_view, load_labels

__all__ = [
    "agents_json", "case_action", "case_detail", "case_json", "cases_json", "dead_letters_json",
    "enroll", "grids_json", "healthz", "live", "me", "metrics", "overview_json",
    "scores_json", "snapshot", "stats_json",
]

log = logging.getLogger(__name__)


def _live(request: web.Request):
    from .app import LIVE_KEY

    return request.app[LIVE_KEY]


async def healthz(request: web.Request) -> web.Response:
    body = hub_of(request).health()
    return web.json_response(body, status=200 if body["ok"] else 503)


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return json_response({"name": who.name, "kind": who.kind, "role": who.role.value,
                          "department": who.department, "display_name": who.display_name,
                          "csrf_token": who.csrf})


async def overview_json(request: web.Request) -> web.Response:
    return json_response(await _live(request).for_scope(principal(request).grids))


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events of the overview (:func:`hub.web.live.stream`)."""
    return await stream(request, _live(request), principal(request))


async def cases_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    f = case_filter(request, hub)
    limit, offset = query_int(request, "limit", 100, 1), query_int(request, "offset", 0, 0, 10**9)
    cases, total = await hub.read(lambda repo: repo.search_cases(f, limit=limit, offset=offset))
    now = hub.clock.now()
    tax, deps = hub.setup.taxonomy, hub.setup.routing.departments
    return json_response({"cases": [case_view(c, tax, deps, now) for c in cases],
                          "total": total, "limit": limit, "offset": offset})


async def case_detail(request: web.Request, case_id: int) -> dict[str, Any]:
    """The case and everything about it, as the principal may see it."""
    hub = hub_of(request)
    who = principal(request)
    case = await load_case_for(hub, who, case_id)

    def load(repo):
        return {"events": repo.lifecycles_for_case(case_id),
                "audit": repo.audit_for_case(case_id),
                "snapshots": repo.snapshots_for_case(case_id),
                "clips": repo.clips_for_case(case_id),
                "verifications": repo.verifications_for_case(case_id),
                "notifications": repo.notifications_for_case(case_id),
                "deliveries": repo.deliveries_for_case(case_id),
                "reporters": repo.reporter_contacts_for_case(case_id),
                "surveys": repo.surveys_for_case(case_id),
                "supervision": repo.supervision_for_case(case_id),
                "labels": load_labels(repo, case_id)}

    data = await hub.read(load)
    full = who.can("case.close")
    tax = hub.setup.taxonomy
    snaps = [{**jsonable(s), "url": snapshot_url(s.sha256)} for s in data["snapshots"]]
    verifs = [{**v, "after_url": snapshot_url(v["after_sha256"]),
               "before_url": snapshot_url(v["before_sha256"])} for v in data["verifications"]]
    return {
        "case": case_view(case, tax, hub.setup.routing.departments, hub.clock.now()),
        "events": jsonable(data["events"]),
        "audit": jsonable(data["audit"]),
        "snapshots": snaps,
        "clips": [clip_view(c) for c in data["clips"]],
        "verifications": verifs,
        "notifications": data["notifications"],
        # Each notification's deliveries (hub/notify/): channel, target, state, attempts, last error.
        "deliveries": [delivery_view(d.view(), full) for d in data["deliveries"]],
        # Who reported it and left a contact (in full for operators, who call them back).
        "reporters": reporters_view(data["reporters"], data["surveys"], full),
        "supervision": [order_json(o, who, case, hub.clock.now()) for o in data["supervision"]],
        "supervise": supervise_offer(who, case),
        "actions": case_actions(who, case.state, case.department, case.review_reason),
        # the camera snapshots with the verdicts recorded on them (hub/web/verdicts.py)
        "labels": labels_view(*data["labels"]),
        "can_label": who.can("case.review"),
    }


async def case_json(request: web.Request) -> web.Response:
    return json_response(await case_detail(request, int(request.match_info["case_id"])))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise FieldErrors({"body": _("not valid JSON; send an object like %(example)s")
                           % {"example": '{"reason": "..."}'}}) from None
    except RecursionError:  # [[[[... a hundred thousand deep: the parser runs out of stack
        raise FieldErrors({"body": _("the JSON is nested too deeply; send a flat object like "
                                     "%(example)s") % {"example": '{"reason": "..."}'}}) from None
    if not isinstance(data, dict):
        raise FieldErrors({"body": _("send a JSON object")})
    return data


_ROUTE_ACTION = {"case_accept": "accept", "case_reject": "reject", "case_dispatch": "dispatch",
                 "case_reassign": "reassign", "case_review": "review", "case_close": "close",
                 "case_reopen": "reopen", "case_note": "note"}


async def case_action(request: web.Request) -> web.Response:
    """``POST /api/v1/cases/{id}/{action}`` with a JSON body; answers the case."""
    hub = hub_of(request)
    action = _ROUTE_ACTION[request.match_info.route.name or ""]
    assert action in CASE_ACTIONS
    body = parse_action(action, await _json_body(request))
    case = await perform(hub, principal(request), int(request.match_info["case_id"]), action, body)
    return json_response({"case": case_view(case, hub.setup.taxonomy,
                                            hub.setup.routing.departments, hub.clock.now())})


async def agents_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    state = request.query.get("state", "").strip() or None
    if state and state not in ("online", "offline", "stale", "unknown"):
        raise FieldErrors({"state": _("one of %(list)s") % {"list": "online, offline, stale, unknown"}})
    text = request.query.get("q", "").strip()[:64] or None
    limit = query_int(request, "limit", 1000, 1, 10_000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    now = hub.clock.now()
    stale_s = hub.config.agents.stale_after_s

    def read(repo):
        agents, total = repo.search_agents(state=state, text=text, limit=limit, offset=offset,
                                           stale_before=now - timedelta(seconds=stale_s))
        return agents, total, repo.messages_stored_by_agent([a.agent_id for a in agents])

    agents, total, stored = await hub.read(read)
    return json_response({"agents": [agent_json(a, now, stale_s, stored[a.agent_id]) for a in agents],
                          "total": total, "limit": limit, "offset": offset})


async def grids_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    who = principal(request)
    data = await _live(request).for_scope(who.grids)
    by_grid = data["cases"]["by_grid"]
    return json_response({"grids": [
        {"grid_id": g.grid_id, "name": g.name, "name_zh": g.name_zh, "town": g.town,
         "district": g.district,
         "bbox": list(g.bbox), "open_cases": by_grid.get(g.grid_id, 0)}
        for g in hub.setup.grids.grids if who.sees(g.grid_id)]})


def _month(request: web.Request, hub) -> str:
    month = request.query.get("month", "").strip()
    if not month:
        return hub.clock.now().astimezone(hub.setup.zone).strftime("%Y-%m")
    try:
        month_bounds(month, hub.setup.zone)
    except ValueError:
        raise FieldErrors({"month": _("%(month)r is not YYYY-MM") % {"month": month[:20]}}) from None
    return month


async def month_scores(hub, month: str, by: str, grids: frozenset[str] | None = None) -> list[Any]:
    """The month's scores; with ``grids`` (a scoped account), over those grids' cases only."""
    start, end = month_bounds(month, hub.setup.zone)
    now = hub.clock.now()

    def cases(repo):
        rows = repo.cases_accepted_between(start, end)
        return rows if grids is None else (c for c in rows if c.grid_id in grids)

    return await hub.read(lambda repo: score_cases(month, cases(repo), now, by=by))


async def scores_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    month = _month(request, hub)
    by = request.query.get("by", "grid")
    if by not in ("grid", "department"):
        raise FieldErrors({"by": _("grid or department")})
    return json_response({"month": month, "by": by,
                          "scores": await month_scores(hub, month, by, principal(request).grids)})


async def dead_letters_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    limit, offset = query_int(request, "limit", 100, 1), query_int(request, "offset", 0, 0, 10**9)
    rows = await hub.read(lambda repo: repo.list_dead_letters(limit, offset))
    counts = await hub.read(lambda repo: repo.counts_dead_letters())
    return json_response({"dead_letters": rows, "total": counts["rows"], "limit": limit,
                          "offset": offset})


async def stats_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    return json_response(await asyncio.to_thread(hub.counts))


async def snapshot(request: web.Request) -> web.Response:
    hub = hub_of(request)
    data = await asyncio.to_thread(hub.files.get, request.match_info["sha256"])
    if data is None:
        raise WebError(404, "no_such_snapshot", _("no snapshot with this hash (never received, "
                                                 "or removed by retention)"))
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})


async def clip(request: web.Request) -> web.StreamResponse:
    """An event clip (MP4) by hash, with Range support (a video element seeks by ranges)."""
    hub = hub_of(request)
    path = hub.clip_files.path_for(request.match_info["sha256"])
    if not await asyncio.to_thread(path.is_file):
        raise WebError(404, "no_such_clip", "no clip with this hash (never received, still "
                       "arriving, failed its checks, or removed by retention)")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4",
                                           "Cache-Control": "private, max-age=86400, immutable"})


async def metrics(request: web.Request) -> web.Response:
    from .app import METRICS_KEY

    hub = hub_of(request)
    if not hub.config.web.metrics_public:
        who = principal(request)
        if not who.can("metrics"):
            raise WebError(403, "forbidden", _("metrics need an operator or monitor token"))
    feed = _live(request)
    data = await hub.read(lambda repo: overview(hub, repo, feed.rate))
    counts = await asyncio.to_thread(hub.counts)
    c, a, ingest = data["cases"], data["agents"], counts.get("ingest", {})
    g = "gauge"
    samples = [
        ("cityops_ingest_events_total", "counter", "Events stored since the hub started.",
         [({}, ingest.get("events_stored", 0))]),
        ("cityops_ingest_duplicates_total", "counter", "Redelivered messages (deduplicated).",
         [({}, ingest.get("duplicates", 0))]),
        ("cityops_ingest_refused_total", "counter", "Messages refused (dead letters) this run.",
         [({}, ingest.get("refused", 0))]),
        ("cityops_ingest_seq_out_of_window_total", "counter",
         "Events refused: seq far above the agent's highest (dead letters) this run.",
         [({}, ingest.get("seq_out_of_window", 0))]),
        ("cityops_ingest_seqs_given_up_total", "counter",
         "Seqs of the oldest gaps given up at an agent's 2,000-range cap this run.",
         [({}, ingest.get("seqs_given_up", 0))]),
        ("cityops_ingest_events_per_minute", g, "Events stored in the last minute.",
         [({}, data["events_last_minute"])]),
        ("cityops_dead_letters", g, "Distinct dead letters kept.", [({}, data["dead_letters"]["rows"])]),
        ("cityops_dead_letters_received", g, "Dead letters received, with repeats.",
         [({}, data["dead_letters"]["total"])]),
        ("cityops_cases_open", g, "Open cases by state.",
         [({"state": s}, n) for s, n in sorted(c["by_state"].items())
          if s not in ("closed", "rejected", "merged")]),
        ("cityops_cases_overdue", g, "Open cases past their deadline.", [({}, c["overdue"])]),
        ("cityops_cases_near_deadline", g, "Open cases due soon.", [({}, c["near_deadline"])]),
        ("cityops_cases_needs_review", g, "Resolved cases waiting for an operator.",
         [({}, c["needs_review"])]),
        ("cityops_queue_depth", g, "Work waiting: operator queue, writer backlog.",
         [({"queue": "operator"}, c["operator_queue"]),
          ({"queue": "writer"}, counts.get("backlog", 0))]),
        ("cityops_agents", g, "Agents by shown state.",
         [({"state": k}, a[k]) for k in ("online", "offline", "stale", "unknown")]),
        ("cityops_agents_outbox_depth", g, "Events waiting in agents' outboxes (sum).",
         [({}, a["outbox_depth"])]),
        ("cityops_live_watchers", g, "Browsers on the live feed.", [({}, feed.watchers)]),
        ("cityops_hub_memory_bytes", g, "The hub process's memory: resident set, and what SQLite "
         "holds of it (page caches, one per connection; bounded).",
         [({"part": part}, v) for part, v in (("rss", rss_bytes()), ("sqlite", sqlite_bytes()))
          if v is not None]),
    ]
    samples.extend(ingest_samples(ingest, hub.health()))
    samples.extend(notify_samples(await hub.read(lambda repo: repo.delivery_counts()),
                                  hub.notifier.stats if hub.notifier else None))
    return web.Response(body=render(samples, request.app[METRICS_KEY]).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def enroll(request: web.Request) -> web.Response:
    hub = hub_of(request)
    try:
        body = await request.read()
        req = EnrollRequest.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        return problem(400, "bad_request", f"expected {{token, hostname, agent_version}}: {exc}")
    try:
        claim = await hub.write(lambda repo: claim_token(
            repo, req.token, hub.clock.now(), req.hostname, hub_user=hub.config.broker.username,
            hub_client_prefix=hub.config.ingest.client_id))
    except EnrollmentError as exc:
        status = 401 if exc.code == "unknown_token" else 403
        return problem(status, exc.code, exc.detail)
    password = new_secret("mqp")
    auth = hub.broker_auth
    try:
        if auth is None:
            raise RuntimeError("the hub has no broker password file to write")

        def add_user() -> None:
            auth.set_user(claim.agent_id, password)
            auth.reload()

        await asyncio.to_thread(add_user)
    except Exception as exc:
        log.exception("enrollment of %s: broker credentials could not be written", claim.agent_id)
        await hub.write(lambda repo: release_token(repo, claim.token_sha256))
        return problem(503, "broker_unavailable", f"could not add the agent to the broker: {exc}")
    b = hub.config.broker
    ca_pem, tls, port = None, b.tls is not None, b.public_port or hub.broker_port
    if b.managed_tls and hub.agent_tls_port:
        ca_file: Path | None = b.managed_tls.dir / "ca.crt"
        tls, port = True, b.public_port or hub.agent_tls_port
    else:
        ca_file = b.tls.ca_file if b.tls else None
    if ca_file:
        ca_pem = await asyncio.to_thread(ca_file.read_text)
    response = EnrollResponse(
        agent_id=claim.agent_id, username=claim.agent_id, password=password,
        mqtt=MqttEndpoint(host=b.public_host or hub.broker_host, port=port, tls=tls,
                          ca_pem=ca_pem),
        grid_id=claim.grid_id, issued_at=hub.clock.now(),
    )
    log.info("enrolled agent %s from %s", claim.agent_id, req.hostname or request.remote)
    return web.Response(body=response.model_dump_json(), content_type="application/json")
