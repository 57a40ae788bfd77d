"""The hub's disk fills up (simulated with SQLite's max_page_count on the writer's own
connection): the hub stops acknowledging, keeps nothing as a dead letter that was only
refused for lack of space, and when space returns stores everything exactly once."""

from __future__ import annotations

import asyncio

import pytest
from faultlib import Agent, assert_exactly_once, interleave, lifecycles, stored
from hubtest import make_setup

from hub.app import Hub

pytestmark = pytest.mark.asyncio


async def test_full_disk_stops_acks_loses_nothing_and_recovers(tmp_path, scale):
    hub = Hub(make_setup(tmp_path), run_scheduler=False)
    await hub.start()
    sources = 10 * scale
    drafts = interleave(lifecycles(sources, updates=8), sources)  # 100 events by default
    agent = await Agent(hub.broker, tmp_path, ack_timeout_s=1).start()
    try:
        await agent.feed(drafts[:10])
        await agent.drained(20, "the first events, before the disk fills")
        pages = await hub.write(lambda repo: repo.conn.execute("PRAGMA page_count").fetchone()[0])
        await hub.write(lambda repo: repo.conn.execute(f"PRAGMA max_page_count = {pages}"))
        await agent.feed(drafts[10:])
        await asyncio.sleep(3)  # several ack timeouts: the agent resends, the disk is still full
        assert agent.outbox.depth > 0, "the hub acknowledged events it could not store"
        assert hub.writer.alive() and hub.writer.storage_error and not hub.health()["ok"]
        await hub.write(lambda repo: repo.conn.execute("PRAGMA max_page_count = 1073741823"))
        await agent.drained(60 * scale, "everything acknowledged once space returned")
        assert hub.writer.storage_error is None and hub.health()["ok"]
    finally:
        await agent.stop()
        await hub.stop()
    s = stored(tmp_path / "hub.sqlite")
    assert_exactly_once(s, agent.seqs, sources)
    assert s.dead_letters == 0, "a full disk turned good events into dead letters"
