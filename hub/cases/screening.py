"""Quality screening: does an event become an accepted case automatically?

Pure: the facts of the event and its context in, a :class:`Screening` out. Every reason
that applies is kept (not just the first), so an operator sees the whole picture when
deciding whether to overturn the rejection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ..rules import CaseRule, MaintenanceWindow

__all__ = ["Reason", "ScreenFacts", "Screening", "screen"]


class Reason(StrEnum):
    LOW_CONFIDENCE = "low_confidence"
    MISSING_EVIDENCE = "missing_evidence"
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    UNKNOWN_GRID = "unknown_grid"
    MAINTENANCE_WINDOW = "maintenance_window"
    REPEAT_OFFENDER = "repeat_offender"
    NEEDS_OPERATOR = "needs_operator"  # the rule says auto_accept: false


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
    if not reasons and not rule.auto_accept:
        reasons.append((Reason.NEEDS_OPERATOR, "this category is accepted by an operator only"))
    return Screening(not reasons, tuple((str(c), d) for c, d in reasons))
