"""The one writer: a thread that owns the database's write connection.

Two kinds of work reach it:

* raw MQTT messages (``submit``), drained in batches of up to ``batch_max``: decoded,
  applied in one ``BEGIN IMMEDIATE`` transaction, committed, and only then acknowledged
  to the agents (one ack per agent per batch);
* commands (``call``/``run``): any function of the repository, run in its own
  transaction — operator actions, the SLA tick, enrollment, retention.

A batch that fails (a bug, never bad input: bad input is refused item by item) is rolled
back and retried one message per transaction, so one poison message becomes a dead
letter instead of blocking everything behind it; a dead letter that cannot be written is
counted (``dead_letter_failures``) and logged, never raised.

The thread is supervised: should its loop fail anyway (a bug), it is restarted in place,
counted (``writer_restarts``), logged and shown in /healthz and /metrics. The queue is
kept and the messages the failed pass held go first, one at a time; one that makes the
loop fail again becomes a dead letter.

A store that cannot write at all (disk full, I/O error) is not the message's fault: the
batch is rolled back, kept at the head of the queue and retried with backoff. Nothing is
acknowledged or dead-lettered meanwhile (agents keep their outbox rows and resend), and
``storage_error`` says why in the hub's health until a commit succeeds again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from protocol.codec import encode
from protocol.errors import Refusal
from protocol.messages import Ack
from protocol.topics import Channel, agent_topic

from .engine.intake import BatchResult, Ingestor, IngestStats, store_unavailable
from .ingest.decode import Item, classify, events_in, refused, safe_text
from .store.repo import Repository

__all__ = ["Writer"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Raw = tuple[str, bytes]
_TRICKLE = 100  # below this many waiting events the writer waits batch_wait_s for more
Entry = Raw | Item  # a raw MQTT message, or one a receiver process already decoded


class Writer:
    def __init__(
        self,
        repo: Repository,
        ingestor: Ingestor,
        publish: Callable[[str, bytes, int], bool],
        *,
        batch_max: int = 2000,
        batch_wait_s: float = 0.01,
        max_buffered: int = 100_000,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.repo = repo
        self.ingestor = ingestor
        self.publish = publish
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.max_buffered = max_buffered
        self.on_batch = on_batch
        self.stats = IngestStats()
        self._inbox: deque[Entry] = deque()
        self._weight = 0  # events waiting in the inbox
        self._commands: deque[tuple[Callable[[Repository], Any], concurrent.futures.Future, bool]] = deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._space = threading.Condition(lock)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hub-writer", daemon=True)
        self.last_commit_monotonic = 0.0
        self.first_submit_monotonic: float | None = None  # benchmarks time the drain from here
        self.storage_error: str | None = None  # set while the store cannot write (disk full)
        self.storage_failures = 0  # batches held back because the store could not write
        self.last_failure: str | None = None  # the last unexpected failure the loop restarted on
        self.last_failure_monotonic: float | None = None
        self._in_hand: deque[Entry] = deque()  # taken from the inbox, not finished yet
        self._commands_in_hand: deque = deque()
        self._careful = 0  # messages to take one at a time after a restart
        self._ingesting = False

    # -- feeding --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, messages: list[Entry]) -> None:
        """Queue messages. Blocks while ``max_buffered`` are waiting (backpressure)."""
        if self.first_submit_monotonic is None and messages:
            self.first_submit_monotonic = time.monotonic()
        weight = sum(events_in(m) for m in messages)
        with self._cond:
            while self._weight >= self.max_buffered and not self._stop:
                self._space.wait(0.5)
            self._inbox.extend(messages)
            self._weight += weight
            self.stats.received += len(messages)
            self._cond.notify_all()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> dict[str, Any]:
        """The writer's part of /healthz: alive, restarts of its loop and the last failure."""
        ago = (None if self.last_failure_monotonic is None
               else round(time.monotonic() - self.last_failure_monotonic, 1))
        return {"alive": self.alive(), "restarts": self.stats.writer_restarts,
                "last_failure": self.last_failure, "last_failure_s_ago": ago}

    def backlog(self) -> int:
        """Events waiting for the writer (a decoded batch counts each of its events)."""
        return self._weight

    def call(self, fn: Callable[[Repository], T], *,
             moves_events: bool = False) -> concurrent.futures.Future[T]:
        """Run ``fn(repo)`` in its own transaction on the writer. ``moves_events``: it
        re-links lifecycles to other cases (a merge), so ingest caches are dropped after."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._stop:
                future.set_exception(RuntimeError("the hub writer is stopped"))
                return future
            self._commands.append((fn, future, moves_events))
            self._cond.notify_all()
        return future

    async def run(self, fn: Callable[[Repository], T], *, moves_events: bool = False) -> T:
        return await asyncio.wrap_future(self.call(fn, moves_events=moves_events))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        """The writer thread: the loop, restarted in place whenever it fails unexpectedly
        (a bug: bad input is refused message by message and never gets here). The queue is
        kept, and what the failed pass held goes back first in line, one message at a time,
        so one message that keeps failing is dead-lettered instead of failing again."""
        while True:
            try:
                self._loop()
                return
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any bug
                self._recover(exc)

    def _recover(self, exc: Exception) -> None:
        self.stats.writer_restarts += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"[:500]
        self.last_failure_monotonic = time.monotonic()
        log.error("the hub writer failed (%s); restarting it (restart %d, queue kept, %d "
                  "message(s) in hand go first, one at a time)", self.last_failure,
                  self.stats.writer_restarts, len(self._in_hand), exc_info=exc)
        try:
            self.ingestor.forget()
        except Exception:  # noqa: BLE001
            log.exception("dropping the ingest caches failed too")
        in_hand, self._in_hand = list(self._in_hand), deque()
        ingesting, self._ingesting = self._ingesting, False
        if self._careful and ingesting and in_hand:
            # It failed again on the first message it held alone: that message is the cause.
            culprit, in_hand = in_hand[0], in_hand[1:]
            self._last_resort(culprit, exc)
        commands, self._commands_in_hand = list(self._commands_in_hand), deque()
        with self._cond:
            self._inbox.extendleft(reversed(in_hand))
            self._weight += sum(events_in(e) for e in in_hand)
            self._commands.extendleft(reversed(commands))
            self._careful = len(in_hand)
            if not self._stop:
                self._cond.wait(min(1.0, 0.01 * self.stats.writer_restarts))

    def _last_resort(self, entry: Entry, exc: Exception) -> None:
        """Dead-letter a message the writer keeps failing on. Never raises."""
        try:
            item = classify(*entry) if type(entry) is tuple else entry  # type: ignore[misc]
            topic, payload = _describe(entry, item)
            poison = refused(topic, payload, Refusal.INVALID.value,
                             f"the hub's writer failed on this message: {exc!r}"[:500])
            self._finish(self._apply([poison]))
        except Exception:  # noqa: BLE001
            self.stats.dead_letter_failures += 1
            log.exception("a message the writer failed on could not be dead-lettered either; "
                          "it is in this log only: %r", _sketch(entry))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._inbox and not self._commands and not self._stop:
                    self._cond.wait()
                if self._stop and not self._inbox and not self._commands:
                    return
                if self._stop and self.storage_error is not None and not self._commands:
                    log.error("stopping with %d message(s) unstored (%s); agents resend them",
                              len(self._inbox), self.storage_error)
                    return
                self._commands_in_hand = deque(self._commands)
                self._commands.clear()
                if self._inbox and self._weight < _TRICKLE and self.batch_wait_s > 0 \
                        and not self._commands_in_hand and not self._stop and not self._careful:
                    self._cond.wait(self.batch_wait_s)  # a trickle: let a batch fill a little
                raw = []
                taken = 0
                limit = 1 if self._careful else self.batch_max
                while self._inbox and taken < limit:
                    entry = self._inbox.popleft()
                    raw.append(entry)
                    taken += events_in(entry)
                self._weight -= taken
                self._space.notify_all()
                self._in_hand = deque(raw)
            while self._commands_in_hand:
                fn, future, moves_events = self._commands_in_hand[0]
                self._command(fn, future)
                self._commands_in_hand.popleft()
                if moves_events:
                    self.ingestor.forget()
            if raw:
                self._ingesting = True
                self._ingest(raw)
                self._ingesting = False
                if self._careful:
                    self._careful -= 1
            self._in_hand.clear()

    def _command(self, fn: Callable[[Repository], Any], future: concurrent.futures.Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with self.repo.transaction():
                value = fn(self.repo)
        except BaseException as exc:  # handed to the caller, who decides
            future.set_exception(exc)
        else:
            future.set_result(value)

    def _ingest(self, raw: list[Entry]) -> None:
        """Store ``raw`` in one transaction; when that fails, one message a transaction,
        each that still fails a dead letter with the error. ``_in_hand`` keeps what is not
        finished yet (the supervisor puts it back if this fails unexpectedly)."""
        items: list[Item] = [classify(*e) if type(e) is tuple else e for e in raw]  # type: ignore[misc]
        try:
            result = self._apply(items)
        except Exception as exc:
            if store_unavailable(exc):
                self._in_hand.clear()
                self._hold(raw, exc)
                return
            self.stats.batch_failures += 1
            if len(items) > 1:
                log.exception("batch of %d failed; retrying one message at a time", len(items))
            self.ingestor.forget()
            for i, (entry, item) in enumerate(zip(raw, items, strict=True)):
                if len(items) > 1:
                    try:
                        self._finish(self._apply([item]))
                    except Exception as one:
                        if store_unavailable(one):
                            self._in_hand.clear()
                            self._hold(raw[i:], one)
                            return
                        if not self._poison(entry, item, one, raw[i:]):
                            return
                elif not self._poison(entry, item, exc, raw[i:]):
                    return
                self._in_hand.popleft()
            return
        self._finish(result)

    def _poison(self, entry: Entry, item: Item, exc: Exception, rest: list[Entry]) -> bool:
        """Dead-letter a message that failed alone. False when the store cannot write (the
        rest is held); a dead letter that fails for any other reason is counted and logged."""
        self.ingestor.forget()
        topic, payload = _describe(entry, item)
        log.error("message on %s could not be stored (%r); it becomes a dead letter", topic, exc,
                  exc_info=exc)
        poison = refused(topic, payload, Refusal.INVALID.value,
                         f"the hub failed on this message: {exc!r}"[:500])
        try:
            self._finish(self._apply([poison]))
        except Exception as again:
            if store_unavailable(again):
                self._in_hand.clear()
                self._hold(rest, again)
                return False
            self.ingestor.forget()
            self.stats.dead_letter_failures += 1
            log.exception("the dead letter of a message on %s could not be stored either; it is "
                          "in this log only: %r", topic, _sketch(entry))
        return True

    def _hold(self, entries: list[Entry], exc: Exception) -> None:
        """The store cannot write: keep ``entries`` first in line, ack nothing, back off."""
        self.ingestor.forget()
        self.storage_failures += 1
        if self.storage_error is None:
            log.error("the hub's database cannot write (%s): holding %d message(s), no acks "
                      "until it can; free disk space to recover", exc, len(entries))
        self.storage_error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._inbox.extendleft(reversed(entries))
            self._weight += sum(events_in(e) for e in entries)
            if not self._stop:
                self._cond.wait(min(2.0, 0.05 * 2 ** min(self.storage_failures, 6)))

    def _apply(self, items: list[Item]) -> BatchResult:
        with self.repo.transaction():
            result = self.ingestor.apply(self.repo, items)
        self.ingestor.installed(result)
        self.last_commit_monotonic = time.monotonic()
        if self.storage_error is not None:
            log.warning("the hub's database writes again after %d held batch(es)", self.storage_failures)
            self.storage_error = None
        return result

    def _finish(self, result: BatchResult) -> None:
        for name, value in vars(result.counts).items():
            if value:  # (``received`` is counted by submit, under the lock)
                setattr(self.stats, name, getattr(self.stats, name) + value)
        self.stats.batches += 1
        for ack in result.acks:
            self._send_ack(ack)
        if self.on_batch is not None:
            try:
                self.on_batch(result)
            except Exception:
                log.exception("on_batch hook failed")

    def _send_ack(self, ack: Ack) -> None:
        try:
            ok = self.publish(agent_topic(ack.agent_id, Channel.ACKS), encode(ack), 1)
        except Exception:
            log.exception("ack for %s could not be encoded or published", ack.agent_id)
            ok = False
        if ok:
            self.stats.acks_sent += 1
        else:
            # The agent resends after its ack timeout; the hub dedupes and acks again.
            self.stats.acks_failed += 1


def _describe(entry: Entry, item: Item) -> Raw:
    """Topic and payload of a message, for its dead letter."""
    if type(entry) is tuple:
        return entry  # type: ignore[return-value]
    agent = getattr(item, "agent_id", None) or "unknown"
    records = getattr(item, "records", None)
    payload = ("[" + ",".join(r.body for r in records) + "]").encode() if records else repr(item).encode()
    return agent_topic(agent, Channel.EVENTS), payload


def _sketch(entry: Entry) -> str:
    """A short, safe description of a message for the log (never raises)."""
    try:
        if type(entry) is tuple:
            topic, payload = entry  # type: ignore[misc]
            return f"{safe_text(topic, 200)}: {safe_text(bytes(payload[:300]), 400)}"
        return safe_text(entry, 400)
    except Exception:  # noqa: BLE001
        return "<unprintable message>"
