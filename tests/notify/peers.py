"""Real peers for the notification channels, on loopback:

* :class:`SmtpSink` — an aiosmtpd SMTP server with STARTTLS (a certificate from
  hub/tls.py) and AUTH required; addresses in ``refuse`` get ``550``;
* :class:`HttpSink` — one aiohttp server standing in for the webhook receiver (checks the
  HMAC and the replay window, dedupes on ``X-Cityops-Delivery``), the WeCom, DingTalk and
  Feishu robot servers (their documented bodies, keys, signatures and error replies: the
  vendors' servers are outside the project) and an SMS gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hub.notify.channels.webhook import verify
from hub.tls import ensure_tls_files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.sink.refuse:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = message_from_bytes(envelope.content)
        self.sink.messages.append({"to": list(envelope.rcpt_tos), "subject": msg["Subject"],
                                   "message_id": msg["Message-ID"], "tls": session.ssl is not None,
                                   "auth": session.authenticated,
                                   "delivery": msg["X-Cityops-Delivery"],
                                   "body": msg.get_payload(decode=True).decode()})
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, tmp: Path, user: str = "cityops", password: str = "s3cret-pass") -> None:
        files = ensure_tls_files(tmp / "smtp-tls", ["127.0.0.1", "localhost"])
        self.ca_file = files.ca_cert
        self.user, self.password = user, password
        self.messages: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.logins: list[str] = []
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.server_cert, files.server_key)
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, tls_context=context,
            require_starttls=True, auth_required=True, authenticator=self._auth)

    def _auth(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def dingtalk_expected(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def feishu_expected(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class HttpSink:
    """The HTTP peers. ``hold``: webhook requests wait on it before answering (a hub that
    stops meanwhile has sent but not recorded)."""

    webhook_secret: str = "whsec-test-0123456789"
    wecom_key: str = "wecom-key-1"
    dingtalk_token: str = "ding-token-1"
    dingtalk_secret: str = "SECding-0123"
    feishu_hook: str = "fs-hook-1"
    feishu_secret: str = "fs-secret-0123"
    sms_token: str = "sms-token-1"
    port: int = field(default_factory=free_port)
    webhooks: list[dict[str, Any]] = field(default_factory=list)  # every verified request
    robots: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    hold: Any = None  # an asyncio.Event the webhook handler waits on, when set
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def delivered_ids(self) -> list[str]:
        return [w["delivery_id"] for w in self.webhooks]

    def unique_ids(self) -> set[str]:
        """What a receiver that dedupes on X-Cityops-Delivery acts on."""
        return set(self.delivered_ids())

    async def start(self) -> HttpSink:
        app = web.Application()
        app.router.add_post("/hook", self._webhook)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{hook}", self._feishu)
        app.router.add_post("/sms/send", self._sms)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers.get("X-Cityops-Timestamp", "")
        sig = request.headers.get("X-Cityops-Signature", "")
        if not verify(self.webhook_secret, ts, body, sig, time.time()):
            self.refused.append("webhook signature")
            return web.json_response({"error": "bad signature"}, status=401)
        data = json.loads(body)
        if data["delivery_id"] != request.headers.get("X-Cityops-Delivery"):
            return web.json_response({"error": "delivery id mismatch"}, status=400)
        self.webhooks.append(data)
        if self.hold is not None:
            await self.hold.wait()
        return web.json_response({"ok": True})

    async def _wecom(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.wecom_key:
            self.refused.append("wecom key")
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        data = await request.json()
        if data.get("msgtype") != "text" or not data.get("text", {}).get("content"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if len(data["text"]["content"].encode()) > 2048:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        self.robots.append({"vendor": "wecom", "text": data["text"]["content"]})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _dingtalk(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != self.dingtalk_token:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        ts, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < 3600_000
        if not fresh or not hmac.compare_digest(sign, dingtalk_expected(self.dingtalk_secret, ts)):
            self.refused.append("dingtalk sign")
            return web.json_response({"errcode": 310000, "errmsg": "sign not match, more: "
                                      "[https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"})
        data = await request.json()
        if data.get("msgtype") != "text":
            return web.json_response({"errcode": 40035, "errmsg": "missing msgtype"})
        self.robots.append({"vendor": "dingtalk", "text": data["text"]["content"]})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _feishu(self, request: web.Request) -> web.Response:
        if request.match_info["hook"] != self.feishu_hook:
            return web.json_response({"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        data = await request.json()
        ts, sign = str(data.get("timestamp", "")), data.get("sign", "")
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 3600
        if not fresh or not hmac.compare_digest(sign, feishu_expected(self.feishu_secret, ts)):
            self.refused.append("feishu sign")
            return web.json_response({"code": 19021, "msg": "sign match fail or timestamp is not "
                                      "within one hour from current time"})
        if data.get("msg_type") != "text":
            return web.json_response({"code": 9499, "msg": "Bad Request"})
        self.robots.append({"vendor": "feishu", "text": data["content"]["text"]})
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _sms(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.sms_token}":
            return web.json_response({"code": 401, "message": "bad token"}, status=401)
        data = await request.json()
        if not str(data.get("to", "")).lstrip("+").isdigit():
            return web.json_response({"code": 1001, "message": "invalid number"})
        self.sms.append(data)
        return web.json_response({"code": 0, "message": "queued"})
