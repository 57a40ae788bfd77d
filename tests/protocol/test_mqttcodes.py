"""The one list of CONNACK codes that mean "these credentials will not work"
(protocol/mqttcodes.py), checked against what a real Mosquitto answers and what paho
reports, for MQTT 5 and 3.1.1."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.mqttcodes import AUTH_REFUSALS, auth_refusal


def test_the_refusals_that_retrying_cannot_fix():
    assert dict(AUTH_REFUSALS) == {134: "bad user name or password", 135: "not authorized",
                                   138: "banned", 140: "bad authentication method"}
    # Transient refusals are retried: server unavailable, busy, rate limited, quota.
    for code in (0, 128, 136, 137, 151, 159):
        assert auth_refusal(code) is None, code
    # MQTT 3.1.1 return codes: 4 and 5 are about the credentials, 1-3 are not.
    assert auth_refusal(4, mqtt311=True) == "bad user name or password"
    assert auth_refusal(5, mqtt311=True) == "not authorized"
    for code in (0, 1, 2, 3, 134):
        assert auth_refusal(code, mqtt311=True) is None, code


def test_paho_translates_311_codes_to_the_same_numbers():
    for code311, code5 in ((4, 134), (5, 135), (3, 136)):
        assert mqtt.convert_connack_rc_to_reason_code(code311).value == code5
        assert auth_refusal(code311, mqtt311=True) == auth_refusal(code5)


def refusal(broker, protocol, *, password="wrong-password-0123", auth_method=None):
    """The reason code paho hands on_connect when connecting to the real broker."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    c.username_pw_set("agent-1", password)
    done, out = threading.Event(), {}

    def on_connect(client, userdata, flags, reason, properties):
        out["reason"] = reason
        done.set()

    c.on_connect = on_connect
    props = None
    if auth_method:
        props = Properties(PacketTypes.CONNECT)
        props.AuthenticationMethod = auth_method
    c.connect(broker.host, broker.port, properties=props)
    c.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return out["reason"]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_a_wrong_password_is_an_auth_refusal_on_the_real_broker(broker, protocol):
    broker.auth.set_user("agent-1", "right-password-0123")
    broker.auth.reload()
    reason = refusal(broker, protocol)
    assert reason.is_failure and auth_refusal(reason.value), reason
    assert not refusal(broker, protocol, password="right-password-0123").is_failure


def test_an_unsupported_auth_method_is_an_auth_refusal_on_the_real_broker(broker):
    """Mosquitto without an auth plugin answers 140; the hub's copy of the list lacked it
    and would have reconnected in a loop."""
    broker.auth.set_user("agent-1", "right-password-0123")
    broker.auth.reload()
    reason = refusal(broker, mqtt.MQTTv5, password="right-password-0123", auth_method="SCRAM-SHA-1")
    assert reason.value == 140 and auth_refusal(reason.value) == "bad authentication method"
