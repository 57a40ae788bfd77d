"""Views: read from the repository (read-only connections in worker threads), call the
hub for actions, render JSON or the status page. No logic of their own."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from protocol.ids import new_secret
from protocol.provisioning import EnrollRequest, EnrollResponse, MqttEndpoint

from ..cases.states import OPEN_STATES
from ..enroll import claim_token, release_token
from ..errors import CaseError, EnrollmentError
from . import page

if TYPE_CHECKING:
    from ..app import Hub

log = logging.getLogger(__name__)

MAX_LIMIT = 1000


def _hub(request: web.Request) -> Hub:
    from .app import HUB_KEY

    return request.app[HUB_KEY]  # type: ignore[return-value]


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(_jsonable(data), status=status)


def problem(status: int, code: str, detail: str) -> web.Response:
    """An RFC 9457 problem document with a stable ``code``."""
    return web.json_response({"type": "about:blank", "title": code.replace("_", " "),
                              "status": status, "code": code, "detail": detail},
                             status=status, content_type="application/problem+json")


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except CaseError as exc:
        return problem(409 if exc.case_id is not None else 400, "case_error", str(exc))
    except Exception:
        log.exception("error serving %s", request.path)
        return problem(500, "internal_error", "the hub failed on this request; see its log")


def _int(request: web.Request, name: str, default: int, hi: int = MAX_LIMIT) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    return max(0, min(value, hi))


def agent_view(hub: Hub, agent) -> dict[str, Any]:
    """An agent row plus what the page shows: online / offline / stale."""
    data = _jsonable(agent)
    now = hub.clock.now()
    stale = hub.config.agents.stale_after_s
    shown = agent.state
    if agent.state == "online" and agent.last_seen and (now - agent.last_seen).total_seconds() > stale:
        shown = "stale"
    data["shown_state"] = shown
    data["missing_seqs"] = max(0, agent.seq_highest - agent.seq_upto
                               - sum(hi - lo + 1 for lo, hi in agent.seq_ranges))
    return data


async def healthz(request: web.Request) -> web.Response:
    body = _hub(request).health()
    return web.json_response(body, status=200 if body["ok"] else 503)


async def agents_json(request: web.Request) -> web.Response:
    hub = _hub(request)
    limit, offset = _int(request, "limit", 1000, 10_000), _int(request, "offset", 0, 10**9)
    agents = await hub.read(lambda repo: repo.list_agents(limit, offset))
    return json_response({"agents": [agent_view(hub, a) for a in agents]})


async def _cases(request: web.Request):
    hub = _hub(request)
    q = request.query
    states = [s for s in q.get("state", "").split(",") if s] or None
    if q.get("open") == "1":
        states = sorted(OPEN_STATES)
    limit, offset = _int(request, "limit", 100), _int(request, "offset", 0, 10**9)
    return await hub.read(lambda repo: repo.list_cases(
        states=states, grid_id=q.get("grid"), category=q.get("category"), queue=q.get("queue"),
        limit=limit, offset=offset))


async def cases_json(request: web.Request) -> web.Response:
    return json_response({"cases": await _cases(request)})


async def case_json(request: web.Request) -> web.Response:
    hub = _hub(request)
    case_id = int(request.match_info["case_id"])

    def load(repo):
        case = repo.get_case(case_id)
        if case is None:
            return None
        return {"case": case, "events": repo.lifecycles_for_case(case_id),
                "audit": repo.audit_for_case(case_id),
                "snapshots": repo.snapshots_for_case(case_id),
                "verifications": repo.verifications_for_case(case_id),
                "notifications": repo.notifications_for_case(case_id)}

    data = await hub.read(load)
    if data is None:
        return problem(404, "no_such_case", f"case {case_id} does not exist")
    return json_response(data)


async def dead_letters_json(request: web.Request) -> web.Response:
    hub = _hub(request)
    limit, offset = _int(request, "limit", 100), _int(request, "offset", 0, 10**9)
    rows = await hub.read(lambda repo: repo.list_dead_letters(limit, offset))
    return json_response({"dead_letters": rows})


async def stats_json(request: web.Request) -> web.Response:
    hub = _hub(request)
    return json_response(await asyncio.to_thread(hub.counts))


async def snapshot(request: web.Request) -> web.Response:
    hub = _hub(request)
    data = await asyncio.to_thread(hub.files.get, request.match_info["sha256"])
    if data is None:
        raise web.HTTPNotFound(text="no such snapshot")
    return web.Response(body=data, content_type="image/jpeg")


async def status_page(request: web.Request) -> web.Response:
    hub = _hub(request)
    agents = await hub.read(lambda repo: repo.list_agents(500, 0))
    cases = await _cases(request)
    counts = await asyncio.to_thread(hub.counts)
    html = page.render_status(
        agents=[agent_view(hub, a) for a in agents], cases=[_jsonable(c) for c in cases],
        counts=counts, now=hub.clock.now())
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def enroll(request: web.Request) -> web.Response:
    hub = _hub(request)
    try:
        body = await request.read()
        req = EnrollRequest.model_validate_json(body)
    except (ValidationError, ValueError) as exc:
        return problem(400, "bad_request", f"expected {{token, hostname, agent_version}}: {exc}")
    try:
        claim = await hub.write(lambda repo: claim_token(repo, req.token, hub.clock.now(),
                                                         req.hostname))
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
