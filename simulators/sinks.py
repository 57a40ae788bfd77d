"""Local stand-ins for everyone the hub tells: the receivers of its notifications, on
loopback, so a run shows what people were actually sent instead of taking the hub's word.

Serves the hub's notification channels (hub/notify/channels/); ``cityops-sim demo``
starts one of each (:class:`Sinks`) and points the hub's ``notify:`` section at them:

* :class:`MailSink` — an SMTP submission server (aiosmtpd) that requires STARTTLS (its
  certificate from a private CA made with hub/tls.py; the hub is given that CA as
  ``notify.email.ca_file``) and AUTH before it takes a message;
* :class:`WebSink` — one aiohttp server answering as a signed-webhook receiver (it checks
  the HMAC and the replay window as docs/hub.md tells a receiver to, and dedupes on the
  delivery id), the WeCom, DingTalk and Feishu group robots (their documented request
  bodies, keys, signatures and replies; a robot's key is its name here) and an HTTP SMS
  gateway.

A channel can be made to refuse everything (``failing``): the mail server answers ``550``
to every recipient, a robot answers a non-zero error code, the SMS gateway rejects the
number and the webhook receiver answers ``410 Gone``. The hub must then end with dead
deliveries whose reasons are the sink's words.

Every message taken is a :class:`Received` (channel, to whom, its first line, its text);
every refusal a :class:`Refused`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.notify.channels.webhook import verify
from hub.tls import ensure_tls_files

from .errors import SimulatorError

try:  # the SMTP server is aiosmtpd (the dev extra, which ./dev demo installs)
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:  # pragma: no cover - reported when a run needs it
    Controller = None  # type: ignore[assignment,misc]

__all__ = ["CHANNELS", "MailSink", "Received", "Refused", "Sinks", "WebSink"]

# The channels a sink stands in for (hub/notify/model.py CHANNELS).
CHANNELS = ("email", "webhook", "wecom", "dingtalk", "feishu", "sms")
ROBOTS = ("wecom", "dingtalk", "feishu")


@dataclass(frozen=True)
class Received:
    channel: str
    to: str  # email address, phone number, or the robot's or webhook's name
    subject: str  # the subject (email, webhook) or the text's first line
    text: str
    at: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        return {"channel": self.channel, "to": self.to, "subject": self.subject}


@dataclass(frozen=True)
class Refused:
    channel: str
    to: str
    answer: str  # what the sink answered, as the hub will quote it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _email_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


class _MailHandler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        if self.sink.failing:
            answer = f"550 5.1.1 <{address}>: no such mailbox here"
            self.sink.refused.append(Refused("email", address, answer))
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        msg = message_from_bytes(envelope.content, policy=policy.default)
        delivery = str(msg.get("X-Cityops-Delivery", ""))
        with self.sink.lock:
            fresh = not delivery or delivery not in self.sink.seen
            self.sink.seen.add(delivery)
            if fresh:  # a receiver that dedupes on the delivery id acts once
                for to in envelope.rcpt_tos:
                    self.sink.received.append(Received("email", to, str(msg.get("Subject", "")),
                                                       _email_text(msg)))
        return "250 Message accepted"


class MailSink:
    """An SMTP server on a free loopback port: STARTTLS and AUTH required."""

    def __init__(self, work: Path, *, failing: bool = False) -> None:
        if Controller is None:
            raise SimulatorError("the demo's SMTP sink needs aiosmtpd: install the dev extra "
                                 "(./dev setup, or pip install -e '.[dev]')")
        # aiosmtpd's own AUTH code sets a deprecated session field and logs a warning for it
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        files = ensure_tls_files(work / "smtp-tls", ["127.0.0.1", "localhost"])
        self.ca_file = files.ca_cert
        self.user, self.password = "cityops", secrets.token_urlsafe(12)
        self.failing = failing
        self.received: list[Received] = []
        self.refused: list[Refused] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()  # the server runs in its own thread
        self.port = _free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.server_cert, files.server_key)
        self.controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port,
                                     tls_context=context, require_starttls=True,
                                     auth_required=True, authenticator=self._auth)

    def _auth(self, server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and hmac.compare_digest(auth_data.password.decode(), self.password))
        return AuthResult(success=ok)

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.controller.stop()


def _dingtalk_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _feishu_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class WebSink:
    """The HTTP receivers: ``/hook/{name}`` (signed webhooks), ``/cgi-bin/webhook/send``
    (WeCom), ``/robot/send`` (DingTalk), ``/open-apis/bot/v2/hook/{key}`` (Feishu) and
    ``/sms/send`` (the SMS gateway). Endpoint names must be registered (:meth:`add`);
    their keys and secrets are made here."""

    def __init__(self, *, failing: str | None = None) -> None:
        self.failing = failing
        self.port = _free_port()
        self.secrets: dict[tuple[str, str], str] = {}  # (channel, name) → signing secret
        self.sms_token = secrets.token_urlsafe(12)
        self.received: list[Received] = []
        self.refused: list[Refused] = []
        self.seen: set[str] = set()
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, channel: str, name: str) -> None:
        """Register a webhook or robot endpoint (its signing secret is made now)."""
        self.secrets[(channel, name)] = secrets.token_urlsafe(16)

    def url(self, channel: str, name: str) -> str:
        return {"webhook": f"{self.base}/hook/{name}",
                "wecom": f"{self.base}/cgi-bin/webhook/send?key={name}",
                "dingtalk": f"{self.base}/robot/send?access_token={name}",
                "feishu": f"{self.base}/open-apis/bot/v2/hook/{name}"}[channel]

    async def start(self) -> WebSink:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._webhook)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{key}", self._feishu)
        app.router.add_post("/sms/send", self._sms)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refuse(self, channel: str, to: str, answer: dict[str, Any], status: int = 200) -> web.Response:
        self.refused.append(Refused(channel, to, json.dumps(answer, ensure_ascii=False)))
        return web.json_response(answer, status=status)

    def _take(self, channel: str, to: str, text: str, subject: str | None = None) -> None:
        self.received.append(Received(channel, to, subject if subject is not None else _first_line(text), text))

    async def _webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        secret = self.secrets.get(("webhook", name))
        if secret is None:
            return self._refuse("webhook", name, {"error": f"no receiver named {name}"}, 404)
        if not verify(secret, request.headers.get("X-Cityops-Timestamp", ""), body,
                      request.headers.get("X-Cityops-Signature", ""), time.time()):
            return self._refuse("webhook", name, {"error": "bad signature or stale timestamp"}, 401)
        if self.failing == "webhook":
            return self._refuse("webhook", name, {"error": "this receiver is gone"}, 410)
        data = json.loads(body)
        delivery = request.headers.get("X-Cityops-Delivery", "")
        if delivery not in self.seen:  # act once per delivery id
            self.seen.add(delivery)
            self._take("webhook", name, str(data.get("text", "")), str(data.get("subject", "")))
        return web.json_response({"ok": True})

    async def _wecom(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        if ("wecom", key) not in self.secrets or self.failing == "wecom":
            return self._refuse("wecom", key, {"errcode": 93000, "errmsg": "invalid webhook url"})
        data = await request.json()
        content = (data.get("text") or {}).get("content") if data.get("msgtype") == "text" else None
        if not content:
            return self._refuse("wecom", key, {"errcode": 40008, "errmsg": "invalid message type"})
        if len(content.encode()) > 2048:
            return self._refuse("wecom", key, {"errcode": 40058, "errmsg": "content exceed max length"})
        self._take("wecom", key, content)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _dingtalk(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        secret = self.secrets.get(("dingtalk", token))
        if secret is None or self.failing == "dingtalk":
            return self._refuse("dingtalk", token, {"errcode": 300001, "errmsg": "token is not exist"})
        ts, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < 3600_000
        if not fresh or not hmac.compare_digest(sign, _dingtalk_sign(secret, ts)):
            return self._refuse("dingtalk", token, {"errcode": 310000, "errmsg": "sign not match"})
        data = await request.json()
        if data.get("msgtype") != "text":
            return self._refuse("dingtalk", token, {"errcode": 40035, "errmsg": "missing msgtype"})
        self._take("dingtalk", token, data["text"]["content"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _feishu(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        secret = self.secrets.get(("feishu", key))
        if secret is None or self.failing == "feishu":
            return self._refuse("feishu", key, {"code": 19001, "msg": "param invalid: incoming "
                                                "webhook access token invalid"})
        data = await request.json()
        ts, sign = str(data.get("timestamp", "")), str(data.get("sign", ""))
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 3600
        if not fresh or not hmac.compare_digest(sign, _feishu_sign(secret, ts)):
            return self._refuse("feishu", key, {"code": 19021, "msg": "sign match fail or timestamp "
                                                "is not within one hour from current time"})
        if data.get("msg_type") != "text":
            return self._refuse("feishu", key, {"code": 9499, "msg": "Bad Request"})
        self._take("feishu", key, data["content"]["text"])
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _sms(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.sms_token}":
            return web.json_response({"code": 401, "message": "bad token"}, status=401)
        data = await request.json()
        to = str(data.get("to", ""))
        if self.failing == "sms" or not to.lstrip("+").isdigit():
            return self._refuse("sms", to, {"code": 1001, "message": "invalid number"})
        ref = str(data.get("ref", ""))
        if not ref or ref not in self.seen:
            self.seen.add(ref)
            self._take("sms", to, str(data.get("text", "")))
        return web.json_response({"code": 0, "message": "queued"})


def _write_secret(folder: Path, name: str, text: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return str(path)


class Sinks:
    """The mail and HTTP sinks together. ``failing``: a channel (:data:`CHANNELS`) whose
    sink refuses everything."""

    def __init__(self, work: Path, *, failing: str | None = None) -> None:
        if failing is not None and failing not in CHANNELS:
            raise SimulatorError(f"unknown channel {failing!r} to fail; choose from {', '.join(CHANNELS)}")
        self.work = work
        self.failing = failing
        self.mail = MailSink(work, failing=failing == "email")
        self.web = WebSink(failing=failing if failing != "email" else None)

    async def start(self) -> Sinks:
        await self.web.start()
        try:
            await asyncio.to_thread(self.mail.start)
        except BaseException:
            await self.web.stop()
            raise
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self.mail.stop)
        await self.web.stop()

    def notify_config(self, endpoints: dict[str, set[str]]) -> dict[str, Any]:
        """hub.yaml's ``notify:`` for these sinks; ``endpoints``: channel → the webhook
        and robot names the run's contacts use (each registered with the web sink).
        Secrets go to files (mode 0600) under the work directory, as in production."""
        folder = self.work / "secrets"
        cfg: dict[str, Any] = {
            # retries on the simulated clock: seconds apart at any time scale
            "retry": {"max_attempts": 4, "initial_s": 30, "max_s": 600, "jitter_s": 0},
            "poll_s": 0.25,
            "email": {"host": "127.0.0.1", "port": self.mail.port, "security": "starttls",
                      "username": self.mail.user,
                      "password_file": _write_secret(folder, "smtp.password", self.mail.password),
                      "sender": "CityOps demo <cityops@example.org>", "ca_file": str(self.mail.ca_file),
                      "timeout_s": 10},
            "sms": {"url": f"{self.web.base}/sms/send", "headers": {"Authorization": "Bearer {token}"},
                    "token_file": _write_secret(folder, "sms.token", self.web.sms_token),
                    "body": '{"to": "{phone}", "text": "{text}", "ref": "{delivery_id}"}',
                    "success_json": {"code": 0}},
        }
        for channel in ("webhook", *ROBOTS):
            names = sorted(endpoints.get(channel, ()))
            if not names:
                continue
            section = cfg.setdefault("webhooks" if channel == "webhook" else channel, {})
            for name in names:
                self.web.add(channel, name)
                secret = self.web.secrets[(channel, name)]
                url = self.web.url(channel, name)
                if channel == "webhook":
                    section[name] = {"url": url, "secret_file": _write_secret(folder, f"webhook-{name}", secret)}
                elif channel == "wecom":  # a WeCom robot signs nothing: its key is in the URL
                    section[name] = {"url_file": _write_secret(folder, f"wecom-{name}.url", url)}
                else:
                    section[name] = {"url_file": _write_secret(folder, f"{channel}-{name}.url", url),
                                     "secret_file": _write_secret(folder, f"{channel}-{name}.secret", secret)}
        return cfg

    def received(self) -> list[Received]:
        with self.mail.lock:
            mail = list(self.mail.received)
        return sorted([*mail, *self.web.received], key=lambda r: r.at)

    def refused(self) -> list[Refused]:
        return [*self.mail.refused, *self.web.refused]

    def report(self) -> dict[str, Any]:
        """What the receivers got and refused, for the scorecard (``--json``)."""
        got = self.received()
        counts: dict[str, int] = {}
        for r in got:
            counts[r.channel] = counts.get(r.channel, 0) + 1
        return {"received": len(got), "by_channel": dict(sorted(counts.items())),
                "failing_channel": self.failing,
                "messages": [r.view() for r in got],
                "refused": [asdict(r) for r in self.refused()]}
