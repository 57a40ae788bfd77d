"""Automatic closure end to end with the hub's default photo verifier (no scripted
verdicts): a camera agent reports a problem with a rendered before-photo and its box, a
department resolves it through the handler API with a rendered after-photo, and the case
closes (fixed) or goes back to the department (not fixed). Also the agent's own fresh
snapshot sent with ``end`` as the after-photo."""

from __future__ import annotations

import aiohttp
import cv2
from hubtest import G01, T0, await_for, event
from webtest import make_token

from simulators.scenes import make_pair

# Rendered pairs (simulators/scenes/pairs.py) whose truth is clear: puddles on a road,
# flood.road_waterlogging, routed to drainage.
FIXED_SEED = 1004
NOT_FIXED_SEED = 1010


def rendered(seed: int) -> tuple[bytes, bytes, tuple[float, float, float, float], str]:
    pair = make_pair(seed)
    box = next(b.box for b in pair.before_boxes if b.label == pair.category)

    def jpeg(img) -> bytes:
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()

    return jpeg(pair.before), jpeg(pair.after), box, pair.label


async def report(hub, agent, before: bytes, box, n: int = 1) -> int:
    eid, seq = f"ev-{n}", n * 10
    agent.send_snapshot(eid, seq, before)
    agent.send(event(seq=seq + 1, event_id=eid, sub="flood.road_waterlogging", where=G01, at=T0,
                     snapshot=before, bbox=box, source=f"cam-{n}"))
    await await_for(lambda: agent.acked(seq + 1), what="the hub's ack")
    return await await_for(lambda: hub.read(lambda r: (x := r.get_lifecycle(agent.agent_id, eid))
                                            and x.case_id), what="the case")


def form(photo: bytes) -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("photo", photo, filename="after.jpg", content_type="image/jpeg")
    f.add_field("note", "done")
    return f


async def resolve(hub, client, case_id: int, after: bytes) -> None:
    drain = await make_token(hub, "handler", "drainage")
    r = await client.api("POST", f"/api/v1/handler/cases/{case_id}/accept", {}, token=drain)
    assert r.status == 200, r.text
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain, data=form(after))
    assert r.status == 200, r.text


async def test_a_fixed_after_photo_closes_the_case(hub, client, agent):
    before, after, box, truth = rendered(FIXED_SEED)
    assert truth == "fixed"
    case_id = await report(hub, agent, before, box)
    await resolve(hub, client, case_id, after)
    c = await await_for(lambda: hub.read(lambda r: (x := r.get_case(case_id)) and x.state == "closed" and x),
                        what="automatic closure")
    assert c.closed_by == "auto_photo" and c.resolution == "fixed"
    ver = await hub.read(lambda r: r.verifications_for_case(case_id))
    assert [(v["outcome"], v["verifier"]) for v in ver] == [("fixed", "photo")]
    assert ver[0]["confidence"] >= 0.8 and "gone" in ver[0]["detail"]


async def test_a_not_fixed_after_photo_goes_back_to_the_department(hub, client, agent):
    before, after, box, truth = rendered(NOT_FIXED_SEED)
    assert truth == "not_fixed"
    case_id = await report(hub, agent, before, box)
    await resolve(hub, client, case_id, after)
    c = await await_for(lambda: hub.read(lambda r: (x := r.get_case(case_id)) and x.state == "dispatched"
                                         and x.after_sha256 is None and x), what="sent back")
    assert c.department == "drainage" and c.closed_at is None
    ver = await hub.read(lambda r: r.verifications_for_case(case_id))
    assert [(v["outcome"], v["verifier"]) for v in ver] == [("not_fixed", "photo")]
    notes = await hub.read(lambda r: r.notifications_for_case(case_id))
    assert notes[-1]["kind"] == "sent_back" and "remains" in notes[-1]["message"]


async def test_the_agents_fresh_snapshot_with_end_closes_a_fixed_case(hub, agent):
    """No handler at all: the camera's detection ends and the agent sends a fresh snapshot
    of the scene with the end; the hub compares it with the before-photo."""
    before, after, box, _ = rendered(FIXED_SEED)
    case_id = await report(hub, agent, before, box)
    agent.send_snapshot("ev-1", 20, after)
    agent.send(event(seq=21, event_id="ev-1", kind="end", sub="flood.road_waterlogging", where=G01,
                     at=T0, snapshot=after, bbox=box, source="cam-1"))
    c = await await_for(lambda: hub.read(lambda r: (x := r.get_case(case_id)) and x.state == "closed" and x),
                        what="automatic closure from the agent's snapshot")
    assert c.closed_by == "auto_photo"
