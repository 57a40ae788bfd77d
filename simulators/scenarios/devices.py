"""Scenario devices: a :class:`~simulators.modbus.SimulatedDevice` whose registers and
fault mode follow its timeline on the simulated clock.

The model is asked on every Modbus request (``refresh``), so an agent polling at any rate
reads the value of that simulated moment; the cumulative volume of a water meter is
integrated exactly between two requests, so a draw that starts and ends between two
polls still moves the counter.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import load_register_map
from edge_agent.config.registers import DataType, RegisterMap, RegisterSpec
from protocol.clock import Clock

from ..modbus import DeviceModel, Mode, SimulatedDevice, encode_raw
from .model import DeviceSpec, Fault, Household, Scenario, Site
from .physics import GaugeTimeline, MeterTimeline, Recurring, SwitchTimeline, rain_length

__all__ = [
    "DEFAULT_MAPS",
    "DeviceTimeline",
    "FaultOverlay",
    "apply_fault",
    "garbage_table",
    "ScenarioDeviceModel",
    "build_site_devices",
    "build_timeline",
    "garbage_words",
    "incident_span",
    "unit_of",
]

DEFAULT_MAPS = Path(__file__).resolve().parents[2] / "firmware_configs" / "register_maps"

_INT_LIMITS = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


def garbage_words(spec: RegisterSpec) -> list[int] | None:
    """Words a broken device might send that decode outside the register's valid range
    (NaN for floats, the type's extreme for integers); ``None`` when no such value exists
    (no valid range, or a bitfield: any bit pattern is a plausible set of flags)."""
    if spec.type == DataType.BITFIELD or spec.valid is None:
        return None
    if spec.type in (DataType.FLOAT32, DataType.FLOAT64):
        return encode_raw(spec, math.nan)
    lo, hi = _INT_LIMITS[spec.type]
    for raw in (hi, lo):
        value = raw * spec.scale + spec.offset
        if (spec.valid.max is not None and value > spec.valid.max) or \
                (spec.valid.min is not None and value < spec.valid.min):
            return encode_raw(spec, raw)
    return None


def incident_span(incident_kind: str, body: object, duration: float) -> tuple[float, float]:
    """(start, end) of an incident within one run of the timeline."""
    at = body.at  # type: ignore[attr-defined]
    if incident_kind in ("stops_using_water", "leak"):
        until = body.until  # type: ignore[attr-defined]
        return at, duration if until is None else until
    if incident_kind == "rain":
        return at, at + rain_length(body)  # type: ignore[arg-type]
    if incident_kind == "press":
        return at, at + body.reset_after  # type: ignore[attr-defined]
    return at, at + body.for_  # type: ignore[attr-defined]  # smoke, fault


@dataclass
class DeviceTimeline:
    """Everything one device does over simulated time."""

    spec: DeviceSpec
    meter: MeterTimeline | None = None
    gauge: GaugeTimeline | None = None
    switch: SwitchTimeline | None = None
    faults: Recurring[Fault] | None = None

    def fault(self, t: float) -> Fault | None:
        active = self.faults.active(t) if self.faults else []
        return active[0] if active else None


def build_timeline(spec: DeviceSpec, scenario: Scenario, day0_s: float) -> DeviceTimeline:
    period = scenario.duration if scenario.repeat else None
    spans: dict[str, list[tuple[float, float, object]]] = {}
    for inc in spec.incidents:
        start, end = incident_span(inc.kind, inc.body, scenario.duration)
        spans.setdefault(inc.kind, []).append((start, end, inc.body))
    tl = DeviceTimeline(spec, faults=Recurring(spans.get("fault", []), period))  # type: ignore[arg-type]
    behaviour = spec.behaviour
    if spec.model == "water_meter":
        household = behaviour.household if behaviour else None
        if behaviour is None:
            household = Household(seed=zlib.crc32(spec.id.encode()) % 10_000)
        tl.meter = MeterTimeline(
            household, day0_s,
            no_use=Recurring([(s, e, None) for s, e, _ in spans.get("stops_using_water", [])], period),
            leaks=Recurring([(s, e, b.flow_m3h) for s, e, b in spans.get("leak", [])], period),  # type: ignore[attr-defined]
        )
    elif spec.model == "water_level_gauge":
        assert behaviour is not None and behaviour.level is not None  # the checks insist
        tl.gauge = GaugeTimeline(behaviour.level, day0_s,
                                 Recurring(spans.get("rain", []), period))  # type: ignore[arg-type]
    elif spec.model == "smoke_detector":
        tl.switch = SwitchTimeline(Recurring([(s, e, b.density) for s, e, b in spans.get("smoke", [])], period))  # type: ignore[attr-defined]
    elif spec.model == "call_button":
        tl.switch = SwitchTimeline(Recurring([(s, e, 1.0) for s, e, _ in spans.get("press", [])], period))
    return tl


class ScenarioDeviceModel:
    """The :class:`~simulators.modbus.DeviceModel` of a scenario device."""

    def __init__(self, timeline: DeviceTimeline, regmap: RegisterMap, clock: Clock) -> None:
        self.timeline = timeline
        self.regmap = regmap
        self.clock = clock
        self._t: float | None = None
        self._volume = timeline.meter.volume0 if timeline.meter else 0.0
        self._garbage = garbage_table(regmap)

    def sim_time(self) -> float:
        return self.clock.monotonic()

    def update(self, device: SimulatedDevice, now: float) -> None:  # noqa: ARG002 - sim time from the clock
        t = self.sim_time()
        regs = self.regmap.registers
        tl = self.timeline
        values: dict[str, float] = {}
        flags: dict[str, bool] = {}
        if tl.meter is not None:
            if self._t is not None and t > self._t:
                self._volume += tl.meter.used(self._t, t)
            values.update(volume=self._volume, flow=tl.meter.flow(t), battery=3.6)
        elif tl.gauge is not None:
            level = tl.gauge.level(t)
            values.update(level=level, level_mm=level, temperature=21.5,
                          uptime=86400.0 + max(t, 0.0))
        elif tl.switch is not None:
            on = tl.switch.flag(t)
            if tl.spec.model == "smoke_detector":
                values.update(smoke_density=tl.switch.value(t, 0.05),
                              alarm_count=tl.switch.count(t) % 65536, battery=3.0)
                flags["status.alarm"] = on
            else:
                values.update(presses=tl.switch.count(t), battery=3.0)
                flags["status.call"] = on
        if self._t is None or t >= self._t:
            self._t = t
        for name, value in values.items():
            if name in regs:
                device.set(name, value)
        for signal, on in flags.items():
            if signal.partition(".")[0] in regs:
                device.set_flag(signal, on)
        self._apply_fault(device, tl.fault(t))

    def _apply_fault(self, device: SimulatedDevice, fault: Fault | None) -> None:
        apply_fault(device, fault, self._garbage)


def garbage_table(regmap: RegisterMap) -> dict[str, list[int]]:
    """Garbage words for every register of a map that can be told from data."""
    return {name: w for name, spec in regmap.registers.items() if (w := garbage_words(spec)) is not None}


def apply_fault(device: SimulatedDevice, fault: Fault | None, garbage: dict[str, list[int]]) -> None:
    """Put a device in the state a fault asks for (``None``: healthy). Call after its
    values were brought up to date, so garbage overwrites them."""
    device.mode, device.delay_s = Mode.OK, 0.0
    if fault is None:
        return
    if fault.kind == "silent":
        device.mode = Mode.SILENT
    elif fault.kind == "exception":
        device.mode = Mode.EXCEPTION
    elif fault.kind == "slow":
        device.mode, device.delay_s = Mode.SLOW, fault.delay_s
    else:
        for name in fault.registers or list(garbage):
            if name in garbage:
                device.set_words(name, garbage[name])


class FaultOverlay:
    """Faults on a schedule over any other device model (or none): the command line's
    ``--fault`` on plain ``--device`` devices."""

    def __init__(self, inner: DeviceModel | None, faults: Recurring[Fault], regmap: RegisterMap,
                 clock: Clock) -> None:
        self.inner = inner
        self.faults = faults
        self.clock = clock
        self._garbage = garbage_table(regmap)

    def update(self, device: SimulatedDevice, now: float) -> None:
        if self.inner is not None:
            self.inner.update(device, now)
        active = self.faults.active(self.clock.monotonic())
        apply_fault(device, active[0] if active else None, self._garbage)


def build_site_devices(site: Site, scenario: Scenario, day0_s: float, clock: Clock,
                       maps_dir: Path = DEFAULT_MAPS) -> list[SimulatedDevice]:
    """The simulated devices of one site's gateway, one unit id each."""
    maps: dict[str, RegisterMap] = {}
    devices = []
    for i, spec in enumerate(site.devices):
        if spec.model not in maps:
            maps[spec.model] = load_register_map(maps_dir / f"{spec.model}.yaml")[0]
        regmap = maps[spec.model]
        model = ScenarioDeviceModel(build_timeline(spec, scenario, day0_s), regmap, clock)
        device = SimulatedDevice(unit_of(spec, i), regmap, model=model, clock=clock)
        device.refresh()
        devices.append(device)
    return devices


def unit_of(spec: DeviceSpec, index: int) -> int:
    return spec.unit_id if spec.unit_id is not None else index + 1
