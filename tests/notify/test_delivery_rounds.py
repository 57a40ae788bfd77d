"""The delivery task's rounds on a busy writer: a burst goes through a round at a time
(claims ahead of the free slots, every outcome of a round recorded in one transaction),
and a hub that stops in order gives back the rows it had claimed but not started."""

from __future__ import annotations

import asyncio
import time

from hubtest import await_for
from notifytest import notify_setup, rows

from hub.app import Hub
from hub.notify.model import Message, Recipient

BUSY_S = 0.05  # each writer command first waits this long, as behind an ingest batch


def enqueue(hub: Hub, n: int, first: int = 0) -> None:
    outbox = hub.engine.outbox

    def write(repo):
        for i in range(first, first + n):
            outbox.enqueue(repo, event_key=f"burst/{i}", kind="bench",
                           message=Message(f"burst {i}", f"notification {i}", {"i": i}),
                           recipients=[Recipient("webhook", "drainage-system")],
                           now=hub.clock.now())
    return write


async def test_a_burst_on_a_busy_writer_is_delivered_in_a_few_rounds(tmp_path, clock, smtp,
                                                                     http):
    async with Hub(notify_setup(tmp_path, smtp, http), clock=clock,
                   run_scheduler=False) as hub:
        real = hub.notifier.write
        commands = 0

        async def busy_write(fn):
            nonlocal commands
            commands += 1
            await asyncio.sleep(BUSY_S)
            return await real(fn)

        hub.notifier.write = busy_write
        await hub.write(enqueue(hub, 200))
        hub.notifier.wake()
        t0 = time.monotonic()
        await await_for(lambda: len(http.webhooks) == 200, timeout=30,
                        what="200 webhooks received")
        took = time.monotonic() - t0

        async def all_sent():
            return {d.state for d in await rows(hub)} == {"sent"}

        await await_for(all_sent, what="every outcome recorded")
    # A command per delivery (and a claim per 16) would need 200+ commands, over 10 s here.
    assert commands <= 12, commands
    assert took < 5, took
    assert http.unique_ids() == {d.wire_id for d in stored_rows(hub)}


def stored_rows(hub):
    """The rows as the stopped hub left them (a read-only connection of our own)."""
    from hub.store.sqlite import SqliteRepository

    repo = SqliteRepository(hub.config.database, writer=False)
    try:
        return repo.list_deliveries(limit=1000)
    finally:
        repo.close()


async def test_a_stop_gives_back_the_claimed_rows_not_started(tmp_path, clock, smtp, http):
    """One slot, a round claims five: the first is held by the receiver when the hub stops;
    the other four go back to the queue with no attempt counted, and the next start sends
    all five, each once more than it was tried."""
    http.hold = asyncio.Event()
    setup = notify_setup(tmp_path, smtp, http, concurrency=1, batch=5)
    setup.config.notify.webhooks["drainage-system"].timeout_s = 60
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        await hub.write(enqueue(hub, 5))
        hub.notifier.wake()
        await await_for(lambda: len(http.webhooks) == 1, what="the first webhook, unanswered")
    stopped = sorted(stored_rows(hub), key=lambda d: d.id)
    assert [(d.state, d.attempts) for d in stopped] == [("sending", 1)] + [("queued", 0)] * 4
    http.hold.set()
    async with Hub(setup, clock=clock, run_scheduler=False) as hub:
        async def all_sent():
            return {d.state for d in await rows(hub)} == {"sent"}

        await await_for(all_sent, what="all five sent")
        done = sorted(await rows(hub), key=lambda d: d.id)
    assert [d.attempts for d in done] == [2, 1, 1, 1, 1]
    assert len(http.webhooks) == 6 and len(http.unique_ids()) == 5
