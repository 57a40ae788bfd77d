"""Sign-in, sessions, CSRF, login rate limiting: what a person (or an attacker) sees."""

from __future__ import annotations

import re
import ssl

import aiohttp
import pytest
from hubtest import make_setup
from webtest import PASSWORD, Client, add_users, audit_len, make_token, open_case, running_hub

from hub.app import Hub
from hub.tls import ensure_tls_files


def set_cookie_header(reply, name: str) -> str:
    for value in reply.headers.getall("Set-Cookie", []):
        if value.startswith(name + "="):
            return value
    raise AssertionError(f"no Set-Cookie for {name}: {reply.headers.getall('Set-Cookie', [])}")


async def test_sign_in_sets_a_strict_httponly_cookie_and_redirects(client):
    r = await client.login("op")
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = set_cookie_header(r, "cityops_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test
    me = (await client.get("/api/v1/me")).json()
    assert me["name"] == "op" and me["role"] == "operator" and me["csrf_token"]


async def test_handlers_land_on_their_departments_cases(client):
    r = await client.login("drain")
    assert r.status == 303 and r.headers["Location"] == "/my"
    page = await client.get("/my")
    assert page.status == 200 and "Drainage Management Office" in page.text


async def test_wrong_password_is_refused_with_a_clear_message(client):
    r = await client.login("op", "not-the-password")
    assert r.status == 401
    assert "Wrong user name or password" in r.text and 'aria-invalid="true"' in r.text
    assert client.cookie("cityops_session") is None
    assert (await client.get("/api/v1/me")).status == 401


async def test_sign_in_form_needs_its_own_token(client):
    r = await client.post("/login", data={"username": "op", "password": PASSWORD, "csrf_token": "x"})
    assert r.status == 403 and "expired" in r.text
    assert client.cookie("cityops_session") is None


async def test_session_fixation_a_fresh_id_at_every_sign_in(hub, client):
    # A cookie planted before sign-in is never promoted to a session.
    client.session.cookie_jar.update_cookies({"cityops_session": "attacker-chosen-value"},
                                             aiohttp.client.URL(client.base))
    await client.login("op")
    first = client.cookie("cityops_session")
    assert first and first != "attacker-chosen-value"
    # Signing in again (e.g. as another user) replaces the session; the old id is dead.
    await client.login("disp")
    second = client.cookie("cityops_session")
    assert second != first
    other = Client(hub)
    try:
        other.session.cookie_jar.update_cookies({"cityops_session": first},
                                                aiohttp.client.URL(other.base))
        assert (await other.get("/api/v1/me")).status == 401
    finally:
        await other.close()
    assert (await client.get("/api/v1/me")).json()["name"] == "disp"


async def test_logout_ends_the_session(hub, client):
    await client.login("op")
    value = client.cookie("cityops_session")
    r = await client.form("/logout", {})
    assert r.status == 303 and r.headers["Location"] == "/login"
    again = Client(hub)
    try:
        again.session.cookie_jar.update_cookies({"cityops_session": value},
                                                aiohttp.client.URL(again.base))
        assert (await again.get("/api/v1/me")).status == 401
    finally:
        await again.close()


async def test_idle_and_expired_sessions_end(hub, client, clock):
    await client.login("op")
    assert (await client.get("/api/v1/me")).status == 200
    clock.advance(minutes=hub.config.web.session_idle_min + 1)
    assert (await client.get("/api/v1/me")).status == 401


async def test_disabling_a_user_ends_their_sessions(hub, client):
    await client.login("op")
    admin = Client(hub)
    try:
        await admin.login("admin")
        r = await admin.api("POST", "/api/v1/admin/users/op/disable", {})
        assert r.status == 200 and "1 session" in r.json()["detail"]
    finally:
        await admin.close()
    assert (await client.get("/api/v1/me")).status == 401
    assert (await client.login("op")).status == 401


@pytest.mark.parametrize("path", ["/", "/cases", "/cases/1", "/admin", "/agents"])
async def test_pages_send_strangers_to_sign_in(client, path):
    r = await client.get(path)
    assert r.status == 303 and r.headers["Location"].startswith("/login?next=")


async def test_csrf_is_required_for_cookie_sessions_and_nothing_changes(hub, client, agent):
    case_id = await open_case(hub, agent)
    await hub.return_case(case_id, actor="test", reason="to the queue")
    before = await audit_len(hub, case_id)
    await client.login("op")
    saved, client.csrf = client.csrf, None
    r = await client.api("POST", f"/api/v1/cases/{case_id}/reject", {"reason": "duplicate"})
    assert r.status == 403 and r.json()["code"] == "csrf"
    client.csrf = "forged-token"
    r = await client.api("POST", f"/api/v1/cases/{case_id}/reject", {"reason": "duplicate"})
    assert r.status == 403
    r = await client.post(f"/cases/{case_id}/note", data={"text": "hello"})
    assert r.status == 403 and "security token" in r.text
    assert await audit_len(hub, case_id) == before
    client.csrf = saved
    r = await client.api("POST", f"/api/v1/cases/{case_id}/reject", {"reason": "duplicate"})
    assert r.status == 200 and r.json()["case"]["state"] == "rejected"


async def test_api_tokens_are_exempt_from_csrf(hub, client, agent):
    case_id = await open_case(hub, agent)
    token = await make_token(hub, "operator")
    r = await client.api("POST", f"/api/v1/cases/{case_id}/notes", {"text": "from a script"},
                         token=token)
    assert r.status == 200


async def test_revoked_tokens_stop_working(hub, client):
    token = await make_token(hub, "operator", name="script")
    assert (await client.get("/api/v1/cases", token=token)).status == 200
    rows = await hub.read(lambda r: r.list_api_tokens())
    await hub.write(lambda r: r.revoke_api_token(rows[0].id, hub.clock.now()))
    r = await client.get("/api/v1/cases", token=token)
    assert r.status == 401 and "revoked" in r.json()["detail"]


@pytest.fixture
async def strict_hub(tmp_path, clock):
    async with running_hub(tmp_path, clock,
                           login_limits={"per_account": 3, "per_address": 5}) as h:
        yield h


async def test_login_rate_limit_per_account(strict_hub):
    c = Client(strict_hub)
    try:
        for _ in range(3):
            assert (await c.login("op", "wrong-password-1")).status == 401
        r = await c.login("op")  # the right password, but the account is locked for now
        assert r.status == 429
        assert "Too many failed sign-ins for this account" in r.text
        assert c.cookie("cityops_session") is None
        assert (await c.login("disp")).status == 303  # other accounts are not locked
    finally:
        await c.close()


async def test_login_rate_limit_per_address(strict_hub):
    c = Client(strict_hub)
    try:
        for name in ["a1", "a2", "a3", "a4", "a5"]:
            assert (await c.login(name, "guess-guess-1")).status == 401
        r = await c.login("admin")
        assert r.status == 429 and "your address" in r.text
    finally:
        await c.close()


async def test_tls_cookies_are_secure_and_host_prefixed(tmp_path, clock):
    files = ensure_tls_files(tmp_path / "tls", ["127.0.0.1", "localhost"])
    h = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False,
                                      "tls": {"cert_file": str(files.server_cert),
                                              "key_file": str(files.server_key)}}),
            clock=clock, run_scheduler=False)
    await h.start()
    try:
        await add_users(h)
        assert h.web_url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(files.ca_cert))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            base = h.web_url.rstrip("/")
            async with s.get(base + "/login") as r:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
            async with s.post(base + "/login", allow_redirects=False,
                              data={"username": "op", "password": PASSWORD, "csrf_token": token}) as r:
                assert r.status == 303
                cookie = next(v for v in r.headers.getall("Set-Cookie")
                              if v.startswith("__Host-cityops_session="))
                assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with s.get(base + "/api/v1/me") as r:
                assert r.status == 200 and (await r.json())["name"] == "op"
    finally:
        await h.stop()


async def test_unauthenticated_api_calls_change_nothing(hub, client, agent):
    case_id = await open_case(hub, agent)
    before = await audit_len(hub, case_id)
    for action, body in [("reject", {"reason": "x"}), ("dispatch", {}), ("close", {}),
                         ("notes", {"text": "x"})]:
        r = await client.api("POST", f"/api/v1/cases/{case_id}/{action}", body)
        assert r.status == 401, action
    assert await audit_len(hub, case_id) == before


async def test_retention_removes_expired_sessions(hub, client, clock):
    await client.login("op")
    clock.advance(hours=hub.config.web.session_ttl_h + 1)
    assert (await hub.sweep())["sessions"] == 1
    assert (await client.get("/api/v1/me")).status == 401


# -- where sign-in sends you (issue 17, point 19) ----------------------------------------------------
HOSTILE_NEXT = [
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
    " //evil.example", "/ /evil.example", "/\u3000/evil.example", "/\u2028/evil.example",
    "/\x00/evil.example", "/\x7f/evil.example", "/\u200b/evil.example",
    "https://evil.example/", "http:evil.example", "javascript:alert(1)", "evil.example",
    "//evil.example/%2e%2e", "/" + "a" * 2001,
]
SAFE_NEXT = ["/", "/cases?state=new&q=x", "/cases/12", "/my", "/plans/flood?saved=2",
             "/a//b", "/%2F%2Fevil.example", "/cases#top"]


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_a_next_that_leaves_the_hub_becomes_the_overview(value):
    from hub.web.pages import safe_next

    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", SAFE_NEXT)
def test_a_next_on_the_hub_is_kept(value):
    from hub.web.pages import safe_next

    assert safe_next(value) == value


@pytest.mark.parametrize("query", ["next=%2F%09%2Fevil.example", "next=%2F%5Cevil.example",
                                   "next=%2F%0A%2Fevil.example", "next=%2F%2Fevil.example"])
async def test_sign_in_never_redirects_to_another_host(client, query):
    page = await client.get(f"/login?{query}")
    hidden = re.search(r'name="next" value="([^"]*)"', page.text).group(1)
    assert hidden == "/"
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    from urllib.parse import parse_qs

    raw_next = parse_qs(query)["next"][0]
    r = await client.post("/login", data={"username": "op", "password": PASSWORD,
                                          "csrf_token": token, "next": raw_next})
    assert r.status == 303 and r.headers["Location"] == "/", r.headers.get("Location")
