"""The demo's scorecard: the ground truth against what the agents sent and the hub stored.

Pure: plain data in (problems, the agents' own delivery counters, the rows the hub
stored), one summary out. Each figure comes from its own source — published and acked
from the agents' outbox sequence numbers and delivery counts, stored from the hub's
store — so a disagreement shows instead of being papered over.

A stored event lifecycle belongs to the problem of the same agent, device and
subcategory whose window holds the lifecycle's start; a problem is *detected* when one
does. A case is *false* when none of its lifecycles belongs to a problem; a problem with
two or more cases counts the extra ones as *duplicate cases*.

A problem's time to dispatch runs from its start to the first dispatch that covers it:
the moment one of its lifecycles joined its case when a dispatch stood then (the case
was in a department's hands), else the case's first dispatch after that moment. A case
reopened by a recurring problem keeps its first dispatches in its audit trail, so each
problem is measured against its own dispatch, not the case's latest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .hubaudit import StoreAudit, StoredCase, StoredLifecycle
from .notifycard import care_figures, notification_counts
from .plancard import plan_rows, warning_levels
from .scenarios.truth import Problem

__all__ = ["AgentCounters", "covering_dispatch", "percentile", "scorecard"]

AUTO_CLOSERS = ("auto_sensor", "auto_photo")
# States in which a dispatch stands: the case is in a department's hands.
DISPATCH_STANDS = frozenset({"dispatched", "in_progress", "escalated", "resolved"})


@dataclass(frozen=True)
class AgentCounters:
    """One agent's own view of its deliveries."""

    agent_id: str
    published: int  # events taken into the outbox (seq numbers issued)
    acked: int  # rows the hub's acks removed from the outbox
    sent: int  # events put on the wire, re-sends included
    outbox_depth: int  # still waiting for an ack when the counters were read
    dropped: int = 0  # dropped by the outbox cap


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _final(case_id: int | None, cases: dict[int, StoredCase]) -> int | None:
    seen = set()
    while case_id is not None and case_id in cases and cases[case_id].merged_into is not None:
        if case_id in seen:
            break
        seen.add(case_id)
        case_id = cases[case_id].merged_into
    return case_id


def covering_dispatch(history: list[tuple[float, str]], joined: float) -> float | None:
    """When a problem's lifecycle that joined its case at ``joined`` was first covered
    by a dispatch. ``history``: the case's state changes ``(at, to_state)`` in
    the order they happened. ``joined`` itself when a dispatch stood then, else the
    first dispatch after it; None when the case was never dispatched after it."""
    state = None
    for at, to_state in history:
        if at > joined:
            break
        state = to_state
    if state in DISPATCH_STANDS:
        return joined
    return next((at for at, to_state in history if at > joined and to_state == "dispatched"), None)


def scorecard(problems: list[Problem], agents: list[AgentCounters], audit: StoreAudit,
              start: datetime, horizon: float) -> dict[str, Any]:
    """``start``: the simulated clock's origin; ``horizon``: simulated seconds at which
    injection stopped (problems due after it are *pending*, not missed)."""

    def sim(when: datetime) -> float:
        return (when - start).total_seconds()

    cases = {c.id: c for c in audit.cases}
    history: dict[int, list[tuple[float, str]]] = {}
    for tr in audit.transitions:
        history.setdefault(tr.case_id, []).append((sim(tr.at), tr.to_state))
    by_key: dict[tuple[str, str, str], list[Problem]] = {}
    for p in problems:
        by_key.setdefault((p.agent_id, p.source, p.subcategory), []).append(p)

    matched: dict[str, list[StoredLifecycle]] = {p.id: [] for p in problems}
    true_cases: set[int] = set()
    for life in audit.lifecycles:
        t = sim(life.started_at)
        fits = [p for p in by_key.get((life.agent_id, life.source, life.subcategory), [])
                if p.window[0] <= t <= p.window[1]]
        if not fits:
            continue
        owner = min(fits, key=lambda p: (t < p.start, abs(t - p.start)))
        matched[owner.id].append(life)
        final = _final(life.case_id, cases)
        if final is not None:
            true_cases.add(final)

    rows, latencies = [], []
    detected = missed = pending = duplicate_cases = 0
    for p in problems:
        lives = matched[p.id]
        finals = sorted({f for life in lives if (f := _final(life.case_id, cases)) is not None})
        status = "detected" if lives else ("missed" if p.due < horizon else "pending")
        detected += status == "detected"
        missed += status == "missed"
        pending += status == "pending"
        duplicate_cases += max(0, len(finals) - 1)
        row: dict[str, Any] = {"id": p.id, "subcategory": p.subcategory, "status": status,
                               "start_s": round(p.start, 1), "due_s": round(p.due, 1)}
        if lives:
            first = min(lives, key=lambda life: life.started_at)
            row["detected_after_s"] = round(sim(first.started_at) - p.start, 1)
            row["cases"] = finals
            covered = [when for life in lives
                       if (f := _final(life.case_id, cases)) is not None
                       and (when := covering_dispatch(history.get(f, []), sim(life.started_at))) is not None]
            if covered:
                when = min(covered)
                latency = when - p.start
                latencies.append(latency)
                row["dispatched_after_s"] = round(latency, 1)
        rows.append(row)

    live_cases = [c for c in audit.cases if c.state != "merged"]
    # Cases of the scenario's agents; the hub's own (vital-sign warnings) are not problems.
    ours = {a.agent_id for a in agents}
    with_lifecycles = {life.case_id for life in audit.lifecycles
                       if life.case_id is not None and life.agent_id in ours}
    false_cases = [c.id for c in live_cases if c.id in with_lifecycles and c.id not in true_cases]
    published = sum(a.published for a in agents)
    lost = 0
    for a in agents:
        stored = audit.seqs.get(a.agent_id, set())
        lost += sum(1 for seq in range(1, a.published + 1) if seq not in stored)
    stored_ours = sum(len(audit.seqs.get(a.agent_id, ())) for a in agents)
    duplicates = audit.duplicate_rows + audit.duplicate_new
    median, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        # the first slice's summary (issue 3)
        "events_published": published,
        "events_stored": stored_ours,
        "events_acked": sum(a.acked for a in agents),
        "cases_opened": len(audit.cases),
        "cases_closed": sum(1 for c in audit.cases if c.state == "closed"),
        "lost": lost,
        "duplicates": duplicates,
        # the scorecard against the ground truth (issue 6)
        "problems_injected": len(problems),
        "problems_detected": detected,
        "problems_pending": pending,
        "missed": missed,
        "cases_dispatched": sum(1 for c in audit.cases if c.dispatched_at is not None),
        "closed_automatically": sum(1 for c in audit.cases if c.closed_by in AUTO_CLOSERS),
        "closed_by_operator": sum(1 for c in audit.cases if c.closed_by == "operator"),
        "false_cases": len(false_cases),
        "duplicate_cases": duplicate_cases,
        "events_lost": lost,
        "time_to_dispatch_s": {
            "median": None if median is None else round(median, 1),
            "p99": None if p99 is None else round(p99, 1),
            "n": len(latencies),
        },
        "events_sent": sum(a.sent for a in agents),
        "outbox_left": sum(a.outbox_depth for a in agents),
        "outbox_dropped": sum(a.dropped for a in agents),
        "dead_letters": audit.dead_letters,
        # response plans and vital-sign warning levels (issue 19)
        "plans": plan_rows(audit.activations, sim),
        "warning_levels": warning_levels(audit.indicators, audit.level_changes, sim),
        # notifications delivered and elderly-care tiers (issue 19; simulators/notifycard.py)
        "notifications": notification_counts(audit.deliveries),
        "care": care_figures(audit.care),
        "false_case_ids": false_cases,
        "problems": rows,
    }
