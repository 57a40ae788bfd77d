"""MQTT over TLS: the agent checks the broker's certificate against the configured CA
(a CA and a server certificate made with the openssl command for the test)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.config.sections import MqttConfig
from edge_agent.errors import AuthError, TransportError
from edge_agent.transport import MqttTransport, Will
from hub.broker import BrokerSettings, MosquittoBroker

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)  # noqa: S603,S607


def make_pki(d: Path, name: str) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for 127.0.0.1."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture
def tls_broker(tmp_path):
    ca, cert, key = make_pki(tmp_path / "pki", "cityops test")
    broker = MosquittoBroker(BrokerSettings(data_dir=tmp_path / "broker", tls_port=0,
                                            tls_certfile=cert, tls_keyfile=key))
    broker.start()
    yield broker, ca
    broker.stop()


def transport(broker, ca: Path | None, password: str, user: str = "agent-t") -> MqttTransport:
    cfg = MqttConfig(host="127.0.0.1", port=broker.settings.tls_port, tls={"ca_file": str(ca) if ca else None},
                     connect_timeout_s=5)
    return MqttTransport(cfg, Will("cityops/v1/agents/agent-t/status", b""), client_id=user,
                         username=user, password=password, ca_file=ca)


async def test_tls_connection_with_the_right_ca(tls_broker):
    broker, ca = tls_broker
    password = secrets.token_urlsafe(18)
    broker.auth.set_user("agent-t", password)
    broker.reload()
    t = transport(broker, ca, password)
    await t.connect()
    await asyncio.wait_for(t.publish("cityops/v1/agents/agent-t/telemetry", b"{}", qos=1), 5)
    await t.disconnect()
    with pytest.raises(AuthError):  # credentials are still checked over TLS
        await transport(broker, ca, "wrong-password-xyz").connect()


async def test_a_broker_certificate_from_another_ca_is_refused(tls_broker, tmp_path):
    broker, _ = tls_broker
    other_ca, _, _ = make_pki(tmp_path / "other", "someone else")
    with pytest.raises(TransportError, match="TLS handshake failed|certificate verify failed") as info:
        await transport(broker, other_ca, "x" * 20).connect()
    assert not isinstance(info.value, AuthError)
