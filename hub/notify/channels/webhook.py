"""Signed webhooks: ``POST`` of a JSON body to the endpoint's URL with

* ``X-Cityops-Timestamp``: Unix seconds when it was signed;
* ``X-Cityops-Signature``: ``v1=`` + hex HMAC-SHA256(secret, timestamp + "." + body);
* ``X-Cityops-Delivery``: the delivery id (the same on every retry: dedupe on it).

Any 2xx is success; 408, 429, 5xx and network errors are retried; other 4xx are final.
The body: ``{"delivery_id", "kind", "subject", "text", "fields"}``. docs/hub.md shows
how a receiver verifies it (:func:`verify` is that check).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp

from ..model import Message
from ..settings import WebhookEndpoint, read_secret
from .base import fail_on_status, post

__all__ = ["WebhookChannel", "sign", "verify"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float,
           window_s: float = 300) -> bool:
    """A receiver's check: the signature matches and the timestamp is within ``window_s``
    of ``now`` (a replayed old request fails)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > window_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    name = "webhook"

    def __init__(self, endpoints: dict[str, WebhookEndpoint], session: aiohttp.ClientSession) -> None:
        self.session = session
        self.endpoints = {n: (ep, read_secret(ep.secret_file, f"webhook {n} secret"))
                          for n, ep in endpoints.items()}

    async def send(self, message: Message, target: str, *, delivery_id: str) -> None:
        ep, secret = self.endpoints[target]
        body = json.dumps({"delivery_id": delivery_id, "kind": message.fields.get("kind"),
                           "subject": message.subject, "text": message.text,
                           "fields": message.fields}, ensure_ascii=False,
                          separators=(",", ":"), default=str).encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Cityops-Timestamp": ts,
                   "X-Cityops-Signature": sign(secret or "", ts, body),
                   "X-Cityops-Delivery": delivery_id, "User-Agent": "cityops-hub"}
        reply = await post(self.session, "POST", ep.url, data=body, headers=headers,
                           timeout_s=ep.timeout_s, what=f"webhook {target}")
        fail_on_status(reply, f"webhook {target}")

    async def close(self) -> None:
        pass
