"""The scenario file: sites (an edge agent and its Modbus gateway each), their devices,
how each device behaves on an ordinary day, and the incidents and faults injected into
that day. Times are simulated durations from the scenario's start (``"3h30m"``,
``"90m"``, ``"45s"``, ``"1d"`` or a number of seconds).

Everything here is a :class:`~protocol.base.StrictModel`: a typo is an error at its
``file:line:col`` (see :mod:`simulators.scenarios.loader`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from edge_agent.config.rules import DeviceRules
from edge_agent.config.sections import LocationConfig
from hub.routing import TimeZoneName
from protocol.base import StrictModel
from protocol.ids import Id

__all__ = [
    "Behaviour",
    "CameraIncident",
    "CameraSpec",
    "DeviceSpec",
    "Fault",
    "FaultKind",
    "Household",
    "HubTuning",
    "Incident",
    "Leak",
    "LevelBehaviour",
    "Press",
    "Rain",
    "Scenario",
    "SimDuration",
    "Site",
    "SiteModbus",
    "Smoke",
    "StopsUsingWater",
    "parse_duration",
]

_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> float:
    """``"1d2h30m"`` → seconds. Numbers are seconds already."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '3h30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or text like '3h30m'")
    text = value.strip().replace(" ", "")
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"cannot read {value!r} as a duration; write e.g. '45s', '90m', '3h30m', '1d'")
    return sum(float(g) * _UNIT_S[u] for g, u in zip(match.groups(), "dhms", strict=True) if g)


SimDuration = Annotated[float, BeforeValidator(parse_duration)]
Model = Literal["water_meter", "water_level_gauge", "smoke_detector", "call_button"]


# -- ordinary days ----------------------------------------------------------------------

class Household(StrictModel):
    """A resident's daily water use: a draw on waking (05:30-07:00), at lunch
    (11:30-13:00), at dinner (17:30-19:00) and before bed (21:30-23:00), ``draws_per_day``
    in all, some in the night (``night_use``: the share of nights with one). The longest
    ordinary gap is 9.5 h, so a 10 h no-use rule stays quiet on an ordinary day.
    Deterministic per day from ``seed``."""

    draws_per_day: int = Field(10, ge=4, le=60)
    flow_m3h: tuple[float, float] = Field((0.2, 0.6), description="flow of a draw, min and max")
    draw_minutes: tuple[float, float] = Field((1.0, 8.0), description="length of a draw, min and max")
    night_use: float = Field(0.5, ge=0, le=1)
    volume_m3: float = Field(120.0, ge=0, le=999_000, description="meter reading at the start")
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self) -> Household:
        for name in ("flow_m3h", "draw_minutes"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} is (min, max) with 0 < min <= max (got {lo}, {hi})")
        return self


class LevelBehaviour(StrictModel):
    """A river or underpass gauge: a base level with a slow daily swing (tide, pumping)."""

    base: float = Field(ge=-2, le=30, description="level in metres on a dry day")
    swing: float = Field(0.02, ge=0, le=2, description="daily swing, metres either side")


class Behaviour(StrictModel):
    """Exactly one of the keys."""

    household: Household | None = None
    vacant: dict[str, Any] | None = Field(None, description="a meter nobody uses ({})")
    level: LevelBehaviour | None = None
    idle: dict[str, Any] | None = Field(None, description="a detector or button at rest ({})")

    @model_validator(mode="after")
    def _one(self) -> Behaviour:
        set_ = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError("give exactly one behaviour: household, vacant, level or idle")
        for key in ("vacant", "idle"):
            if getattr(self, key):
                raise ValueError(f"{key} takes no settings: write {key}: {{}}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)


# -- incidents and faults -------------------------------------------------------------------

class StopsUsingWater(StrictModel):
    """An elderly resident stops using water at ``at`` (a fall, an illness) and is found,
    using water again, at ``until``."""

    at: SimDuration
    until: SimDuration | None = None


class Leak(StrictModel):
    """A pipe behind the meter leaks ``flow_m3h`` from ``at`` until it is fixed."""

    at: SimDuration
    until: SimDuration | None = None
    flow_m3h: float = Field(0.03, gt=0, le=5)


class Rain(StrictModel):
    """Rain raises the level by ``rise_m`` over ``rise_for``, holds ``hold_for``, falls back
    over ``fall_for``."""

    at: SimDuration
    rise_m: float = Field(gt=0, le=20)
    rise_for: SimDuration = Field(gt=0)
    hold_for: SimDuration = 0.0
    fall_for: SimDuration = Field(gt=0)


class Smoke(StrictModel):
    """Smoke at the detector from ``at`` for ``for_`` (the alarm flag and counter)."""

    at: SimDuration
    for_: SimDuration = Field(alias="for", gt=0)
    density: float = Field(2.5, gt=0, le=20, description="dB/m while smoke is present")


class Press(StrictModel):
    """Someone presses the call button at ``at``; a carer resets it ``reset_after`` later."""

    at: SimDuration
    reset_after: SimDuration = Field(600.0, gt=0)


FaultKind = Literal["silent", "slow", "exception", "garbage"]


class Fault(StrictModel):
    """The device misbehaves from ``at`` for ``for_``, then comes back.

    ``silent``: never answers; ``exception``: answers with Modbus exception 4;
    ``slow``: answers ``delay_s`` (real seconds) late; ``garbage``: answers with values
    outside ``registers``' valid ranges (default: every register that has one)."""

    at: SimDuration
    for_: SimDuration = Field(alias="for", gt=0)
    kind: FaultKind
    delay_s: float = Field(0.0, ge=0, le=30)
    registers: list[str] | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Fault:
        if self.kind == "slow" and self.delay_s <= 0:
            raise ValueError("a slow fault needs delay_s (real seconds), e.g. delay_s: 0.1")
        if self.kind != "slow" and self.delay_s:
            raise ValueError(f"delay_s applies to slow faults, not {self.kind}")
        if self.kind != "garbage" and self.registers is not None:
            raise ValueError(f"registers applies to garbage faults, not {self.kind}")
        return self


class Incident(StrictModel):
    """Exactly one of the keys."""

    stops_using_water: StopsUsingWater | None = None
    leak: Leak | None = None
    rain: Rain | None = None
    smoke: Smoke | None = None
    press: Press | None = None
    fault: Fault | None = None

    @model_validator(mode="after")
    def _one(self) -> Incident:
        set_ = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError("give exactly one of: " + ", ".join(type(self).model_fields))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.kind)


# -- sites, devices, the scenario --------------------------------------------------------------

class DeviceSpec(StrictModel):
    id: Id = Field(description="device id on its agent; the `source` of its events")
    model: Model = Field(description="a register map in firmware_configs/register_maps/")
    unit_id: int | None = Field(None, ge=1, le=247, description="default: position in the list + 1")
    location: LocationConfig | None = Field(None, description="default: the site's")
    behaviour: Behaviour | None = Field(None, description="default: household / idle by model")
    rules: DeviceRules = Field(default_factory=DeviceRules, description="the agent's rules")
    incidents: list[Incident] = Field(default_factory=list)


CameraKind = Literal["flame", "smoke", "flood", "puddle", "garbage", "fallen_tree"]


class CameraIncident(StrictModel):
    """A problem that comes into a camera's view at ``at`` and goes ``for_`` later (the
    fire put out, the water drained)."""

    kind: CameraKind
    at: SimDuration
    for_: SimDuration = Field(alias="for", gt=0)


class CameraSpec(StrictModel):
    """A camera of the site's agent, served as a live MJPEG stream by the camera
    simulator (``simulators/camera.py``) from a scene rendered by seed; its incidents
    follow the scenario's timeline."""

    id: Id = Field(description="camera id (the `source` of its events); unique in the scenario")
    seed: int = Field(0, ge=0, description="the rendered street scene")
    location: LocationConfig | None = Field(None, description="where it looks; default: the site's")
    fps: float = Field(2.0, gt=0, le=10, description="frames per real second the agent analyses")
    detect_within: float = Field(15.0, gt=0, le=600, description="real seconds the agent may take to report a problem")
    incidents: list[CameraIncident] = Field(default_factory=list)


class SiteModbus(StrictModel):
    """How the site's agent talks to its gateway, in real seconds (machines, not days)."""

    timeout_s: float = Field(0.3, gt=0, le=30)
    retries: int = Field(0, ge=0, le=5)
    down_after: int = Field(2, ge=1, le=100)
    backoff_max_s: float = Field(2.0, gt=0, le=3600)


class Site(StrictModel):
    """One edge agent with one Modbus TCP gateway holding its devices."""

    id: Id = Field(description="the agent id (its MQTT user and topic level)")
    grid: Id = Field(description="a grid of the hub's grids file")
    location: LocationConfig
    poll: SimDuration = Field(600.0, gt=0, description="simulated time between two polls")
    modbus: SiteModbus = Field(default_factory=SiteModbus)
    devices: list[DeviceSpec] = Field(min_length=1, max_length=247)
    cameras: list[CameraSpec] = Field(default_factory=list, max_length=16)


class HubTuning(StrictModel):
    """Hub settings a scenario may change (simulated time)."""

    clear_hold: SimDuration | None = Field(None, description="screening.clear_hold_s")
    escalation_step: SimDuration | None = Field(None, description="sla.escalation_step_min")
    vitals: str | None = Field(None, description="vital-signs file: a name in hub/examples or a path")
    plans: list[str] = Field(default_factory=list,
                             description="response plans: names in hub/examples/plans or paths")


class Scenario(StrictModel):
    name: Id
    description: str = ""
    start: str = Field("now", pattern=r"^(now|([01]\d|2[0-3]):[0-5]\d)$",
                       description="'now' or HH:MM local time today")
    timezone: TimeZoneName = "Asia/Shanghai"
    duration: SimDuration = Field(gt=0, description="length of the timeline")
    time_scale: float = Field(1.0, gt=0, le=100_000, description="default simulated s per real s")
    min_poll_s: float = Field(0.2, gt=0, le=60, description="real floor under every poll period")
    repeat: bool = Field(True, description="run the timeline again when it ends")
    hub: HubTuning = Field(default_factory=HubTuning)
    sites: list[Site] = Field(min_length=1)
