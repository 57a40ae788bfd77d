"""The live feed checks who is watching before every push (issue 17, point 22): a stream
ends when its user is disabled, its session ends or its token is revoked."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from webtest import Client, make_token

from hub.auth.accounts import revoke_api_token, set_disabled


async def _events(resp: aiohttp.ClientResponse, seen: list[dict]) -> None:
    """Read overview events into ``seen`` until the hub ends the stream."""
    data = None
    async for line in resp.content:
        text = line.decode().rstrip("\n")
        if text.startswith("data: "):
            data = json.loads(text[6:])
        elif text == "" and data is not None:
            seen.append(data)
            data = None


async def _watch_until_cut(hub, client: Client, cut, headers: dict[str, str] | None = None) -> list[dict]:
    seen: list[dict] = []
    async with client.session.get(client.base + "/api/v1/live", headers=headers or {}) as resp:
        assert resp.status == 200
        reader = asyncio.create_task(_events(resp, seen))
        for _ in range(200):  # the first overview arrives
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen, "no first event"
        await cut()
        # the write is a change: the feed pushes within its interval (0.2 s here), and the
        # check before that push ends the stream
        await asyncio.wait_for(reader, 10)
    return seen


async def test_disabling_a_user_ends_their_live_feed(hub, client):
    assert (await client.login("op")).status == 303
    seen = await _watch_until_cut(hub, client, lambda: hub.write(lambda repo: set_disabled(repo, "op")))
    assert seen and "cases" in seen[0]
    again = await client.get("/api/v1/live")
    assert again.status == 401


async def test_signing_out_ends_the_live_feed(hub, client):
    assert (await client.login("disp")).status == 303
    async def sign_out() -> None:
        r = await client.form("/logout", {})
        assert r.status == 303

    await _watch_until_cut(hub, client, sign_out)


async def test_revoking_a_token_ends_its_live_feed(hub, client):
    token = await make_token(hub, "monitor", name="wall-screen")
    rows = await hub.read(lambda repo: repo.list_api_tokens())
    token_id = next(r.id for r in rows if r.name == "wall-screen")
    seen = await _watch_until_cut(
        hub, client, lambda: hub.write(lambda repo: revoke_api_token(repo, token_id, hub.clock.now())),
        headers={"Authorization": f"Bearer {token}"})
    assert "cases" not in seen[0]  # a monitor may watch the clock, not the cases
