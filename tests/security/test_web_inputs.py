"""Untrusted names and sizes at the web edge: path traversal in snapshot, media and
static URLs and in upload file names; bodies and uploads over the limits (413, nothing
changed, no session made). Complements tests/web (roles, CSRF, fixation, sign-in)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from webtest import audit_len, make_token, open_case, real_jpeg

ONE_MIB = 1024 * 1024  # well over the documented 320 KiB request limit (docs/web.md)

SECRET_MARKERS = (b"root:", b"SQLite format 3", b"import ", b"def ")

TRAVERSALS = [
    "/api/v1/snapshots/../../hub.sqlite", "/api/v1/snapshots/%2e%2e%2f%2e%2e%2fhub.sqlite",
    "/api/v1/snapshots/..%2F..%2Fhub.sqlite.jpg", "/snapshots/%2e%2e/%2e%2e/etc/passwd",
    "/snapshots/..%5c..%5chub.sqlite", "/static/..%2f..%2fapp.py", "/static/%2e%2e%2fapp.py",
    "/static/....//app.py", "/static//etc/passwd", "/open311/v2/media/..%2f..%2fhub.sqlite.jpg",
    "/api/v1/snapshots/" + "a" * 64 + ".jpg/../../../hub.sqlite", "/static/%00app.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_in_file_urls_never_serves_a_file(hub, client, path):
    token = await make_token(hub, "operator")
    r = await client.get(path, token=token)
    assert r.status in (400, 404), (path, r.status)
    body = r.text.encode()
    assert not any(m in body for m in SECRET_MARKERS), path


async def test_an_upload_file_name_is_never_a_path(hub, client, agent, tmp_path):
    case_id = await open_case(hub, agent)
    drain = await make_token(hub, "handler", "drainage")
    photo = real_jpeg(3)
    form = aiohttp.FormData()
    form.add_field("photo", photo, filename="../../../../evil.jpg", content_type="image/jpeg")
    form.add_field("note", "done")
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain, data=form)
    assert r.status == 200, r.text
    import hashlib

    sha = hashlib.sha256(photo).hexdigest()
    assert hub.files.path_for(sha).exists()  # stored under its own hash, nowhere else
    root = hub.files.root.resolve()
    stray = [p for p in tmp_path.parent.rglob("evil.jpg")] + [p for p in root.parents[0].rglob("evil*")]
    assert not stray, stray
    assert all(root in p.resolve().parents for p in root.rglob("*.jpg"))


async def test_an_mqtt_snapshot_with_a_path_as_event_id_is_a_dead_letter(hub, agent):
    from hubtest import await_for

    photo = real_jpeg(4)
    before = set(hub.files.root.rglob("*")) if hub.files.root.exists() else set()
    agent.client.publish("cityops/v1/agents/agent-1/snapshots/..", photo, qos=1).wait_for_publish(5)
    agent.client.publish("cityops/v1/agents/agent-1/snapshots/%2e%2e", photo, qos=1).wait_for_publish(5)

    async def dead():
        rows = await hub.read(lambda r: r.list_dead_letters(limit=10))
        return rows if len(rows) >= 2 else None

    rows = await await_for(dead, what="dead letters")
    assert {d.reason for d in rows} <= {"bad_topic", "malformed", "invalid"}
    after = set(hub.files.root.rglob("*")) if hub.files.root.exists() else set()
    assert after == before


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/login", "form"),
    ("POST", "/api/v1/cases/1/notes", "json"),
    ("POST", "/api/v1/admin/users", "json"),
    ("POST", "/open311/v2/requests.json", "form"),
    ("POST", "/api/v1/handler/cases/1/resolve", "multipart"),
])
async def test_bodies_over_the_limit_are_413_and_change_nothing(hub, client, agent, method, path, kind):
    case_id = await open_case(hub, agent)
    assert case_id == 1
    before = await audit_len(hub, case_id)
    users = len(await hub.read(lambda r: r.list_users()))
    token = await make_token(hub, "admin" if "admin" in path else "handler" if "handler" in path
                             else "operator", "drainage" if "handler" in path else None)
    big = "x" * ONE_MIB
    if kind == "json":
        r = await client.request(method, path, token=token, json={"text": big, "username": big})
    elif kind == "form":
        r = await client.request(method, path, data={"username": "op", "password": big, "description": big})
    else:
        form = aiohttp.FormData()
        form.add_field("photo", b"\xff\xd8\xff" + b"\0" * ONE_MIB, filename="a.jpg",
                       content_type="image/jpeg")
        r = await client.request(method, path, token=token, data=form)
    assert r.status == 413, (path, r.status, r.text[:200])
    assert await audit_len(hub, case_id) == before
    assert len(await hub.read(lambda r: r.list_users())) == users
    assert client.cookie("cityops_session") is None


async def test_a_chunked_body_without_length_is_cut_at_the_limit(hub, client):
    """No Content-Length to trust: the server stops reading at the limit."""

    async def chunks():
        for _ in range(ONE_MIB // 8192):
            yield b"x" * 8192
            await asyncio.sleep(0)

    r = await client.request("POST", "/login", data=chunks(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 413, r.status


@pytest.mark.parametrize(("path", "role", "depth"), [
    ("/api/v1/cases/1/notes", "operator", 100_000),
    ("/api/v1/admin/users", "admin", 100_000),
    ("/api/v1/plans", "admin", 30_000),  # a plan body is at most 64 KiB
    ("/api/v1/handler/cases/1/notes", "handler", 100_000),
])
async def test_json_nested_a_hundred_thousand_deep_is_a_400_problem(hub, client, agent, path, role,
                                                                    depth):
    """It was a 500: the JSON parser ran out of stack (issue 17, point 24)."""
    await open_case(hub, agent)
    token = await make_token(hub, role, "drainage" if role == "handler" else None)
    for body in ("[" * depth + "]" * depth, '{"a":' * (depth // 10) + "1" + "}" * (depth // 10)):
        r = await client.request("POST", path, token=token, data=body,
                                 headers={"Content-Type": "application/json"})
        assert r.status == 400, (path, r.status, r.text[:200])
        assert r.content_type == "application/problem+json"
        problem = r.json()
        assert problem["code"] == "invalid_input" and "nested too deeply" in problem["errors"]["body"]
