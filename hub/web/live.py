"""The live feed behind the status page: one overview computed per interval (only when
somebody watches and the database changed), pushed to every browser over server-sent
events. Pages then refresh their live regions; wall screens never reload.

Each stream checks its principal again before every push and keep-alive
(:func:`hub.auth.accounts.principal_now`): a stream ends once its session has ended or
expired, its user is disabled or its token revoked, and what it shows follows the role
the database has now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth.accounts import principal_now
from ..auth.roles import Principal
from ..store.sqlite import SharedReader
from .serialize import agent_json, jsonable

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["KEEPALIVE_S", "EventRate", "LiveFeed", "overview", "pump", "stream"]

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_KEEPALIVE = object()


class EventRate:
    """Events stored per minute, from the writer's running counter (this run only)."""

    def __init__(self, minutes: int = 30) -> None:
        self.minutes = minutes
        self._samples: deque[tuple[float, int]] = deque()  # (unix time, counter)

    def sample(self, at: float, counter: int) -> None:
        self._samples.append((at, counter))
        while self._samples and self._samples[0][0] < at - self.minutes * 60 - 60:
            self._samples.popleft()

    def _value_at(self, t: float) -> int | None:
        best = None
        for at, n in self._samples:
            if at <= t:
                best = n
            else:
                break
        return best

    def per_minute(self, now: float) -> list[int]:
        """Events in each of the last ``minutes`` whole minutes, oldest first."""
        edge = now - now % 60
        out = []
        for i in range(self.minutes, 0, -1):
            a, b = self._value_at(edge - i * 60), self._value_at(edge - (i - 1) * 60)
            out.append(0 if a is None or b is None else max(0, b - a))
        return out

    def last_minute(self, now: float) -> int:
        a = self._value_at(now - 60)
        if a is None:
            a = self._samples[0][1] if self._samples else 0
        b = self._samples[-1][1] if self._samples else 0
        return max(0, b - a)


def overview(hub: Hub, repo, rate: EventRate,
             grid_ids: frozenset[str] | None = None) -> dict[str, Any]:
    """What the status page's live parts show (also ``GET /api/v1/overview``); with
    ``grid_ids``, the cases part covers only those grids (a scoped account's view)."""
    now = hub.clock.now()
    cfg = hub.config
    cases = repo.case_overview(now, now + timedelta(minutes=cfg.web.near_deadline_min),
                               grid_ids=grid_ids)
    agents = repo.agent_overview(now - timedelta(seconds=cfg.agents.stale_after_s))
    agents["attention"] = [agent_json(a, now, cfg.agents.stale_after_s) for a in agents["attention"]]
    stats = hub.writer.stats if hub.writer else None
    dead = repo.counts_dead_letters()
    t = time.time()
    return {
        "now": now.isoformat(),
        "cases": cases,
        "agents": agents,
        "events_per_minute": rate.per_minute(t),
        "events_last_minute": rate.last_minute(t),
        "ingest": {
            "events_stored": stats.events_stored if stats else 0,
            "duplicates": stats.duplicates if stats else 0,
            "refused": stats.refused if stats else 0,
            "backlog": hub.writer.backlog() if hub.writer else 0,
        },
        "dead_letters": dead,
    }


class LiveFeed:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.interval = hub.config.web.live_interval_s
        self.rate = EventRate()
        self._subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._reader = SharedReader(hub.config.database)
        self._marker: int | None = None
        self._last_push = 0.0
        self.latest: dict[str, Any] | None = None
        self.version = 0
        self._scoped: dict[frozenset[str], dict[str, Any]] = {}  # this version's, per scope

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub-live")

    async def stop(self) -> None:
        for q in list(self._subscribers):
            q.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._reader.close)  # waits for a read still running

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=4)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def _sample(self) -> None:
        stats = self.hub.writer.stats if self.hub.writer else None
        self.rate.sample(time.time(), stats.events_stored if stats else 0)

    async def compute(self) -> dict[str, Any]:
        """A fresh overview (on the feed's own read connection)."""
        hub = self.hub

        def work() -> tuple[int, dict[str, Any]]:
            return self._reader.use(lambda repo: (repo.change_marker(), overview(hub, repo, self.rate)))

        marker, data = await asyncio.to_thread(work)
        self._marker = marker
        self.version += 1
        data["version"] = self.version
        self.latest = data
        return data

    async def for_scope(self, grids: frozenset[str] | None) -> dict[str, Any]:
        """The overview as an account with these grids may see it (``None``: the whole
        one). Computed once per feed version and scope."""
        if grids is None:
            return self.latest if self.latest and self.watchers else await self.compute()
        latest = self.latest if self.latest and self.watchers else await self.compute()
        cached = self._scoped.get(grids)
        if cached is not None and cached["version"] == latest["version"]:
            return cached
        hub = self.hub
        data = await hub.read(lambda repo: overview(hub, repo, self.rate, grids))
        data["version"] = latest["version"]
        if len(self._scoped) > 256:
            self._scoped.clear()
        self._scoped[grids] = data
        return data

    async def _changed(self) -> bool:
        if self._marker is None:
            return True
        marker = await asyncio.to_thread(self._reader.use, lambda repo: repo.change_marker())
        return marker != self._marker

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self._sample()
                if not self._subscribers:
                    continue
                stale = time.monotonic() - self._last_push > 30  # events/min and clocks move
                if not (stale or await self._changed()):
                    continue
                data = await self.compute()
                self._last_push = time.monotonic()
                for q in list(self._subscribers):
                    if q.full():
                        with contextlib.suppress(asyncio.QueueEmpty):
                            q.get_nowait()  # a slow browser gets the newest, not a backlog
                    q.put_nowait(data)
            except Exception:
                log.exception("live overview failed")


async def stream(request: web.Request, feed: LiveFeed, who: Principal) -> web.StreamResponse:
    """Server-sent events: ``overview`` whenever the data changed (at most once per
    ``web.live_interval_s``); a comment line every 15 s keeps proxies from closing it.
    Before each, ``who`` is checked again; the stream ends when it no longer may watch."""
    hub = feed.hub
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = feed.subscribe()
    current: Principal | None = who

    async def allowed() -> bool:
        nonlocal current
        now = hub.clock.now()
        current = await hub.read(lambda repo: principal_now(repo, who, now, grids=hub.setup.grids))
        return current is not None and current.can("signed_in")

    async def send(data: dict[str, Any]) -> None:
        assert current is not None
        if current.can("view") and current.grids is not None:  # a scoped account: its grids only
            data = {**await feed.for_scope(current.grids), "version": data["version"]}
        payload = data if current.can("view") else {"version": data["version"], "now": data["now"]}
        text = json.dumps(jsonable(payload), separators=(",", ":"), ensure_ascii=False)
        await response.write(f"event: overview\nid: {data['version']}\ndata: {text}\n\n".encode())

    async def step(item: Any) -> bool:
        if not await allowed():
            log.info("live feed of %s ended: signed out, expired, disabled or revoked", who.actor)
            return False
        if item is None:
            await response.write(b": keep-alive\n\n")
        else:
            await send(item)
        return True

    return await pump(response, feed, queue, step)


async def pump(response: web.StreamResponse, feed: Any, queue: asyncio.Queue,
               step: Callable[[Any], Awaitable[bool]]) -> web.StreamResponse:
    """Hand each item of ``feed`` (subscribed as ``queue``) to ``step``, and ``None`` when
    ``KEEPALIVE_S`` passes without one (write a keep-alive), until the feed stops, the client
    leaves or ``step`` returns False; then unsubscribe and end the stream. The live feed and
    the map's stream share it."""
    try:
        item: Any = feed.latest or await feed.compute()
        while item is not None:  # None: the feed stops
            if not await step(None if item is _KEEPALIVE else item):
                break
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                item = _KEEPALIVE
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
