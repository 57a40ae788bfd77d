"""The vital-signs shell in the hub: telemetry in (from the writer's batches), counts
every few seconds (open cases, devices offline), the pure monitor in the middle, and
out: chart samples and levels in the store, level-change events through the case engine,
and a nudge to the plans (a level can trigger one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from protocol.ids import new_event_id
from protocol.messages import Telemetry

from ..store.rows import to_db_time
from .config import Kind
from .events import place_level_change
from .levels import Level
from .monitor import Observed, VitalsMonitor

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["VitalsService"]

log = logging.getLogger(__name__)


class VitalsService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config = hub.setup.vitals
        self.monitor = VitalsMonitor(self.config, hub.setup.grids)
        self._queue: asyncio.Queue[list[Telemetry]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._episodes: dict[str, str] = {}  # indicator → event id of its current warning
        self.changes = 0
        self._purged = 0.0  # monotonic time of the last purge of old chart samples

    async def start(self) -> list[asyncio.Task]:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        rows = await self.hub.read(lambda repo: repo.vital_levels())
        self.monitor.restore({r["indicator"]: (r["level"], r["value"]) for r in rows})
        self._episodes = {r["indicator"]: r["event_id"] for r in rows if r["level"] and r["event_id"]}
        return [asyncio.create_task(self._telemetry_loop(), name="hub-vitals"),
                asyncio.create_task(self._counts_loop(), name="hub-vitals-counts")]

    def feed(self, telemetry: list[Telemetry]) -> None:
        """Called from the writer thread after a batch committed."""
        if self._loop is not None and self._queue is not None and telemetry:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, telemetry)

    # -- loops ------------------------------------------------------------------------------
    async def _telemetry_loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._queue.get()
            while not self._queue.empty():
                batch.extend(self._queue.get_nowait())
            observed = Observed()
            for t in sorted(batch, key=lambda t: t.at):
                if t.readings:
                    observed.extend(self.monitor.observe_readings(t.agent_id, t.readings, t.at))
            try:
                await self.record(observed)
            except Exception:
                log.exception("vital signs: recording %d changes failed", len(observed.changes))

    async def _counts_loop(self) -> None:
        every = max(0.25, min(self.hub.config.sla.tick_s, 5.0))
        while True:
            await asyncio.sleep(every)
            try:
                await self.count_now()
                await self.hub.plans.evaluate()  # open-case triggers, even without a level change
            except Exception:
                log.exception("vital signs: counting failed")

    async def count_now(self) -> Observed:
        """Grade open-case pressure and devices offline per grid, now."""
        now = self.hub.clock.now()
        stale = timedelta(seconds=self.hub.config.agents.stale_after_s)  # as the agents page
        placed = self.monitor.agent_grids()

        def counts(repo: Any) -> tuple[dict[str, float], dict[str, float]]:
            cases: dict[str, float] = defaultdict(float)
            for grid, category, n in repo.open_case_counts():
                if grid and category != "vital_signs":
                    cases[grid] += n
            offline: dict[str, float] = defaultdict(float)
            for agent in repo.list_agents(limit=100_000):
                grid = agent.grid_id or placed.get(agent.agent_id)
                if grid is None:
                    continue
                silent = agent.last_seen is None or now - agent.last_seen > stale
                if agent.state != "online" or silent:
                    offline[grid] += 1
                else:
                    offline[grid] += sum(1 for s in agent.devices.values() if s == "down")
            return cases, offline

        cases, offline = await self.hub.read(counts)
        observed = self.monitor.observe_counts(Kind.CASE_PRESSURE, cases, now)
        observed.extend(self.monitor.observe_counts(Kind.DEVICES_OFFLINE, offline, now))
        await self.record(observed)
        return observed

    # -- out --------------------------------------------------------------------------------
    async def record(self, observed: Observed) -> None:
        if not observed.samples and not observed.changes:
            return
        now = self.hub.clock.now()
        engine_ingestor = self.hub.writer.ingestor if self.hub.writer else None
        changed = {c.indicator for c in observed.changes}
        event_ids: list[str | None] = []  # one per change: its warning's lifecycle
        for c in observed.changes:
            if c.before == Level.NORMAL:
                self._episodes[c.indicator] = new_event_id()
            event_ids.append(self._episodes.get(c.indicator))
            if c.after == Level.NORMAL:
                self._episodes.pop(c.indicator, None)
        level_rows = []
        for ind_id in {s.indicator for s in observed.samples} | changed:
            ind = self.monitor.indicators[ind_id]
            level_rows.append((ind.id, ind.kind.value, ind.source, ind.grid, int(ind.level), ind.value,
                               ind.unit, ind.place, to_db_time(ind.at) if ind.at else None,
                               to_db_time(now) if ind_id in changed else None,
                               self._episodes.get(ind_id) if ind_id in changed else None))
        samples = [(s.indicator, to_db_time(s.at), s.value, int(s.level)) for s in observed.samples]
        history = timedelta(hours=self.config.history_h)
        purge = bool(samples) and time.monotonic() - self._purged >= 60.0
        if purge:
            self._purged = time.monotonic()

        def write(repo: Any) -> None:
            repo.upsert_vital_levels(level_rows)
            repo.add_vital_samples(samples)
            if purge:
                repo.purge_vital_samples(now - history)
            for c, eid in zip(observed.changes, event_ids, strict=True):
                if eid is None or engine_ingestor is None:
                    continue  # a restored level falling back without an open warning
                place_level_change(engine_ingestor, repo, c, eid, now)

        await self.hub.write(write, moves_events=bool(observed.changes))
        for c in observed.changes:
            self.changes += 1
            log.info("vital sign %s: %s → %s (%s %s)", c.indicator, c.before.label, c.after.label,
                     c.value, c.unit)
        if observed.changes:
            await self.hub.plans.evaluate()


