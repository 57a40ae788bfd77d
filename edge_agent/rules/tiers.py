"""Notification tiers of an elderly-care alarm (no water used, a call button): pure.

An alarm opens at tier 1; while nobody has acknowledged it, tier N is reached
``tiers[N-1].after_min`` minutes after it opened, and each tier reached is an ``update``
event whose attributes name the tier and who it notifies (the hub's care registry turns
that into the resident's contacts). An acknowledgement from the hub stops the climb: the
rule answers it with one ``update`` that says ``acknowledged: true`` (the hub's proof the
agent took it), and reaches no further tier until the alarm ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config.rules import NotifyTier

__all__ = ["ACKNOWLEDGED", "ACKNOWLEDGED_BY", "reached_tier", "tier_attributes"]

ACKNOWLEDGED = "acknowledged"  # event attribute: the agent took the hub's acknowledgement
ACKNOWLEDGED_BY = "acknowledged_by"


def reached_tier(tiers: Sequence[NotifyTier], opened: float, t: float) -> int:
    """The index of the highest tier due ``t - opened`` seconds after the alarm opened."""
    elapsed = t - opened
    return max((i for i, tier in enumerate(tiers) if elapsed >= tier.after_min * 60), default=0)


def tier_attributes(tiers: Sequence[NotifyTier], index: int) -> dict[str, str | int]:
    """What an event says about its tier: 1-based number, who it notifies, how many."""
    return {"tier": index + 1, "notify": tiers[index].notify, "tiers": len(tiers)}
