"""The hub talks to a TLS broker listener, and tells enrolled agents how to do the same."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import timedelta

import aiohttp
import pytest
from hubtest import TestAgent, await_for, make_setup, sensor_event

from hub.app import Hub
from hub.broker import BrokerSettings, MosquittoBroker
from hub.enroll import issue_token
from protocol.provisioning import ENROLL_PATH, EnrollResponse

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


async def test_hub_over_tls_and_enrollment_hands_out_the_ca(tmp_path, clock):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_certs(certs)
    broker = MosquittoBroker(BrokerSettings(data_dir=tmp_path / "mq", tls_port=0, tls_certfile=cert,
                                            tls_keyfile=key))
    broker.start()
    try:
        setup = make_setup(tmp_path, broker={
            "managed": False, "host": "127.0.0.1", "port": broker.settings.tls_port,
            "password": broker.settings.hub_password, "tls": {"ca_file": str(ca)},
            "data_dir": str(tmp_path / "mq")})
        async with Hub(setup, clock=clock, run_scheduler=False) as hub:
            assert hub.health()["ok"]
            agent = await asyncio.to_thread(TestAgent, broker)  # the plain listener
            agent.send(sensor_event())
            await await_for(lambda: agent.acked(1), what="ack through the TLS hub link")
            agent.close()
            token = await hub.write(lambda r: issue_token(r, "tls-agent", None, timedelta(hours=1),
                                                          clock.now()))
            async with aiohttp.ClientSession() as s, \
                    s.post(hub.web_url.rstrip("/") + ENROLL_PATH, json={"token": token}) as r:
                resp = EnrollResponse.model_validate(await r.json())
            assert resp.mqtt.tls and resp.mqtt.port == broker.settings.tls_port
            assert resp.mqtt.ca_pem == ca.read_text()
            assert broker.auth.check("tls-agent", resp.password)  # written to the broker's passwd
    finally:
        broker.stop()
