"""Checks across a scenario's objects, each located at the offending key.

* ids: site ids unique; device ids and unit ids unique on their site;
* places: each site's grid exists in the hub's grids and its location (and each
  device's) lies inside that grid;
* fit: a behaviour and each incident suit the device model; an incident has the rule
  that would detect it (a leak nobody watches can never be scored);
* timing: incidents start within the timeline and, when it repeats, end within it; a
  leak lasts at least its rule's window; rain reaches the level rule's alarm line;
  ``until`` comes after ``at``;
* garbage faults name registers that have a valid range (only those can be told from data).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edge_agent.config.registers import RegisterMap
from hub.geo import GridIndex
from protocol.config import Document
from protocol.errors import ConfigProblem

from .devices import garbage_words, incident_span, unit_of
from .model import DeviceSpec, Scenario

__all__ = ["check_scenario"]

_BEHAVIOURS = {
    "water_meter": {"household", "vacant"},
    "water_level_gauge": {"level"},
    "smoke_detector": {"idle"},
    "call_button": {"idle"},
}
# incident → (device model, the rule that detects it)
_INCIDENTS = {
    "stops_using_water": ("water_meter", "water_no_use"),
    "leak": ("water_meter", "continuous_flow"),
    "rain": ("water_level_gauge", "level"),
    "smoke": ("smoke_detector", "smoke_alarm"),
    "press": ("call_button", "call_button"),
}


def check_scenario(sc: Scenario, doc: Document, grids: GridIndex | None,
                   maps: dict[str, RegisterMap], grids_file: Path | None = None) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    seen_sites: dict[str, int] = {}
    seen_cameras: dict[str, int] = {}
    for s, site in enumerate(sc.sites):
        at = ("sites", s)
        if site.id in seen_sites:
            out.append(doc.problem((*at, "id"), f"site id {site.id!r} is already used by sites[{seen_sites[site.id]}]; "
                                   "each site is one agent with its own id"))
        seen_sites.setdefault(site.id, s)
        if grids is not None:
            out += _check_place(doc, grids, site.grid, site.location.lat, site.location.lon,
                                (*at, "location"), at, grids_file)
        ids: dict[str, int] = {}
        units: dict[int, int] = {}
        for d, spec in enumerate(site.devices):
            dat = (*at, "devices", d)
            if spec.id in ids:
                out.append(doc.problem((*dat, "id"), f"device id {spec.id!r} is already used by devices[{ids[spec.id]}] on this site"))
            ids.setdefault(spec.id, d)
            unit = unit_of(spec, d)
            if unit in units:
                out.append(doc.problem((*dat, "unit_id"), f"unit id {unit} is already used by devices[{units[unit]}] "
                                       "on this gateway; give each device its own unit_id"))
            units.setdefault(unit, d)
            if grids is not None and spec.location is not None:
                out += _check_place(doc, grids, site.grid, spec.location.lat, spec.location.lon,
                                    (*dat, "location"), at, grids_file)
            out += _check_device(sc, doc, spec, dat, maps.get(spec.model))
        for c, cam in enumerate(site.cameras):
            cat = (*at, "cameras", c)
            if cam.id in seen_cameras or cam.id in ids:
                out.append(doc.problem((*cat, "id"), f"camera id {cam.id!r} is already used by a device or "
                                       "camera; give each camera an id unique in the scenario"))
            seen_cameras.setdefault(cam.id, c)
            if grids is not None and cam.location is not None:
                out += _check_place(doc, grids, site.grid, cam.location.lat, cam.location.lon,
                                    (*cat, "location"), at, grids_file)
            for i, inc in enumerate(cam.incidents):
                if inc.at + inc.for_ > sc.duration:
                    out.append(doc.problem((*cat, "incidents", i), "the incident outlasts the timeline "
                                           f"({sc.duration:g} s); end it before the scenario's duration"))
    return out


def _check_place(doc: Document, grids: GridIndex, grid_id: str, lat: float, lon: float,
                 path: tuple, site_path: tuple, grids_file: Path | None) -> Iterable[ConfigProblem]:
    where = f" ({grids_file})" if grids_file else ""
    grid = grids.get(grid_id)
    if grid is None:
        known = ", ".join(sorted(g.grid_id for g in grids.grids))
        return [doc.problem((*site_path, "grid"), f"no grid {grid_id!r} in the hub's grids{where}; known: {known}")]
    if not grid.contains(lat, lon):
        clat, clon = grid.centroid()
        return [doc.problem(path, f"({lat}, {lon}) is outside grid {grid_id}{where}; its centre is "
                            f"({clat:.4f}, {clon:.4f})")]
    return []


def _check_device(sc: Scenario, doc: Document, spec: DeviceSpec, at: tuple,
                  regmap: RegisterMap | None) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    if spec.behaviour is not None and spec.behaviour.kind not in _BEHAVIOURS[spec.model]:
        allowed = " or ".join(sorted(_BEHAVIOURS[spec.model]))
        out.append(doc.problem((*at, "behaviour"), f"a {spec.model} behaves as {allowed}, not {spec.behaviour.kind}"))
    if spec.model == "water_level_gauge" and (spec.behaviour is None or spec.behaviour.level is None):
        out.append(doc.problem(at, "a water_level_gauge needs behaviour: {level: {base: METRES}}"))
    for i, inc in enumerate(spec.incidents):
        iat = (*at, "incidents", i, inc.kind)
        body = inc.body
        if inc.kind in _INCIDENTS:
            model, rule = _INCIDENTS[inc.kind]
            if spec.model != model:
                out.append(doc.problem(iat, f"{inc.kind} happens to a {model}, not to a {spec.model}"))
                continue
            if getattr(spec.rules, rule) is None:
                out.append(doc.problem(iat, f"no rule would notice this {inc.kind}: add rules.{rule} to the device "
                                       "(an incident nobody watches cannot be scored)"))
                continue
        start, end = incident_span(inc.kind, body, sc.duration)
        if start >= sc.duration:
            out.append(doc.problem((*iat, "at"), f"starts at {start:g} s, after the timeline's end ({sc.duration:g} s)"))
        elif sc.repeat and end > sc.duration:
            out.append(doc.problem(iat, f"ends at {end:g} s, after the timeline's end ({sc.duration:g} s); "
                                   "with repeat: true every incident ends within the timeline"))
        until = getattr(body, "until", None)
        if until is not None and until <= start:
            out.append(doc.problem((*iat, "until"), f"until ({until:g} s) must come after at ({start:g} s)"))
        if inc.kind == "leak" and spec.rules.continuous_flow is not None:
            need = spec.rules.continuous_flow.hours * 3600
            if end - start < need:
                out.append(doc.problem(iat, f"the leak lasts {(end - start) / 3600:g} h, shorter than the "
                                       f"continuous_flow rule's {need / 3600:g} h: it could never be detected"))
        if inc.kind == "rain" and spec.rules.level is not None and spec.behaviour and spec.behaviour.level:
            peak = spec.behaviour.level.base + spec.behaviour.level.swing + body.rise_m
            if peak < spec.rules.level.high and spec.rules.level.rate_of_rise is None:
                out.append(doc.problem((*iat, "rise_m"), f"the level peaks at {peak:g} m, below the rule's high "
                                       f"({spec.rules.level.high:g} m): raise rise_m or lower high"))
        if inc.kind == "fault" and body.kind == "garbage" and regmap is not None:
            names = body.registers if body.registers is not None else list(regmap.registers)
            for name in names:
                spec_r = regmap.registers.get(name)
                if spec_r is None:
                    out.append(doc.problem((*iat, "registers"), f"{spec.model} has no register {name!r}; "
                                           f"it has {', '.join(regmap.registers)}"))
                elif body.registers is not None and garbage_words(spec_r) is None:
                    out.append(doc.problem((*iat, "registers"), f"{name} has no valid range (or is a bitfield): "
                                           "garbage there would look like data; pick a register with valid: {min, max}"))
    return out
