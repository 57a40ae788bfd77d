"""Model releases and rollouts on the status page (``/releases``, admin): the releases,
each rollout with its stage, history and per-state counts of its agents, one rollout's
agents row by row, and the forms that start a rollout and roll one back. The JSON API
(``/api/v1/releases``, ``/api/v1/rollouts/{id}``) gives the same to tools. The
``cityops-hub release`` commands do the same from a shell."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ..releases.model import RolloutRow
from ..releases.package import ReleaseError
from ..releases.plan import find_rollout
from .common import hub_of, json_response, principal
from .i18n import _
from .labels import N_
from .pages import page
from .problems import WebError

__all__ = ["releases_json", "releases_page", "rollout_json", "rollout_rollback_form", "rollout_start_form"]

ROLLOUT = "{rollout_id:[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}}"

# English source strings, shown through gettext (the page's language)
STAGE_LABELS = {"canary": N_("canary"), "all": N_("all agents"), "done": N_("done"),
                "rolled_back": N_("rolled back")}
STATE_LABELS = {"pending": N_("not started"), "downloading": N_("downloading"), "verified": N_("verified"),
                "active": N_("active"), "failed": N_("failed"), "reverted": N_("reverted")}


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _summary(repo: Any, rollout: RolloutRow) -> dict[str, Any]:
    """A rollout with its agents: each one's desired release and latest report, and the
    agents counted by their state with this rollout's release."""
    members = repo.rollout_agents(rollout.rollout_id)
    reports = repo.agent_releases([m.agent_id for m in members])
    rows, counts = [], Counter()
    for m in members:
        r = reports.get(m.agent_id)
        about = r is not None and r.report_release == rollout.release_id and r.state is not None
        # after a roll-back an agent's report is about what it went back to: shown as it is
        after = rollout.stage == "rolled_back" and r is not None and r.state is not None
        state = r.state if (about or after) and r is not None and r.state else "pending"
        counts[state] += 1
        rows.append({"agent_id": m.agent_id, "canary": m.canary, "previous_release": m.previous_release,
                     "desired_release": r.desired_release if r else None,
                     "published": bool(r and r.published_at), "state": state,
                     "report_release": r.report_release if r else None,
                     "chunks_done": r.chunks_done if r else 0, "chunks": r.chunks if r else 0,
                     "active": r.active if r else None, "reason": r.reason if r else None,
                     "reported_at": _time(r.reported_at) if r else None})
    out = _rollout_json(rollout)
    out.update(counts=dict(counts), agents=rows)
    return out


def _rollout_json(r: RolloutRow) -> dict[str, Any]:
    d = asdict(r)
    d.pop("id")
    d["started_at"], d["stage_at"] = _time(r.started_at), _time(r.stage_at)
    return d


def _release_json(r: Any) -> dict[str, Any]:
    d = asdict(r)
    d.pop("file")
    d["created_at"] = _time(r.created_at)
    return d


async def _page_data(hub: Any, selected: str | None) -> dict[str, Any]:
    def load(repo: Any) -> dict[str, Any]:
        rollouts = repo.rollout_list(50)
        pick = next((r for r in rollouts if r.rollout_id == selected), None) if selected else None
        if pick is None and rollouts:
            pick = next((r for r in rollouts if r.in_progress), rollouts[0])
        return {"releases": repo.release_list(100),
                "rollouts": [_summary(repo, r) | {"agents": None} for r in rollouts],
                "current": _summary(repo, pick) if pick is not None else None,
                "agent_ids": repo.agent_ids()}

    data = await hub.read(load)
    decisions = hub.releases.decisions
    data["decisions"] = {k: v.reason for k, v in decisions.items()}
    return data


async def releases_page(request: web.Request, *, status: int = 200, errors: dict | None = None,
                        values: dict | None = None, flash: str | None = None) -> web.Response:
    hub = hub_of(request)
    data = await _page_data(hub, request.query.get("rollout"))
    return page(request, "releases.html", status=status, title=_("Model releases"), **data,
                STAGE_LABELS=STAGE_LABELS, STATE_LABELS=STATE_LABELS, errors=errors or {},
                values=values or {}, flash=flash, default_minutes=hub.config.releases.canary_minutes)


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


async def rollout_start_form(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    values = await _form(request)
    minutes_text = values.get("canary_minutes", "").strip()
    try:
        minutes = float(minutes_text) if minutes_text else None
    except ValueError:
        return await releases_page(request, status=400, values=values,
                                   errors={"canary_minutes": _("a number of minutes, e.g. 30")})
    agents = values.get("agents", "").strip() or "all"
    try:
        row = await hub.releases.start_rollout(values.get("release_id", "").strip(), canary=values.get("canary", ""),
                                               agents=agents, canary_minutes=minutes, by=principal(request).actor)
    except ReleaseError as exc:
        return await releases_page(request, status=400, values=values, errors={"rollout": str(exc)})
    raise web.HTTPSeeOther(f"/releases?rollout={row.rollout_id}")


async def rollout_rollback_form(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    values = await _form(request)
    try:
        row = await hub.releases.roll_back(request.match_info["rollout_id"], by=principal(request).actor,
                                           reason=values.get("reason", "").strip()[:300])
    except ReleaseError as exc:
        return await releases_page(request, status=400, errors={"rollback": str(exc)})
    raise web.HTTPSeeOther(f"/releases?rollout={row.rollout_id}")


async def releases_json(request: web.Request) -> web.Response:
    hub = hub_of(request)

    def load(repo: Any) -> dict[str, Any]:
        return {"releases": [_release_json(r) for r in repo.release_list(200)],
                "rollouts": [_summary(repo, r) | {"agents": None} for r in repo.rollout_list(100)]}

    return json_response(await hub.read(load))


async def rollout_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    rollout_id = request.match_info["rollout_id"]

    def load(repo: Any) -> dict[str, Any]:
        try:
            return _summary(repo, find_rollout(repo, rollout_id))
        except ReleaseError as exc:
            raise WebError(404, "unknown_rollout", str(exc)) from None

    out = await hub.read(load)
    decision = hub.releases.decisions.get(out["rollout_id"])
    out["decision"] = decision.reason if decision else None
    return json_response(out)

