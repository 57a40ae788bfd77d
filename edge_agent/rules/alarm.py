"""Alarm flags: a smart smoke alarm, a one-key call button."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.rules import AlarmRuleConfig
from protocol.messages import EventKind

from .base import Decision, Sample, State
from .tiers import ACKNOWLEDGED, ACKNOWLEDGED_BY, reached_tier, tier_attributes

__all__ = ["AlarmRule", "call_button_rule", "smoke_alarm_rule"]


@dataclass(frozen=True)
class AlarmRule:
    """A flag that means alarm, optionally backed by a counter.

    Opens when the flag is set or the counter went up (an alarm or a press that came and
    went between two polls); each further counter increase while open is an ``update``;
    the flag off for ``clear_after_s`` (and no new count) ends it (``reason: cleared``:
    for a call button, the call was cancelled). A counter that goes down (reset, wrap) is
    taken as the new baseline.

    With ``tiers`` (a call button) the alarm escalates like the no-use rule
    (:mod:`.tiers`): each tier reached while unacknowledged is an ``update``.
    """

    config: AlarmRuleConfig
    name: str
    category: str
    subcategory: str

    def initial(self) -> State:
        return {"active": False, "counter": None, "off_since": None, "count": 0,
                "tier": 0, "opened": None, "acked": False}

    def step(self, state: State, sample: Sample) -> tuple[State, Decision | None]:
        cfg = self.config
        flag_value = sample.values.get(cfg.signal)
        counter = sample.values.get(cfg.counter) if cfg.counter else None
        if flag_value is None and counter is None:
            return state, None
        t = sample.t
        s = dict(state)
        increase = 0
        if counter is not None:
            if s["counter"] is not None and counter > s["counter"]:
                increase = int(counter - s["counter"])
            s["counter"] = counter
        flag = bool(flag_value) if flag_value is not None else False
        value = flag_value if flag_value is not None else float(counter or 0)
        signal = cfg.signal if flag_value is not None else (cfg.counter or cfg.signal)
        if not s["active"]:
            if not (flag or increase):
                return s, None
            s.update(active=True, count=max(increase, 1), off_since=None if flag else t,
                     tier=0, opened=t, acked=False)
            return s, Decision(EventKind.NEW, signal, value, self._attrs(flag, s["count"], 0))
        if flag:
            s["off_since"] = None
        else:
            s["off_since"] = s["off_since"] if s["off_since"] is not None else t
        if increase:
            s["count"] += increase
            return s, Decision(EventKind.UPDATE, signal, value,
                               self._attrs(flag, s["count"], s.get("tier", 0)))
        if not flag and t - s["off_since"] >= cfg.clear_after_s:
            count = s["count"]
            return {**self.initial(), "counter": s["counter"]}, Decision(
                EventKind.END, signal, value, {**self._attrs(False, count, None), "reason": "cleared"})
        if cfg.tiers and not s.get("acked") and s.get("opened") is not None:
            reached = reached_tier(cfg.tiers, s["opened"], t)
            if reached > s.get("tier", 0):
                s["tier"] = reached
                return s, Decision(EventKind.UPDATE, signal, value,
                                   self._attrs(flag, s["count"], reached))
        return s, None

    def acknowledge(self, state: State, by: str, t: float) -> tuple[State, Decision | None]:
        """Someone took the call: no further tier. None when already taken or not open."""
        if not state.get("active") or state.get("acked"):
            return state, None
        s = {**state, "acked": True}
        attrs = {**self._attrs(s.get("off_since") is None, int(s.get("count") or 1),
                               s.get("tier", 0)), ACKNOWLEDGED: True, ACKNOWLEDGED_BY: by[:200]}
        return s, Decision(EventKind.UPDATE, self.config.signal, 1.0, attrs)

    def _attrs(self, flag: bool, count: int, tier: int | None) -> dict:
        attrs: dict = {"flag": flag, "count": count}
        if self.config.tiers and tier is not None:
            attrs.update(tier_attributes(self.config.tiers, tier))
        return attrs


def smoke_alarm_rule(config: AlarmRuleConfig) -> AlarmRule:
    return AlarmRule(config, "smoke_alarm", "fire_alarm", "fire_alarm.smoke_detector")


def call_button_rule(config: AlarmRuleConfig) -> AlarmRule:
    return AlarmRule(config, "call_button", "elderly_care", "elderly_care.call_button")
