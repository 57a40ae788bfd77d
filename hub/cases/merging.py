"""Merging: does an event join an open case, reopen a recently closed one, or open one?

Pure. The grouping key makes "one open case per key" something the database can
guarantee with a unique partial index:

* ``source`` scope: ``{subcategory}|src|{agent_id}/{source}`` (one resident, one meter);
* ``area`` scope: ``{subcategory}|cell|{x}:{y}``, the cell of a square grid whose side is
  the merge radius. Two events in one cell can never hold two open cases; events in
  neighbouring cells join by distance and time window.
* a report held for placement (an address the gazetteer did not know):
  ``{subcategory}|held|{agent_id}/{event_id}``. Its point is a stand-in, so it joins
  nothing and nothing joins it by distance (:func:`is_held_key`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..geo import distance_m
from ..rules import CaseRule, MergeScope

__all__ = ["Candidate", "MergeDecision", "MergeFacts", "decide_merge", "group_key", "held_key",
           "is_held_key"]

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0


def group_key(rule: CaseRule, agent_id: str, source: str, lat: float, lon: float) -> str:
    if rule.merge_scope is MergeScope.SOURCE or rule.merge_radius_m <= 0:
        return f"{rule.subcategory}|src|{agent_id}/{source}"
    side = rule.merge_radius_m
    x = math.floor(lon * _M_PER_DEG_LON_EQ * math.cos(math.radians(lat)) / side)
    y = math.floor(lat * _M_PER_DEG_LAT / side)
    return f"{rule.subcategory}|cell|{x}:{y}"


def held_key(subcategory: str, agent_id: str, event_id: str) -> str:
    """The grouping key of a report waiting to be placed: its own, shared with nothing."""
    return f"{subcategory}|held|{agent_id}/{event_id}"


def is_held_key(key: str) -> bool:
    return "|held|" in key


def search_box(rule: CaseRule, lat: float, lon: float) -> tuple[float, float, float, float] | None:
    """(min_lat, max_lat, min_lon, max_lon) that holds every point within the radius;
    None for source scope, where only the grouping key can match."""
    if rule.merge_scope is MergeScope.SOURCE or rule.merge_radius_m <= 0:
        return None
    r = max(rule.merge_radius_m, 1.0) * 1.01
    dlat = r / _M_PER_DEG_LAT
    dlon = r / (_M_PER_DEG_LON_EQ * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


@dataclass(frozen=True)
class MergeFacts:
    subcategory: str
    agent_id: str
    source: str
    lat: float
    lon: float
    observed_at: datetime


@dataclass(frozen=True)
class Candidate:
    case_id: int
    group_key: str
    lat: float
    lon: float
    last_event_at: datetime
    closed_at: datetime | None = None  # set for recently closed candidates


@dataclass(frozen=True)
class MergeDecision:
    action: str  # "join" | "reopen" | "open"
    case_id: int | None
    group_key: str
    detail: str


def _near(rule: CaseRule, facts: MergeFacts, c: Candidate) -> float | None:
    if rule.merge_scope is MergeScope.SOURCE or rule.merge_radius_m <= 0:
        return None
    if is_held_key(c.group_key):  # a stand-in point: not a place to be near
        return None
    d = distance_m(facts.lat, facts.lon, c.lat, c.lon)
    return d if d <= rule.merge_radius_m else None


def decide_merge(
    facts: MergeFacts,
    rule: CaseRule,
    open_cases: Sequence[Candidate],
    recently_closed: Sequence[Candidate] = (),
    *,
    recurrence_window: timedelta = timedelta(hours=72),
) -> MergeDecision:
    key = group_key(rule, facts.agent_id, facts.source, facts.lat, facts.lon)
    window = timedelta(minutes=rule.merge_window_min)
    for c in open_cases:
        if c.group_key == key:
            return MergeDecision("join", c.case_id, key, "same grouping key")
    best: tuple[float, Candidate] | None = None
    for c in open_cases:
        d = _near(rule, facts, c)
        if d is None or abs(facts.observed_at - c.last_event_at) > window:
            continue
        if best is None or d < best[0]:
            best = (d, c)
    if best is not None:
        return MergeDecision("join", best[1].case_id, key,
                             f"{best[0]:.0f} m from case {best[1].case_id}")
    recent = None
    for c in recently_closed:
        if c.closed_at is None or facts.observed_at - c.closed_at > recurrence_window:
            continue
        same_place = c.group_key == key or _near(rule, facts, c) is not None
        if same_place and (recent is None or c.closed_at > recent.closed_at):  # type: ignore[operator]
            recent = c
    if recent is not None:
        return MergeDecision("reopen", recent.case_id, key,
                             f"recurred within {recurrence_window} of closing")
    return MergeDecision("open", None, key, "no open case nearby")
