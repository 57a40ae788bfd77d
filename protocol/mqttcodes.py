"""CONNACK codes that mean "these credentials will not work": one list for agent and hub.

A refused connection is either transient (the broker is busy, unavailable, restarting),
so the client retries, or about who is connecting, so retrying with the same
credentials only hammers the broker: the client stops and says so. This module names the
second kind. Both the agent's transport (``edge_agent/transport/mqtt.py``) and the hub's
client (``hub/ingest/mqtt.py``) decide with :func:`auth_refusal`.

MQTT 5 reason codes (paho hands these to ``on_connect`` for either protocol version):

====  =============================
134   bad user name or password
135   not authorized
138   banned
140   bad authentication method
====  =============================

MQTT 3.1.1 has only return codes; paho translates them to the MQTT 5 numbers above
(4 → 134, 5 → 135), and :func:`auth_refusal` accepts the raw 3.1.1 code as well when
asked with ``mqtt311=True``.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "AUTH_REFUSALS",
    "BAD_AUTHENTICATION_METHOD",
    "BAD_USER_NAME_OR_PASSWORD",
    "BANNED",
    "MQTT311_AUTH_REFUSALS",
    "NOT_AUTHORIZED",
    "auth_refusal",
]

BAD_USER_NAME_OR_PASSWORD = 134
NOT_AUTHORIZED = 135
BANNED = 138
BAD_AUTHENTICATION_METHOD = 140

#: MQTT 5 CONNACK reason code -> what it means, for the codes retrying cannot fix.
AUTH_REFUSALS = MappingProxyType({
    BAD_USER_NAME_OR_PASSWORD: "bad user name or password",
    NOT_AUTHORIZED: "not authorized",
    BANNED: "banned",
    BAD_AUTHENTICATION_METHOD: "bad authentication method",
})

#: MQTT 3.1.1 CONNACK return code -> the MQTT 5 reason code it stands for.
MQTT311_AUTH_REFUSALS = MappingProxyType({
    4: BAD_USER_NAME_OR_PASSWORD,  # "connection refused, bad user name or password"
    5: NOT_AUTHORIZED,  # "connection refused, not authorized"
})


def auth_refusal(code: int, *, mqtt311: bool = False) -> str | None:
    """What is wrong with the credentials when ``code`` refused the connection for who is
    connecting (stop, do not retry), else None (a transient refusal: retry).

    ``code`` is an MQTT 5 reason code, or with ``mqtt311=True`` a raw MQTT 3.1.1 return
    code.
    """
    if mqtt311:
        if code not in MQTT311_AUTH_REFUSALS:
            return None
        code = MQTT311_AUTH_REFUSALS[code]
    return AUTH_REFUSALS.get(code)
