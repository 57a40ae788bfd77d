"""Water rules for smart meters: no use by an elderly resident living alone, and
continuous flow (a leak or a tap left running)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.rules import ContinuousFlowConfig, WaterNoUseConfig
from protocol.messages import EventKind

from .base import Decision, SingleSignalRule, State
from .tiers import ACKNOWLEDGED, ACKNOWLEDGED_BY, reached_tier, tier_attributes

__all__ = ["ContinuousFlowRule", "WaterNoUseRule"]


@dataclass(frozen=True)
class WaterNoUseRule(SingleSignalRule):
    """No increase of the cumulative volume for ``hours`` → alarm, then escalate.

    Tier 1 notifies the first contact; while the alarm is not acknowledged, each later
    tier is reached ``after_min`` minutes after the alarm opened and sent as an
    ``update`` whose attributes name the tier and who to notify (:mod:`.tiers`). Any use
    of water ends the alarm (``reason: water_used``). A volume that goes down (meter
    replaced or reset) is taken as the new baseline, not as use.
    """

    config: WaterNoUseConfig
    name: str = "water_no_use"
    category: str = "elderly_care"
    subcategory: str = "elderly_care.water_no_use"

    def initial(self) -> State:
        return {"base": None, "last_use": None, "active": False, "tier": 0, "opened": None,
                "acked": False}

    def advance(self, s: State, v: float, t: float) -> tuple[State, Decision | None]:
        cfg = self.config
        if s["base"] is None or v < s["base"]:
            s["base"] = v
            s["last_use"] = s["last_use"] if s["last_use"] is not None else t
            return s, None
        idle_h = round((t - s["last_use"]) / 3600, 3)
        if v - s["base"] >= cfg.min_increase:
            was_active = s["active"]
            s.update(base=v, last_use=t, active=False, tier=0, opened=None, acked=False)
            if was_active:
                return s, Decision(EventKind.END, cfg.signal, v,
                                   {"reason": "water_used", "idle_hours": idle_h})
            return s, None
        if not s["active"]:
            if t - s["last_use"] >= cfg.hours * 3600:
                s.update(active=True, tier=0, opened=t, acked=False)
                return s, Decision(EventKind.NEW, cfg.signal, v, self._attrs(0, idle_h))
            return s, None
        if s["acked"]:
            return s, None
        reached = reached_tier(cfg.tiers, s["opened"], t)
        if reached > s["tier"]:
            s["tier"] = reached
            return s, Decision(EventKind.UPDATE, cfg.signal, v, self._attrs(reached, idle_h))
        return s, None

    def acknowledge(self, state: State, by: str, t: float) -> tuple[State, Decision | None]:
        """Someone took the alarm: stop escalating (it stays open until water is used).
        The decision tells the hub the agent took it; an alarm already acknowledged, or
        not open, gives none (the hub may send the same acknowledgement again)."""
        if not state.get("active") or state.get("acked"):
            return state, None
        s = {**state, "acked": True}
        idle_h = round((t - s["last_use"]) / 3600, 3) if s.get("last_use") is not None else 0.0
        attrs = {**self._attrs(int(s["tier"]), idle_h), ACKNOWLEDGED: True,
                 ACKNOWLEDGED_BY: by[:200]}
        return s, Decision(EventKind.UPDATE, self.config.signal, float(s["base"] or 0.0), attrs)

    def _attrs(self, tier: int, idle_h: float) -> dict:
        cfg = self.config
        return {**tier_attributes(cfg.tiers, tier), "idle_hours": idle_h,
                "threshold_hours": cfg.hours, "resident": cfg.resident}


@dataclass(frozen=True)
class ContinuousFlowRule(SingleSignalRule):
    """Flow above ``min_flow`` in every reading for ``hours`` → suspected leak.

    While open, an ``update`` every ``update_every_min`` reports how long it has been
    flowing; flow below ``min_flow`` for ``clear_after_min`` ends it. Before the alarm,
    a single reading without flow resets the count (a household's use has pauses).
    """

    config: ContinuousFlowConfig
    name: str = "continuous_flow"
    category: str = "water"
    subcategory: str = "water.continuous_flow"

    def initial(self) -> State:
        return {"since": None, "below": None, "active": False, "updated": None, "peak": 0.0}

    def advance(self, s: State, f: float, t: float) -> tuple[State, Decision | None]:
        cfg = self.config
        if f > cfg.min_flow:
            s["below"] = None
            s["since"] = s["since"] if s["since"] is not None else t
            s["peak"] = max(s["peak"], f)
            hours = round((t - s["since"]) / 3600, 3)
            if not s["active"]:
                if t - s["since"] >= cfg.hours * 3600:
                    s.update(active=True, updated=t)
                    return s, Decision(EventKind.NEW, cfg.signal, f, self._attrs(hours, s))
                return s, None
            if t - s["updated"] >= cfg.update_every_min * 60:
                s["updated"] = t
                return s, Decision(EventKind.UPDATE, cfg.signal, f, self._attrs(hours, s))
            return s, None
        if not s["active"]:
            return self.initial(), None
        s["below"] = s["below"] if s["below"] is not None else t
        if t - s["below"] >= cfg.clear_after_min * 60:
            hours = round((s["below"] - s["since"]) / 3600, 3)
            return self.initial(), Decision(EventKind.END, cfg.signal, f,
                                            {"reason": "flow_stopped", "flowing_hours": hours,
                                             "peak_flow": s["peak"]})
        return s, None

    def _attrs(self, hours: float, s: State) -> dict:
        return {"flowing_hours": hours, "threshold_hours": self.config.hours,
                "min_flow": self.config.min_flow, "peak_flow": s["peak"]}
