"""Contract tests: every JSON response (success and error) validates against
docs/openapi.yaml (openapi-core: OpenAPI 3.1 with JSON Schema 2020-12 — it matches the
path template, the status and the media type, then checks the body), and the spec and
the route table list the same API routes."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from hubtest import G05, await_for
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from webtest import make_token, open_case, real_jpeg

from hub.web.app import ROUTES

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# Problem documents are JSON too (openapi-core deserializes only application/json itself).
SPEC = OpenAPI.from_file_path(str(SPEC_PATH), config=Config(
    extra_media_type_deserializers={"application/problem+json": json.loads}))


def spec_paths() -> dict[str, set[str]]:
    import yaml

    doc = yaml.safe_load(SPEC_PATH.read_text())
    return {p: {m.upper() for m in ops if m in ("get", "post", "put", "delete")}
            for p, ops in doc["paths"].items()}


def route_to_spec(path: str) -> str:
    """aiohttp's ``{name:regex}`` (regexes may hold braces) → OpenAPI's ``{name}``."""
    out, i = [], 0
    while i < len(path):
        if path[i] != "{":
            out.append(path[i])
            i += 1
            continue
        j = i + 1
        while path[j] not in ":}":
            j += 1
        out.append("{" + path[i + 1:j] + "}")
        if path[j] == "}":
            i = j + 1
            continue
        depth = 1
        while depth:
            j += 1
            depth += {"{": 1, "}": -1}.get(path[j], 0)
        i = j + 1
    return "".join(out)


def test_every_api_route_is_in_the_spec_and_back():
    documented = spec_paths()
    routed: dict[str, set[str]] = {}
    for r in ROUTES:
        if r.kind == "page":
            continue
        routed.setdefault(route_to_spec(r.path), set()).add(r.method)
    missing = {p: m for p, m in routed.items() if documented.get(p, set()) != m}
    assert not missing, f"document these in docs/openapi.yaml: {missing}"
    extra = set(documented) - set(routed)
    assert not extra, f"the spec documents routes that do not exist: {extra}"


class Checker:
    """Calls the hub and validates each answer against the spec."""

    def __init__(self, client) -> None:
        self.client = client
        self.checked: list[tuple[str, str, int]] = []

    async def __call__(self, method: str, path: str, *, expect: int, token: str | None = None,
                       json_body=None, data=None):
        if data is not None:
            r = await self.client.request(method, path, token=token, data=data)
        else:
            r = await self.client.api(method, path, json_body, token=token)
        assert r.status == expect, (method, path, r.status, r.text[:300])
        raw_path, _, query = path.partition("?")
        args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        request = MockRequest("http://localhost", method.lower(), raw_path, args=args)
        body = r.text.encode() if r.content_type != "image/jpeg" else b""
        if r.content_type == "image/jpeg":
            return r
        response = MockResponse(body, status_code=r.status, content_type=r.content_type)
        SPEC.validate_response(request, response)
        self.checked.append((method, raw_path, r.status))
        return r


@pytest.fixture
async def world(hub, agent, client):
    """Cases in several states, an agent with telemetry, a dead letter, tokens."""
    agent.birth()
    agent.heartbeat(depth=4)
    tokens = {"op": await make_token(hub, "operator"), "disp": await make_token(hub, "dispatcher"),
              "admin": await make_token(hub, "admin"), "monitor": await make_token(hub, "monitor"),
              "drain": await make_token(hub, "handler", "drainage"),
              "partner": await make_token(hub, "open311", name="partner"),
              "linkage": await make_token(hub, "linkage", name="police-110")}  # its system
    dispatched = await open_case(hub, agent, 1)
    review = await open_case(hub, agent, 2, where=G05)
    await hub.resolve(review, actor="crew", after_jpeg=real_jpeg(50, blob=False))
    await await_for(lambda: hub.read(lambda r: r.get_case(review).review_reason), what="review")
    rejected = await open_case(hub, agent, 3, sub="garbage.overflow", confidence=0.05)
    from protocol.topics import Channel

    agent.publish(Channel.EVENTS, b"{not json")
    await await_for(lambda: hub.read(lambda r: r.list_dead_letters()), what="dead letter")
    return {"tokens": tokens, "dispatched": dispatched, "review": review, "rejected": rejected}


async def test_reads_validate(world, client):
    t = world["tokens"]
    check = Checker(client)
    await check("GET", "/healthz", expect=200)
    await check("GET", "/api/v1/me", expect=200, token=t["op"])
    await check("GET", "/api/v1/me", expect=401)
    await check("GET", "/api/v1/overview", expect=200, token=t["op"])
    await check("GET", "/api/v1/overview", expect=403, token=t["drain"])
    await check("GET", "/api/v1/cases", expect=200, token=t["op"])
    await check("GET", "/api/v1/cases?open=1&grid=g-01&limit=5", expect=200, token=t["op"])
    await check("GET", "/api/v1/cases?state=nope", expect=400, token=t["op"])
    await check("GET", "/api/v1/cases?limit=0", expect=400, token=t["op"])
    for key in ("dispatched", "review", "rejected"):
        await check("GET", f"/api/v1/cases/{world[key]}", expect=200, token=t["op"])
    await check("GET", "/api/v1/cases/9999", expect=404, token=t["op"])
    await check("GET", "/api/v1/agents", expect=200, token=t["op"])
    await check("GET", "/api/v1/agents?state=stale", expect=200, token=t["op"])
    await check("GET", "/api/v1/agents?state=sleepy", expect=400, token=t["op"])
    await check("GET", "/api/v1/grids", expect=200, token=t["op"])
    await check("GET", "/api/v1/scores?month=2026-07", expect=200, token=t["op"])
    await check("GET", "/api/v1/scores?month=July", expect=400, token=t["op"])
    await check("GET", "/api/v1/dead-letters", expect=200, token=t["op"])
    await check("GET", "/api/v1/stats", expect=200, token=t["op"])
    await check("GET", "/metrics", expect=200, token=t["monitor"])
    await check("GET", "/metrics", expect=403, token=t["drain"])
    await check("GET", "/api/v1/admin/users", expect=200, token=t["admin"])
    await check("GET", "/api/v1/admin/tokens", expect=200, token=t["admin"])
    await check("GET", "/api/v1/admin/enrollment-tokens", expect=200, token=t["admin"])
    await check("GET", "/api/v1/admin/users", expect=403, token=t["op"])
    await check("GET", "/api/v1/handler/cases", expect=200, token=t["drain"])
    await check("GET", f"/api/v1/handler/cases/{world['dispatched']}", expect=200, token=t["drain"])
    await check("GET", f"/api/v1/handler/cases/{world['rejected']}", expect=403, token=t["drain"])
    await check("GET", "/open311/v2/services.json", expect=200)
    await check("GET", "/open311/v2/requests.json", expect=200)
    await check("GET", f"/open311/v2/requests/{world['dispatched']}.json", expect=200)
    await check("GET", "/open311/v2/requests/9999.json", expect=404)
    await check("GET", "/open311/v2/requests.json?status=maybe", expect=400)
    assert len(check.checked) >= 35


async def test_actions_validate(world, client, hub):
    t = world["tokens"]
    check = Checker(client)
    d, rv, rj = world["dispatched"], world["review"], world["rejected"]
    await check("POST", f"/api/v1/cases/{d}/notes", expect=200, token=t["op"], json_body={"text": "ok"})
    await check("POST", f"/api/v1/cases/{d}/notes", expect=400, token=t["op"], json_body={"text": ""})
    await check("POST", f"/api/v1/cases/{d}/reassign", expect=200, token=t["disp"],
                json_body={"department": "sanitation"})
    await check("POST", f"/api/v1/cases/{d}/reassign", expect=400, token=t["disp"],
                json_body={"department": "no_such_department"})
    await check("POST", f"/api/v1/cases/{d}/reassign", expect=403, token=t["op"],
                json_body={"department": "drainage"})
    await check("POST", f"/api/v1/cases/{d}/reopen", expect=409, token=t["op"],
                json_body={"reason": "it is not closed"})
    await check("POST", f"/api/v1/cases/{rv}/review", expect=200, token=t["op"], json_body={"fixed": False})
    await check("POST", f"/api/v1/cases/{rj}/accept", expect=200, token=t["op"], json_body={})
    await check("POST", f"/api/v1/cases/{rj}/close", expect=200, token=t["op"],
                json_body={"resolution": "false_alarm"})
    await check("POST", f"/api/v1/cases/{rj}/reopen", expect=200, token=t["op"],
                json_body={"reason": "it came back"})
    await check("POST", f"/api/v1/cases/{rj}/dispatch", expect=409, token=t["op"], json_body={})
    await check("POST", f"/api/v1/cases/{rj}/reject", expect=409, token=t["op"],
                json_body={"reason": "too late"})
    await check("POST", "/api/v1/cases/9999/notes", expect=404, token=t["op"], json_body={"text": "x"})
    # handler API
    await check("POST", f"/api/v1/handler/cases/{rv}/accept", expect=200, token=t["drain"], json_body={})
    await check("POST", f"/api/v1/handler/cases/{rv}/notes", expect=200, token=t["drain"],
                json_body={"text": "on it"})
    form = aiohttp.FormData()
    form.add_field("photo", real_jpeg(8), filename="a.jpg", content_type="image/jpeg")
    await check("POST", f"/api/v1/handler/cases/{rv}/resolve", expect=200, token=t["drain"], data=form)
    await check("POST", f"/api/v1/handler/cases/{rv}/reject", expect=409, token=t["drain"],
                json_body={"reason": "not ours"})
    # admin
    await check("POST", "/api/v1/admin/users", expect=201, token=t["admin"],
                json_body={"username": "newbie", "role": "operator", "password": "long-enough-pass"})
    await check("POST", "/api/v1/admin/users", expect=400, token=t["admin"],
                json_body={"username": "x y", "role": "operator", "password": "long-enough-pass"})
    await check("POST", "/api/v1/admin/users/newbie/password", expect=200, token=t["admin"],
                json_body={"password": "another-long-pass"})
    await check("POST", "/api/v1/admin/users/ghost/disable", expect=404, token=t["admin"], json_body={})
    created = await check("POST", "/api/v1/admin/tokens", expect=201, token=t["admin"],
                          json_body={"name": "pump station", "role": "handler", "department": "drainage"})
    await check("POST", f"/api/v1/admin/tokens/{created.json()['id']}/revoke", expect=200, token=t["admin"])
    await check("POST", "/api/v1/admin/tokens/999/revoke", expect=404, token=t["admin"])
    await check("POST", "/api/v1/admin/enrollment-tokens", expect=201, token=t["admin"],
                json_body={"agent_id": "box-9", "grid_id": "g-02", "ttl": "2h"})
    await check("POST", "/api/v1/admin/enrollment-tokens", expect=400, token=t["admin"],
                json_body={"agent_id": "box-9", "ttl": "forever"})
    # Open311
    await check("POST", "/open311/v2/requests.json", expect=200, data={
        "api_key": t["partner"], "service_code": "roads.pothole", "lat": "31.205", "long": "121.405"})
    await check("POST", "/open311/v2/requests.json", expect=403, data={
        "api_key": "bad", "service_code": "roads.pothole", "lat": "31.205", "long": "121.405"})


async def test_linked_incidents_validate(world, client, hub):
    t = world["tokens"]
    check = Checker(client)
    body = {"source_system": "police-110", "external_id": "P-1", "type": "police",
            "occurred_at": hub.clock.now().isoformat(),
            "location": {"address": "Jiuting market", "grid_id": "g-05"}}
    first = await check("POST", "/api/v1/incidents", expect=201, token=t["linkage"], json_body=body)
    again = await check("POST", "/api/v1/incidents", expect=200, token=t["linkage"], json_body=body)
    assert again.json()["case"]["id"] == first.json()["case"]["id"]
    await check("POST", "/api/v1/incidents", expect=409, token=t["linkage"],
                json_body={**body, "description": "changed"})
    await check("POST", "/api/v1/incidents", expect=400, token=t["linkage"],
                json_body={**body, "location": {"lat": 95, "lon": 0}})
    await check("POST", "/api/v1/incidents", expect=401, json_body=body)
    await check("POST", "/api/v1/incidents", expect=403, token=t["op"], json_body=body)
    await check("POST", "/api/v1/incidents", expect=403, token=t["linkage"],
                json_body={**body, "source_system": "fire-119"})  # not this partner's system
    await check("POST", "/api/v1/incidents", expect=415, token=t["linkage"], data="type=police")
