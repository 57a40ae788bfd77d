"""What a simulated department does with a dispatched case. Pure and deterministic: the
same seed, case and attempt always give the same plan.

Outcomes (their shares are configurable):

* ``fixed``      accepted, worked within the deadline, resolved; a photo case's
  after-photo shows the problem gone.
* ``not_fixed``  accepted and resolved within the deadline, but the after-photo still
  shows the problem (photo cases only; a sensor case cannot be faked by a photo, so for
  it this share counts as ``fixed`` — the sensor decides when it closes).
* ``late``       fixed, but resolved after the deadline (the hub escalates meanwhile).
* ``reject``     the department says the case is not theirs and returns it to the
  operators with a reason. A department that lists the subcategories it ``handles``
  always returns any other case, whatever the shares.

Times are fractions of the case's window (``deadline_at - dispatched_at``), so a 30-minute
fire deadline and a 3-day tree removal both see realistic, proportional delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import Field, model_validator

from protocol.base import StrictModel

__all__ = ["DEFAULT_WINDOW_S", "OUTCOMES", "Plan", "Shares", "plan_case"]

OUTCOMES = ("fixed", "not_fixed", "late", "reject")
DEFAULT_WINDOW_S = 3600.0  # a case without a deadline: as if it had an hour


class Shares(StrictModel):
    """How often each outcome happens (weights; they need not sum to 1)."""

    fixed: float = Field(0.8, ge=0, description="resolved in time, and fixed")
    not_fixed: float = Field(0.1, ge=0, description="resolved in time, after-photo still shows it")
    late: float = Field(0.05, ge=0, description="fixed, but after the deadline")
    reject: float = Field(0.05, ge=0, description="returned as wrongly dispatched")

    @model_validator(mode="after")
    def _some(self) -> Shares:
        if self.fixed + self.not_fixed + self.late + self.reject <= 0:
            raise ValueError("at least one share must be above 0")
        return self


@dataclass(frozen=True)
class Plan:
    outcome: str  # one of OUTCOMES
    accept_after_s: float  # from first sight to accepting (or returning) the case
    work_s: float  # from first sight to resolving it
    reason: str = ""  # why it is returned

    @property
    def shows_fixed(self) -> bool:
        """What the after-photo shows."""
        return self.outcome != "not_fixed"


def plan_case(case_id: int, attempt: int, window_s: float | None, shares: Shares, seed: int, *,
              photo: bool, subcategory: str = "", handles: frozenset[str] | None = None) -> Plan:
    """The plan for ``attempt`` (1 = first dispatch, 2 = sent back once, ...) of a case."""
    rng = random.Random(f"cityops-handlers:{seed}:{case_id}:{attempt}")
    window = window_s if window_s and window_s > 0 else DEFAULT_WINDOW_S
    accept_after = window * rng.uniform(0.02, 0.1)
    if handles is not None and subcategory not in handles:
        return Plan("reject", accept_after, accept_after,
                    f"{subcategory or 'this case'} is not ours: we handle {', '.join(sorted(handles))}")
    weights = {"fixed": shares.fixed, "not_fixed": shares.not_fixed if photo else 0.0,
               "late": shares.late, "reject": shares.reject if attempt == 1 else 0.0}
    if not photo:
        weights["fixed"] += shares.not_fixed
    if sum(weights.values()) <= 0:  # a sent-back case with only reject/not_fixed shares
        weights["fixed"] = 1.0
    outcome = rng.choices(list(weights), weights=list(weights.values()))[0]
    if outcome == "reject":
        return Plan("reject", accept_after, accept_after, "wrongly dispatched: not in our area")
    if outcome == "late":
        work = window * rng.uniform(1.15, 1.6)
    else:
        work = accept_after + (window - accept_after) * rng.uniform(0.2, 0.8)
    return Plan(outcome, accept_after, work)
