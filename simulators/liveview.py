"""The demo's scripted live view: once the scenario's first camera is up at the hub, an
"operator" watches it for a few real seconds through the hub's shared streams (the same
path as ``GET /api/v1/cameras/<agent>/<camera>/live``) and counts the frames it received
before the view stopped on its own. What ``cityops-sim demo --json`` reports as
``live_frames`` (and the details as ``live_view``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from hub.livestream import ENDED

if TYPE_CHECKING:
    from .stack import SimStack

__all__ = ["LIVE_VIEW_S", "first_camera", "scripted_live_view"]

LIVE_VIEW_S = 5.0  # real seconds the scripted view watches


def first_camera(stack: SimStack) -> tuple[str, str] | None:
    """(agent id, camera id) of the scenario's first camera, if it has one."""
    for site in stack.scenario.sites:
        for cam in site.cameras:
            return site.id, cam.id
    return None


async def _camera_up(stack: SimStack, agent_id: str, camera: str) -> None:
    assert stack.hub is not None
    while True:
        row = await stack.hub.read(lambda r: r.get_agent(agent_id))
        if row is not None and (row.cameras.get(camera) or {}).get("state") == "up":
            return
        await asyncio.sleep(0.2)


async def scripted_live_view(stack: SimStack, seconds: float = LIVE_VIEW_S) -> dict[str, Any]:
    """Watch the first camera for ``seconds``; return what the view got. ``stopped`` is
    ``time`` when the view ended on its own (the hub's streams say why)."""
    where = first_camera(stack)
    if where is None or stack.hub is None:
        return {"frames": 0, "stopped": "no camera"}
    agent_id, camera = where
    await _camera_up(stack, agent_id, camera)
    viewer = stack.hub.live_streams.open(agent_id, camera, seconds)
    opened = time.monotonic()
    frames, largest, first_s = 0, 0, None
    try:
        while True:
            item = await viewer.queue.get()
            if item is ENDED:
                break
            frames += 1
            largest = max(largest, len(item.jpeg))
            if first_s is None:
                first_s = round(time.monotonic() - opened, 3)
    finally:
        stack.hub.live_streams.close(viewer)
    return {"agent_id": agent_id, "camera": camera, "seconds": seconds, "frames": frames,
            "first_frame_s": first_s, "largest_bytes": largest,
            "stopped": viewer.ended or "incomplete"}
