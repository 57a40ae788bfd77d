"""Roles × actions: each role may do exactly what the table in hub/auth/roles.py says;
a refused request is a 403 and changes nothing."""

from __future__ import annotations

import pytest
from webtest import audit_len, make_token, open_case

from hub.auth.roles import Principal, Role, case_actions

ROLES = ["operator", "dispatcher", "handler", "admin", "reporter", "open311", "monitor", "linkage"]


@pytest.fixture
async def tokens(hub):
    out = {}
    for role in ROLES:
        out[role] = await make_token(hub, role, "drainage" if role == "handler" else None,
                                     name=f"{role}-token")
    return out


@pytest.fixture
async def queued_case(hub, agent):
    """A case waiting in the operator queue (accepted, not dispatched)."""
    case_id = await open_case(hub, agent)
    await hub.return_case(case_id, actor="test", reason="wrong department")
    return case_id


@pytest.mark.parametrize(("path", "allowed"), [
    ("/api/v1/cases", {"operator", "dispatcher", "admin"}),
    ("/api/v1/overview", {"operator", "dispatcher", "admin"}),
    ("/api/v1/agents", {"operator", "dispatcher", "admin"}),
    ("/api/v1/dead-letters", {"operator", "dispatcher", "admin"}),
    ("/api/v1/admin/users", {"admin"}),
    ("/api/v1/admin/tokens", {"admin"}),
    ("/api/v1/handler/cases", {"handler"}),
    ("/metrics", {"operator", "dispatcher", "admin", "monitor"}),
])
async def test_reads_by_role(client, tokens, path, allowed):
    for role in ROLES:
        r = await client.get(path, token=tokens[role])
        assert r.status == (200 if role in allowed else 403), (role, path, r.status)


@pytest.mark.parametrize(("action", "body", "allowed"), [
    ("reject", {"reason": "a duplicate of another report"}, {"operator", "dispatcher", "admin"}),
    ("dispatch", {"department": "drainage"}, {"operator", "dispatcher", "admin"}),
    ("reassign", {"department": "sanitation"}, {"dispatcher", "admin"}),
    ("notes", {"text": "called the resident"}, {"operator", "dispatcher", "admin"}),
])
async def test_case_actions_by_role(hub, client, tokens, queued_case, action, body, allowed):
    refused = [r for r in ROLES if r not in allowed]
    before = await audit_len(hub, queued_case)
    state = (await hub.read(lambda r: r.get_case(queued_case))).state
    for role in refused:
        r = await client.api("POST", f"/api/v1/cases/{queued_case}/{action}", body,
                             token=tokens[role])
        assert r.status == 403, (role, action, r.text)
    assert await audit_len(hub, queued_case) == before
    assert (await hub.read(lambda r: r.get_case(queued_case))).state == state
    role = sorted(allowed)[0]
    r = await client.api("POST", f"/api/v1/cases/{queued_case}/{action}", body, token=tokens[role])
    assert r.status == 200, (role, action, r.text)
    assert await audit_len(hub, queued_case) > before


async def test_a_handler_web_user_sees_only_their_department(hub, client, agent):
    case_id = await open_case(hub, agent)  # drainage
    await client.login("sani")
    r = await client.get(f"/cases/{case_id}")
    assert r.status == 403 and "not dispatched to sanitation" in r.text
    r = await client.get("/cases")
    assert r.status == 403
    await client.login("drain")
    r = await client.get(f"/cases/{case_id}")
    assert r.status == 200 and 'id="form-start"' in r.text and 'id="form-dispatch"' not in r.text


def test_offered_actions_follow_role_and_state():
    op = Principal("user", "op", Role.OPERATOR)
    disp = Principal("user", "d", Role.DISPATCHER)
    drain = Principal("user", "h", Role.HANDLER, "drainage")
    assert case_actions(op, "accepted", None) == ["reject", "dispatch", "close", "note"]
    assert "reassign" in case_actions(disp, "dispatched", "drainage")
    assert case_actions(op, "rejected", None) == ["accept", "dispatch", "note"]
    assert case_actions(op, "resolved", "drainage", "no photo verifier") == ["review", "close", "note"]
    assert case_actions(op, "closed", "drainage") == ["reopen", "note"]
    assert case_actions(drain, "dispatched", "drainage") == ["note", "start", "return", "resolve"]
    assert case_actions(drain, "dispatched", "sanitation") == []
    assert case_actions(drain, "resolved", "drainage") == ["note"]
    assert case_actions(Principal("token", "p", Role.OPEN311), "new", None) == []
