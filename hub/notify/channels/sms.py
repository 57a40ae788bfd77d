"""SMS through an HTTP gateway described by a template (``notify.sms`` in hub.yaml):
method, URL, headers and body with ``{phone}``, ``{text}``, ``{delivery_id}`` and
``{token}`` placeholders, and what success looks like (statuses, and optionally values
the JSON reply must hold). A reply outside those is final (the gateway refused: a bad
number, a bad token), except 408, 429, 5xx and network errors, which are retried.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp

from ..model import Message, PermanentError
from ..settings import SmsGateway, read_secret
from .base import post

__all__ = ["SmsChannel", "fill"]

_KEYS = ("phone", "text", "delivery_id", "token")


def fill(template: str, values: dict[str, str], escape: Any) -> str:
    """Replace each ``{key}`` of :data:`_KEYS` with ``escape(value)``; other braces stay
    (a JSON template keeps its own)."""
    out = template
    for key in _KEYS:
        out = out.replace("{" + key + "}", escape(values.get(key, "")))
    return out


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return KeyError
        data = data[part]
    return data


class SmsChannel:
    name = "sms"

    def __init__(self, gateway: SmsGateway, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.session = session
        self.token = read_secret(gateway.token_file, "SMS gateway token") or ""

    def request(self, message: Message, phone: str, delivery_id: str) -> tuple[str, dict[str, str], bytes | None]:
        g = self.gateway
        text = message.text if len(message.text) <= g.max_chars else message.text[: g.max_chars - 1] + "…"
        values = {"phone": phone, "text": text, "delivery_id": delivery_id, "token": self.token}
        url = fill(g.url, values, lambda v: quote(v, safe=""))
        headers = {k: fill(v, values, str) for k, v in g.headers.items()}
        body = None
        if g.body is not None:
            if "json" in g.content_type:
                escape: Any = _json_escape
            elif "x-www-form-urlencoded" in g.content_type:
                escape = quote_plus
            else:
                escape = str
            body = fill(g.body, values, escape).encode()
            headers.setdefault("Content-Type", g.content_type)
        return url, headers, body

    async def send(self, message: Message, target: str, *, delivery_id: str) -> None:
        g = self.gateway
        url, headers, body = self.request(message, target, delivery_id)
        reply = await post(self.session, g.method, url, data=body, headers=headers,
                           timeout_s=g.timeout_s, what="SMS gateway")
        if reply.status not in g.success_status:
            raise PermanentError(f"SMS gateway: HTTP {reply.status}: {reply.text[:300]}")
        if g.success_json:
            data = reply.json()
            for path, want in g.success_json.items():
                got = _dig(data, path)
                if got != want:
                    shown = "missing" if got is KeyError else repr(got)
                    raise PermanentError(f"SMS gateway: {path} is {shown}, not {want!r}: "
                                         f"{reply.text[:300]}")

    async def close(self) -> None:
        pass
