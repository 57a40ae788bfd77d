"""`cityops-agent provision` against the real hub: `POST /api/v1/enroll` served by
`hub.app.Hub`, tokens issued as `cityops-hub enroll` issues them, broker credentials written
into the hub's managed Mosquitto. The enrolled agent then really connects."""

from __future__ import annotations

import asyncio
import stat
from datetime import timedelta

import pytest
import yaml
from agent_testlib import PahoHub, until

from edge_agent.app import AgentApp
from edge_agent.cli import main
from edge_agent.config import load_agent_config
from hub.app import Hub
from hub.broker import free_port
from hub.config import HubConfig, build_setup
from hub.enroll import issue_token, token_hash

pytestmark = pytest.mark.asyncio

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "hub" / "examples"


class RealHub:
    """A running hub and what the tests need of it."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.url = hub.web_url
        self.broker = hub.broker

    async def issue(self, agent_id: str, *, ttl_s: float = 600) -> str:
        return await self.hub.write(lambda repo: issue_token(
            repo, agent_id, "g-05", timedelta(seconds=ttl_s), self.hub.clock.now()))

    async def token_row(self, token: str):
        return await self.hub.read(lambda repo: repo.get_token(token_hash(token)))


def _hub_config(tmp, **broker) -> HubConfig:
    return HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0, **broker},
        "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snapshots"),
        "web": {"port": 0}, "grids": str(EXAMPLES / "grids.geojson"),
        "routing": str(EXAMPLES / "routing.yaml"), "ingest": {"receivers": 0},
    })


@pytest.fixture
async def hub_endpoint(tmp_path):
    hub = Hub(build_setup(_hub_config(tmp_path / "hub")), run_scheduler=False)
    await hub.start()
    yield RealHub(hub)
    await hub.stop()


@pytest.fixture
async def tls_hub_endpoint(tmp_path):
    hub = Hub(build_setup(_hub_config(tmp_path / "hub", managed_tls={
        "port": 0, "dir": str(tmp_path / "hub" / "tls"), "names": ["127.0.0.1"]})),
        run_scheduler=False)
    await hub.start()
    yield RealHub(hub)
    await hub.stop()


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_happy_path_writes_credentials_and_a_config_that_connects(hub_endpoint, tmp_path, capsys):
    broker = hub_endpoint.broker
    token = await hub_endpoint.issue("agent-77")
    out = tmp_path / "etc"
    rc = await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(out),
                   "--lat", "31.2", "--lon", "121.5", "--place", "Plant room")
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "agent agent-77 enrolled" in printed.out and "cityops-agent run --config" in printed.out
    creds = out / "credentials.yaml"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert yaml.safe_load(creds.read_text())["username"] == "agent-77"
    loaded = load_agent_config(out / "agent.yaml")  # the starter config is valid as written
    assert loaded.config.agent.id == "agent-77" and loaded.config.agent.grid_id == "g-05"
    assert loaded.config.mqtt.port == broker.port
    assert (await hub_endpoint.token_row(token)).used_by  # the hub recorded who enrolled
    # The credentials work on the real broker: the agent comes online.
    hub = PahoHub(broker)
    stop = asyncio.Event()
    task = asyncio.create_task(AgentApp(loaded).run(stop))
    try:
        await until(lambda: any(s.agent_id == "agent-77" and s.state == "online" for s in hub.status),
                    what="the provisioned agent online")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        hub.close()


async def test_a_used_token_is_refused(hub_endpoint, tmp_path, capsys):
    token = await hub_endpoint.issue("agent-1")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path / "a")) == 0
    capsys.readouterr()
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "refused the token (403: this enrollment token was already used" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "credentials.yaml").exists()


async def test_an_expired_token_is_refused(hub_endpoint, tmp_path, capsys):
    token = await hub_endpoint.issue("agent-2", ttl_s=-1)
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path)) == 1
    assert "403: this enrollment token expired" in capsys.readouterr().err


async def test_a_wrong_token_is_refused(hub_endpoint, tmp_path, capsys):
    await hub_endpoint.issue("agent-3")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", "not-the-right-token-x",
                     "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "401: this enrollment token is not known to the hub" in err and "ask for a new one" in err


async def test_unreachable_hub_and_malformed_token(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert await cli("provision", "--hub", url, "--token", "x" * 20, "--out", str(tmp_path)) == 1
    assert "the hub is unreachable at" in capsys.readouterr().err
    assert await cli("provision", "--hub", url, "--token", "short", "--out", str(tmp_path)) == 1
    assert "the token is malformed" in capsys.readouterr().err


async def test_existing_credentials_are_kept_and_the_token_not_spent(hub_endpoint, tmp_path, capsys):
    (tmp_path / "credentials.yaml").write_text("username: a\npassword: b\n")
    token = await hub_endpoint.issue("agent-4")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path)) == 1
    assert "--force" in capsys.readouterr().err
    assert (await hub_endpoint.token_row(token)).used_at is None  # the token is not spent
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path),
                     "--force") == 0
    assert yaml.safe_load((tmp_path / "credentials.yaml").read_text())["username"] == "agent-4"


async def test_tls_hub_sends_its_ca_and_the_agent_connects_over_tls(tls_hub_endpoint, tmp_path, capsys):
    hub = tls_hub_endpoint
    token = await hub.issue("agent-5")
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path)) == 0
    ca = (hub.hub.config.broker.managed_tls.dir / "ca.crt").read_text()
    assert (tmp_path / "ca.pem").read_text() == ca
    config = yaml.safe_load((tmp_path / "agent.yaml").read_text())
    assert config["mqtt"]["tls"] == {"ca_file": "ca.pem"}
    assert config["mqtt"]["port"] == hub.hub.agent_tls_port != hub.hub.broker_port
    # No --lat/--lon: the starter config says what is missing, and check-config agrees.
    assert "Set agent.location" in (tmp_path / "agent.yaml").read_text()
    capsys.readouterr()
    assert await cli("check-config", str(tmp_path / "agent.yaml")) == 1
    assert "agent.location: Field required; add it" in capsys.readouterr().err
    # With a location filled in, the agent connects to the TLS listener and the hub sees it.
    config["agent"]["location"] = {"lat": 31.215, "lon": 121.415}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    stop = asyncio.Event()
    task = asyncio.create_task(AgentApp(load_agent_config(tmp_path / "agent.yaml")).run(stop))
    try:
        await until(lambda: hub.hub.counts()["agents_online"] == 1, timeout=15,
                    what="the agent online over TLS")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
