"""`cityops-agent provision` against the real hub: `POST /api/v1/enroll` served by
`hub.app.Hub` over https (its certificate from the private CA `hub/tls.py` makes, which the
agent trusts with --ca-file), tokens issued as `cityops-hub enroll` issues them, broker
credentials written into the hub's managed Mosquitto. The enrolled agent then really
connects. Plain http is refused unless --insecure-http says otherwise."""

from __future__ import annotations

import asyncio
import stat
from datetime import timedelta

import pytest
import yaml
from agent_testlib import until

from edge_agent.app import AgentApp
from edge_agent.cli import main
from edge_agent.config import load_agent_config
from hub.app import Hub
from hub.broker import free_port
from hub.config import HubConfig, build_setup
from hub.enroll import issue_token, token_hash
from hub.tls import ensure_tls_files

pytestmark = pytest.mark.asyncio

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "hub" / "examples"


class RealHub:
    """A running hub and what the tests need of it."""

    def __init__(self, hub: Hub, ca: str | None = None):
        self.hub = hub
        self.url = hub.web_url
        self.broker = hub.broker
        self.ca = ca  # the CA file that signed the hub's web certificate (https hubs)

    def args(self, token: str, out, *more: str) -> list[str]:
        """`provision` arguments for this hub: its URL, and its CA when it speaks https."""
        trust = ["--ca-file", self.ca] if self.ca else ["--insecure-http"]
        return ["provision", "--hub", self.url, "--token", token, "--out", str(out), *trust, *more]

    async def issue(self, agent_id: str, *, ttl_s: float = 600) -> str:
        return await self.hub.write(lambda repo: issue_token(
            repo, agent_id, "g-05", timedelta(seconds=ttl_s), self.hub.clock.now()))

    async def token_row(self, token: str):
        return await self.hub.read(lambda repo: repo.get_token(token_hash(token)))


def _hub_config(tmp, *, https: bool = True, **broker) -> HubConfig:
    web: dict = {"port": 0}
    if https:  # the web's certificate from the hub's own private CA, as an operator would
        files = ensure_tls_files(tmp / "tls", ["127.0.0.1"])
        web["tls"] = {"cert_file": str(files.server_cert), "key_file": str(files.server_key)}
    return HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0, **broker},
        "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snapshots"),
        "web": web, "grids": str(EXAMPLES / "grids.geojson"),
        "routing": str(EXAMPLES / "routing.yaml"), "ingest": {"receivers": 0},
    })


async def _running(config: HubConfig, ca: str | None):
    hub = Hub(build_setup(config), run_scheduler=False)
    await hub.start()
    return RealHub(hub, ca)


@pytest.fixture
async def hub_endpoint(tmp_path):
    """A hub serving https with a certificate from its own CA (tmp/hub/tls/ca.crt)."""
    hub = await _running(_hub_config(tmp_path / "hub"), str(tmp_path / "hub" / "tls" / "ca.crt"))
    assert hub.url.startswith("https://")
    yield hub
    await hub.hub.stop()


@pytest.fixture
async def http_hub_endpoint(tmp_path):
    """A hub whose web is plain http (no web.tls)."""
    hub = await _running(_hub_config(tmp_path / "hub", https=False), None)
    yield hub
    await hub.hub.stop()


@pytest.fixture
async def tls_hub_endpoint(tmp_path):
    """https web and a TLS broker listener, both from the hub's one private CA."""
    hub = await _running(_hub_config(tmp_path / "hub", managed_tls={
        "port": 0, "dir": str(tmp_path / "hub" / "tls"), "names": ["127.0.0.1"]}),
        str(tmp_path / "hub" / "tls" / "ca.crt"))
    yield hub
    await hub.hub.stop()


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_happy_path_writes_credentials_and_a_config_that_connects(hub_endpoint, tmp_path, capsys):
    broker = hub_endpoint.broker
    token = await hub_endpoint.issue("agent-77")
    out = tmp_path / "etc"
    rc = await cli(*hub_endpoint.args(token, out, "--lat", "31.2", "--lon", "121.5",
                                      "--place", "Plant room"))
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "warning" not in printed.err  # https with the hub's CA: nothing to warn about
    assert "agent agent-77 enrolled" in printed.out and "cityops-agent run --config" in printed.out
    creds = out / "credentials.yaml"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert yaml.safe_load(creds.read_text())["username"] == "agent-77"
    loaded = load_agent_config(out / "agent.yaml")  # the starter config is valid as written
    assert loaded.config.agent.id == "agent-77" and loaded.config.agent.grid_id == "g-05"
    assert loaded.config.mqtt.port == broker.port
    assert (await hub_endpoint.token_row(token)).used_by  # the hub recorded who enrolled
    # The credentials work on the real broker: the agent comes online at the hub.
    stop = asyncio.Event()
    task = asyncio.create_task(AgentApp(loaded).run(stop))
    try:
        await until(lambda: hub_endpoint.hub.counts()["agents_online"] == 1, timeout=15,
                    what="the provisioned agent online")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_used_token_is_refused(hub_endpoint, tmp_path, capsys):
    token = await hub_endpoint.issue("agent-1")
    assert await cli(*hub_endpoint.args(token, tmp_path / "a")) == 0
    capsys.readouterr()
    assert await cli(*hub_endpoint.args(token, tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "refused the token (403: this enrollment token was already used" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "credentials.yaml").exists()


async def test_an_expired_token_is_refused(hub_endpoint, tmp_path, capsys):
    token = await hub_endpoint.issue("agent-2", ttl_s=-1)
    assert await cli(*hub_endpoint.args(token, tmp_path)) == 1
    assert "403: this enrollment token expired" in capsys.readouterr().err


async def test_a_wrong_token_is_refused(hub_endpoint, tmp_path, capsys):
    await hub_endpoint.issue("agent-3")
    assert await cli(*hub_endpoint.args("not-the-right-token-x", tmp_path)) == 1
    err = capsys.readouterr().err
    assert "401: this enrollment token is not known to the hub" in err and "ask for a new one" in err


async def test_unreachable_hub_and_malformed_token(tmp_path, capsys):
    url = f"https://127.0.0.1:{free_port()}"
    assert await cli("provision", "--hub", url, "--token", "x" * 20, "--out", str(tmp_path)) == 1
    assert "the hub is unreachable at" in capsys.readouterr().err
    assert await cli("provision", "--hub", url, "--token", "short", "--out", str(tmp_path)) == 1
    assert "the token is malformed" in capsys.readouterr().err


async def test_existing_credentials_are_kept_and_the_token_not_spent(hub_endpoint, tmp_path, capsys):
    (tmp_path / "credentials.yaml").write_text("username: a\npassword: b\n")
    token = await hub_endpoint.issue("agent-4")
    assert await cli(*hub_endpoint.args(token, tmp_path)) == 1
    assert "--force" in capsys.readouterr().err
    assert (await hub_endpoint.token_row(token)).used_at is None  # the token is not spent
    assert await cli(*hub_endpoint.args(token, tmp_path, "--force")) == 0
    assert yaml.safe_load((tmp_path / "credentials.yaml").read_text())["username"] == "agent-4"


async def test_tls_hub_sends_its_ca_and_the_agent_connects_over_tls(tls_hub_endpoint, tmp_path, capsys):
    hub = tls_hub_endpoint
    token = await hub.issue("agent-5")
    assert await cli(*hub.args(token, tmp_path)) == 0
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


# -- https only, unless told otherwise -----------------------------------------------------------

async def test_plain_http_is_refused_without_the_flag_and_the_token_never_sent(http_hub_endpoint,
                                                                               tmp_path, capsys):
    hub = http_hub_endpoint
    token = await hub.issue("agent-6")
    assert hub.url.startswith("http://")
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "is plain http: the enrollment token and the broker password" in err
    assert "pass --insecure-http to send them in clear anyway" in err and "Traceback" not in err
    assert (await hub.token_row(token)).used_at is None  # never sent, so not spent
    assert not (tmp_path / "credentials.yaml").exists()
    # --ca-file does not make http safe: it is refused too, before anything is sent.
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path),
                     "--ca-file", str(tmp_path / "ca.pem"), "--insecure-http") == 1
    assert "--ca-file is for an https hub" in capsys.readouterr().err
    assert (await hub.token_row(token)).used_at is None


async def test_plain_http_with_the_flag_works_and_warns(http_hub_endpoint, tmp_path, capsys):
    hub = http_hub_endpoint
    token = await hub.issue("agent-7")
    assert await cli(*hub.args(token, tmp_path)) == 0  # args() adds --insecure-http for http
    printed = capsys.readouterr()
    assert "cityops-agent: warning: provisioning over plain http (--insecure-http)" in printed.err
    assert "agent agent-7 enrolled" in printed.out
    assert yaml.safe_load((tmp_path / "credentials.yaml").read_text())["username"] == "agent-7"


async def test_an_untrusted_hub_certificate_is_refused_and_the_token_not_spent(hub_endpoint,
                                                                               tmp_path, capsys):
    hub = hub_endpoint
    token = await hub.issue("agent-8")
    # Without --ca-file the system's CAs do not know the hub's private CA.
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "the hub's certificate at" in err and "not trusted by this machine's CAs" in err
    assert "pass --ca-file with the hub's CA certificate" in err
    # Another CA (an impostor's, or the wrong file) is refused the same way.
    other = ensure_tls_files(tmp_path / "other-ca", ["127.0.0.1"]).ca_cert
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path),
                     "--ca-file", str(other)) == 1
    assert f"not trusted by the CA in {other}" in capsys.readouterr().err
    assert await cli("provision", "--hub", hub.url, "--token", token, "--out", str(tmp_path),
                     "--ca-file", str(tmp_path / "missing.pem")) == 1
    assert "cannot use --ca-file" in capsys.readouterr().err
    assert (await hub.token_row(token)).used_at is None  # nothing reached the hub
    assert not (tmp_path / "credentials.yaml").exists()
    # With the hub's own CA it goes through.
    assert await cli(*hub.args(token, tmp_path)) == 0


async def test_not_a_hub_url(tmp_path, capsys):
    for url in ("hub.example:8443", "ftp://hub.example", "https://"):
        assert await cli("provision", "--hub", url, "--token", "x" * 20, "--out", str(tmp_path)) == 1
        assert "is not a hub URL; use e.g. https://" in capsys.readouterr().err
