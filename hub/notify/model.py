"""The notification outbox's plain data and pure decisions: messages, delivery rows, the
idempotency key, the retry schedule and how an attempt's outcome settles a row.

Errors a channel raises (one tree, under :class:`hub.errors.HubError`)::

    DeliveryError          a send did not succeed (.detail says why, in the peer's words)
    ├── PermanentError     retrying cannot help: bad address, 4xx, the robot refused the
    │                      signature or the key; the delivery becomes ``dead`` at once
    └── TransientError     the peer was down, slow, rate-limiting or 5xx: retried with
                           backoff (``retry_after_s``: the peer's own Retry-After, if any)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import tenacity

from ..errors import HubError

__all__ = [
    "CHANNELS",
    "Delivery",
    "DeliveryError",
    "DeliveryState",
    "Message",
    "PENDING_STATES",
    "PermanentError",
    "Recipient",
    "RetryPolicy",
    "Settlement",
    "TransientError",
    "idempotency_key",
    "retry_delay",
    "settle",
    "wire_id",
    "fields_json",
]

# Every channel a contact may name (hub/notify/channels/).
CHANNELS = ("email", "webhook", "wecom", "dingtalk", "feishu", "sms")


class DeliveryState(StrEnum):
    QUEUED = "queued"  # waiting for its first attempt
    SENDING = "sending"  # claimed by the delivery task (back to queued if the hub died)
    SENT = "sent"  # the channel accepted it
    FAILED = "failed"  # an attempt failed; the next one is at next_attempt_at
    DEAD = "dead"  # given up: a permanent error, or max_attempts used (last_error says why)


PENDING_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.FAILED)


class DeliveryError(HubError):
    """A send that did not succeed; ``detail`` is the peer's answer or the network error."""

    permanent = False

    def __init__(self, detail: str) -> None:
        self.detail = detail[:1000]
        super().__init__(self.detail)


class PermanentError(DeliveryError):
    """Retrying cannot help (bad address, 4xx, signature or key refused): dead at once."""

    permanent = True


class TransientError(DeliveryError):
    """The peer was down, slow or busy: retried with backoff."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Message:
    """What a person is told: a subject line, the text, and structured fields (kind, case
    id, category, grid, deadline, link, ...) that webhooks and robots can use."""

    subject: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipient:
    """One contact: a channel and an address (email address, phone number, or the name of
    a webhook or group robot configured under ``notify:`` in hub.yaml)."""

    channel: str
    address: str


@dataclass
class Delivery:
    """One row of ``notification_deliveries``."""

    id: int
    notification_id: int | None
    plan_notice_id: int | None
    case_id: int | None
    kind: str
    channel: str
    target: str
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime
    subject: str
    text: str
    fields: dict[str, Any]

    @property
    def message(self) -> Message:
        return Message(self.subject, self.text, self.fields)

    @property
    def wire_id(self) -> str:
        return wire_id(self.idempotency_key)

    def view(self) -> dict[str, Any]:
        """The row as the case page and the API show it (no message body)."""
        return {"id": self.id, "notification_id": self.notification_id, "kind": self.kind,
                "channel": self.channel, "target": self.target, "state": self.state,
                "attempts": self.attempts, "last_error": self.last_error,
                "next_attempt_at": _iso(self.next_attempt_at), "sent_at": _iso(self.sent_at),
                "created_at": _iso(self.created_at), "delivery_id": self.wire_id}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def idempotency_key(event_key: str, channel: str, address: str) -> str:
    """The row's unique key: one event, one channel, one contact. ``event_key`` names the
    event, e.g. ``case-12/dispatched/n345`` (the notification row) or
    ``plan-rainstorm/activation-3``: stable, so enqueuing it again adds nothing."""
    return f"{event_key}|{channel}|{address}"


def wire_id(key: str) -> str:
    """What receivers see of the key (``X-Cityops-Delivery``, the email Message-ID): its
    SHA-256, 32 hex digits, so an address inside the key is not repeated to others."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_s: float = 30.0
    max_s: float = 3600.0
    jitter_s: float = 30.0  # up to this much random delay is added to each wait


def retry_delay(attempts: int, policy: RetryPolicy) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: exponential from
    ``initial_s`` (× 2 per attempt) plus up to ``jitter_s`` of jitter, at most ``max_s``
    (tenacity's ``wait_exponential_jitter``)."""
    wait = tenacity.wait_exponential_jitter(multiplier=policy.initial_s, max=policy.max_s,
                                            jitter=policy.jitter_s)
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    return float(wait(state))


@dataclass(frozen=True)
class Settlement:
    state: DeliveryState
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


def settle(attempts: int, error: DeliveryError | None, policy: RetryPolicy, now: datetime,
           delay_s: float | None = None) -> Settlement:
    """Where a row goes after its ``attempts``-th attempt ended with ``error`` (None: sent).
    ``delay_s``: the wait before the next attempt (default :func:`retry_delay`; a
    peer's Retry-After wins when longer)."""
    if error is None:
        return Settlement(DeliveryState.SENT, None, None, now)
    reason = f"{type(error).__name__}: {error.detail}"
    if error.permanent:
        return Settlement(DeliveryState.DEAD, None, reason, None)
    if attempts >= policy.max_attempts:
        return Settlement(DeliveryState.DEAD, None,
                          f"gave up after {attempts} attempts; last: {reason}", None)
    wait = retry_delay(attempts, policy) if delay_s is None else delay_s
    after = getattr(error, "retry_after_s", None)
    if after is not None:
        wait = max(wait, min(after, policy.max_s))
    return Settlement(DeliveryState.FAILED, now + timedelta(seconds=wait), reason, None)


def fields_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), default=str)
