"""`cityops-agent provision` against a stand-in enrollment endpoint that implements the
`protocol/provisioning.py` contract (aiohttp, in this test) and adds the agent to the
real broker, as the hub does. The lead switches this to the real hub when the branches
meet."""

from __future__ import annotations

import asyncio
import secrets
import stat
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from agent_testlib import PahoHub, until
from aiohttp import web

from edge_agent.app import AgentApp
from edge_agent.cli import main
from edge_agent.config import load_agent_config
from hub.broker import free_port
from protocol.provisioning import ENROLL_PATH, EnrollRequest, EnrollResponse, MqttEndpoint

pytestmark = pytest.mark.asyncio


class EnrollEndpoint:
    """Tokens are single-use and expire; a good one gets broker credentials."""

    def __init__(self, broker, *, tls_ca: str | None = None):
        self.broker = broker
        self.tls_ca = tls_ca
        self.tokens: dict[str, dict] = {}
        self.requests: list[EnrollRequest] = []

    def issue(self, agent_id: str, *, ttl_s: float = 600) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = {"agent_id": agent_id, "expires": datetime.now(UTC) + timedelta(seconds=ttl_s),
                              "used": False}
        return token

    async def handle(self, request: web.Request) -> web.Response:
        try:
            req = EnrollRequest.model_validate_json(await request.read())
        except ValueError as exc:
            return web.json_response({"title": "bad request", "detail": str(exc)[:200]}, status=400)
        self.requests.append(req)
        entry = self.tokens.get(req.token)
        if entry is None:
            return web.json_response({"title": "unknown token", "detail": "no such enrollment token"}, status=401)
        if entry["used"]:
            return web.json_response({"title": "token used", "detail": "token already used"}, status=403)
        if entry["expires"] < datetime.now(UTC):
            return web.json_response({"title": "token expired", "detail": "token expired"}, status=403)
        entry["used"] = True
        agent_id, password = entry["agent_id"], secrets.token_urlsafe(24)
        self.broker.auth.set_user(agent_id, password)
        self.broker.reload()
        resp = EnrollResponse(agent_id=agent_id, username=agent_id, password=password,
                              mqtt=MqttEndpoint(host=self.broker.host, port=self.broker.port,
                                                tls=self.tls_ca is not None, ca_pem=self.tls_ca),
                              grid_id="grid-5", issued_at=datetime.now(UTC))
        return web.Response(body=resp.model_dump_json(), content_type="application/json")


@pytest.fixture
async def hub_endpoint(broker):
    endpoint = EnrollEndpoint(broker)
    app = web.Application()
    app.router.add_post(ENROLL_PATH, endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # the OS picks the port: no race
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield endpoint
    await runner.cleanup()


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_happy_path_writes_credentials_and_a_config_that_connects(hub_endpoint, broker, tmp_path, capsys):
    token = hub_endpoint.issue("agent-77")
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
    assert loaded.config.agent.id == "agent-77" and loaded.config.agent.grid_id == "grid-5"
    assert loaded.config.mqtt.port == broker.port
    assert hub_endpoint.requests[0].agent_version and hub_endpoint.requests[0].hostname
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
    token = hub_endpoint.issue("agent-1")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path / "a")) == 0
    capsys.readouterr()
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "refused the token (403: token already used)" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "credentials.yaml").exists()


async def test_an_expired_token_is_refused(hub_endpoint, tmp_path, capsys):
    token = hub_endpoint.issue("agent-2", ttl_s=-1)
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path)) == 1
    assert "403: token expired" in capsys.readouterr().err


async def test_a_wrong_token_is_refused(hub_endpoint, tmp_path, capsys):
    hub_endpoint.issue("agent-3")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", "not-the-right-token-x",
                     "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "401: no such enrollment token" in err and "ask for a new one" in err


async def test_unreachable_hub_and_malformed_token(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert await cli("provision", "--hub", url, "--token", "x" * 20, "--out", str(tmp_path)) == 1
    assert "the hub is unreachable at" in capsys.readouterr().err
    assert await cli("provision", "--hub", url, "--token", "short", "--out", str(tmp_path)) == 1
    assert "the token is malformed" in capsys.readouterr().err


async def test_existing_credentials_are_kept_and_the_token_not_spent(hub_endpoint, tmp_path, capsys):
    (tmp_path / "credentials.yaml").write_text("username: a\npassword: b\n")
    token = hub_endpoint.issue("agent-4")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path)) == 1
    assert "--force" in capsys.readouterr().err
    assert hub_endpoint.tokens[token]["used"] is False
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path),
                     "--force") == 0
    assert yaml.safe_load((tmp_path / "credentials.yaml").read_text())["username"] == "agent-4"


async def test_tls_hub_sends_its_ca_and_the_config_uses_it(hub_endpoint, tmp_path, capsys):
    hub_endpoint.tls_ca = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    token = hub_endpoint.issue("agent-5")
    assert await cli("provision", "--hub", hub_endpoint.url, "--token", token, "--out", str(tmp_path)) == 0
    assert (tmp_path / "ca.pem").read_text() == hub_endpoint.tls_ca
    config = yaml.safe_load((tmp_path / "agent.yaml").read_text())
    assert config["mqtt"]["tls"] == {"ca_file": "ca.pem"}
    # No --lat/--lon: the starter config says what is missing, and check-config agrees.
    assert "Set agent.location" in (tmp_path / "agent.yaml").read_text()
    capsys.readouterr()
    assert await cli("check-config", str(tmp_path / "agent.yaml")) == 1
    assert "agent.location: Field required; add it" in capsys.readouterr().err
