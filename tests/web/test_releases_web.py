"""Model releases on the status page (/releases, admins) and the JSON API: the page lists
releases and rollouts, starts a rollout (errors shown with the reason), and its roll-back
button gives every agent the release it had before."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from hubtest import TestAgent, await_for, make_setup
from webtest import Client, add_users

from hub.app import Hub
from hub.releases.package import add_release, build_package
from protocol.codec import encode
from protocol.releases import ReleaseReport
from protocol.topics import Channel
from vision.models import REAL_MODEL


def check_spec(path: str, reply) -> None:
    """The answer is what docs/openapi.yaml says."""
    from openapi_core.testing import MockRequest, MockResponse
    from test_api_contract import SPEC

    SPEC.validate_response(MockRequest("http://localhost", "get", path),
                           MockResponse(reply.text.encode(), status_code=reply.status,
                                        content_type=reply.content_type))


@pytest.fixture
async def hub(tmp_path, clock):
    h = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False},
                       releases={"dir": str(tmp_path / "releases"), "tick_s": 600}),
            clock=clock, run_scheduler=False)
    await h.start()
    await add_users(h)
    yield h
    await h.stop()


async def test_the_page_starts_a_rollout_and_its_button_rolls_it_back(hub):
    agents = [await asyncio.to_thread(TestAgent, hub.broker, a) for a in ("cam-1", "cam-2")]
    admin, zh, op = Client(hub), Client(hub, lang="zh-CN"), Client(hub)
    try:
        for a in agents:
            a.birth()
        await await_for(lambda: hub.read(lambda repo: len(repo.agent_ids()) == 2), what="agents known")
        await admin.login("admin")
        page = await admin.get("/releases")
        assert page.status == 200 and "No releases yet" in page.text and 'href="/releases"' in page.text
        package = build_package(REAL_MODEL.parent)
        release = await hub.write(lambda repo: add_release(repo, hub.config.releases.dir, package, name="detector",
                                                           now=hub.clock.now(), by="test",
                                                           gate={"false_alarms_cut": 0.8}))

        bad = await admin.form("/releases/rollouts", {"release_id": release.release_id, "canary": "cam-9",
                                                      "agents": "all", "canary_minutes": "5"})
        assert bad.status == 400 and "unknown agent(s) cam-9" in bad.text
        started = await admin.form("/releases/rollouts", {"release_id": release.release_id, "canary": "cam-1",
                                                          "agents": "all", "canary_minutes": "5"})
        assert started.status == 303 and started.headers["Location"] == "/releases?rollout=rollout-1"
        await hub.releases.tick()
        assert hub.releases.desired == {"cam-1": release.release_id}  # the canary only, published

        page = await admin.get("/releases?rollout=rollout-1")
        detail = page.text[page.text.index('id="rollout-detail"'):]
        assert "detector-1" in page.text and "false_alarms_cut 0.8" in page.text
        assert re.search(r'data-agent="cam-1">.*?not started', detail, re.S)
        assert 'id="rollback-rollout-1"' in page.text
        assert "模型发布" in (await zh.login("admin") and await zh.get("/releases")).text

        reply = await admin.get("/api/v1/releases")
        check_spec("/api/v1/releases", reply)
        listed = reply.json()
        assert [r["release_id"] for r in listed["releases"]] == ["detector-1"]
        assert listed["rollouts"][0]["stage"] == "canary" and listed["rollouts"][0]["counts"] == {"pending": 2}
        reply = await admin.get("/api/v1/rollouts/rollout-1")
        check_spec("/api/v1/rollouts/rollout-1", reply)
        one = reply.json()
        assert {a["agent_id"]: a["canary"] for a in one["agents"]} == {"cam-1": True, "cam-2": False}
        assert one["agents"][0]["desired_release"] == "detector-1" and one["agents"][0]["published"]
        missing = await admin.get("/api/v1/rollouts/rollout-9")
        assert missing.status == 404 and "no rollout 'rollout-9'" in missing.text
        check_spec("/api/v1/rollouts/rollout-9", missing)

        await op.login("op")
        assert (await op.get("/releases")).status == 403  # admins only
        assert (await op.form("/releases/rollouts/rollout-1/rollback", {})).status == 403
        assert (await admin.form("/releases/rollouts/rollout-1/rollback", {}, csrf=False)).status == 403

        back = await admin.form("/releases/rollouts/rollout-1/rollback", {"reason": "wrong site"})
        assert back.status == 303
        await hub.releases.tick()
        assert hub.releases.desired == {"cam-1": None}  # the config's own model again, published
        row = await hub.read(lambda repo: repo.rollout_get("rollout-1"))
        assert row.stage == "rolled_back" and row.reason == "manual, by admin: wrong site"
        page = await admin.get("/releases")
        assert 'id="rollback-rollout-1"' not in page.text and "rolled back" in page.text
        again = await admin.form("/releases/rollouts/rollout-1/rollback", {})
        assert again.status == 400 and "already rolled back" in again.text

        # the canary went back to its config's model and says so: shown as it is
        agents[0].publish(Channel.RELEASE_STATE, encode(ReleaseReport(
            agent_id="cam-1", state="reverted", at=datetime.now(UTC))), retain=True)
        await await_for(lambda: hub.releases.stats["reports"] >= 1, what="report")
        await hub.releases.tick()
        one = (await admin.get("/api/v1/rollouts/rollout-1")).json()
        assert one["counts"] == {"reverted": 1, "pending": 1}
        page = await admin.get("/releases?rollout=rollout-1")
        assert re.search(r'data-agent="cam-1">.*?reverted', page.text[page.text.index('id="rollout-detail"'):], re.S)
    finally:
        for c in (admin, zh, op):
            await c.close()
        for a in agents:
            a.close()
