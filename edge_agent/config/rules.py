"""Rule settings per device. Each rule watches one signal of the device's register map
(``register`` or ``register.bit``); the logic lives in :mod:`edge_agent.rules`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.ids import Id

__all__ = [
    "AlarmRuleConfig",
    "ContinuousFlowConfig",
    "DeviceRules",
    "LevelConfig",
    "NotifyTier",
    "SignalName",
    "WaterNoUseConfig",
]

# Rules name the signal they watch with the YAML key ``register`` (a register of the
# device's map, or ``register.bit``); in Python it is ``.signal`` (``register`` is taken
# by pydantic's BaseModel).
SignalName = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31})?$",
          description="a register of the device's map, or register.bit for a bitfield flag"),
]


class NotifyTier(StrictModel):
    notify: Id = Field(description="who this tier notifies, e.g. grid_worker, family, civil_affairs")
    after_min: float = Field(ge=0, le=7 * 24 * 60, description="minutes after the alarm opened")


def check_tiers(tiers: list[NotifyTier]) -> None:
    """The first tier starts with the alarm; each later one strictly later."""
    if tiers and tiers[0].after_min != 0:
        raise ValueError("the first tier starts when the alarm opens: set its after_min to 0")
    for a, b in zip(tiers, tiers[1:], strict=False):
        if b.after_min <= a.after_min:
            raise ValueError("tiers must escalate: each after_min larger than the one before")


def _default_tiers() -> list[NotifyTier]:
    return [NotifyTier(notify="grid_worker", after_min=0), NotifyTier(notify="community", after_min=60)]


class WaterNoUseConfig(StrictModel):
    """Elderly resident living alone: no water used for ``hours`` → alarm, tiered."""

    signal: SignalName = Field("volume", alias="register")
    hours: float = Field(8.0, gt=0, le=168, description="no-use period that raises the alarm")
    min_increase: float = Field(
        0.001, gt=0, description="volume increase that counts as use (meter resolution)"
    )
    tiers: list[NotifyTier] = Field(
        default_factory=_default_tiers, min_length=1, max_length=5,
        description="who is told, escalating while the alarm stays unacknowledged",
    )
    resident: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="a reference for the resident (flat number or case id, not a name)"
    )

    @model_validator(mode="after")
    def _tiers_escalate(self) -> WaterNoUseConfig:
        check_tiers(self.tiers)
        return self


class ContinuousFlowConfig(StrictModel):
    """Water flowing without a pause for ``hours`` → suspected leak."""

    signal: SignalName = Field("flow", alias="register")
    hours: float = Field(2.0, gt=0, le=168)
    min_flow: float = Field(0.001, gt=0, description="flow above this counts as flowing")
    clear_after_min: float = Field(
        10.0, ge=0, le=1440, description="flow must stay below min_flow this long to clear"
    )
    update_every_min: float = Field(60.0, gt=0, le=1440, description="progress update period")


class LevelConfig(StrictModel):
    """Water level above ``high`` (cleared below ``clear_below``: hysteresis), or rising
    faster than ``rate_of_rise`` per hour."""

    signal: SignalName = Field("level", alias="register")
    subcategory: Literal["flood.river_level", "flood.underpass_water_level"] = "flood.river_level"
    high: float = Field(description="alarm at or above this level")
    clear_below: float = Field(description="clear when the level is below this (< high)")
    rate_of_rise: float | None = Field(
        None, gt=0, description="alarm when rising faster than this, in units per hour"
    )
    rate_window_min: float = Field(15.0, gt=0, le=720, description="window for the rate of rise")
    update_delta: float = Field(
        0.05, gt=0, description="send an update when the level moved this much since the last one"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> LevelConfig:
        if self.clear_below >= self.high:
            raise ValueError(
                f"clear_below ({self.clear_below}) must be below high ({self.high}) for hysteresis"
            )
        return self


class AlarmRuleConfig(StrictModel):
    """A flag that means alarm (smoke detected, call button pressed)."""

    signal: SignalName = Field(alias="register", description="the flag, usually register.bit")
    counter: SignalName | None = Field(
        None, description="a press/alarm counter register; an increase counts even if the flag was missed"
    )
    clear_after_s: float = Field(
        30.0, ge=0, le=86400, description="the flag must stay off this long to clear"
    )
    tiers: list[NotifyTier] | None = Field(
        None, min_length=1, max_length=5,
        description="call button: who is told, escalating while the call is not acknowledged "
                    "(none: one message, no escalation)",
    )

    @model_validator(mode="after")
    def _tiers_escalate(self) -> AlarmRuleConfig:
        check_tiers(self.tiers or [])
        return self


class DeviceRules(StrictModel):
    """At most one rule of each kind per device."""

    water_no_use: WaterNoUseConfig | None = None
    continuous_flow: ContinuousFlowConfig | None = None
    level: LevelConfig | None = None
    smoke_alarm: AlarmRuleConfig | None = None
    call_button: AlarmRuleConfig | None = None

    def configured(self) -> dict[str, StrictModel]:
        return {
            name: cfg for name in type(self).model_fields
            if (cfg := getattr(self, name)) is not None
        }
