"""From event messages to cases: the ingest hot path.

A message of a known lifecycle costs two statements (store the message, note it on the
lifecycle row); its effect on the case (event count, last event, active sources, cleared)
is folded per case and written once per batch, and so are its notes (an event joined, an
elderly-care step: hub/engine/care.py). The first message of a lifecycle finds
its case — join an open one, reopen a recently closed one, or open, screen, accept and
dispatch a new one — and links the lifecycle to it.

Lifecycle lookups are cached (the writer is the only writer, so the cache is right until
a batch rolls back, when :meth:`LifecyclePlacer.forget` drops it).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.taxonomy import CloseMode

from ..care import CARE_CATEGORY
from ..cases import screening as scr
from ..cases.merging import Candidate, MergeFacts, decide_merge, group_key, held_key, search_box
from ..cases.screening import ReportFacts, ScreenFacts, Screening, screen, screen_report
from ..cases.states import OPEN_STATES, CaseState
from ..geo import Grid
from ..ingest.decode import EventRecord
from ..store.repo import GroupKeyTaken, LifecycleRow, LifecycleUpdate, Repository
from .core import Actor, CaseEngine

__all__ = ["Activity", "BatchState", "LifecyclePlacer"]


def _report_attributes(ev: EventRecord) -> dict | None:
    """A person's report's attributes (None for a machine's event)."""
    if ev.agent_id not in scr.REPORT_CHANNELS:
        return None
    try:
        attrs = json.loads(ev.attributes) if ev.attributes else {}
    except ValueError:
        return {}
    return attrs if isinstance(attrs, dict) else {}


def _unplaced(ev: EventRecord) -> bool:
    """A report held for an operator to place: its point is a stand-in."""
    attrs = _report_attributes(ev)
    return attrs is not None and attrs.get(scr.PLACEMENT) == scr.PLACEMENT_PENDING


@dataclass
class Activity:
    """What one batch did to one case, written once at the end of the batch."""

    last_at: str  # ISO UTC, as stored
    events: int = 0
    active_delta: int = 0
    ended: bool = False


@dataclass
class BatchState:
    """What a batch has folded so far, written by :meth:`LifecyclePlacer.finish`."""

    activity: dict[int, Activity]
    lifecycles: dict[int, LifecycleUpdate]
    ended: list[tuple[str, str]]  # lifecycles this batch ended: out of the cache at the end
    # Audit notes (append_audit's arguments) written together by write_notes: before the
    # batch ends and before any other audit row of the batch, so each case's trail keeps
    # the order of its messages.
    notes: list[tuple] = field(default_factory=list)
    # Elderly-care messages (message, case, first of its lifecycle) and their cases, for
    # CareDesk.settle: before the batch ends, before anything reads the alarms, and before
    # another note on one of these cases.
    care: list[tuple[EventRecord, int, bool]] = field(default_factory=list)
    care_cases: set[int] = field(default_factory=set)


class LifecyclePlacer:
    # Live lifecycles' state, so an update or end finds its case without a query (a miss
    # reads the store: correctness never depends on it). An ended lifecycle leaves the
    # cache when its batch is written (a late resend reads the store), so the cache holds
    # what is in flight, not history; ~250 bytes an entry, 20,000 at most (a one-hour
    # soak that kept every lifecycle, up to 200,000, grew 15 MiB/h).
    def __init__(self, engine: CaseEngine, cache_size: int = 20_000) -> None:
        self.engine = engine
        self.setup = engine.setup
        self.rules = engine.rules
        self._cache: OrderedDict[tuple[str, str], list] = OrderedDict()
        self._cache_size = cache_size

    def forget(self) -> None:
        self._cache.clear()

    def _remember(self, key: tuple[str, str], state: list) -> None:
        # No eviction here: a lifecycle of the batch in progress must keep its state until
        # the batch is written (the store's row is only updated by finish). finish trims.
        self._cache[key] = state

    # -- one stored message --------------------------------------------------------------------
    @staticmethod
    def begin() -> BatchState:
        return BatchState({}, {}, [])

    def apply(self, repo: Repository, ev: EventRecord, now: datetime, batch: BatchState,
              result) -> None:
        """Fold one stored message. The hot path keeps times as the store's ISO strings
        (they compare in time order); the first message of a lifecycle parses them."""
        key = (ev.agent_id, ev.event_id)
        state = self._cache.get(key)
        if state is None:
            found = repo.lifecycle_state(*key)
            if found is not None:
                state = list(found)
                self._remember(key, state)
        if state is None:
            self._first_message(repo, ev, datetime.fromisoformat(ev.observed_at), now, batch,
                                result)
            if ev.kind == "end":
                batch.ended.append(key)
            if ev.category == CARE_CATEGORY and self.engine.care.wants(ev):
                placed = self._cache.get(key)
                if placed is not None and placed[1] is not None:
                    batch.care.append((ev, placed[1], True))
                    batch.care_cases.add(placed[1])
            return
        lifecycle_id, case_id, last_seq, was_ended = state
        ended = ev.kind == "end"
        newly_ended = ended and not was_ended
        upd = batch.lifecycles.get(lifecycle_id)
        if upd is None:
            upd = batch.lifecycles[lifecycle_id] = LifecycleUpdate(lifecycle_id, 0)
        upd.messages += 1
        if upd.first_seq is None or ev.seq < upd.first_seq:
            # The store keeps the lowest seq's start: a redelivered ``new`` stored after its
            # ``end`` still starts the lifecycle (order follows seq, not arrival).
            upd.first_seq, upd.started_at = ev.seq, ev.started_at or ev.observed_at
        if ev.seq > last_seq:
            state[2] = ev.seq
            upd.seq, upd.kind, upd.observed_at, upd.confidence = (ev.seq, ev.kind,
                                                                  ev.observed_at, ev.confidence)
            upd.snapshot_sha256 = ev.snapshot_sha256
            upd.bbox = list(ev.bbox) if ev.bbox else None
            upd.reading = ev.reading
        if newly_ended:
            state[3] = True
            upd.ended_at = now
            batch.ended.append(key)
        if case_id is None:
            return
        if ev.category == CARE_CATEGORY and self.engine.care.wants(ev):
            batch.care.append((ev, case_id, False))  # tiers told, the confirmation, the end
            batch.care_cases.add(case_id)
        activity = batch.activity
        act = activity.get(case_id)
        if act is None:
            act = activity[case_id] = Activity(ev.observed_at)
        act.events += 1
        if ev.observed_at > act.last_at:
            act.last_at = ev.observed_at
        if newly_ended:
            if ev.snapshot_sha256 is not None and self.rules[ev.subcategory].close is CloseMode.PHOTO:
                self.write_notes(repo, batch, now)
                self.flush_case(repo, activity, case_id, now)
                self._photo_end(repo, case_id, ev, datetime.fromisoformat(ev.observed_at), now,
                                result)
            else:
                act.active_delta -= 1
                act.ended = True

    def settle_care(self, repo: Repository, batch: BatchState, now: datetime,
                    case_id: int | None = None) -> None:
        """The batch's care messages so far (only if one is of case ``case_id``, when given:
        a note on that case is about to be added). Their notes join ``batch.notes``."""
        if batch.care and (case_id is None or case_id in batch.care_cases):
            self.engine.care.settle(self.engine, repo, batch.care, now, batch.notes)
            batch.care = []
            batch.care_cases.clear()

    def write_notes(self, repo: Repository, batch: BatchState, now: datetime) -> None:
        """Everything the batch has to note so far, in one statement: before an audit row
        is written directly, and at the end of the batch."""
        self.settle_care(repo, batch, now)
        if batch.notes:
            repo.append_audits(batch.notes)
            batch.notes = []

    def finish(self, repo: Repository, batch: BatchState, now: datetime) -> None:
        self.write_notes(repo, batch, now)
        if batch.lifecycles:
            repo.note_lifecycle_messages(list(batch.lifecycles.values()))
            batch.lifecycles.clear()
        self.flush(repo, batch.activity, now)
        # Only now, with the end written: a later message of this batch still needed the
        # cached state (the store's row is updated above, not message by message).
        cache = self._cache
        for key in batch.ended:
            cache.pop(key, None)
        batch.ended.clear()
        while len(cache) > self._cache_size:  # the oldest, now that the store is up to date
            cache.popitem(last=False)

    # -- folding activity into cases ----------------------------------------------------------------
    def flush_case(self, repo: Repository, activity: dict[int, Activity], case_id: int,
                   now: datetime) -> None:
        act = activity.pop(case_id, None)
        if act is None:
            return
        active, cleared = repo.add_case_activity(case_id, act.last_at, act.events,
                                                 act.active_delta, act.ended, now)
        if act.ended and active == 0 and cleared == now:
            repo.append_audit(case_id, now, "source_cleared", None, None, Actor.AUTO,
                              "every source sent its end")

    def flush(self, repo: Repository, activity: dict[int, Activity], now: datetime) -> None:
        for case_id in list(activity):
            self.flush_case(repo, activity, case_id, now)

    # -- the first message of a lifecycle -----------------------------------------------------------
    def _first_message(self, repo: Repository, ev: EventRecord, observed: datetime, now: datetime,
                       batch: BatchState, result) -> None:
        unplaced = _unplaced(ev)
        grid = None if unplaced else self.setup.grids.locate(ev.lat, ev.lon)
        rule = self.rules[ev.subcategory]
        engine = self.engine
        ended = ev.kind == "end"
        activity = batch.activity
        facts = MergeFacts(ev.subcategory, ev.agent_id, ev.source, ev.lat, ev.lon, observed)
        if unplaced:  # its own key, no search box: it joins nothing (hub/cases/merging.py)
            key, box = held_key(ev.subcategory, ev.agent_id, ev.event_id), None
        else:
            key = group_key(rule, ev.agent_id, ev.source, ev.lat, ev.lon)
            box = search_box(rule, ev.lat, ev.lon)
        window = engine.recurrence_window
        for _attempt in range(3):
            rows = repo.merge_candidates(ev.subcategory, key, box,
                                         now - window if window.total_seconds() > 0 else None)
            by_id = {r.id: r for r in rows}
            open_c, closed_c = [], []
            for r in rows:
                if r.state in OPEN_STATES:
                    act = activity.get(r.id)
                    last = (max(r.last_event_at, datetime.fromisoformat(act.last_at)) if act
                            else r.last_event_at)
                    open_c.append(Candidate(r.id, r.group_key, r.lat, r.lon, last))
                elif r.state == CaseState.CLOSED:
                    closed_c.append(Candidate(r.id, r.group_key, r.lat, r.lon, r.last_event_at,
                                              r.closed_at))
            decision = decide_merge(facts, rule, open_c, closed_c, recurrence_window=window)
            if decision.action == "reopen":
                # Reopening puts the closed case's own key back among the open ones: if
                # another open case holds that key now, the event joins that one instead.
                holder = next((r for r in repo.merge_candidates(
                    ev.subcategory, by_id[decision.case_id].group_key, None, None)
                    if r.state in OPEN_STATES), None)
                if holder is not None:
                    by_id[holder.id] = holder
                    decision = type(decision)("join", holder.id, decision.group_key,
                                              f"open case {holder.id} holds the place now")
            if decision.action == "join":
                case_id = decision.case_id
                self.settle_care(repo, batch, now, case_id)  # its notes come first
                lifecycle_id = self._insert(repo, ev, grid, now, case_id)
                batch.notes.append((case_id, now, "event_joined", None, None, Actor.AUTO,
                                    f"{ev.agent_id}/{ev.source} event {ev.event_id} "
                                    f"({decision.detail})", None))
                act = activity.get(case_id)
                if act is None:
                    act = activity[case_id] = Activity(ev.observed_at)
                act.events += 1
                act.last_at = max(act.last_at, ev.observed_at)
                if not ended:
                    act.active_delta += 1
                if by_id[case_id].before_sha256 is None and ev.snapshot_sha256 is not None:
                    repo.update_case(case_id, before_sha256=ev.snapshot_sha256,
                                     before_bbox=list(ev.bbox) if ev.bbox else None)
                result.counts.cases_joined += 1
            elif decision.action == "reopen":
                case_id = decision.case_id
                self.write_notes(repo, batch, now)
                self.flush_case(repo, activity, case_id, now)
                lifecycle_id = self._insert(repo, ev, grid, now, case_id)
                case = repo.get_case(case_id)
                assert case is not None
                case = engine.update(repo, case, event_count=case.event_count + 1,
                                     last_event_at=max(case.last_event_at, observed),
                                     active_sources=0 if ended else 1,
                                     cleared_at=now if ended else None)
                engine._reopen(repo, case, Actor.AUTO,
                               f"problem recurred: {ev.agent_id}/{ev.source} event {ev.event_id}")
                result.counts.cases_reopened += 1
            else:
                try:
                    case_id = self._open_case(repo, ev, observed, grid, key, now)
                except GroupKeyTaken:
                    continue  # an open case holds this key after all: decide again, it joins
                lifecycle_id = self._insert(repo, ev, grid, now, case_id)
                self._screen_and_accept(repo, ev, observed, grid, case_id, now)
                result.counts.cases_opened += 1
            self._remember((ev.agent_id, ev.event_id), [lifecycle_id, case_id, ev.seq, ended])
            return
        raise RuntimeError(f"could not place event {ev.event_id} in a case")  # pragma: no cover

    def _insert(self, repo: Repository, ev: EventRecord, grid: Grid | None,
                now: datetime, case_id: int) -> int:
        return repo.insert_lifecycle(LifecycleRow(
            id=0, agent_id=ev.agent_id, event_id=ev.event_id, case_id=case_id,
            kind=ev.kind, category=ev.category, subcategory=ev.subcategory,
            source=ev.source, lat=ev.lat, lon=ev.lon,
            grid_id=grid.grid_id if grid else None, confidence=ev.confidence,
            first_seq=ev.seq, last_seq=ev.seq, messages=1,
            # Times as the record's text, already in the store's format.
            started_at=ev.started_at or ev.observed_at,
            observed_at=ev.observed_at, ended_at=now if ev.kind == "end" else None,
            snapshot_sha256=ev.snapshot_sha256, bbox=list(ev.bbox) if ev.bbox else None,
            reading=ev.reading, attributes=ev.attributes,  # JSON text, stored as it is
        ))

    def _open_case(self, repo: Repository, ev: EventRecord, observed: datetime, grid: Grid | None,
                   key: str, now: datetime) -> int:
        rule = self.rules[ev.subcategory]
        ended = ev.kind == "end"
        case_id = repo.insert_case({
            "state": CaseState.NEW.value, "category": ev.category, "subcategory": ev.subcategory,
            "group_key": key, "lat": ev.lat, "lon": ev.lon,
            "grid_id": grid.grid_id if grid else None, "town": grid.town if grid else None,
            "district": grid.district if grid else None, "place": ev.place,
            "origin_agent": ev.agent_id, "origin_source": ev.source, "origin_event": ev.event_id,
            "close_mode": rule.close.value, "created_at": now, "updated_at": now,
            "first_event_at": observed, "last_event_at": observed, "event_count": 1,
            "active_sources": 0 if ended else 1, "cleared_at": now if ended else None,
            "before_sha256": ev.snapshot_sha256,
            "before_bbox": list(ev.bbox) if ev.bbox else None,
        })
        repo.append_audit(case_id, now, "opened", None, CaseState.NEW.value, Actor.AUTO,
                          f"from {ev.agent_id}/{ev.source} event {ev.event_id}",
                          {"agent_id": ev.agent_id, "event_id": ev.event_id, "seq": ev.seq})
        return case_id

    def _screen_and_accept(self, repo: Repository, ev: EventRecord, observed: datetime,
                           grid: Grid | None, case_id: int, now: datetime) -> None:
        setup = self.setup
        report = _report_attributes(ev)
        if report is not None:
            screening = screen_report(ReportFacts(
                subcategory=ev.subcategory, channel=ev.agent_id,
                text=str(report.get("description") or ""),
                has_photo=ev.snapshot_sha256 is not None,
                placed=report.get(scr.PLACEMENT) != scr.PLACEMENT_PENDING,
                in_service_area=setup.in_service_area(ev.lat, ev.lon),
                grid_id=grid.grid_id if grid else None), self.rules[ev.subcategory])
            self._decide(repo, case_id, screening, now)
            return
        cfg = setup.config.screening
        recent_false = 0
        if cfg.repeat_offender.enabled:
            recent_false = repo.count_false_alarms(
                ev.agent_id, ev.source, ev.subcategory,
                now - timedelta(hours=cfg.repeat_offender.window_h))
        evidence = frozenset(name for name, present in
                             (("snapshot", ev.snapshot_sha256), ("bbox", ev.bbox),
                              ("reading", ev.reading)) if present is not None)
        facts = ScreenFacts(
            subcategory=ev.subcategory, agent_id=ev.agent_id, source=ev.source,
            observed_at=observed, confidence=ev.confidence, evidence=evidence,
            in_service_area=setup.in_service_area(ev.lat, ev.lon),
            grid_id=grid.grid_id if grid else None, recent_false=recent_false,
        )
        screening = screen(facts, self.rules[ev.subcategory], cfg.maintenance,
                           repeat_max_false=cfg.repeat_offender.max_false
                           if cfg.repeat_offender.enabled else None)
        self._decide(repo, case_id, screening, now)

    def _decide(self, repo: Repository, case_id: int, screening: Screening, now: datetime) -> None:
        engine = self.engine
        case = repo.get_case(case_id)
        assert case is not None
        if screening.accepted:
            engine.accept(repo, case, Actor.AUTO, "passed the quality screen")
        elif screening.held:  # stays new, in the operator queue, with the reasons
            detail = "; ".join(d for _, d in screening.reasons)
            case = engine.update(repo, case, queue="operator", queue_reason=detail,
                                 screen_reasons=[list(r) for r in screening.reasons])
            engine.note(repo, case, "held", Actor.AUTO, detail, {"reasons": screening.codes})
            engine.notify(repo, case, "queued", "operators", f"case {case.id} waits for an "
                          f"operator: {detail}")
        else:
            engine.transition(repo, case, CaseState.REJECTED, Actor.AUTO,
                              "; ".join(d for _, d in screening.reasons), rejected_at=now,
                              screen_reasons=[list(r) for r in screening.reasons],
                              data={"reasons": screening.codes})

    # -- an end that brings an after-photo ------------------------------------------------------------
    def _photo_end(self, repo: Repository, case_id: int, ev: EventRecord, observed: datetime,
                   now: datetime, result) -> None:
        case = repo.get_case(case_id)
        if case is None:
            return
        active = max(0, case.active_sources - 1)
        # The end itself is already counted: apply() added it to the batch's activity and
        # flush_case wrote that before this runs.
        fields: dict = {"active_sources": active, "last_event_at": max(case.last_event_at, observed)}
        detail = f"{ev.agent_id}/{ev.source} sent end"
        if active == 0:
            fields["cleared_at"] = now
            detail += "; every source is clear"
        snap = ev.snapshot_sha256
        if case.state in OPEN_STATES and snap is not None and snap != case.before_sha256:
            fields.update(after_sha256=snap, verify_pending=True)
            result.verify_cases.add(case.id)
            detail += "; after-photo from the agent"
        case = self.engine.update(repo, case, **fields)
        self.engine.note(repo, case, "source_cleared", Actor.AUTO, detail)
