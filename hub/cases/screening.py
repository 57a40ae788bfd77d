"""Quality screening: does an event become an accepted case automatically?

Pure: the facts of the event and its context in, a :class:`Screening` out. Every reason
that applies is kept (not just the first), so an operator sees the whole picture when
deciding whether to overturn the rejection.

Two rule sets:

* :func:`screen` for machines (cameras, sensors, linked systems): confidence, the
  evidence the category's rule asks for, inside the service area, maintenance windows,
  repeat offenders.
* :func:`screen_report` for people's reports (the ``open311`` and ``reporter``
  channels, :data:`REPORT_CHANNELS`): a person is not a camera, so no confidence, no
  evidence box and no repeat-offender count (each report is its own source). A report
  says something (text or a photo), is not spam, and is inside the service area, or it
  waits for an operator to place it (``held``: the case stays ``new`` in the operator
  queue; it is never closed for want of a point).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ..rules import CaseRule, MaintenanceWindow

__all__ = ["PLACEMENT", "PLACEMENT_PENDING", "REPORT_CHANNELS", "Reason", "ReportFacts", "ScreenFacts", "Screening", "screen",
           "screen_report", "spam_signs"]

# The pseudo-agents whose events are people's reports (hub/web/open311.py, reporter.py).
REPORT_CHANNELS = frozenset({"open311", "reporter"})
# A report's attribute that says how it was placed: "point" (lat/long or a map tap),
# "gazetteer" (its address matched an entry) or "pending" (an operator places it).
PLACEMENT = "placement"
PLACEMENT_PENDING = "pending"


class Reason(StrEnum):
    LOW_CONFIDENCE = "low_confidence"
    MISSING_EVIDENCE = "missing_evidence"
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    UNKNOWN_GRID = "unknown_grid"
    MAINTENANCE_WINDOW = "maintenance_window"
    REPEAT_OFFENDER = "repeat_offender"
    NEEDS_OPERATOR = "needs_operator"  # the rule says auto_accept: false
    # People's reports only:
    NO_CONTENT = "no_content"  # neither text nor a photo
    SPAM = "spam"
    NEEDS_PLACEMENT = "needs_placement"  # an address no gazetteer entry matched


@dataclass(frozen=True)
class ScreenFacts:
    subcategory: str
    agent_id: str
    source: str
    observed_at: datetime
    confidence: float
    evidence: frozenset[str]  # of "snapshot", "bbox", "reading"
    in_service_area: bool
    grid_id: str | None  # from the grids polygons, not from the agent's claim
    recent_false: int = 0  # this source's rejected / false-alarm cases in the window


@dataclass(frozen=True)
class Screening:
    accepted: bool
    reasons: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (code, detail)
    held: bool = False  # not accepted, not rejected: stays new for an operator (reports)

    @property
    def codes(self) -> list[str]:
        return [code for code, _ in self.reasons]


def screen(
    facts: ScreenFacts,
    rule: CaseRule,
    maintenance: Sequence[MaintenanceWindow] = (),
    *,
    repeat_max_false: int | None = None,
) -> Screening:
    reasons: list[tuple[str, str]] = []
    if facts.confidence < rule.min_confidence:
        reasons.append((Reason.LOW_CONFIDENCE,
                        f"confidence {facts.confidence:.2f} is below {rule.min_confidence:.2f}"))
    missing = sorted(rule.evidence - facts.evidence)
    if missing:
        reasons.append((Reason.MISSING_EVIDENCE, f"the event carries no {', '.join(missing)}"))
    if not facts.in_service_area:
        reasons.append((Reason.OUTSIDE_SERVICE_AREA, "the location is outside the service area"))
    if facts.grid_id is None:
        reasons.append((Reason.UNKNOWN_GRID, "the location is in no known grid"))
    for window in maintenance:
        if window.matches(at=facts.observed_at, grid_id=facts.grid_id, agent_id=facts.agent_id,
                          source=facts.source, subcategory=facts.subcategory):
            reasons.append((Reason.MAINTENANCE_WINDOW, f"maintenance window {window.name!r}"))
            break
    if repeat_max_false is not None and facts.recent_false >= repeat_max_false:
        reasons.append((Reason.REPEAT_OFFENDER,
                        f"{facts.agent_id}/{facts.source} had {facts.recent_false} rejected or "
                        "false-alarm cases recently"))
    if not reasons and not rule.auto_accept:  # a sound event an operator must take: held, not rejected
        return Screening(False, ((str(Reason.NEEDS_OPERATOR), "this category is accepted by an operator only"),),
                         held=True)
    return Screening(not reasons, tuple((str(c), d) for c, d in reasons))


# -- people's reports ------------------------------------------------------------------------------
MAX_LINKS = 2  # a report with more links than this is spam
_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)


@dataclass(frozen=True)
class ReportFacts:
    subcategory: str
    channel: str  # "open311" | "reporter"
    text: str  # what the person wrote (may be empty)
    has_photo: bool
    placed: bool  # False: only an address no gazetteer entry matched (the point means nothing)
    in_service_area: bool
    grid_id: str | None


def spam_signs(text: str) -> str | None:
    """Why ``text`` looks like spam, or None. Deliberately narrow: a resident's short or
    clumsy note is never spam; link lists and keyboard mashing are."""
    links = len(_LINK.findall(text))
    if links > MAX_LINKS:
        return f"the text carries {links} links"
    compact = "".join(text.split())
    if len(compact) >= 20:
        top = max(compact.count(ch) for ch in set(compact))
        if top / len(compact) > 0.8:
            return "the text is one character repeated"
    return None


def _says_something(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def screen_report(facts: ReportFacts, rule: CaseRule) -> Screening:
    """A person's report: accepted, rejected (nothing said, spam, outside the area) or
    held for an operator (not placed yet, or the category is accepted by hand)."""
    reasons: list[tuple[str, str]] = []
    if not _says_something(facts.text) and not facts.has_photo:
        reasons.append((Reason.NO_CONTENT, "the report has neither a description nor a photo"))
    sign = spam_signs(facts.text)
    if sign:
        reasons.append((Reason.SPAM, f"looks like spam: {sign}"))
    if facts.placed and not facts.in_service_area:
        reasons.append((Reason.OUTSIDE_SERVICE_AREA, "the location is outside the service area"))
    elif facts.placed and facts.grid_id is None:
        reasons.append((Reason.UNKNOWN_GRID, "the location is in no known grid"))
    if reasons:
        return Screening(False, tuple((str(c), d) for c, d in reasons))
    held: list[tuple[str, str]] = []
    if not facts.placed:
        held.append((Reason.NEEDS_PLACEMENT, "the address matched no gazetteer entry; an "
                     "operator places it"))
    if not rule.auto_accept:
        held.append((Reason.NEEDS_OPERATOR, "this category is accepted by an operator only"))
    if held:
        return Screening(False, tuple((str(c), d) for c, d in held), held=True)
    return Screening(True)
