"""Helpers for the web tests: a signed-in HTTP client, real JPEGs, a scripted verifier,
users and tokens made directly in the store (hashes computed once per run)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import aiohttp
import cv2
import numpy as np

from hub.auth.accounts import create_api_token
from hub.auth.passwords import hash_password
from hub.cases.closure import Outcome, Verdict
from hub.store.repo import UserRow

PASSWORD = "correct-horse-battery"
USERS = {  # username: (role, department)
    "op": ("operator", None),
    "disp": ("dispatcher", None),
    "admin": ("admin", None),
    "drain": ("handler", "drainage"),
    "sani": ("handler", "sanitation"),
    "rep": ("reporter", None),
}


@cache
def _hash(password: str) -> str:
    return hash_password(password)


async def add_users(hub, users: dict[str, tuple[str, str | None]] = USERS) -> None:
    now = hub.clock.now()

    def work(repo):
        for name, (role, dep) in users.items():
            repo.add_user(UserRow(username=name, role=role, department=dep, display_name=name.title(),
                                  password_hash=_hash(PASSWORD), disabled=False, created_at=now))

    await hub.write(work)


@contextlib.asynccontextmanager
async def running_hub(tmp_path, clock, **web: Any) -> AsyncIterator[Any]:
    """A started hub with the test users and these ``web:`` settings (port 0, quiet)."""
    from hubtest import make_setup

    from hub.app import Hub

    h = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False, **web}), clock=clock,
            run_scheduler=False)
    await h.start()
    try:
        await add_users(h)
        yield h
    finally:
        await h.stop()


async def make_token(hub, role: str, department: str | None = None, name: str | None = None) -> str:
    deps = hub.engine.departments
    _, token = await hub.write(lambda repo: create_api_token(
        repo, name or f"{role}-{department or 'x'}", role, hub.clock.now(), departments=deps,
        department=department, created_by="test"))
    return token


def real_jpeg(seed: int = 0, width: int = 320, height: int = 240, blob: bool = True) -> bytes:
    """A decodable JPEG: a street-ish scene, optionally with a dark 'puddle'."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), (150, 160, 165), np.uint8)
    img[height // 2:, :] = (95, 100, 105)
    noise = rng.integers(0, 25, (height, width, 3), dtype=np.uint8)
    img = cv2.add(img, noise)
    if blob:
        cv2.ellipse(img, (width // 2, int(height * 0.72)), (width // 5, height // 10), 0, 0, 360,
                    (70, 55, 40), -1)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


class ScriptedVerifier:
    """A test double for the Verifier seam, used only to drive the UI through the
    fixed / not-fixed branches; the hub's default (NoVerifier) sends photos to people."""

    name = "scripted"

    def __init__(self, outcome: Outcome = Outcome.FIXED, confidence: float = 0.95) -> None:
        self.outcome = outcome
        self.confidence = confidence
        self.calls = 0

    def verify(self, before_jpeg: bytes, after_jpeg: bytes, region) -> Verdict:
        self.calls += 1
        return Verdict(self.outcome, self.confidence, "scripted for the test", self.name)


@dataclass
class Reply:
    status: int
    headers: Any
    text: str
    content_type: str

    def json(self) -> Any:
        import json

        return json.loads(self.text)


class Client:
    """An HTTP client against the hub, with a cookie jar that works on 127.0.0.1."""

    def __init__(self, hub, lang: str | None = "en") -> None:
        """``lang``: the Accept-Language every request sends (the suite reads English
        pages; None sends none, as a client that names no language)."""
        self.hub = hub
        self.base = hub.web_url.rstrip("/")
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.lang = lang
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, *, token: str | None = None,
                      headers: dict[str, str] | None = None, allow_redirects: bool = False,
                      **kw: Any) -> Reply:
        h = dict(headers or {})
        if self.lang and "Accept-Language" not in h:
            h["Accept-Language"] = self.lang
        if token:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, headers=h,
                                        allow_redirects=allow_redirects, **kw) as r:
            body = await r.read()
            return Reply(r.status, r.headers, body.decode("utf-8", "replace"), r.content_type)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.request("POST", path, **kw)

    def cookie(self, name: str) -> str | None:
        for c in self.session.cookie_jar:
            if c.key == name:
                return c.value
        return None

    async def login_form_token(self) -> str:
        page = await self.get("/login")
        form = page.text[page.text.index('action="/login"'):]
        return re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)

    async def login(self, username: str, password: str = PASSWORD) -> Reply:
        token = await self.login_form_token()
        reply = await self.post("/login", data={"username": username, "password": password,
                                                "csrf_token": token, "next": "/"})
        if reply.status == 303:
            me = await self.get("/api/v1/me")
            self.csrf = me.json()["csrf_token"]
        return reply

    async def form(self, path: str, data: dict[str, Any] | aiohttp.FormData,
                   csrf: bool = True) -> Reply:
        if isinstance(data, dict) and csrf:
            data = {**data, "csrf_token": self.csrf or ""}
        return await self.post(path, data=data)

    async def api(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                  csrf: bool = True) -> Reply:
        headers = {}
        if csrf and self.csrf and not token:
            headers["X-CSRF-Token"] = self.csrf
        return await self.request(method, path, token=token, headers=headers,
                                  json=body if body is not None else None)


async def open_case(hub, agent, n: int = 1, sub: str = "flood.road_waterlogging",
                    where: tuple[float, float] | None = None, photo: bool = True,
                    confidence: float = 0.9) -> int:
    """An agent reports a problem (with a real before-photo); returns the case id once it
    is stored. ``n`` keeps seqs and event ids apart between calls."""
    from hubtest import G01, T0, await_for, event

    seq = n * 10
    eid = f"ev-{n}"
    snap = real_jpeg(n) if photo else None
    if snap is not None:
        agent.send_snapshot(eid, seq, snap)
    agent.send(event(seq=seq + 1, event_id=eid, sub=sub, where=where or G01, at=T0,
                     snapshot=snap, source=f"cam-{n}", confidence=confidence))
    await await_for(lambda: agent.acked(seq + 1), what="the hub's ack")

    def find(repo):
        row = repo.get_lifecycle(agent.agent_id, eid)
        return row.case_id if row else None

    return await await_for(lambda: hub.read(find), what="the case")


async def audit_len(hub, case_id: int) -> int:
    return len(await hub.read(lambda repo: repo.audit_for_case(case_id)))
