"""Checks that span fields and objects, for register maps and agent configs.

Single-field rules (ranges, patterns, required keys) live on the models; what needs
more than one value lives here: an order a type cannot have, registers that overlap,
a rule that refers to a register its device's map does not have, two devices on one
bus with one unit id... Each check returns problems located at the offending key, so
``check-config`` lists them all at once with file:line:col.

The camera part (``cameras:``, ``zones:``, ``detector:``) is checked by
:func:`edge_agent.camera.config.camera_problems` through :func:`_camera_checks` here.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge_agent.camera.config import CameraConfig, DetectorConfig, ZoneConfig, camera_problems
from protocol.config import Document
from protocol.errors import ConfigProblem

from .devices import DeviceConfig
from .model import AgentConfig
from .registers import DataType, RegisterMap, RegisterSpec

__all__ = ["AGENT_CHECKS", "CheckContext", "check_agent", "check_register_map", "device_period"]

_INTEGER = {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32}
_FLOAT = {DataType.FLOAT32, DataType.FLOAT64}


# -- register maps -----------------------------------------------------------------


def check_register_map(regmap: RegisterMap, doc: Document) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for name, spec in regmap.registers.items():
        problems += _check_register(name, spec, doc)
    problems += _check_overlaps(regmap, doc)
    return problems


def _check_register(name: str, spec: RegisterSpec, doc: Document) -> list[ConfigProblem]:
    at = ("registers", name)
    width = spec.width
    out = []
    if spec.count is not None and spec.count != width:
        out.append(doc.problem((*at, "count"),
            f"a {spec.type} spans {width} register(s), so count {spec.count} is impossible; "
            f"remove count or set it to {width}"))
    if width == 1 and spec.word_order is not None:
        out.append(doc.problem((*at, "word_order"),
            f"a {spec.type} is a single register, so a word order is impossible; remove "
            "word_order (byte_order swaps the two bytes inside the register)"))
    if spec.address + width - 1 > 65535:
        out.append(doc.problem((*at, "address"),
            f"a {spec.type} at {spec.address} would end past address 65535"))
    if spec.bits is not None and spec.type != DataType.BITFIELD:
        out.append(doc.problem((*at, "bits"),
            f"bits name flags of a bitfield register, not of a {spec.type}; set type: bitfield or remove bits"))
    if spec.type == DataType.BITFIELD:
        if spec.scale != 1.0 or spec.offset != 0.0:
            out.append(doc.problem((*at, "scale" if spec.scale != 1.0 else "offset"),
                "a bitfield is a set of flags; scale and offset do not apply to it"))
        seen: dict[int, str] = {}
        for bit_name, bit in (spec.bits or {}).items():
            if bit in seen:
                out.append(doc.problem((*at, "bits", bit_name),
                    f"bit {bit} is already named {seen[bit]!r}; each bit has one name"))
            seen.setdefault(bit, bit_name)
    if spec.scale == 0:
        out.append(doc.problem((*at, "scale"),
            "scale 0 turns every reading into the offset; use a non-zero scale"))
    if spec.valid and spec.valid.min is not None and spec.valid.max is not None \
            and spec.valid.min > spec.valid.max:
        out.append(doc.problem((*at, "valid"),
            f"valid.min ({spec.valid.min}) is above valid.max ({spec.valid.max}); swap them"))
    return out


def _check_overlaps(regmap: RegisterMap, doc: Document) -> list[ConfigProblem]:
    out = []
    by_function: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for name, spec in regmap.registers.items():
        by_function[spec.function].append((spec.address, spec.address + spec.width - 1, name))
    for function, ranges in by_function.items():
        ranges.sort()
        reach = None  # the register reaching furthest so far: (lo, hi, name)
        for lo, hi, name in ranges:
            if reach is not None and lo <= reach[1]:
                out.append(doc.problem(("registers", name, "address"),
                    f"overlaps register {reach[2]!r} (function {function}, addresses "
                    f"{reach[0]}..{reach[1]}) at address {lo}; each address belongs to one register"))
            if reach is None or hi > reach[1]:
                reach = (lo, hi, name)
    return out


# -- agent configs -----------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What the checks look at. When the document failed validation somewhere, ``config``
    is None and ``devices`` holds the device entries that did validate (with their index
    in the file), so cross checks still report their problems in the same run."""

    config: AgentConfig | None
    devices: list[tuple[int, DeviceConfig]]
    map_names: list[str]
    maps: dict[str, RegisterMap]
    doc: Document
    base_dir: Path

    @classmethod
    def of(cls, config: AgentConfig, maps: dict[str, RegisterMap], doc: Document,
           base_dir: Path) -> CheckContext:
        return cls(config, list(enumerate(config.devices)), list(config.register_maps), maps,
                   doc, base_dir)

    def at(self, path: Iterable[str | int], message: str) -> ConfigProblem:
        return self.doc.problem(tuple(path), message)


AgentCheck = Callable[[CheckContext], Iterable[ConfigProblem]]


def device_period(device: DeviceConfig, regmap: RegisterMap, register: str | None = None) -> float:
    """The read period of a device (or of one of its registers)."""
    if register is not None:
        spec = regmap.registers.get(register)
        if spec is not None and spec.poll_period_s is not None:
            return spec.poll_period_s
    return device.poll_period_s or regmap.poll_period_s


def _unique_device_ids(ctx: CheckContext) -> Iterable[ConfigProblem]:
    first: dict[str, int] = {}
    for i, dev in ctx.devices:
        if dev.id in first:
            yield ctx.at(("devices", i, "id"),
                f"device id {dev.id!r} is already used by devices[{first[dev.id]}]; ids are unique")
        first.setdefault(dev.id, i)


def _models_exist(ctx: CheckContext) -> Iterable[ConfigProblem]:
    known = ctx.map_names
    for i, dev in ctx.devices:
        if dev.model not in known:
            close = difflib.get_close_matches(dev.model, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; known: {', '.join(known)}" if known else "; add it under register_maps:")
            yield ctx.at(("devices", i, "model"),
                f"no register map named {dev.model!r}{hint}")


def _unique_unit_per_link(ctx: CheckContext) -> Iterable[ConfigProblem]:
    first: dict[tuple[str, int], str] = {}
    for i, dev in ctx.devices:
        key = (dev.link_key, dev.unit_id)
        if key in first:
            yield ctx.at(("devices", i, "unit_id"),
                f"unit id {dev.unit_id} on {dev.link_key} is already device {first[key]!r}; "
                "two devices on one bus need different unit ids")
        first.setdefault(key, dev.id)
        if dev.rtu is not None and not 1 <= dev.unit_id <= 247:
            yield ctx.at(("devices", i, "unit_id"),
                f"unit id {dev.unit_id} is not addressable on an RTU bus; use 1..247")


def _rtu_settings_agree(ctx: CheckContext) -> Iterable[ConfigProblem]:
    first: dict[str, tuple[int, tuple]] = {}
    for i, dev in ctx.devices:
        if dev.rtu is None:
            continue
        settings = (dev.rtu.baudrate, dev.rtu.parity, dev.rtu.stopbits, dev.rtu.bytesize)
        if dev.rtu.port in first and first[dev.rtu.port][1] != settings:
            j = first[dev.rtu.port][0]
            yield ctx.at(("devices", i, "rtu"),
                f"serial port {dev.rtu.port} is set up differently in devices[{j}]; devices on "
                "one serial line share baud rate, parity, stop bits and byte size")
        first.setdefault(dev.rtu.port, (i, settings))


def _signal_problem(regmap: RegisterMap, signal: str, want: str) -> str | None:
    """Why ``signal`` cannot serve a rule that needs ``want`` (numeric|flag|counter)."""
    signals = regmap.signals()
    if signal not in signals:
        close = difflib.get_close_matches(signal, list(signals), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it has: {', '.join(signals)}"
        return f"register map {regmap.model!r} has no register {signal!r}{hint}"
    register, bit = signals[signal]
    spec = regmap.registers[register]
    if want == "numeric" and (bit is not None or spec.type == DataType.BITFIELD):
        return f"{signal!r} is a flag; this rule needs a numeric register"
    if want == "counter" and (bit is not None or spec.type not in _INTEGER):
        return f"{signal!r} is a {spec.type if bit is None else 'flag'}; a counter must be an integer register"
    if want == "flag" and bit is None and spec.type in _FLOAT:
        return (f"{signal!r} is a {spec.type}; an alarm needs a flag (register.bit) "
                "or an integer register (non-zero = alarm)")
    return None


# rule -> (attribute, YAML key, what it needs)
_RULE_SIGNALS = {
    "water_no_use": (("signal", "register", "numeric"),),
    "continuous_flow": (("signal", "register", "numeric"),),
    "level": (("signal", "register", "numeric"),),
    "smoke_alarm": (("signal", "register", "flag"), ("counter", "counter", "counter")),
    "call_button": (("signal", "register", "flag"), ("counter", "counter", "counter")),
}


def _rule_signals(ctx: CheckContext) -> Iterable[ConfigProblem]:
    for i, dev in ctx.devices:
        regmap = ctx.maps.get(dev.model)
        if regmap is None:
            continue
        for rule_name, rule in dev.rules.configured().items():
            for attr, key, want in _RULE_SIGNALS[rule_name]:
                signal = getattr(rule, attr)
                if signal is None:
                    continue
                why = _signal_problem(regmap, signal, want)
                if why:
                    yield ctx.at(("devices", i, "rules", rule_name, key), why)


def _rules_can_fire(ctx: CheckContext) -> Iterable[ConfigProblem]:
    for i, dev in ctx.devices:
        regmap = ctx.maps.get(dev.model)
        if regmap is None:
            continue
        rules = dev.rules
        at = ("devices", i, "rules")
        if rules.level and rules.level.signal in regmap.registers:
            spec = regmap.registers[rules.level.signal]
            if spec.valid and spec.valid.max is not None and rules.level.high > spec.valid.max:
                yield ctx.at((*at, "level", "high"),
                    f"high ({rules.level.high}) is above the register's valid.max "
                    f"({spec.valid.max}): the alarm could never fire")
            period = device_period(dev, regmap, rules.level.signal)
            if rules.level.rate_of_rise and rules.level.rate_window_min * 60 < 2 * period:
                yield ctx.at((*at, "level", "rate_window_min"),
                    f"a rate of rise needs two readings in its window, but the level is read "
                    f"every {period:g} s; make the window at least {2 * period / 60:g} min")
        for name in ("water_no_use", "continuous_flow"):
            rule = getattr(rules, name)
            if rule is None or rule.signal not in regmap.registers:
                continue
            period = device_period(dev, regmap, rule.signal)
            if rule.hours * 3600 < 2 * period:
                yield ctx.at((*at, name, "hours"),
                    f"{rule.hours:g} h is shorter than two reads ({period:g} s each); "
                    "poll faster or lengthen the period")


def _valid_items(ctx: CheckContext, key: str, model: type, context: dict) -> list[tuple[int, object]]:
    items = ctx.doc.data.get(key) if isinstance(ctx.doc.data, dict) else None
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        try:
            out.append((i, model.model_validate(item, context=context)))
        except ValidationError:
            continue  # already reported by the full validation
    return out



def _camera_checks(ctx: CheckContext) -> Iterable[ConfigProblem]:
    """Cameras, zones and the detector: unique ids, zones on real cameras, labels and
    subcategories that exist, and the model file (missing, corrupt, of an unknown layout,
    or predicting another number of classes than its labels file names). The model is
    opened only when a camera is configured or ``detector:`` is written."""
    data = ctx.doc.data if isinstance(ctx.doc.data, dict) else {}
    context = {"base_dir": ctx.base_dir}
    if ctx.config is not None:
        cameras = list(enumerate(ctx.config.cameras))
        zones = list(enumerate(ctx.config.zones))
        detector: DetectorConfig | None = ctx.config.detector
        ids = None
    else:
        cameras = _valid_items(ctx, "cameras", CameraConfig, context)  # type: ignore[assignment]
        zones = _valid_items(ctx, "zones", ZoneConfig, context)  # type: ignore[assignment]
        try:
            detector = DetectorConfig.model_validate(data.get("detector") or {}, context=context)
        except ValidationError:
            detector = None
        raw = data.get("cameras")
        ids = [c.get("id") for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    if not cameras and not zones and "detector" not in data:
        return
    check_model = any(c.enabled for _, c in cameras) or "detector" in data
    for path, message in camera_problems(cameras, zones, detector, camera_ids=ids, check_model=check_model):
        yield ctx.at(path, message)


AGENT_CHECKS: list[AgentCheck] = [
    _unique_device_ids,
    _models_exist,
    _unique_unit_per_link,
    _rtu_settings_agree,
    _rule_signals,
    _rules_can_fire,
    _camera_checks,
]


def check_agent(ctx: CheckContext) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for check in AGENT_CHECKS:
        problems.extend(check(ctx))
    return problems
