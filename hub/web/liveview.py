"""Live view pages: one camera (``GET /cameras/<agent>/<camera>/live``), the video wall of
an active plan (``GET /plans/<name>/wall``, 预案同屏), and the frames behind both
(``GET /api/v1/cameras/<agent>/<camera>/live``: server-sent events).

A page opens a view for ``web.live_view.view_s`` seconds (``?seconds=`` up to
``max_view_s``; the wall's tiles ask for ``max_view_s``); viewers of one camera share one
stream (:mod:`hub.livestream`), so ten operators on one camera cost the agent one stream.
The events are ``start`` (what the view is), ``frame`` (the JPEG as base64 with its number,
size and time) and ``end`` (why it stopped: ``time``, ``signed_out`` or ``hub``); after
``end`` the page closes the stream, so the browser does not reconnect on its own.

Who may watch: the ``live`` permission (operators, dispatchers, admins), and a scoped
account only cameras of agents in its grids. The stream checks its principal again every
``RECHECK_S`` and ends when the sign-in did.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth.accounts import principal_now
from ..auth.roles import Principal
from ..livestream import ENDED, LiveFrame, Viewer
from ..plans.service import PlanError
from .common import hub_of, principal
from .live import pump
from .problems import FieldErrors, WebError

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["camera_page", "camera_stream", "streams_json", "wall_page"]

RECHECK_S = 5.0


def _seconds(request: Any, hub: Hub, default: float) -> float:
    cfg = hub.config.web.live_view
    raw = request.query.get("seconds", "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FieldErrors({"seconds": f"must be a number of seconds (got {raw[:20]!r})"}) from None
    if not 1 <= value <= cfg.max_view_s:
        raise FieldErrors({"seconds": f"must be between 1 and {cfg.max_view_s:g} "
                           f"(web.live_view.max_view_s; got {value:g})"})
    return value


async def _camera(request: web.Request, who: Principal) -> tuple[str, str, dict[str, Any]]:
    """(agent id, camera id, what the agent's row says) when ``who`` may watch it."""
    hub = hub_of(request)
    agent_id, camera = request.match_info["agent_id"], request.match_info["camera"]
    row = await hub.read(lambda repo: repo.get_agent(agent_id))
    if row is None or not who.sees(row.grid_id):
        raise WebError(404, "no_such_agent", f"no agent {agent_id!r} here (or not in your grids)")
    if camera not in row.cameras:
        raise WebError(404, "no_such_camera", f"agent {agent_id!r} reports no camera {camera!r}; "
                       "its cameras are listed on the agents page")
    if row.state == "offline":
        raise WebError(409, "agent_offline", f"agent {agent_id!r} is offline: a live view needs "
                       "it connected; try again once it is back")
    info = row.cameras[camera] if isinstance(row.cameras[camera], dict) else {}
    return agent_id, camera, {"state": info.get("state", "unknown"), "grid_id": row.grid_id}


async def camera_page(request: web.Request) -> web.Response:
    from .pages import page

    hub = hub_of(request)
    agent_id, camera, info = await _camera(request, principal(request))
    seconds = _seconds(request, hub, hub.config.web.live_view.view_s)
    return page(request, "live.html", title=f"Live {agent_id}/{camera}", agent_id=agent_id,
                camera=camera, info=info, seconds=seconds)


async def wall_page(request: web.Request) -> web.Response:
    """The plan's curated cameras together, while the plan is active."""
    from .pages import page

    hub = hub_of(request)
    who = principal(request)
    name = request.match_info["name"]
    try:
        loaded = hub.plans.get(name)
        board = await hub.plans.board(name)
    except PlanError as exc:
        raise WebError(404, "no_such_plan", str(exc)) from None
    rows = {a.agent_id: a for a in await hub.read(lambda repo: [
        repo.get_agent(p.agent) for p in loaded.plan.points if p.camera is not None]) if a}
    tiles = []
    for p in loaded.plan.points:
        if p.camera is None:
            continue
        row = rows.get(p.agent)
        if row is not None and not who.sees(row.grid_id):
            continue
        why = None
        if row is None:
            why = "agent not enrolled here"
        elif p.camera not in row.cameras:
            why = "the agent reports no such camera"
        elif row.state == "offline":
            why = "agent offline"
        tiles.append({"agent_id": p.agent, "camera": p.camera, "purpose": p.purpose,
                      "place": p.place, "problem": why})
    return page(request, "wall.html", title=f"Wall {name}", plan=loaded.plan, board=board,
                active=board["active"], tiles=tiles,
                seconds=hub.config.web.live_view.max_view_s)


def frame_event(frame: LiveFrame) -> bytes:
    """One ``frame`` server-sent event: the JPEG as base64 and what the header says."""
    h = frame.header
    data = {"n": h.n, "taken_at": h.taken_at.isoformat(), "width": h.width, "height": h.height,
            "bytes": len(frame.jpeg), "remaining_s": h.remaining_s,
            "jpeg": base64.b64encode(frame.jpeg).decode()}
    return f"event: frame\nid: {h.n}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _ViewerFeed:
    """The viewer as the shared SSE pump's feed: the first item says what the view is; the
    stream's frames follow; leaving closes the viewer (the last one out stops the agent)."""

    def __init__(self, hub: Hub, viewer: Viewer, seconds: float) -> None:
        self.hub, self.viewer = hub, viewer
        self.latest: Any = {"agent_id": viewer.agent_id, "camera": viewer.camera,
                            "seconds": seconds}

    def unsubscribe(self, _queue: Any) -> None:
        self.hub.live_streams.close(self.viewer)


async def camera_stream(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    who = principal(request)
    agent_id, camera, _info = await _camera(request, who)
    seconds = _seconds(request, hub, hub.config.web.live_view.view_s)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    viewer = hub.live_streams.open(agent_id, camera, seconds)
    feed = _ViewerFeed(hub, viewer, seconds)
    checked = time.monotonic()

    async def allowed() -> bool:
        now = hub.clock.now()
        current = await hub.read(lambda repo: principal_now(repo, who, now, grids=hub.setup.grids))
        return current is not None and current.can("live")

    async def step(item: Any) -> bool:
        nonlocal checked
        if time.monotonic() - checked >= RECHECK_S:
            checked = time.monotonic()
            if not await allowed():
                await response.write(_event("end", {"reason": "signed_out", "frames": viewer.frames}))
                return False
        if item is None:
            await response.write(b": keep-alive\n\n")
        elif item is ENDED:
            await response.write(_event("end", {"reason": viewer.ended or "time",
                                                "frames": viewer.frames}))
            return False
        elif isinstance(item, LiveFrame):
            await response.write(frame_event(item))
        else:
            await response.write(_event("start", item))
        return True

    return await pump(response, feed, viewer.queue, step)


async def streams_json(request: web.Request) -> web.Response:
    """What the hub streams now: per camera its viewers, frames, bytes and requests sent."""
    from .common import json_response

    return json_response(hub_of(request).live_streams.watching())
