"""The broker is unreachable while the agent's outbox fills past its cap: the outbox
drops by the stated policy (oldest ``update`` first, never a ``new`` or ``end``), counts
every drop, reports the count in telemetry, and once the broker is back every event it
kept reaches the hub exactly once: stored + dropped = taken, one case per meter."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from faultlib import Agent, HubProcess, hub_yaml, interleave, lifecycles, stored
from hubtest import make_config

pytestmark = pytest.mark.asyncio


async def test_outbox_past_its_cap_while_the_broker_is_down(tmp_path, broker, scale):
    sources = 8 * scale
    drafts = interleave(lifecycles(sources, updates=10), sources)  # 96 events by default
    cap = max(10, len(drafts) // 3)
    agent = await Agent(broker, tmp_path, max_events=cap, ack_timeout_s=2).start()
    broker.kill()  # unreachable: nothing is delivered, the outbox fills
    try:
        await agent.feed(drafts)
        kinds = {seq: d.kind.value for seq, d in zip(agent.seqs, drafts, strict=True)}
        counters = agent.outbox.counters()
        kept = {r["seq"] for r in agent.outbox.rows()}
        dropped = set(agent.seqs) - kept
        assert len(kept) == cap and len(dropped) == len(drafts) - cap
        assert {kinds[s] for s in dropped} == {"update"}, "a new or end was dropped"
        assert counters["dropped.update"] == len(dropped)
        assert agent.outbox.telemetry().dropped == len(dropped)
        # The oldest updates went first: every kept update is newer than every dropped one.
        kept_updates = [s for s in kept if kinds[s] == "update"]
        assert not kept_updates or min(kept_updates) > max(dropped)
        broker.start()
        hub = HubProcess(hub_yaml(tmp_path, broker), broker).start()
        try:
            await agent.drained(60 * scale)
            db = make_config(tmp_path).database

            def reported() -> int | None:
                with sqlite3.connect(db) as conn:
                    row = conn.execute("SELECT outbox_dropped FROM agents WHERE agent_id = 'agent-1'"
                                       ).fetchone()
                return row[0] if row else None

            deadline = asyncio.get_running_loop().time() + 15
            while reported() != len(dropped):  # the heartbeat carries the count to the hub
                assert asyncio.get_running_loop().time() < deadline, reported()
                await asyncio.sleep(0.1)
        finally:
            hub.stop()
    finally:
        await agent.stop()
    s = stored(make_config(tmp_path).database)
    assert len(s.seqs) == len(set(s.seqs)) and set(s.seqs) == kept  # stored + dropped = taken
    assert s.cases == s.case_keys == sources
