"""Group robots of WeCom (企业微信), DingTalk (钉钉) and Feishu (飞书): each a webhook URL
(holding the robot's key or access token) that takes a text message as JSON, and a JSON
reply whose error code says whether it was posted (non-zero: it was not).

* WeCom: ``{"msgtype": "text", "text": {"content": ...}}`` to ``.../webhook/send?key=...``;
  reply ``{"errcode": 0, "errmsg": "ok"}``. Content at most 2,048 bytes.
* DingTalk: the same body shape to ``.../robot/send?access_token=...``; with a signing
  secret (加签) the URL also gets ``timestamp`` (ms) and ``sign`` = URL-encoded
  base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")); reply ``errcode``.
* Feishu: ``{"msg_type": "text", "content": {"text": ...}}``; with a signing secret
  (签名校验) the body also gets ``timestamp`` (s) and ``sign`` =
  base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")); reply ``code`` (older
  robots: ``StatusCode``).

Codes that mean "too fast" or "busy" are retried; every other non-zero code (bad key,
signature refused, keyword missing, bad body) is final, with the vendor's message kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
from yarl import URL

from ..model import Message, PermanentError, TransientError
from ..settings import RobotEndpoint, read_secret
from .base import HttpReply, fail_on_status, post

__all__ = ["RobotChannel", "dingtalk_sign", "feishu_sign"]


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's 加签 value, base64 (the caller URL-encodes it as a query value)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu's 签名校验 value: the HMAC key is "timestamp\\nsecret", the message empty."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _cut(text: str, max_bytes: int) -> str:
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "..."


# Vendor codes worth retrying: busy, or sending too fast.
_RETRY = {"wecom": {-1, 45009, 45033}, "dingtalk": {-1, 130101, 130102},
          "feishu": {11232, 11233}}
_LABEL = {"wecom": "WeCom", "dingtalk": "DingTalk", "feishu": "Feishu"}
_MAX_BYTES = {"wecom": 2048, "dingtalk": 18000, "feishu": 20000}


def judge(kind: str, reply: HttpReply, target: str) -> None:
    """Raise unless the vendor's reply says the message was posted."""
    what = f"{_LABEL[kind]} robot {target}"
    data = reply.json()
    code: Any = None
    msg = ""
    if isinstance(data, dict):
        if kind == "feishu":
            code = data.get("code", data.get("StatusCode"))
            msg = str(data.get("msg", data.get("StatusMessage", "")))
        else:
            code = data.get("errcode")
            msg = str(data.get("errmsg", ""))
    if code is None:
        fail_on_status(reply, what)
        raise PermanentError(f"{what}: the reply has no error code: {reply.text[:300]!r}")
    if code == 0:
        return
    detail = f"{what}: error {code}: {msg[:300]}"
    if code in _RETRY[kind]:
        raise TransientError(detail)
    raise PermanentError(detail)


class RobotChannel:
    def __init__(self, kind: str, endpoints: dict[str, RobotEndpoint],
                 session: aiohttp.ClientSession) -> None:
        self.name = kind
        self.kind = kind
        self.session = session
        self.endpoints: dict[str, tuple[RobotEndpoint, str, str | None]] = {}
        for n, ep in endpoints.items():
            url = ep.url or read_secret(ep.url_file, f"{kind} robot {n} URL") or ""
            secret = read_secret(ep.secret_file, f"{kind} robot {n} secret")
            self.endpoints[n] = (ep, url, secret)

    def request(self, target: str, message: Message, now: float) -> tuple[str, bytes]:
        """The URL and body to post (pure but for the endpoint table)."""
        _, url, secret = self.endpoints[target]
        text = _cut(f"{message.subject}\n{message.text}", _MAX_BYTES[self.kind])
        body: dict[str, Any]
        if self.kind == "feishu":
            body = {"msg_type": "text", "content": {"text": text}}
            if secret:
                ts = str(int(now))
                body.update(timestamp=ts, sign=feishu_sign(secret, ts))
        else:
            body = {"msgtype": "text", "text": {"content": text}}
            if self.kind == "dingtalk" and secret:
                ts = str(int(now * 1000))
                url = str(URL(url).update_query(timestamp=ts, sign=dingtalk_sign(secret, ts)))
        return url, json.dumps(body, ensure_ascii=False).encode()

    async def send(self, message: Message, target: str, *, delivery_id: str) -> None:
        ep = self.endpoints[target][0]
        url, body = self.request(target, message, time.time())
        reply = await post(self.session, "POST", url, data=body,
                           headers={"Content-Type": "application/json; charset=utf-8"},
                           timeout_s=ep.timeout_s, what=f"{_LABEL[self.kind]} robot {target}")
        judge(self.kind, reply, target)

    async def close(self) -> None:
        pass
