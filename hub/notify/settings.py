"""``notify:`` in hub.yaml: the delivery task's pace and retries, and the channels'
settings. Secrets (SMTP password, webhook and robot secrets, robot URLs that carry a key,
the SMS gateway's token) are read from files named here, never written inline::

    notify:
      retry: {max_attempts: 8, initial_s: 30, max_s: 3600, jitter_s: 30}
      email:
        host: smtp.example.org
        port: 587
        security: starttls          # starttls | tls | none
        username: cityops
        password_file: secrets/smtp.password
        sender: "CityOps <cityops@example.org>"
      webhooks:
        drainage-system: {url: "https://drainage.example.org/hooks/cityops",
                          secret_file: secrets/drainage-webhook.key}
      wecom:
        drainage-group: {url_file: secrets/wecom-drainage.url}
      dingtalk:
        emergency-group: {url_file: secrets/dingtalk-emergency.url,
                          secret_file: secrets/dingtalk-emergency.secret}
      feishu:
        town-leads: {url_file: secrets/feishu-leads.url, secret_file: secrets/feishu-leads.secret}
      sms:
        url: "https://sms.example.org/api/send"
        headers: {Authorization: "Bearer {token}"}
        token_file: secrets/sms.token
        body: '{"to": "{phone}", "text": "{text}", "ref": "{delivery_id}"}'
        success_status: [200]
        success_json: {code: 0}

Contacts (who gets what) live in the routing table (hub/routing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.ids import Id

from ..errors import HubError
from .model import RetryPolicy

__all__ = ["EmailSettings", "NotifyConfig", "RetrySettings", "RobotEndpoint", "SmsGateway",
           "WebhookEndpoint", "read_secret"]

_URL = r"^https?://[^\s]+$"


class RetrySettings(StrictModel):
    max_attempts: int = Field(8, ge=1, le=100, description="attempts before a delivery is dead")
    initial_s: float = Field(30, gt=0, le=86400, description="wait after the first failure; doubles each time")
    max_s: float = Field(3600, gt=0, le=7 * 86400, description="longest wait between attempts")
    jitter_s: float = Field(30, ge=0, le=86400, description="up to this much is added to each wait at random")

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.initial_s, self.max_s, self.jitter_s)


class EmailSettings(StrictModel):
    host: str = Field(min_length=1, description="SMTP server")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade after connecting (port 587); tls: TLS from "
                                "the start (465); none: plain (a relay on the same host only)")
    username: str | None = Field(None, description="AUTH user; none: no AUTH")
    password_file: Path | None = Field(None, description="file holding the AUTH password")
    sender: str = Field(min_length=3, max_length=320, description="From: header")
    ca_file: Path | None = Field(None, description="CA for the server's certificate; none: the system's")
    timeout_s: float = Field(20, gt=0, le=300)

    @model_validator(mode="after")
    def _auth_needs_password(self) -> EmailSettings:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("set both username and password_file for SMTP AUTH (or neither)")
        if self.username is not None and self.security == "none":
            raise ValueError("SMTP AUTH over a plain connection sends the password in the "
                             "clear; use security: starttls or tls")
        return self


class WebhookEndpoint(StrictModel):
    url: str = Field(pattern=_URL, max_length=2000)
    secret_file: Path = Field(description="the HMAC key shared with the receiver")
    timeout_s: float = Field(10, gt=0, le=120)


class RobotEndpoint(StrictModel):
    """A WeCom, DingTalk or Feishu group robot. Its webhook URL carries the robot's key
    (or access_token), so it comes from a file (``url_file``); ``url`` inline is for a
    local stand-in only."""

    url: str | None = Field(None, pattern=_URL, max_length=2000)
    url_file: Path | None = None
    secret_file: Path | None = Field(None, description="signing secret (DingTalk 加签, Feishu 签名校验)")
    timeout_s: float = Field(10, gt=0, le=120)

    @model_validator(mode="after")
    def _one_url(self) -> RobotEndpoint:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give the robot's webhook URL as url_file (it holds the key) or url")
        return self


class SmsGateway(StrictModel):
    """An HTTP SMS gateway. ``{phone}``, ``{text}``, ``{delivery_id}`` and ``{token}`` in
    ``url``, ``headers`` and ``body`` are replaced (URL-encoded in the URL, JSON-escaped in
    a JSON body, form-encoded in a form body)."""

    method: Literal["POST", "PUT", "GET"] = "POST"
    url: str = Field(pattern=_URL, max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    token_file: Path | None = Field(None, description="file whose text replaces {token}")
    body: str | None = Field(None, max_length=10_000, description="body template; none: no body")
    content_type: str = "application/json"
    success_status: list[int] = Field(default_factory=lambda: [200, 201, 202], min_length=1)
    success_json: dict[str, Any] | None = Field(
        None, description="keys (dotted for nested) the JSON reply must hold with these values")
    max_chars: int = Field(500, ge=10, le=5000, description="longer texts are cut")
    timeout_s: float = Field(10, gt=0, le=120)


class NotifyConfig(StrictModel):
    enabled: bool = Field(True, description="false: deliveries are queued but not sent")
    retry: RetrySettings = Field(default_factory=RetrySettings)
    concurrency: int = Field(16, ge=1, le=256, description="deliveries in flight at once")
    batch: int = Field(100, ge=1, le=5000, description="deliveries the delivery task may "
                       "hold claimed (at least concurrency), claimed a round at a time")
    poll_s: float = Field(5, gt=0, le=600, description="longest sleep between looks at the outbox")
    email: EmailSettings | None = None
    webhooks: dict[Id, WebhookEndpoint] = Field(default_factory=dict)
    wecom: dict[Id, RobotEndpoint] = Field(default_factory=dict)
    dingtalk: dict[Id, RobotEndpoint] = Field(default_factory=dict)
    feishu: dict[Id, RobotEndpoint] = Field(default_factory=dict)
    sms: SmsGateway | None = None

    def endpoints(self) -> dict[str, set[str] | None]:
        """Channel → endpoint names contacts may name (None: any address)."""
        out: dict[str, set[str] | None] = {}
        if self.email is not None:
            out["email"] = None
        if self.sms is not None:
            out["sms"] = None
        for channel in ("webhooks", "wecom", "dingtalk", "feishu"):
            named = getattr(self, channel)
            if named:
                out["webhook" if channel == "webhooks" else channel] = set(named)
        return out

    def resolve_paths(self, fix: Callable[[Path | None], Path | None]) -> None:
        if self.email is not None:
            self.email.password_file = fix(self.email.password_file)
            self.email.ca_file = fix(self.email.ca_file)
        if self.sms is not None:
            self.sms.token_file = fix(self.sms.token_file)
        for ep in self.webhooks.values():
            ep.secret_file = fix(ep.secret_file)  # type: ignore[assignment]
        for group in (self.wecom, self.dingtalk, self.feishu):
            for robot in group.values():
                robot.url_file, robot.secret_file = fix(robot.url_file), fix(robot.secret_file)


def read_secret(path: Path | None, what: str) -> str | None:
    """The text of a secret file, stripped; a clear error when it cannot be read."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HubError(f"notify: cannot read {what} from {path}: {exc.strerror or exc}; "
                       "create the file (mode 0600) or fix the path in hub.yaml") from None
    if not text:
        raise HubError(f"notify: {what} file {path} is empty")
    return text
