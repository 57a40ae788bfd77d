"""The delivery task: claims due deliveries through the writer, sends each on its channel
(at most ``notify.concurrency`` at once), and records every outcome through the writer.

It works in rounds, each one command on the hub's one writer (which runs commands between
ingest batches): the round records every outcome that came in since the last one and
claims what is due — up to ``notify.batch`` rows held here, more than the free slots, so
a busy writer still lets a burst through a hundred at a time — in one transaction. A
claimed row is leased: ``sending`` in the store, one more attempt counted, sent as a slot
frees; a slot frees as soon as the peer answers (its outcome waits for the next round).

Guarantees (docs/hub.md, Notifications):

* nothing is lost: a delivery is a row written with the change that caused it; a row a
  stopped hub left ``sending`` goes back to ``queued`` when the hub starts again (a hub
  that stops in order first records the outcomes it holds and gives back the rows it
  claimed but had not started, their attempt uncounted);
* at-least-once to the channel: a hub that stops after the peer took a message but before
  the outcome was recorded sends it again; the delivery id (the same on every attempt) is
  in ``X-Cityops-Delivery`` / the Message-ID / ``{delivery_id}`` so receivers can dedupe.
  Group robots and most SMS gateways have no such field: there a crash in that window can
  show a message twice;
* a failed attempt is retried with exponential backoff and jitter, the schedule kept in
  the row (``next_attempt_at``), so it survives restarts; ``max_attempts`` failures or
  one permanent error make the row ``dead`` with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from protocol.clock import Clock

from ..store.repo import Repository
from .channels import Channel, build_channels
from .model import (
    Delivery,
    DeliveryError,
    DeliveryState,
    PermanentError,
    Settlement,
    TransientError,
    settle,
)
from .settings import NotifyConfig

__all__ = ["Notifier", "NotifierStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[Callable[[Repository], T]], Awaitable[T]]


@dataclass
class NotifierStats:
    """This run's counters, by channel (``/metrics``)."""

    attempts: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)  # attempts that failed (retried or not)
    dead: dict[str, int] = field(default_factory=dict)
    requeued_at_start: int = 0
    record_failures: int = 0  # outcomes the writer could not store (the row stays sending)

    def add(self, counter: dict[str, int], channel: str) -> None:
        counter[channel] = counter.get(channel, 0) + 1


class Notifier:
    def __init__(self, config: NotifyConfig, write: Write, clock: Clock, *,
                 channels: dict[str, Channel] | None = None) -> None:
        self.config = config
        self.write = write
        self.clock = clock
        self.policy = config.retry.policy()
        self.channels: dict[str, Channel] = channels or {}
        self._own_channels = channels is None
        self.stats = NotifierStats()
        # Called with (delivery, settlement) after each outcome is stored (demo sinks, tests).
        self.listeners: list[Callable[[Delivery, Settlement], None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._inflight: set[asyncio.Task] = set()
        self._ready: deque[Delivery] = deque()  # claimed (leased), not started yet
        self._outcomes: list[tuple[Delivery, Settlement, Any]] = []  # for the next round
        self._task: asyncio.Task | None = None
        self._closing = False

    # -- life ----------------------------------------------------------------------------------
    async def start(self) -> list[asyncio.Task]:
        """Open the channels, put rows a stopped hub left ``sending`` back in the queue,
        and start the loop (not when ``notify.enabled`` is false: rows wait)."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        if self._own_channels:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.concurrency))
            try:
                self.channels = build_channels(self.config, self._session)
            except BaseException:
                await self._session.close()
                raise
        now = self.clock.now()
        n = await self.write(lambda repo: repo.requeue_sending(now))
        self.stats.requeued_at_start = n
        if n:
            log.warning("notify: %d delivery(ies) were being sent when the hub stopped; sending "
                        "them again (receivers dedupe on the delivery id)", n)
        if not self.config.enabled:
            log.warning("notify.enabled is false: deliveries are queued, not sent")
            return []
        self._task = asyncio.create_task(self._run(), name="hub-notify")
        return [self._task]

    async def close(self) -> None:
        """Stop sending (what is in flight stays ``sending`` and is sent again at the next
        start), record the outcomes held here, give back the claimed rows not started, and
        close the channels."""
        self._closing = True  # a cancelled send's slot goes to no one
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        outcomes, self._outcomes = self._outcomes, []
        unstarted = [row.id for row in self._ready]
        self._ready.clear()
        if outcomes or unstarted:
            now = self.clock.now()

            def last(repo: Repository) -> None:
                _record(repo, outcomes)
                repo.release_deliveries(unstarted, now)

            try:
                await self.write(last)
            except Exception:
                # They stay "sending": the next start queues them again (at-least-once).
                self.stats.record_failures += len(outcomes)
                log.exception("notify: at stop, %d outcome(s) could not be stored and %d "
                              "claimed row(s) not given back; they are sent again at the "
                              "next start", len(outcomes), len(unstarted))
            else:
                self._recorded(outcomes)
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:
                log.exception("closing the %s channel failed", channel.name)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """Look at the outbox now (thread-safe: the writer calls it when it enqueues)."""
        loop, event = self._loop, self._wakeup
        if loop is None or event is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closing
            pass

    # -- the loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            failed = False
            try:
                claimed, next_due = await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notify: a pass over the outbox failed; trying again")
                claimed, next_due, failed = 0, None, True
            if not failed and (self._outcomes or (claimed and self._room() > 0)):
                continue  # outcomes to record, or more may be due right now
            wait = self.config.poll_s
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - self.clock.now()).total_seconds()))
            if len(self._inflight) >= self.config.concurrency:
                wait = self.config.poll_s  # a finishing delivery wakes us
            if failed:
                self._wakeup.clear()  # after a failure, wait: a finished send cannot hurry it
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(wait, 0.01))
            except TimeoutError:
                pass

    async def pass_once(self) -> tuple[int, Any]:
        """One round through the writer, in one transaction: record the outcomes that came
        in since the last round, and claim what is due (up to ``notify.batch`` rows held
        here, at least ``notify.concurrency``), then start sending. Returns (claimed, when
        the next queued row is due)."""
        outcomes, self._outcomes = self._outcomes, []
        want = self._room()
        if not outcomes and want <= 0:
            return 0, None
        now = self.clock.now()

        def round_(repo: Repository) -> tuple[list[Delivery], Any]:
            _record(repo, outcomes)
            rows = repo.claim_deliveries(now, want) if want > 0 else []
            return rows, repo.next_delivery_due()

        try:
            rows, next_due = await self.write(round_)
        except BaseException as exc:
            # Kept for the next round (recording twice is harmless: only a row still
            # "sending" takes an outcome); meanwhile the rows stay "sending".
            self._outcomes[:0] = outcomes
            if outcomes and not isinstance(exc, asyncio.CancelledError):
                self.stats.record_failures += len(outcomes)
                log.error("notify: %d outcome(s) could not be stored yet (%s); trying again",
                          len(outcomes), exc)
            raise
        self._recorded(outcomes)
        self._ready.extend(rows)
        self._start_sends()
        return len(rows), next_due

    def _room(self) -> int:
        """How many more rows a round may claim (leased rows held here: notify.batch, at
        least notify.concurrency)."""
        return (max(self.config.batch, self.config.concurrency) - len(self._ready)
                - len(self._inflight))

    def _start_sends(self) -> None:
        while self._ready and len(self._inflight) < self.config.concurrency and not self._closing:
            row = self._ready.popleft()
            task = asyncio.create_task(self._deliver(row), name=f"notify-{row.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._start_sends()  # the slot goes to a row already claimed
        if self._wakeup is not None:
            self._wakeup.set()  # and the outcome to the next round

    async def _attempt(self, row: Delivery) -> DeliveryError | None:
        channel = self.channels.get(row.channel)
        if channel is None:
            return PermanentError(f"channel {row.channel} is not set up under notify: in hub.yaml")
        try:
            await channel.send(row.message, row.target, delivery_id=row.wire_id)
        except DeliveryError as exc:
            return exc
        except KeyError:
            return PermanentError(f"no {row.channel} named {row.target!r} under notify: in hub.yaml")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a channel: retried, and in the log
            log.exception("notify: the %s channel failed unexpectedly on delivery %s",
                          row.channel, row.id)
            return TransientError(f"unexpected {type(exc).__name__}: {exc}")
        return None

    async def _deliver(self, row: Delivery) -> None:
        self.stats.add(self.stats.attempts, row.channel)
        error = await self._attempt(row)
        now = self.clock.now()
        self._outcomes.append((row, settle(row.attempts, error, self.policy, now), now))

    def _recorded(self, outcomes: list[tuple[Delivery, Settlement, Any]]) -> None:
        """After a round's commit: the counters, the log and the listeners."""
        for row, outcome, _ in outcomes:
            if outcome.state is DeliveryState.SENT:
                self.stats.add(self.stats.sent, row.channel)
            else:
                self.stats.add(self.stats.failed, row.channel)
                if outcome.state is DeliveryState.DEAD:
                    self.stats.add(self.stats.dead, row.channel)
                    log.error("notify: delivery %s (%s to %s, case %s) is dead: %s", row.id,
                              row.channel, row.target, row.case_id, outcome.last_error)
                else:
                    log.warning("notify: delivery %s (%s to %s) attempt %d failed, next at %s: "
                                "%s", row.id, row.channel, row.target, row.attempts,
                                outcome.next_attempt_at, outcome.last_error)
            for listener in self.listeners:
                try:
                    listener(row, outcome)
                except Exception:
                    log.exception("a notify listener failed")


def _record(repo: Repository, outcomes: list[tuple[Delivery, Settlement, Any]]) -> None:
    for row, outcome, at in outcomes:
        repo.settle_delivery(row.id, outcome.state.value, at, outcome.next_attempt_at,
                             outcome.last_error, outcome.sent_at)
