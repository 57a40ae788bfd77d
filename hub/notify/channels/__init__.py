"""The channels (:class:`.base.Channel`), built from ``notify:`` in hub.yaml."""

from __future__ import annotations

import aiohttp

from ..settings import NotifyConfig
from .base import Channel
from .email import EmailChannel
from .robots import RobotChannel
from .sms import SmsChannel
from .webhook import WebhookChannel

__all__ = ["Channel", "EmailChannel", "RobotChannel", "SmsChannel", "WebhookChannel",
           "build_channels"]


def build_channels(config: NotifyConfig, session: aiohttp.ClientSession) -> dict[str, Channel]:
    """One channel per configured section (reads the secret files: a missing one is a
    HubError naming it)."""
    out: dict[str, Channel] = {}
    if config.email is not None:
        out["email"] = EmailChannel(config.email)
    if config.webhooks:
        out["webhook"] = WebhookChannel(config.webhooks, session)
    for kind in ("wecom", "dingtalk", "feishu"):
        if getattr(config, kind):
            out[kind] = RobotChannel(kind, getattr(config, kind), session)
    if config.sms is not None:
        out["sms"] = SmsChannel(config.sms, session)
    return out
