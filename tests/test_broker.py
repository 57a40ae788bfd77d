"""The managed Mosquitto: config, credentials, ACL and limits as the protocol says."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from hub.broker import BrokerError, BrokerSettings, MosquittoBroker, hash_password, verify_password
from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT
from protocol.topics import Channel, agent_topic


class Client:
    """A tiny synchronous MQTT v5 client for probing the broker."""

    def __init__(self, broker: MosquittoBroker, user: str, password: str):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.connected = threading.Event()
        self.connect_rc = None
        self.messages: list[mqtt.MQTTMessage] = []
        self.got = threading.Event()
        self.acks: dict[int, object] = {}
        self.acked = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.granted = threading.Event()
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.connected.wait(5)

    def _on_connect(self, c, u, flags, rc, props):
        self.connect_rc = rc
        self.connected.set()

    def _on_message(self, c, u, msg):
        self.messages.append(msg)
        self.got.set()

    def _on_publish(self, c, u, mid, rc, props):
        with self.acked:
            self.acks[mid] = rc
            self.acked.notify_all()

    def _on_subscribe(self, c, u, mid, rcs, props):
        self.granted.set()

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos=qos)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.acks, 5)
            return self.acks[info.mid]

    def subscribe(self, topic):
        self.granted.clear()
        self.c.subscribe(topic, qos=1)
        assert self.granted.wait(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_password_hashes_are_mosquitto_compatible():
    h = hash_password("secret123", salt=b"\x9e'\x8c\xdd/\xd29L\xda\x82\xff\xf7")
    # Produced by `mosquitto_passwd -b` for the same password and salt.
    assert h == ("$7$101$nieM3S/SOUzagv/3$USt0gjpRpp1STGzaAuBSmNoXJThD+UrYzlL+MYqnBNYVtn92apqnZd2"
                 "LNN3lWDRvCWgGSLixQdd6w+FLuzImyA==")
    assert verify_password("secret123", h)
    assert not verify_password("secret124", h)


def test_anonymous_and_wrong_password_are_refused(broker):
    anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    done = threading.Event()
    result = {}

    def on_connect(c, u, f, rc, p):
        result["rc"] = rc
        done.set()

    anon.on_connect = on_connect
    anon.connect(broker.host, broker.port)
    anon.loop_start()
    assert done.wait(5)
    anon.loop_stop()
    assert result["rc"].is_failure
    broker.auth.set_user("agent-1", "right-password-0123")
    broker.reload()
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    bad.username_pw_set("agent-1", "wrong")
    done.clear()
    bad.on_connect = on_connect
    bad.connect(broker.host, broker.port)
    bad.loop_start()
    assert done.wait(5)
    bad.loop_stop()
    assert result["rc"].value == 135  # not authorised


def test_agent_may_publish_only_on_its_own_topics(broker):
    broker.auth.set_users({"agent-1": "pw-agent-1-0123456", "agent-2": "pw-agent-2-0123456"})
    broker.reload()
    hub = Client(broker, broker.settings.hub_user, broker.settings.hub_password)
    hub.subscribe("cityops/#")
    a1 = Client(broker, "agent-1", "pw-agent-1-0123456")
    own = a1.publish(agent_topic("agent-1", Channel.EVENTS), b"{}")
    spoof = a1.publish(agent_topic("agent-2", Channel.EVENTS), b"{}")
    acks = a1.publish(agent_topic("agent-1", Channel.ACKS), b"{}")
    assert not own.is_failure
    assert spoof.value == 135 and acks.value == 135  # MQTT 5 tells us: not authorised
    assert hub.got.wait(5)
    topics = [m.topic for m in hub.messages]
    assert topics == [agent_topic("agent-1", Channel.EVENTS)]
    a1.close()
    hub.close()


def test_agent_reads_only_its_own_acks_and_config(broker):
    broker.auth.set_users({"agent-1": "pw-agent-1-0123456"})
    broker.reload()
    a1 = Client(broker, "agent-1", "pw-agent-1-0123456")
    a1.subscribe(agent_topic("agent-2", Channel.ACKS))
    a1.subscribe(agent_topic("agent-1", Channel.ACKS))
    hub = Client(broker, broker.settings.hub_user, broker.settings.hub_password)
    hub.publish(agent_topic("agent-2", Channel.ACKS), b"for agent 2")
    hub.publish(agent_topic("agent-1", Channel.ACKS), b"for agent 1")
    assert a1.got.wait(5)
    hub.publish(agent_topic("agent-1", Channel.ACKS), b"marker")
    deadline = threading.Event()
    deadline.wait(0.3)
    assert [m.payload for m in a1.messages] == [b"for agent 1", b"marker"]
    a1.close()
    hub.close()


def test_oversized_publish_is_dropped_by_the_broker(broker):
    """The broker is the backstop behind the codec's own limits: it drops an oversized
    publish (Mosquitto answers PUBACK 149, which paho 2.x treats as a protocol error and
    disconnects; agents therefore never send one, see protocol/codec.py)."""
    hub = Client(broker, broker.settings.hub_user, broker.settings.hub_password)
    hub.subscribe("cityops/#")
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    sender.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    info = sender.publish(agent_topic("a1", Channel.EVENTS), b"x" * (BROKER_MESSAGE_SIZE_LIMIT + 1), qos=1)
    info.wait_for_publish(5)
    hub.publish(agent_topic("a1", Channel.EVENTS), b"marker")
    assert hub.got.wait(5)
    assert [m.payload for m in hub.messages] == [b"marker"]
    sender.loop_stop()
    hub.close()


def test_broker_that_cannot_start_reports_its_log(tmp_path):
    settings = BrokerSettings(data_dir=tmp_path / "b", extra_lines=["this_is_not_an_option 1"])
    with pytest.raises(BrokerError) as info:
        MosquittoBroker(settings).start(timeout=5)
    assert "this_is_not_an_option" in str(info.value) or "Unknown configuration" in str(info.value)


def test_kill_and_restart_keeps_the_port_and_credentials(broker):
    port = broker.port
    broker.kill()
    assert not broker.running
    broker.start()
    assert broker.port == port
    hub = Client(broker, broker.settings.hub_user, broker.settings.hub_password)
    assert not hub.connect_rc.is_failure
    hub.close()


def test_a_restart_waits_for_its_port_instead_of_moving_away_from_its_clients(tmp_path):
    """Agents know the broker by its address: a broker that ran on a port it picked, and
    finds that port held for a moment when it restarts (a full run once saw a client
    socket given it as its local port while nothing listened), waits for it rather than
    moving to a fresh port its clients would never find."""
    with MosquittoBroker(BrokerSettings(data_dir=tmp_path / "b")) as b:
        port = b.port
        b.kill()
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # over the old connections' TIME_WAIT
        deadline = time.monotonic() + 5
        while True:  # the killed broker's listening socket goes when the kernel has reaped it
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        squatter.listen(4)
        threading.Timer(1.5, squatter.close).start()
        b.start(timeout=10)
        assert b.port == port
        hub = Client(b, b.settings.hub_user, b.settings.hub_password)
        assert not hub.connect_rc.is_failure
        hub.close()


def test_tls_listener_works_end_to_end_with_generated_certificates(tmp_path):
    import ssl

    from hub.tls import ensure_tls_files

    files = ensure_tls_files(tmp_path / "tls", ["localhost", "127.0.0.1"])
    assert oct(files.ca_key.stat().st_mode & 0o777) == "0o600"
    settings = BrokerSettings(
        data_dir=tmp_path / "b", tls_port=0, tls_certfile=files.server_cert,
        tls_keyfile=files.server_key, tls_cafile=files.ca_cert,
    )
    with MosquittoBroker(settings):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(files.ca_cert))
        c.username_pw_set(settings.hub_user, settings.hub_password)
        done = threading.Event()
        result = {}
        c.on_connect = lambda cl, u, f, rc, p: (result.setdefault("rc", rc), done.set())
        c.connect("127.0.0.1", settings.tls_port)
        c.loop_start()
        assert done.wait(5)
        c.loop_stop()
        assert not result["rc"].is_failure
        # A client that does not trust our CA is refused at the TLS handshake.
        other_ca = ensure_tls_files(tmp_path / "other", ["localhost"]).ca_cert
        stranger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        stranger.tls_set(ca_certs=str(other_ca))
        with pytest.raises(ssl.SSLError):
            stranger.connect("127.0.0.1", settings.tls_port)


def test_tls_files_are_kept_across_restarts(tmp_path):
    from hub.tls import ensure_tls_files

    first = ensure_tls_files(tmp_path, ["localhost"])
    ca = first.ca_cert.read_bytes()
    second = ensure_tls_files(tmp_path, ["localhost"])
    assert second.ca_cert.read_bytes() == ca


def _squatter() -> socket.socket:
    """A TCP listener that accepts and never speaks MQTT (another program's port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def test_a_free_port_taken_before_mosquitto_binds_it_is_re_picked(tmp_path, monkeypatch):
    """The race behind a rare full-run failure ("cityops-hub-link: could not connect and
    subscribe ... no answer"): the port picked as free is bound by another process before
    mosquitto binds it; mosquitto exits with "Address already in use" while a TCP probe
    still connects (to the other program). Readiness must be an MQTT answer from our
    broker, and the broker must move to a fresh port."""
    import hub.broker as broker_module

    squatter = _squatter()
    taken = squatter.getsockname()[1]
    picks = iter([taken])
    real_free_port = broker_module.free_port
    monkeypatch.setattr(broker_module, "free_port", lambda host="127.0.0.1": next(picks, None)
                        or real_free_port(host))
    try:
        with MosquittoBroker(BrokerSettings(data_dir=tmp_path / "b")) as b:
            assert b.port != taken
            hub = Client(b, b.settings.hub_user, b.settings.hub_password)
            assert not hub.connect_rc.is_failure
            hub.close()
    finally:
        squatter.close()


def test_a_configured_port_held_by_another_program_is_a_clear_error(tmp_path):
    squatter = _squatter()
    try:
        settings = BrokerSettings(data_dir=tmp_path / "b", port=squatter.getsockname()[1])
        with pytest.raises(BrokerError, match="Another program holds the port"):
            MosquittoBroker(settings).start(timeout=5)
    finally:
        squatter.close()


def test_the_generated_config_bounds_each_session_and_isolates_the_hub(tmp_path):
    """Issue 17 points 10 and 13: the queue a session may hold is bounded (docs/hub.md says
    why these numbers); with an internal listener the hub user exists only there."""
    from hub.broker import HUB_QUEUE_BYTES, HUB_QUEUE_MESSAGES, render_config

    s = BrokerSettings(data_dir=tmp_path, port=1883, internal_port=41883)
    conf = render_config(s).splitlines()
    assert f"max_queued_bytes {HUB_QUEUE_BYTES}" in conf and HUB_QUEUE_BYTES > 0
    assert f"max_queued_messages {HUB_QUEUE_MESSAGES}" in conf
    assert "per_listener_settings true" in conf
    hub_at, agents_at = conf.index("listener 41883 127.0.0.1"), conf.index("listener 1883 127.0.0.1")
    hub_part, agent_part = conf[hub_at:agents_at], conf[agents_at:]
    assert f"password_file {s.hub_password_path}" in hub_part and "allow_anonymous false" in hub_part
    assert f"password_file {s.password_path}" in agent_part and "allow_anonymous false" in agent_part
    assert "use_username_as_clientid true" in agent_part


def test_a_flood_of_failed_logins_leaves_the_log_under_its_cap(tmp_path):
    """Unauthenticated connects each write log lines; the hub rotates mosquitto.log by
    size (one older generation kept), so the live file stays under its cap."""
    from hub.broker import mqtt_probe

    cap = 16 * 1024
    settings = BrokerSettings(data_dir=tmp_path / "b", log_max_bytes=cap, log_check_s=0.05)
    with MosquittoBroker(settings) as b:
        for i in range(1200):  # about 150 bytes of log each: ~11 caps
            assert mqtt_probe(b.host, b.port, f"nobody-{i}", "wrong") in (4, 5)
        def size() -> int:  # (just rotated: the broker reopens the file on SIGHUP)
            return settings.log_path.stat().st_size if settings.log_path.exists() else 0

        deadline = time.monotonic() + 5
        while size() > cap and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.log_rotations >= 1
        assert size() <= cap
        assert settings.log_path.with_name("mosquitto.log.1").exists()
        assert mqtt_probe(b.hub_host, b.hub_port, settings.hub_user, settings.hub_password) == 0


def test_concurrent_enrollments_keep_every_credential(broker):
    """Issue 17 point 12: sixteen agents enrolled at once (each: add to the password file,
    reload the broker) can all connect afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from hub.broker import mqtt_probe

    creds = {f"agent-{i:02d}": f"password-of-agent-{i:02d}-xyz" for i in range(16)}
    barrier = threading.Barrier(len(creds))

    def enroll(user: str) -> None:
        barrier.wait()
        broker.auth.set_user(user, creds[user])
        broker.reload()

    with ThreadPoolExecutor(len(creds)) as pool:
        list(pool.map(enroll, creds))
    assert set(creds) <= set(broker.auth.users())
    refused = [u for u, pw in creds.items() if mqtt_probe(broker.host, broker.port, u, pw) != 0]
    assert refused == []
