"""Sensor rules: pure state machines over reading samples (:mod:`.water`, :mod:`.level`,
:mod:`.alarm`) and the engine that turns their decisions into events (:mod:`.engine`)."""

from .alarm import AlarmRule, call_button_rule, smoke_alarm_rule
from .base import Decision, Rule, Sample, State
from .engine import DeviceRuleSet, Lifecycle, Step, build_rules, state_key
from .level import LevelRule, rate_per_hour
from .water import ContinuousFlowRule, WaterNoUseRule

__all__ = [
    "AlarmRule",
    "ContinuousFlowRule",
    "Decision",
    "DeviceRuleSet",
    "LevelRule",
    "Lifecycle",
    "Rule",
    "Sample",
    "State",
    "Step",
    "WaterNoUseRule",
    "build_rules",
    "call_button_rule",
    "rate_per_hour",
    "smoke_alarm_rule",
    "state_key",
]
