"""One simulated department's loop, and a run of several.

Every ``poll_s`` real seconds a department lists its cases through the handler API and
moves each along its :class:`~.policy.Plan`, timed on the department's clock (the hub's
clock, or one running at the same rate): accept (or return) it, work on it, resolve it
with an after-photo for photo cases. A case sent back (the after-photo still showed the
problem) starts a new attempt. Everything it does goes to the :class:`HandlerLog`
(JSON lines) and the run's summary.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.clock import Clock

from .client import HandlerApiError, HandlerClient
from .photos import KnownScene, after_photo
from .policy import Plan, Shares, plan_case

__all__ = ["COUNTERS", "Department", "HandlerLog", "HandlerRun", "SceneLookup"]

log = logging.getLogger("cityops.sim.handlers")

SceneLookup = Callable[[dict[str, Any]], KnownScene | None]
WORKING = ("dispatched", "in_progress", "escalated", "reopened")
COUNTERS = ("cases_seen", "accepted", "returned", "resolved", "resolved_late", "photos_fixed",
            "photos_not_fixed", "sent_back", "conflicts", "errors")


def _t(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class HandlerLog:
    """What the departments did: JSON lines (to ``path`` when given) and counters."""

    def __init__(self, clock: Clock, path: Path | None = None) -> None:
        self.clock = clock
        self.path = path
        self.counts: dict[str, Counter[str]] = {}
        self.records: list[dict[str, Any]] = []
        self._fh = path.open("a", encoding="utf-8") if path is not None else None

    def write(self, department: str, action: str, case: dict[str, Any] | None = None, **extra: Any) -> None:
        rec: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                               "sim": self.clock.now().isoformat(timespec="seconds"),
                               "department": department, "action": action}
        if case is not None:
            rec.update(case=case.get("id"), subcategory=case.get("subcategory"), state=case.get("state"))
        rec.update({k: v for k, v in extra.items() if v is not None})
        self.records.append(rec)
        if self._fh is not None:
            self._fh.write(json.dumps(rec, default=str) + "\n")
            self._fh.flush()

    def count(self, department: str, key: str, n: int = 1) -> None:
        self.counts.setdefault(department, Counter())[key] += n

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class _Work:
    case_id: int
    attempt: int
    plan: Plan
    seen_at: float  # clock.monotonic() at first sight of this attempt
    stage: str = "new"  # new -> accepted -> resolved | returned


@dataclass
class Department:
    name: str
    client: HandlerClient
    clock: Clock
    log: HandlerLog
    shares: Shares = field(default_factory=Shares)
    seed: int = 0
    handles: frozenset[str] | None = None
    poll_s: float = 1.0
    scenes: SceneLookup | None = None
    work: dict[int, _Work] = field(default_factory=dict)
    photo_shows_fixed: dict[int, bool] = field(default_factory=dict)  # last after-photo per case

    async def run(self, stop: asyncio.Event) -> None:
        self.log.write(self.name, "start", shares=self.shares.model_dump(), seed=self.seed)
        while not stop.is_set():
            try:
                await self.step()
            except HandlerApiError as exc:
                if exc.status == 401:
                    raise  # a bad token does not get better by retrying
                self.log.count(self.name, "errors")
                self.log.write(self.name, "error", detail=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), self.poll_s)
            except TimeoutError:
                pass

    async def step(self) -> None:
        """One pass over the department's cases."""
        for case in await self.client.cases(",".join(WORKING)):
            try:
                await self._advance(case)
            except HandlerApiError as exc:
                if exc.status == 401 or not exc.conflict:
                    raise
                self.log.count(self.name, "conflicts")  # closed or moved meanwhile
                self.log.write(self.name, "conflict", case, detail=str(exc))

    def _new_attempt(self, case: dict[str, Any]) -> _Work:
        prev = self.work.get(case["id"])
        attempt = prev.attempt + 1 if prev else 1
        dispatched, deadline = _t(case.get("dispatched_at")), _t(case.get("deadline_at"))
        window = (deadline - dispatched).total_seconds() if dispatched and deadline else None
        plan = plan_case(case["id"], attempt, window, self.shares, self.seed,
                         photo=case.get("close_mode") == "photo", subcategory=case.get("subcategory", ""),
                         handles=self.handles)
        w = _Work(case["id"], attempt, plan, self.clock.monotonic())
        self.work[case["id"]] = w
        if prev is None:
            self.log.count(self.name, "cases_seen")
        elif prev.stage == "resolved":
            self.log.count(self.name, "sent_back")
        self.log.write(self.name, "received", case, attempt=attempt, plan=plan.outcome,
                       window_s=None if window is None else round(window),
                       deadline_at=case.get("deadline_at"))
        return w

    async def _advance(self, case: dict[str, Any]) -> None:
        w = self.work.get(case["id"])
        # A case we resolved or returned that is ours to work again: sent back (the photo
        # showed the problem), reopened, or dispatched to us once more.
        if w is None or w.stage in ("resolved", "returned"):
            w = self._new_attempt(case)
            if case["state"] == "in_progress":
                w.stage = "accepted"  # already accepted (by us, before a restart)
        elapsed = self.clock.monotonic() - w.seen_at
        if w.stage == "new" and elapsed >= w.plan.accept_after_s:
            if w.plan.outcome == "reject":
                done = await self.client.reject(w.case_id, w.plan.reason)
                w.stage = "returned"
                self.log.count(self.name, "returned")
                self.log.write(self.name, "returned", done, reason=w.plan.reason)
                return
            done = await self.client.accept(w.case_id)
            w.stage = "accepted"
            self.log.count(self.name, "accepted")
            self.log.write(self.name, "accepted", done)
        if w.stage == "accepted" and elapsed >= w.plan.work_s:
            await self._resolve(case, w)

    async def _resolve(self, case: dict[str, Any], w: _Work) -> None:
        photo = known = None
        if case.get("close_mode") == "photo":
            known = self.scenes(case) if self.scenes is not None else None
            fixed = w.plan.shows_fixed
            photo = await asyncio.to_thread(after_photo, case.get("subcategory", ""), fixed,
                                            self.seed * 1_000_003 + w.case_id * 101 + w.attempt,
                                            known=known)
            self.photo_shows_fixed[w.case_id] = fixed
            self.log.count(self.name, "photos_fixed" if fixed else "photos_not_fixed")
        note = {"fixed": "fixed", "late": "fixed (late)", "not_fixed": "done"}.get(w.plan.outcome, "done")
        done = await self.client.resolve(w.case_id, f"{self.name}: {note}", photo)
        w.stage = "resolved"
        resolved, deadline = _t(done.get("resolved_at")), _t(done.get("deadline_at"))
        late = bool(resolved and deadline and resolved > deadline)
        self.log.count(self.name, "resolved")
        if late:
            self.log.count(self.name, "resolved_late")
        self.log.write(self.name, "resolved", done, outcome=w.plan.outcome, late=late,
                       scene=None if photo is None else ("camera" if known is not None else "matching"),
                       photo_bytes=None if photo is None else len(photo),
                       photo_shows=None if photo is None else ("fixed" if w.plan.shows_fixed else "not_fixed"))


class HandlerRun:
    """Several departments polling one hub; :meth:`summary` for the end of a run."""

    def __init__(self, departments: list[Department], log_: HandlerLog) -> None:
        self.departments = departments
        self.log = log_
        self._tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(d.run(self.stop), name=f"handler:{d.name}")
                       for d in self.departments]

    async def wait(self) -> None:
        """Until stopped; a department's fatal error (a bad token) ends the run with it."""
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.close()

    async def close(self) -> None:
        self.stop.set()
        for t in self._tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for d in self.departments:
            await d.client.close()
        self.log.close()

    def photo_shows_fixed(self, case_id: int) -> bool | None:
        for d in self.departments:
            if case_id in d.photo_shows_fixed:
                return d.photo_shows_fixed[case_id]
        return None

    def summary(self) -> dict[str, Any]:
        per = {d.name: {k: self.log.counts.get(d.name, Counter())[k] for k in COUNTERS}
               for d in self.departments}
        total = {k: sum(p[k] for p in per.values()) for k in COUNTERS}
        outcomes = Counter(w.plan.outcome for d in self.departments for w in d.work.values())
        return {**total, "planned": dict(sorted(outcomes.items())), "departments": per}
