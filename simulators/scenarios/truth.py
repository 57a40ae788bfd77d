"""The ground truth of a scenario run: which problems were injected, when each began and
ended, and by when the agent's rules should have reported it.

Pure: computed from the scenario, the time scale and the device physics alone, never
from what the agents or the hub did. The demo's scorecard compares it with the hub's
store (:mod:`simulators.scoring`).

A problem's ``start`` is when it truly began (the resident's last use of water, the
leak, the level crossing the alarm line, the smoke, the press, the fault); ``due`` is
the latest moment the rule should have fired (its own window plus two polls); events
whose lifecycle starts inside ``window`` belong to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_agent.config.rules import AlarmRuleConfig, LevelConfig

from .devices import build_timeline, incident_span
from .model import DeviceSpec, Fault, Rain, Scenario, Site
from .physics import GaugeTimeline, rain_length

__all__ = ["Problem", "SiteTiming", "Truth", "ground_truth", "site_timing"]


@dataclass(frozen=True)
class SiteTiming:
    poll_real: float  # seconds between two polls, real
    poll_sim: float  # the same in simulated seconds
    scale: float


def site_timing(site: Site, scenario: Scenario, scale: float) -> SiteTiming:
    poll_real = max(site.poll / scale, scenario.min_poll_s)
    return SiteTiming(poll_real, poll_real * scale, scale)


@dataclass(frozen=True)
class Problem:
    id: str
    agent_id: str
    source: str
    subcategory: str
    kind: str
    start: float  # simulated seconds since the scenario's start
    end: float | None
    due: float
    window: tuple[float, float]


@dataclass
class Truth:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # incidents that cannot raise a case, and why


def ground_truth(scenario: Scenario, scale: float, horizon: float, day0_s: float) -> Truth:
    """Problems that started by ``horizon`` (simulated seconds), over as many runs of the
    timeline as fit."""
    truth = Truth()
    cycles = max(1, math.ceil(horizon / scenario.duration)) if scenario.repeat else 1
    for site in scenario.sites:
        timing = site_timing(site, scenario, scale)
        for spec in site.devices:
            timeline = build_timeline(spec, scenario, day0_s)
            for n, inc in enumerate(spec.incidents):
                for k in range(cycles):
                    shift = k * scenario.duration
                    start, end = incident_span(inc.kind, inc.body, scenario.duration)
                    if start + shift > horizon:
                        continue
                    pid = f"{site.id}/{spec.id}/{inc.kind}#{n + 1}" + (f"@{k + 1}" if k else "")
                    found = _problem(inc.kind, inc.body, start + shift, end + shift, spec, site,
                                     timing, timeline, pid)
                    if isinstance(found, str):
                        if k == 0:
                            truth.notes.append(f"{pid}: {found}")
                    elif found is not None and found.start <= horizon:
                        truth.problems.append(found)
        for cam in site.cameras:
            for n, cinc in enumerate(cam.incidents):
                for k in range(cycles):
                    start = cinc.at + k * scenario.duration
                    if start > horizon:
                        continue
                    pid = f"{site.id}/{cam.id}/{cinc.kind}#{n + 1}" + (f"@{k + 1}" if k else "")
                    truth.problems.append(camera_problem(pid, site.id, cam.id, cinc.kind, start,
                                                         start + cinc.for_, cam.detect_within, scale))
    truth.problems.sort(key=lambda p: p.start)
    return truth


# A camera track ends this many real seconds after its problem leaves the view (the
# agent's tracking.end_after_s in a scenario's camera config).
CAMERA_END_AFTER_S = 4.0


def camera_problem(pid: str, agent_id: str, camera_id: str, kind: str, start: float, end: float,
                   detect_within_s: float, scale: float) -> Problem:
    """A problem in a camera's view: due ``detect_within_s`` real seconds after it appears;
    a lifecycle starting between shortly before it appears and its track's end is its."""
    from vision.labels import bundled_class_map

    from ..scenes.spec import PROBLEM_KINDS

    subcategory = bundled_class_map()[PROBLEM_KINDS[kind]]
    assert subcategory is not None  # noqa: S101 - CameraKind holds mapped kinds only
    tail = (CAMERA_END_AFTER_S + detect_within_s) * scale
    return Problem(pid, agent_id, camera_id, subcategory, f"camera:{kind}", start, end,
                   start + detect_within_s * scale, (start - 2.0 * scale, end + tail))


def _problem(kind: str, body: object, start: float, end: float, spec: DeviceSpec, site: Site,
             t: SiteTiming, timeline, pid: str) -> Problem | str | None:  # noqa: ANN001
    rules = spec.rules
    slack = 3 * t.poll_sim

    def make(subcategory: str, began: float, due: float, until: float | None, tail: float = 0.0) -> Problem:
        last = max(until if until is not None else due, due)
        return Problem(pid, site.id, spec.id, subcategory, kind, began, until, due,
                       (min(began, start) - t.poll_sim, last + slack + tail))

    if kind == "stops_using_water":
        assert rules.water_no_use is not None and timeline.meter is not None
        window = rules.water_no_use.hours * 3600.0
        last = timeline.meter.last_use_before(start)
        began = max(last if last is not None else start, 0.0)
        if end - began < window:
            return (f"the resident is found {(end - began) / 3600:.1f} h after the last use, "
                    f"before the {rules.water_no_use.hours:g} h no-use window: no alarm expected")
        return make("elderly_care.water_no_use", began, began + window + 2 * t.poll_sim, end)
    if kind == "leak":
        assert rules.continuous_flow is not None
        window = rules.continuous_flow.hours * 3600.0
        return make("water.continuous_flow", start, start + window + 2 * t.poll_sim, end,
                    rules.continuous_flow.clear_after_min * 60.0)
    if kind == "rain":
        assert rules.level is not None and timeline.gauge is not None
        return _rain_problem(body, start, rules.level, timeline.gauge, t, make)  # type: ignore[arg-type]
    if kind in ("smoke", "press"):
        rule: AlarmRuleConfig | None = rules.smoke_alarm if kind == "smoke" else rules.call_button
        assert rule is not None
        sub = "fire_alarm.smoke_detector" if kind == "smoke" else "elderly_care.call_button"
        return make(sub, start, start + 2 * t.poll_sim, end, rule.clear_after_s)
    if kind == "fault":
        return _fault_problem(body, start, end, site, t, make)  # type: ignore[arg-type]
    return None


def _rain_problem(rain: Rain, start: float, rule: LevelConfig, gauge: GaugeTimeline,
                  t: SiteTiming, make) -> Problem | str:  # noqa: ANN001
    stop = start + rain_length(rain)
    crossing = gauge.first_time(start, stop, lambda level: level >= rule.high)
    began = crossing
    if rule.rate_of_rise is not None:
        w = rule.rate_window_min * 60.0
        tt = start
        while tt <= stop and (began is None or tt < began):
            if gauge.level(tt) - gauge.level(tt - w) >= rule.rate_of_rise * w / 3600.0:
                began = tt
                break
            tt += 60.0
    if began is None:
        return (f"the level peaks below the alarm line ({rule.high} m) and never rises faster "
                "than the rate rule: no alarm expected")
    peak = start + rain.rise_for + rain.hold_for
    cleared = gauge.first_time(peak, stop + 86400.0, lambda level: level < rule.clear_below)
    return make(rule.subcategory, began, began + 2 * t.poll_sim, cleared)


def _fault_problem(fault: Fault, start: float, end: float, site: Site, t: SiteTiming,
                   make) -> Problem | str | None:  # noqa: ANN001
    m = site.modbus
    if fault.kind == "garbage":
        return None  # readings are rejected by range checks: no event, no case
    if fault.kind == "slow" and fault.delay_s < m.timeout_s * 0.8:
        return None  # late but within the timeout: nothing to report
    per_poll = max(t.poll_real, m.timeout_s * (1 + m.retries))
    to_down_real = (m.down_after + 1) * per_poll + t.poll_real
    to_down = to_down_real * t.scale
    if end - start < 1.5 * to_down:
        return (f"a {fault.kind} fault of {(end - start) / t.scale:.1f} s real is too short for "
                f"{m.down_after} failed polls at this time scale: no device.offline expected")
    return make("device.offline", start, start + 1.5 * to_down, end, m.backoff_max_s * t.scale * 2)
