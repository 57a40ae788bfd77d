"""Enrollment over HTTP (happy path, reuse, expiry, wrong token) and the CLI."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from hubtest import EXAMPLES, TestAgent, await_for, sensor_event, write_hub_yaml

from hub.cli import main
from hub.enroll import issue_token, parse_ttl
from hub.errors import EnrollmentError
from protocol.provisioning import ENROLL_PATH, EnrollResponse
from protocol.topics import Channel, agent_topic


async def post(hub, body):
    async with aiohttp.ClientSession() as s, s.post(hub.web_url.rstrip("/") + ENROLL_PATH, json=body) as r:
        return r.status, await r.json(content_type=None)


def connect_rc(host, port, user, password):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    done, out = threading.Event(), {}
    c.on_connect = lambda cl, u, f, rc, p: (out.setdefault("rc", rc), done.set())
    c.connect(host, port)
    c.loop_start()
    assert done.wait(5)
    c.disconnect()
    c.loop_stop()
    return out["rc"]


async def test_enrollment_happy_path_then_reuse_is_refused(hub):
    token = await hub.write(lambda r: issue_token(r, "meter-box-7", "g-02", timedelta(hours=1), hub.clock.now()))
    status, body = await post(hub, {"token": token, "hostname": "box7", "agent_version": "0.1"})
    assert status == 200
    resp = EnrollResponse.model_validate(body)
    assert (resp.agent_id, resp.username, resp.grid_id) == ("meter-box-7", "meter-box-7", "g-02")
    assert (resp.mqtt.host, resp.mqtt.port) == (hub.broker.host, hub.broker.port)
    rc = await asyncio.to_thread(connect_rc, resp.mqtt.host, resp.mqtt.port, resp.username, resp.password)
    assert not rc.is_failure
    assert hub.broker.auth.check("meter-box-7", resp.password)
    assert "password" not in (hub.broker.settings.password_path.read_text())  # hashed, not stored
    agent = await hub.read(lambda r: r.get_agent("meter-box-7"))
    assert (agent.grid_id, agent.hostname) == ("g-02", "box7")
    status, body = await post(hub, {"token": token})
    assert (status, body["code"]) == (403, "token_used") and "already used" in body["detail"]


async def test_expired_and_unknown_tokens_are_refused(hub, clock):
    token = await hub.write(lambda r: issue_token(r, "a9", None, timedelta(minutes=5), clock.now()))
    clock.advance(minutes=6)
    status, body = await post(hub, {"token": token})
    assert (status, body["code"]) == (403, "token_expired")
    status, body = await post(hub, {"token": "x" * 40})
    assert (status, body["code"]) == (401, "unknown_token")
    status, body = await post(hub, {"tok": "short"})
    assert (status, body["code"]) == (400, "bad_request")
    assert "a9" not in hub.broker.auth.users()


async def test_an_enrolled_agent_publishes_as_itself_only(hub):
    token = await hub.write(lambda r: issue_token(r, "agent-5", None, timedelta(hours=1), hub.clock.now()))
    _, body = await post(hub, {"token": token})
    resp = EnrollResponse.model_validate(body)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(resp.username, resp.password)
    c.connect(resp.mqtt.host, resp.mqtt.port)
    c.loop_start()
    from protocol.codec import encode_events

    c.publish(agent_topic("agent-5", Channel.EVENTS), encode_events([sensor_event(agent="agent-5")]), qos=1)
    c.publish(agent_topic("agent-6", Channel.EVENTS),
              encode_events([sensor_event(agent="agent-6", event_id="spoof")]), qos=1).wait_for_publish(5)
    await await_for(lambda: hub.read(lambda r: r.counts()["messages_stored"] == 1), what="own event")
    await asyncio.sleep(0.3)
    assert (await hub.read(lambda r: r.get_agent("agent-6"))) is None
    c.disconnect()
    c.loop_stop()


def test_ttl_parsing():
    assert parse_ttl("1h") == timedelta(hours=1) and parse_ttl("90") == timedelta(seconds=90)
    with pytest.raises(EnrollmentError, match="30m, 1h or 2d"):
        parse_ttl("soon")


# -- CLI -----------------------------------------------------------------------------------------

def write_config(tmp_path):
    return write_hub_yaml(tmp_path, "ingest: {receivers: 0}\n")


def test_cli_check_config(tmp_path, capsys):
    assert main(["check-config", str(EXAMPLES / "hub.yaml")]) == 0
    assert "ok (6 grids, 2 routes" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"grids: {EXAMPLES / 'grids.geojson'}\nsla: {{tick_s: -1}}\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cityops-hub: error: invalid configuration") and "sla.tick_s" in err
    assert "Traceback" not in err


def test_cli_enroll_prints_a_token_the_hub_accepts(tmp_path, capsys):
    path = write_config(tmp_path)
    assert main(["enroll", "--config", str(path), "--agent-id", "box-1", "--grid", "g-01", "--ttl", "2h"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40
    from hub.enroll import claim_token
    from hub.store.sqlite import SqliteRepository
    from protocol.clock import SystemClock

    repo = SqliteRepository(tmp_path / "hub.sqlite")
    with repo.transaction():
        claim = claim_token(repo, token, SystemClock().now(), "host")
    repo.close()
    assert (claim.agent_id, claim.grid_id) == ("box-1", "g-01")
    assert main(["enroll", "--config", str(path), "--agent-id", "box-2", "--grid", "g-99"]) == 1
    assert "unknown grid 'g-99'" in capsys.readouterr().err


async def test_cli_scores_csv(tmp_path, capsys, clock):
    from hub.app import Hub
    from hub.config import load_setup

    path = write_config(tmp_path)
    async with Hub(load_setup(path), clock=clock, run_scheduler=False) as hub:
        agent = await asyncio.to_thread(TestAgent, hub.broker)
        agent.send(sensor_event())
        await await_for(lambda: agent.acked(1), what="ack")
        await hub.close_case(1, actor="op")
        agent.close()
    assert await asyncio.to_thread(main, ["scores", "--config", str(path), "--month", "2026-07", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("month,group_by,key,cases,closed")
    assert lines[1].startswith("2026-07,grid,g-01,1,1,1.0,1.0,0.0,0.0")
    assert lines[2].startswith("2026-07,grid,all,1,1")
    assert await asyncio.to_thread(main, ["scores", "--config", str(path), "--month", "July"]) == 1


# -- reserved ids (the hub's broker user, the pseudo-agents) -------------------------------------

RESERVED = ["hub", "open311", "reporter", "linkage", "vitals", "Hub", "cityops-hub-link",
            "cityops-hub-recv-0"]


def test_every_hub_channel_is_a_reserved_id():
    """The pseudo-agents the hub makes events for are all on the one list."""
    from hub.vitals.events import VITALS_AGENT
    from hub.web import linkage, open311, reporter
    from protocol.ids import RESERVED_AGENT_IDS

    assert {linkage.CHANNEL, open311.CHANNEL, reporter.CHANNEL, VITALS_AGENT, "hub"} \
        <= set(RESERVED_AGENT_IDS)


@pytest.mark.parametrize("agent_id", RESERVED)
def test_cli_refuses_to_enroll_a_reserved_id(tmp_path, capsys, agent_id):
    path = write_config(tmp_path)
    assert main(["enroll", "--config", str(path), "--agent-id", agent_id]) == 1
    err = capsys.readouterr().err
    assert f"agent id {agent_id!r} is reserved: it is" in err and "give the agent another id" in err
    assert "Traceback" not in err


def test_cli_refuses_the_configured_broker_user_and_enrolls_others(tmp_path, capsys):
    path = write_hub_yaml(tmp_path, "ingest: {receivers: 0}\n")
    path.write_text(path.read_text().replace("broker: {", "broker: {username: hub-main, "))
    assert main(["enroll", "--config", str(path), "--agent-id", "hub-main"]) == 1
    assert "'hub-main' is reserved: it is the hub's own broker user" in capsys.readouterr().err
    assert main(["enroll", "--config", str(path), "--agent-id", "hub-2"]) == 0  # a normal id
    assert capsys.readouterr().out.strip().startswith("enr_")


async def admin_post(hub, path, body):
    from hub.auth.accounts import create_api_token

    _, token = await hub.write(lambda r: create_api_token(r, "ops", "admin", hub.clock.now(),
                                                          departments=()))
    async with aiohttp.ClientSession() as s, s.post(
            hub.web_url.rstrip("/") + path, json=body,
            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json(content_type=None)


async def test_admin_api_refuses_reserved_ids_and_issues_normal_ones(hub):
    for agent_id in RESERVED:
        status, body = await admin_post(hub, "/api/v1/admin/enrollment-tokens", {"agent_id": agent_id})
        assert (status, body["code"]) == (400, "reserved_agent_id"), body
        assert f"{agent_id!r} is reserved" in body["detail"]
    status, body = await admin_post(hub, "/api/v1/admin/enrollment-tokens", {"agent_id": "box-9"})
    assert status == 201 and body["token"].startswith("enr_")
    status, body = await post(hub, {"token": body["token"]})
    assert status == 200 and body["agent_id"] == "box-9"


@pytest.mark.parametrize("agent_id", ["hub", "vitals"])
async def test_a_stored_token_for_a_reserved_id_is_refused_and_the_hub_user_kept(hub, agent_id):
    """A token issued before ids were checked: claiming it neither replaces the hub's broker
    password nor spends the token."""
    from hub.enroll import token_hash

    token = "enr_" + "t" * 40
    now = hub.clock.now()
    await hub.write(lambda r: r.add_token(token_hash(token), agent_id, None, now, now + timedelta(hours=1)))
    files = sorted(hub.broker.settings.data_dir.glob("passwd*"))
    before = [f.read_bytes() for f in files]
    status, body = await post(hub, {"token": token})
    assert (status, body["code"]) == (403, "reserved_agent_id") and f"{agent_id!r}" in body["detail"]
    assert [f.read_bytes() for f in files] == before  # no password written or replaced
    assert (await hub.read(lambda r: r.get_token(token_hash(token)))).used_at is None


def test_the_broker_password_file_refuses_reserved_users(broker):
    from hub.broker import BrokerError

    for name in ("open311", "reporter", "linkage", "vitals", broker.settings.hub_user):
        with pytest.raises(BrokerError, match=f"broker user '{name}' is"):
            broker.auth.set_user(name, "a-password-0123456")
        with pytest.raises(BrokerError, match=f"broker user '{name}' is"):
            broker.auth.set_users({"agent-1": "a-password-0123456", name: "a-password-0123456"})
    assert "agent-1" not in broker.auth.users()  # a refused batch writes nothing
    broker.auth.set_user("agent-1", "a-password-0123456")
    assert broker.auth.check("agent-1", "a-password-0123456")
