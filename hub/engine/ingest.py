"""Apply one batch of classified messages inside the writer's transaction.

For every event message: store it once (``(agent_id, seq)`` unique; the same message
again is a duplicate, the same seq with other content a ``conflict`` dead letter), keep
the lifecycle row ``(agent_id, event_id)`` at its latest state, and for a lifecycle seen
for the first time find its case: join an open one, reopen a recently closed one, or
open, screen, accept and dispatch a new one. Refused messages become dead letters and
rejections in the ack. Status and telemetry update the agent registry (telemetry
coalesced to the latest per agent). The caller commits, then publishes the acks.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.messages import Ack, Event, EventKind, Rejection, Status, Telemetry

from ..cases.merging import Candidate, MergeFacts, decide_merge, group_key, search_box
from ..cases.screening import ScreenFacts, screen
from ..cases.states import OPEN_STATES, CaseState
from ..ingest.decode import EventsItem, Item, RefusedItem, SnapshotItem, StatusItem, TelemetryItem
from ..ingest.seqs import SeqState, build_ack
from ..store.files import SnapshotFiles
from ..store.repo import CaseRow, GroupKeyTaken, LifecycleRow, Repository
from .core import Actor, CaseEngine

__all__ = ["BatchResult", "IngestStats", "Ingestor", "apply_batch"]

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Running counters since the hub started (the demo's summary reads them)."""

    messages: int = 0
    events_received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    refused: int = 0
    statuses: int = 0
    telemetry: int = 0
    snapshots: int = 0
    cases_opened: int = 0
    cases_joined: int = 0
    cases_reopened: int = 0
    gaps_opened: int = 0
    batches: int = 0
    batch_failures: int = 0
    acks_sent: int = 0
    acks_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class BatchResult:
    acks: list[Ack] = field(default_factory=list)
    seq_states: dict[str, SeqState] = field(default_factory=dict)
    verify_cases: set[int] = field(default_factory=set)
    snapshot_arrived: bool = False
    counts: IngestStats = field(default_factory=IngestStats)


def _evidence_kinds(ev: Event) -> frozenset[str]:
    e = ev.evidence
    kinds = set()
    if e.snapshot is not None:
        kinds.add("snapshot")
    if e.bbox is not None:
        kinds.add("bbox")
    if e.reading is not None:
        kinds.add("reading")
    return frozenset(kinds)


class Ingestor:
    """Holds the per-agent sequence states between batches (the writer is the only user)."""

    def __init__(self, engine: CaseEngine, files: SnapshotFiles) -> None:
        self.engine = engine
        self.files = files
        self.setup = engine.setup
        self.clock = engine.clock
        self._seqs: dict[str, SeqState] = {}

    def forget(self) -> None:
        """Drop cached state (after a rolled-back batch)."""
        self._seqs.clear()

    def installed(self, result: BatchResult) -> None:
        """Called after the batch committed."""
        self._seqs.update(result.seq_states)

    def _seq(self, repo: Repository, result: BatchResult, agent_id: str) -> SeqState:
        state = result.seq_states.get(agent_id)
        if state is not None:
            return state
        cached = self._seqs.get(agent_id)
        if cached is None:
            row = repo.get_agent(agent_id)
            cached = (SeqState(row.seq_upto, [list(r) for r in row.seq_ranges], row.seq_highest,
                               row.seq_gaps) if row else SeqState())
        state = SeqState(cached.upto, [list(r) for r in cached.ranges], cached.highest, cached.gaps)
        result.seq_states[agent_id] = state
        return state

    # -- the batch -------------------------------------------------------------------------------
    def apply(self, repo: Repository, items: list[Item]) -> BatchResult:
        now = self.clock.now()
        result = BatchResult()
        c = result.counts
        rejections: dict[str, list[Rejection]] = {}
        handled: dict[str, list[int]] = {}
        touch: dict[int, tuple[datetime, int]] = {}
        telemetry: dict[str, Telemetry] = {}
        seen: set[str] = set()
        for item in items:
            c.messages += 1
            if isinstance(item, EventsItem):
                seen.add(item.agent_id)
                seqs = handled.setdefault(item.agent_id, [])
                for ev, body in zip(item.events, item.bodies, strict=True):
                    c.events_received += 1
                    seqs.append(ev.seq)
                    outcome = repo.insert_message(ev.agent_id, ev.seq, ev.event_id, ev.kind.value,
                                                  ev.observed_at, now, body)
                    if outcome.status == "stored":
                        c.events_stored += 1
                        self._apply_event(repo, ev, now, touch, result)
                    elif outcome.existing_event_id == ev.event_id and (
                        outcome.status == "duplicate" or _same_event(outcome.existing_body, ev)
                    ):
                        c.duplicates += 1
                    else:
                        c.conflicts += 1
                        detail = (f"seq {ev.seq} is already stored as event "
                                  f"{outcome.existing_event_id} with other content")
                        self._dead_letter(repo, item.agent_id, "conflict", detail, body, now)
                        rejections.setdefault(item.agent_id, []).append(
                            Rejection(seq=ev.seq, event_id=ev.event_id, reason=f"conflict: {detail}"[:200]))
            elif isinstance(item, RefusedItem):
                c.refused += 1
                repo.add_dead_letter(item.fingerprint, item.topic, item.agent_id, item.reason,
                                     item.detail, item.payload_preview, item.payload_bytes, now)
                log.warning("refused %s on %s: %s", item.reason, item.topic, item.detail,
                            extra={"payload": item.payload_preview[:120]})
                if item.agent_id and item.rejections:
                    rejections.setdefault(item.agent_id, []).extend(item.rejections)
                    handled.setdefault(item.agent_id, []).extend(r.seq for r in item.rejections)
            elif isinstance(item, StatusItem):
                c.statuses += 1
                self._apply_status(repo, item.status, now)
            elif isinstance(item, TelemetryItem):
                c.telemetry += 1
                seen.add(item.agent_id)
                last = telemetry.get(item.agent_id)
                if last is None or item.telemetry.at >= last.at:
                    telemetry[item.agent_id] = item.telemetry
            elif isinstance(item, SnapshotItem):
                c.snapshots += 1
                seen.add(item.agent_id)
                self._apply_snapshot(repo, item, now)
                result.snapshot_arrived = True
        for case_id, (last_at, n) in touch.items():
            repo.touch_case(case_id, last_at, n, now)
        for t in telemetry.values():
            self._apply_telemetry(repo, t, now)
        for agent_id in seen | set(handled):
            fields: dict = {"last_seen": now}
            if agent_id in handled:
                state = self._seq(repo, result, agent_id)
                opened = state.add(handled[agent_id])
                if opened:
                    c.gaps_opened += opened
                    log.warning("agent %s: sequence gap (have up to %s, now %s; %s missing)",
                                agent_id, state.upto, state.highest, state.missing())
                fields.update(seq_upto=state.upto, seq_ranges=state.ranges,
                              seq_highest=state.highest, seq_gaps=state.gaps)
            repo.upsert_agent(agent_id, **fields)
        for agent_id in handled:
            result.acks.append(build_ack(agent_id, result.seq_states[agent_id],
                                         rejections.get(agent_id, []), now))
        return result

    def _dead_letter(self, repo: Repository, agent_id: str, reason: str, detail: str,
                     body: str, now: datetime) -> None:
        fp = hashlib.sha256(f"{agent_id}\0{reason}\0{body}".encode()).hexdigest()
        repo.add_dead_letter(fp, f"agent {agent_id} events", agent_id, reason, detail,
                             body[:1024], len(body), now)

    # -- events ------------------------------------------------------------------------------------
    def _apply_event(self, repo: Repository, ev: Event, now: datetime,
                     touch: dict[int, tuple[datetime, int]], result: BatchResult) -> None:
        lc = repo.get_lifecycle(ev.agent_id, ev.event_id)
        snap = ev.evidence.snapshot.sha256 if ev.evidence.snapshot else None
        ended = ev.kind is EventKind.END
        if lc is None:
            grid = self.setup.grids.locate(ev.location.lat, ev.location.lon)
            row = LifecycleRow(
                id=0, agent_id=ev.agent_id, event_id=ev.event_id, case_id=None,
                kind=ev.kind.value, category=ev.category, subcategory=ev.subcategory,
                source=ev.source, lat=ev.location.lat, lon=ev.location.lon,
                grid_id=grid.grid_id if grid else None, confidence=ev.confidence,
                first_seq=ev.seq, last_seq=ev.seq, messages=1,
                started_at=ev.started_at or ev.observed_at, observed_at=ev.observed_at,
                ended_at=now if ended else None, snapshot_sha256=snap,
                bbox=list(ev.evidence.bbox) if ev.evidence.bbox else None,
                reading=ev.evidence.reading.model_dump() if ev.evidence.reading else None,
                attributes=dict(ev.attributes) or None,
            )
            lid = repo.insert_lifecycle(row)
            row.id = lid
            self._case_for_lifecycle(repo, ev, row, grid, now, touch, result)
            return
        fields: dict = {"messages": lc.messages + 1}
        if ev.seq > lc.last_seq:
            fields.update(kind=ev.kind.value, last_seq=ev.seq, observed_at=ev.observed_at,
                          confidence=ev.confidence)
            if snap:
                fields["snapshot_sha256"] = snap
            if ev.evidence.bbox:
                fields["bbox"] = list(ev.evidence.bbox)
            if ev.evidence.reading:
                fields["reading"] = ev.evidence.reading.model_dump()
        newly_ended = ended and lc.ended_at is None
        if newly_ended:
            fields.update(ended_at=now, kind=EventKind.END.value)
        repo.update_lifecycle(lc.id, **fields)
        if lc.case_id is None:
            return
        last, n = touch.get(lc.case_id, (ev.observed_at, 0))
        touch[lc.case_id] = (max(last, ev.observed_at), n + 1)
        if newly_ended:
            self._source_ended(repo, lc.case_id, ev, now, result)

    def _case_for_lifecycle(self, repo: Repository, ev: Event, lc: LifecycleRow, grid, now: datetime,
                            touch: dict[int, tuple[datetime, int]], result: BatchResult) -> None:
        engine = self.engine
        rule = self.setup.rules[ev.subcategory]
        facts = MergeFacts(ev.subcategory, ev.agent_id, ev.source, ev.location.lat,
                           ev.location.lon, ev.observed_at)
        for _attempt in range(2):
            key = group_key(rule, ev.agent_id, ev.source, ev.location.lat, ev.location.lon)
            box = search_box(rule, ev.location.lat, ev.location.lon)
            open_rows = {c.id: c for c in repo.open_cases_near(ev.subcategory, key, box)}
            closed_rows: dict[int, CaseRow] = {}
            if engine.recurrence_window.total_seconds() > 0:
                closed_rows = {c.id: c for c in repo.closed_cases_near(
                    ev.subcategory, key, box, now - engine.recurrence_window)}
            cands = [Candidate(c.id, c.group_key, c.lat, c.lon,
                               max(c.last_event_at, touch.get(c.id, (c.last_event_at, 0))[0]))
                     for c in open_rows.values()]
            closed = [Candidate(c.id, c.group_key, c.lat, c.lon, c.last_event_at, c.closed_at)
                      for c in closed_rows.values()]
            decision = decide_merge(facts, rule, cands, closed,
                                    recurrence_window=engine.recurrence_window)
            ended = ev.kind is EventKind.END
            if decision.action == "join":
                case = open_rows[decision.case_id]
                self._link(repo, case, ev, lc, ended, now, f"joined: {decision.detail}")
                result.counts.cases_joined += 1
                return
            if decision.action == "reopen":
                case = closed_rows[decision.case_id]
                case = self._link(repo, case, ev, lc, ended, now, "recurrence")
                engine._reopen(repo, case, Actor.AUTO,
                               f"problem recurred: {ev.agent_id}/{ev.source} event {ev.event_id}")
                result.counts.cases_reopened += 1
                return
            try:
                self._open_case(repo, ev, lc, grid, decision.group_key, now, result)
                return
            except GroupKeyTaken:
                continue  # somebody opened it meanwhile: decide again, it will join
        raise RuntimeError(f"could not place event {ev.event_id} in a case")  # pragma: no cover

    def _link(self, repo: Repository, case: CaseRow, ev: Event, lc: LifecycleRow, ended: bool,
              now: datetime, why: str) -> CaseRow:
        repo.update_lifecycle(lc.id, case_id=case.id)
        fields: dict = {
            "event_count": case.event_count + 1,
            "last_event_at": max(case.last_event_at, ev.observed_at),
        }
        if not ended:
            fields.update(active_sources=case.active_sources + 1, cleared_at=None)
        if case.before_sha256 is None and ev.evidence.snapshot is not None:
            fields.update(before_sha256=ev.evidence.snapshot.sha256,
                          before_bbox=list(ev.evidence.bbox) if ev.evidence.bbox else None)
        case = self.engine.update(repo, case, **fields)
        self.engine.note(repo, case, "event_joined", Actor.AUTO,
                         f"{ev.agent_id}/{ev.source} event {ev.event_id} ({why})",
                         {"agent_id": ev.agent_id, "event_id": ev.event_id})
        return case

    def _open_case(self, repo: Repository, ev: Event, lc: LifecycleRow, grid, key: str,
                   now: datetime, result: BatchResult) -> None:
        setup, engine = self.setup, self.engine
        rule = setup.rules[ev.subcategory]
        cfg = setup.config.screening
        recent_false = 0
        if cfg.repeat_offender.enabled:
            recent_false = repo.count_false_alarms(
                ev.agent_id, ev.source, ev.subcategory,
                now - timedelta(hours=cfg.repeat_offender.window_h))
        facts = ScreenFacts(
            subcategory=ev.subcategory, agent_id=ev.agent_id, source=ev.source,
            observed_at=ev.observed_at, confidence=ev.confidence, evidence=_evidence_kinds(ev),
            in_service_area=setup.in_service_area(ev.location.lat, ev.location.lon),
            grid_id=grid.grid_id if grid else None, recent_false=recent_false,
        )
        screening = screen(facts, rule, cfg.maintenance,
                           repeat_max_false=cfg.repeat_offender.max_false
                           if cfg.repeat_offender.enabled else None)
        ended = ev.kind is EventKind.END
        snap = ev.evidence.snapshot
        case_id = repo.insert_case({
            "state": CaseState.NEW.value, "category": ev.category, "subcategory": ev.subcategory,
            "group_key": key, "lat": ev.location.lat, "lon": ev.location.lon,
            "grid_id": grid.grid_id if grid else None, "town": grid.town if grid else None,
            "district": grid.district if grid else None, "place": ev.location.place,
            "origin_agent": ev.agent_id, "origin_source": ev.source, "origin_event": ev.event_id,
            "close_mode": rule.close.value, "created_at": now, "updated_at": now,
            "first_event_at": ev.observed_at, "last_event_at": ev.observed_at, "event_count": 1,
            "active_sources": 0 if ended else 1, "cleared_at": now if ended else None,
            "screen_reasons": [list(r) for r in screening.reasons],
            "before_sha256": snap.sha256 if snap else None,
            "before_bbox": list(ev.evidence.bbox) if ev.evidence.bbox else None,
        })
        repo.update_lifecycle(lc.id, case_id=case_id)
        repo.append_audit(case_id, now, "opened", None, CaseState.NEW.value, Actor.AUTO,
                          f"from {ev.agent_id}/{ev.source} event {ev.event_id}",
                          {"agent_id": ev.agent_id, "event_id": ev.event_id, "seq": ev.seq})
        result.counts.cases_opened += 1
        case = repo.get_case(case_id)
        assert case is not None
        if screening.accepted:
            engine.accept(repo, case, Actor.AUTO, "passed the quality screen")
        else:
            engine.transition(repo, case, CaseState.REJECTED, Actor.AUTO,
                              "; ".join(d for _, d in screening.reasons), rejected_at=now,
                              data={"reasons": screening.codes})

    def _source_ended(self, repo: Repository, case_id: int, ev: Event, now: datetime,
                      result: BatchResult) -> None:
        case = repo.get_case(case_id)
        if case is None or case.state not in OPEN_STATES:
            return
        rule = self.setup.rules[case.subcategory]
        active = max(0, case.active_sources - 1)
        fields: dict = {"active_sources": active}
        detail = f"{ev.agent_id}/{ev.source} sent end"
        if active == 0:
            fields["cleared_at"] = now
            detail += "; every source is clear"
        snap = ev.evidence.snapshot
        if rule.close.value == "photo" and snap is not None and snap.sha256 != case.before_sha256:
            fields.update(after_sha256=snap.sha256, verify_pending=True)
            result.verify_cases.add(case.id)
            detail += "; after-photo from the agent"
        case = self.engine.update(repo, case, **fields)
        self.engine.note(repo, case, "source_cleared", Actor.AUTO, detail)

    # -- agents and snapshots ---------------------------------------------------------------------
    def _apply_status(self, repo: Repository, status: Status, now: datetime) -> None:
        row = repo.get_agent(status.agent_id)
        if row is not None and row.status_at is not None and status.at < row.status_at:
            return  # an older status (a late LWT of a previous session)
        repo.upsert_agent(
            status.agent_id, state=status.state.value, boot_id=status.boot_id,
            version=status.version, config_version=status.config_version,
            config_error=status.config_error, capabilities=list(status.capabilities),
            status_at=status.at, status_reason=status.reason, last_seen=now,
        )

    def _apply_telemetry(self, repo: Repository, t: Telemetry, now: datetime) -> None:
        fields: dict = dict(
            uptime_s=t.uptime_s, outbox_depth=t.outbox.depth,
            outbox_oldest_age_s=t.outbox.oldest_age_s, outbox_dropped=t.outbox.dropped,
            devices=dict(t.devices), cameras={k: v.model_dump() for k, v in t.cameras.items()},
            rss_mb=t.rss_mb, cpu_percent=t.cpu_percent, telemetry_at=t.at, last_seen=now,
        )
        if t.config_version is not None:
            fields["config_version"] = t.config_version
        repo.upsert_agent(t.agent_id, **fields)

    def _apply_snapshot(self, repo: Repository, item: SnapshotItem, now: datetime) -> None:
        sha = self.files.put(item.jpeg)  # the hub's own hash names the file
        h = item.header
        repo.add_snapshot(item.agent_id, h.event_id, h.seq, sha, len(item.jpeg), h.width,
                          h.height, h.taken_at if h.taken_at and h.taken_at.tzinfo else None, now)


def _same_event(existing_body: str | None, ev: Event) -> bool:
    if existing_body is None:
        return False
    try:
        return Event.model_validate_json(existing_body) == ev
    except ValueError:
        return False


def apply_batch(ingestor: Ingestor, repo: Repository, items: list[Item]) -> BatchResult:
    """Apply ``items`` in one transaction; on success the sequence states are installed."""
    with repo.transaction():
        result = ingestor.apply(repo, items)
    ingestor.installed(result)
    return result
