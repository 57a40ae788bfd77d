"""TLS mode end to end with generated certificates: an agent publishes over the managed
broker's TLS listener, the hub stores and dispatches the case, and an operator reads it
over HTTPS; clients that do not trust the CA, or that speak plain text to a TLS port,
get nowhere."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from hubtest import G01, T0, make_setup
from webtest import add_users, make_token

from edge_agent.config.sections import MqttConfig, OutboxConfig, ReconnectConfig, TelemetryConfig
from edge_agent.emit import EventDraft
from edge_agent.outbox import Outbox
from edge_agent.session import Session, SessionState
from edge_agent.transport import MqttTransport
from hub.app import Hub
from hub.tls import ensure_tls_files
from protocol.messages import EventKind, Evidence, Location, Reading

pytestmark = pytest.mark.asyncio


async def test_agent_to_operator_over_tls_only(tmp_path, clock):
    files = ensure_tls_files(tmp_path / "tls", ["127.0.0.1", "localhost"])
    setup = make_setup(
        tmp_path, broker={"managed_tls": {"port": 0, "dir": str(tmp_path / "tls"),
                                          "names": ["127.0.0.1", "localhost"]}},
        web={"port": 0, "access_log": False,
             "tls": {"cert_file": str(files.server_cert), "key_file": str(files.server_key)}})
    hub = Hub(setup, clock=clock, run_scheduler=False)
    await hub.start()
    try:
        await add_users(hub)
        tls_port = hub.agent_tls_port
        assert tls_port and hub.web_url.startswith("https://")
        hub.broker_auth.set_user("agent-tls", "agent-tls-password-0123")
        await asyncio.to_thread(hub.broker_auth.reload)
        outbox = Outbox(tmp_path / "outbox.sqlite", "agent-tls")
        cfg = MqttConfig(host="127.0.0.1", port=tls_port, tls={"ca_file": str(files.ca_cert)})
        session = Session(
            "agent-tls", outbox,
            lambda will: MqttTransport(cfg, will, client_id="agent-tls", username="agent-tls",
                                       password="agent-tls-password-0123", ca_file=files.ca_cert),
            outbox_config=OutboxConfig(), telemetry=TelemetryConfig(interval_s=5),
            reconnect=ReconnectConfig(initial_s=0.1, max_s=0.5), version="tls")
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        outbox.emit(EventDraft(
            event_id="wm-tls", kind=EventKind.NEW, category="elderly_care",
            subcategory="elderly_care.water_no_use", source="meter-tls", observed_at=T0,
            location=Location(lat=G01[0], lon=G01[1]),
            evidence=Evidence(reading=Reading(name="volume", value=0.0))))
        deadline = asyncio.get_running_loop().time() + 20
        while outbox.depth:
            assert asyncio.get_running_loop().time() < deadline, session.last_error
            await asyncio.sleep(0.05)
        assert session.state == SessionState.CONNECTED
        stop.set()
        await task
        outbox.close()

        token = await make_token(hub, "operator")
        ctx = ssl.create_default_context(cafile=str(files.ca_cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
                s.get(hub.web_url.rstrip("/") + "/api/v1/cases",
                      headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            cases = (await r.json())["cases"]
        assert [c["subcategory"] for c in cases] == ["elderly_care.water_no_use"]

        # Plain HTTP to the HTTPS port, and HTTPS without trusting our CA: refused.
        plain = hub.web_url.replace("https://", "http://").rstrip("/") + "/healthz"
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.get(plain) as r:
                    assert r.status >= 400  # some servers answer 400 to plain text on TLS
                    raise aiohttp.ClientError("answered plain HTTP with an error")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with s.get(hub.web_url.rstrip("/") + "/healthz"):
                    pass
        # Plain MQTT to the TLS listener: no CONNACK.
        from hub.broker import mqtt_probe

        assert await asyncio.to_thread(mqtt_probe, "127.0.0.1", tls_port, "agent-tls",
                                       "agent-tls-password-0123") is None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ensure_tls_files(tmp_path / "other", ["127.0.0.1"]).ca_cert))
        with pytest.raises(ssl.SSLError):
            c.connect("127.0.0.1", tls_port)
    finally:
        await hub.stop()
