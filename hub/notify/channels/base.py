"""What every channel is, and the HTTP plumbing the HTTP channels share.

A channel is a small object with ``name`` and
``async send(message, target, *, delivery_id) -> None`` that returns when the peer has
accepted the message and raises :class:`~hub.notify.model.PermanentError` or
:class:`~hub.notify.model.TransientError` otherwise. ``target`` is the contact's address
(an email address, a phone number, or an endpoint name from ``notify:``); ``delivery_id``
is the idempotency key's wire form, sent where the channel has a place for it.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

from ..model import Message, PermanentError, TransientError

__all__ = ["Channel", "HttpReply", "post", "retry_after"]


class Channel(Protocol):
    name: str

    async def send(self, message: Message, target: str, *, delivery_id: str) -> None: ...

    async def close(self) -> None: ...


class HttpReply:
    def __init__(self, status: int, text: str, headers: Any) -> None:
        self.status = status
        self.text = text
        self.headers = headers

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


async def post(session: aiohttp.ClientSession, method: str, url: str, *, data: bytes | None,
               headers: dict[str, str], timeout_s: float, what: str) -> HttpReply:
    """One HTTP request. Network errors, timeouts, 408, 429 and 5xx raise TransientError;
    the reply (any other status) is returned for the channel to judge."""
    try:
        async with session.request(method, url, data=data, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout_s),
                                   allow_redirects=False) as resp:
            text = (await resp.content.read(64 * 1024)).decode("utf-8", "replace")
            reply = HttpReply(resp.status, text, resp.headers)
    except TimeoutError:
        raise TransientError(f"{what}: no answer within {timeout_s:g}s") from None
    except aiohttp.InvalidURL as exc:
        raise PermanentError(f"{what}: invalid URL ({exc})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
    if reply.status in (408, 429) or reply.status >= 500:
        raise TransientError(f"{what}: HTTP {reply.status}: {reply.text[:300]}",
                             retry_after(reply.headers.get("Retry-After")))
    return reply


def fail_on_status(reply: HttpReply, what: str) -> None:
    """Any status but 2xx here (after :func:`post`) is the peer refusing: permanent."""
    if not 200 <= reply.status < 300:
        raise PermanentError(f"{what}: HTTP {reply.status}: {reply.text[:300]}")
