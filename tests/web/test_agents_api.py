"""``GET /api/v1/agents`` for outside checks (issue 17, point 8): each agent's stored
message count and its sequence state as a summary (gaps open now and ever opened,
missing seqs), never the ranges themselves; the stats total both kinds of gap."""

from __future__ import annotations

from datetime import UTC, datetime

from hubtest import TestAgent, await_for, sensor_event
from webtest import make_token

from hub.ingest.seqs import WINDOW
from protocol.codec import encode
from protocol.messages import Telemetry
from protocol.topics import Channel


async def test_agents_api_counts_stored_messages_and_summarises_gaps(hub, agent, client):
    other = TestAgent(hub.broker, "agent-2", "agent-password-2222222")
    try:
        agent.birth()
        # 1, 2, then 5 and 7 (3, 4 and 6 still in the agent's backlog), then 3 and 4.
        agent.send(sensor_event(seq=1), sensor_event(seq=2, kind="update"))
        agent.send(sensor_event(seq=5, event_id="wm-5", source="meter-5"))
        agent.send(sensor_event(seq=7, event_id="wm-7", source="meter-7"))
        await await_for(lambda: agent.acked(7), what="the ack of seq 7")
        other.send(sensor_event(agent="agent-2", seq=1, event_id="x-1"))
        await await_for(lambda: other.acked(1), what="agent-2's ack")
        token = await make_token(hub, "operator")

        async def agents():
            r = await client.api("GET", "/api/v1/agents", token=token)
            assert r.status == 200, r.text
            return {a["agent_id"]: a for a in r.json()["agents"]}

        a1 = (await agents())["agent-1"]
        assert a1["messages_stored"] == 4
        assert (a1["seq_upto"], a1["seq_highest"], a1["missing_seqs"]) == (2, 7, 3)
        assert (a1["seq_gaps_open"], a1["seq_gaps_opened"]) == (2, 2)
        assert "seq_ranges" not in a1 and "seq_gaps" not in a1
        agent.send(sensor_event(seq=3, event_id="wm-3", source="meter-3"),
                   sensor_event(seq=4, event_id="wm-4", source="meter-4"))
        await await_for(lambda: agent.acked(4), what="the backlog's ack")
        now = await agents()
        a1, a2 = now["agent-1"], now["agent-2"]
        assert a1["messages_stored"] == 6 and a2["messages_stored"] == 1
        assert (a1["seq_upto"], a1["missing_seqs"], a1["seq_gaps_open"], a1["seq_gaps_opened"]) == (5, 1, 1, 2)
        stats = (await client.api("GET", "/api/v1/stats", token=token)).json()
        assert (stats["seq_gaps"], stats["seq_gaps_open"]) == (2, 1)
        # A seq far beyond the window: refused with its reason, counted, the state unmoved.
        far = 7 + WINDOW + 1
        agent.send(sensor_event(seq=far, event_id="wm-far", source="meter-9"))
        await await_for(lambda: [r for r in agent.rejected() if r.seq == far], what="the rejection")
        assert (await agents())["agent-1"]["seq_highest"] == 7
        hub.config.web.metrics_public = True
        metrics = (await client.get("/metrics")).text
        assert "cityops_ingest_seq_out_of_window_total 1" in metrics
        assert "cityops_ingest_seqs_given_up_total 0" in metrics
    finally:
        other.close()


async def test_the_agents_page_says_why_a_camera_sends_no_people_count(hub, agent, client):
    agent.birth()
    why = "the model has no person class (labels: water, flame)"
    t = Telemetry(agent_id=agent.agent_id, boot_id="boot-1", at=datetime.now(UTC), uptime_s=5,
                  outbox={"depth": 0}, cameras={"gate": {"state": "up", "fps": 2.0, "no_people_count": why},
                                                "lane": {"state": "up", "fps": 2.0}})
    agent.publish(Channel.TELEMETRY, encode(t), qos=0)
    await await_for(lambda: hub.read(lambda r: (a := r.get_agent(agent.agent_id)) is not None
                                     and "lane" in a.cameras), what="the telemetry")
    await client.login("op")
    page = (await client.get("/agents")).text
    assert f"2.0 fps; no people count: {why}" in page  # the camera's tooltip says why
    assert page.count("no people count") == 1  # the counting camera says nothing
