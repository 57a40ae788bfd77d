"""kill -9 of the hub (and its receiver processes) in the middle of heavy ingest, and
kill -9 of Mosquitto (persistence on) mid-stream: the real agent outbox resends what no
ack covers, so every event the agent took is stored exactly once and each meter is one
case. Moved here from tests/hub/test_faults.py, now with the agent's own outbox and
session instead of a hand-written resend loop."""

from __future__ import annotations

import asyncio

import pytest
from faultlib import (
    Agent,
    HubProcess,
    assert_exactly_once,
    hub_yaml,
    interleave,
    lifecycles,
    stored,
)
from hubtest import make_config

pytestmark = pytest.mark.asyncio


async def test_kill_9_hub_mid_ingest_loses_nothing_acknowledged(tmp_path, broker, scale):
    sources = 30 * scale
    drafts = interleave(lifecycles(sources, updates=18), sources)  # 600 events by default
    hub = HubProcess(hub_yaml(tmp_path, broker, receivers=1), broker).start()
    agent = await Agent(broker, tmp_path, ack_timeout_s=3).start()
    try:
        feeding = asyncio.create_task(agent.feed(drafts, per_s=500))
        while agent.session.stats.acked_rows < len(drafts) // 5:  # heavy ingest under way
            await asyncio.sleep(0.01)
        acked_before = agent.session.stats.acked_rows
        hub.kill9()
        await feeding  # the rest is taken by the outbox while the hub is down
        assert 0 < acked_before < len(drafts)
        hub.start()
        await agent.drained(90 * scale)
    finally:
        await agent.stop()
        hub.stop()
    assert_exactly_once(stored(make_config(tmp_path).database), agent.seqs, sources)


async def test_kill_9_mosquitto_mid_stream_loses_nothing(tmp_path, broker, scale):
    """Persistence on (the fixture's default); a kill -9 drops whatever the broker held
    in memory since its last autosave, which the outbox must make up for."""
    assert broker.settings.persistence
    sources = 20 * scale
    drafts = interleave(lifecycles(sources, updates=13), sources)  # 300 events by default
    hub = HubProcess(hub_yaml(tmp_path, broker, receivers=1), broker).start()
    agent = await Agent(broker, tmp_path, ack_timeout_s=3).start()
    try:
        feeding = asyncio.create_task(agent.feed(drafts, per_s=400))
        while agent.session.stats.acked_rows < len(drafts) // 4:
            await asyncio.sleep(0.01)
        broker.kill()
        await asyncio.sleep(0.5)  # the agent keeps taking events while the broker is gone
        broker.start()
        await feeding
        await agent.drained(90 * scale)
        assert agent.session.stats.connects >= 2  # it did lose the broker and come back
    finally:
        await agent.stop()
        hub.stop()
    assert_exactly_once(stored(make_config(tmp_path).database), agent.seqs, sources)
