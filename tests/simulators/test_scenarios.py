"""Scenario files: strict, located errors; the device physics behind them; the ground
truth they imply. Pure: no servers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from edge_agent.config import load_register_map
from edge_agent.modbus.decode import check_valid, decode
from protocol.errors import ConfigError
from simulators.clock import ScaledClock
from simulators.scenarios import load_scenario, scenario_names
from simulators.scenarios.devices import build_site_devices, build_timeline, garbage_words
from simulators.scenarios.model import Household, Scenario, parse_duration
from simulators.scenarios.physics import DAY_S, Recurring, household_draws
from simulators.scenarios.truth import ground_truth
from simulators.stack import scenario_start

MAPS = __import__("pathlib").Path(__file__).resolve().parents[2] / "firmware_configs" / "register_maps"

SMALL = """\
name: small
start: "06:00"
duration: 12h
time_scale: 600
sites:
  - id: site-a
    grid: g-01
    location: {lat: 31.2050, lon: 121.4050}
    poll: 10m
    devices:
      - id: wm-1
        model: water_meter
        behaviour: {household: {seed: 1}}
        rules:
          water_no_use: {hours: 4}
          continuous_flow: {hours: 2}
        incidents:
          - stops_using_water: {at: 2h, until: 10h}
          - leak: {at: 1h, until: 4h}
      - id: gauge-1
        model: water_level_gauge
        behaviour: {level: {base: 0.0, swing: 0.0}}
        rules:
          level: {subcategory: flood.underpass_water_level, high: 0.2, clear_below: 0.05}
        incidents:
          - rain: {at: 3h, rise_m: 0.4, rise_for: 1h, fall_for: 1h}
      - id: smoke-1
        model: smoke_detector
        behaviour: {idle: {}}
        rules:
          smoke_alarm: {register: status.alarm, counter: alarm_count}
        incidents:
          - smoke: {at: 5h, for: 20m}
          - fault: {at: 7h, for: 2h, kind: silent}
"""


def write(tmp_path, text: str, name: str = "sc.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def problems_of(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(p) for p in exc.value.problems]


def test_durations_read_like_people_write_them():
    assert parse_duration("1d2h30m15s") == 86400 + 2 * 3600 + 30 * 60 + 15
    assert parse_duration("90m") == 5400
    assert parse_duration(45) == 45 and parse_duration("45") == 45
    for bad in ("5 minutes", "", "h", True, -1):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_every_shipped_scenario_loads_and_injects_problems():
    names = scenario_names()
    assert {"water-meter", "elderly-care", "rainstorm", "fire", "mixed-day"} <= set(names)
    for name in names:
        sc = load_scenario(name).scenario
        _, day0 = scenario_start(sc.start, sc.timezone)
        truth = ground_truth(sc, sc.time_scale, sc.duration, day0)
        assert truth.problems, f"{name} injects no problem"
        assert not truth.notes, f"{name}: {truth.notes}"


def test_typos_and_bad_values_are_reported_at_their_line(tmp_path):
    text = SMALL.replace("poll: 10m", "poll: ten minutes").replace("kind: silent", "kind: mute")
    text = text.replace("behaviour: {idle: {}}", "behavior: {idle: {}}")
    with pytest.raises(ConfigError) as exc:
        load_scenario(write(tmp_path, text))
    found = problems_of(exc)
    assert any(f":{line_of(text, 'poll:')}:5 sites[0].poll: cannot read 'ten minutes'" in p
               for p in found), found
    assert any(f":{line_of(text, 'behavior')}:9 sites[0].devices[2].behavior: Extra inputs are not "
               "permitted; did you mean 'behaviour'?" in p for p in found), found
    assert any("incidents[1].fault.kind: Input should be" in p and f":{line_of(text, 'mute')}:" in p
               for p in found), found


def test_cross_checks_name_the_fix(tmp_path):
    text = (SMALL.replace("grid: g-01", "grid: g-02")
            .replace("counter: alarm_count", "counter: alarm_cnt")
            .replace("leak: {at: 1h, until: 4h}", "leak: {at: 1h, until: 2h}")
            .replace("          - smoke: {at: 5h, for: 20m}\n", "          - press: {at: 5h}\n"))
    with pytest.raises(ConfigError) as exc:
        load_scenario(write(tmp_path, text))
    found = "\n".join(problems_of(exc))
    assert "sites[0].location: (31.205, 121.405) is outside grid g-02" in found
    assert "the leak lasts 1 h, shorter than the continuous_flow rule's 2 h" in found
    assert "press happens to a call_button, not to a smoke_detector" in found
    assert "rules.smoke_alarm.counter: register map 'smoke_detector' has no register 'alarm_cnt'" in found
    # the counter's line in the scenario, not in a generated agent file
    assert f":{line_of(text, 'alarm_cnt')}:" in found


def test_an_incident_no_rule_watches_is_refused(tmp_path):
    text = SMALL.replace("          continuous_flow: {hours: 2}\n", "")
    with pytest.raises(ConfigError, match=r"no rule would notice this leak: add rules.continuous_flow"):
        load_scenario(write(tmp_path, text))


def test_unknown_scenario_names_the_shipped_ones():
    with pytest.raises(ConfigError, match="no scenario named 'nope'; shipped: elderly-care"):
        load_scenario("nope")


def test_household_days_use_water_every_night_window_shorter_than_the_rules():
    h = Household(seed=7)
    for day in range(30):
        draws = household_draws(h, day)
        assert len(draws) >= h.draws_per_day
        assert draws == household_draws(h, day)  # deterministic
    timeline = build_timeline(load_scenario("mixed-day").scenario.sites[0].devices[2],
                              load_scenario("mixed-day").scenario, 6 * 3600)
    meter = timeline.meter
    assert meter is not None
    # the longest gap without use over a month stays under the 10 h no-use window
    ends = sorted((e, s) for s, e, _ in meter.draws(0, 30 * DAY_S))
    gaps = [b[1] - a[0] for a, b in zip(ends, ends[1:], strict=False)]
    assert max(gaps) < 10 * 3600


def test_meter_volume_integrates_draws_and_stops_when_the_resident_does(tmp_path):
    sc = load_scenario(write(tmp_path, SMALL)).scenario
    meter = build_timeline(sc.sites[0].devices[0], sc, 6 * 3600).meter
    assert meter is not None
    # nothing drawn while absent (2h..10h) apart from the leak (1h..4h, 0.03 m3/h)
    assert meter.used(4 * 3600, 10 * 3600 - 1) == pytest.approx(0.0)
    assert meter.used(2 * 3600, 4 * 3600) == pytest.approx(0.06, abs=1e-9)
    assert meter.flow(2.5 * 3600) == pytest.approx(0.03)
    # found at 10h: the tap runs
    assert meter.flow(10 * 3600 + 10) > 0.3
    v = [meter.volume(t) for t in range(0, 12 * 3600, 600)]
    assert all(b >= a for a, b in zip(v, v[1:], strict=False)) and v[-1] > v[0]


def test_recurring_incidents_repeat_each_period():
    r = Recurring([(10.0, 20.0, "x")], period=100.0)
    assert r.active(15) == ["x"] and r.active(115) == ["x"] and r.active(25) == []
    assert r.started(9) == 0 and r.started(10) == 1 and r.started(250) == 3


def test_garbage_is_rejected_by_the_agents_range_checks():
    """What a broken device sends must fail the agent's own validity check, else the
    simulator would be injecting alarms, not garbage."""
    checked = 0
    for model in ("water_meter", "water_level_gauge", "smoke_detector", "call_button"):
        regmap = load_register_map(MAPS / f"{model}.yaml")[0]
        for spec in regmap.registers.values():
            words = garbage_words(spec)
            if words is None:
                assert spec.valid is None or spec.type == "bitfield"
                continue
            assert check_valid(spec, decode(spec, words).value) is not None, spec
            checked += 1
    assert checked >= 8


def test_ground_truth_times_follow_the_physics(tmp_path):
    sc = load_scenario(write(tmp_path, SMALL)).scenario
    truth = ground_truth(sc, sc.time_scale, 12 * 3600, 6 * 3600)
    by_kind = {p.kind: p for p in truth.problems}
    no_use = by_kind["stops_using_water"]
    assert no_use.start <= 2 * 3600 and no_use.due == pytest.approx(no_use.start + 4 * 3600 + 2 * 600)
    assert by_kind["leak"].start == 3600 and by_kind["leak"].due == pytest.approx(3 * 3600 + 1200)
    rain = by_kind["rain"]
    assert rain.start == pytest.approx(3 * 3600 + 0.5 * 3600, abs=60)  # 0.2 m of a 0.4 m/h rise
    assert rain.end == pytest.approx(4 * 3600 + 0.875 * 3600, abs=60)  # below 0.05 on the way down
    assert by_kind["smoke"].subcategory == "fire_alarm.smoke_detector"
    assert by_kind["fault"].subcategory == "device.offline"
    # at an absurd time scale a 2 h fault lasts 0.07 s: no agent could see it, and it says so
    fast = ground_truth(sc, 100_000, 12 * 3600, 6 * 3600)
    assert "fault" not in {p.kind for p in fast.problems}
    assert any("too short for 2 failed polls" in n for n in fast.notes)


def test_devices_follow_their_timeline_on_the_clock(tmp_path):
    sc = load_scenario(write(tmp_path, SMALL)).scenario
    now = [0.0]
    clock = ScaledClock(datetime(2026, 7, 1, tzinfo=UTC), 1.0, real=lambda: now[0])
    meter, gauge, smoke = build_site_devices(sc.sites[0], sc, 6 * 3600, clock)
    now[0] = 5 * 3600 + 60  # smoke
    smoke.refresh()
    assert smoke.get("status") == 1 and smoke.get("alarm_count") == 1
    now[0] = 3.5 * 3600
    gauge.refresh()
    assert gauge.get("level") == pytest.approx(0.2, abs=0.01)
    now[0] = 8 * 3600  # silent fault
    smoke.refresh()
    assert smoke.mode == "silent"
    now[0] = 9.5 * 3600
    smoke.refresh()
    assert smoke.mode == "ok" and smoke.get("status") == 0


def test_a_scenario_model_forbids_unknown_keys():
    with pytest.raises(ValidationError):
        Scenario.model_validate({"name": "x", "duration": 10, "sites": [], "colour": "red"})
    assert math.isfinite(parse_duration("1d"))


CAMERA = """\
    cameras:
      - id: cam-1
        seed: 3
        incidents:
          - {kind: flame, at: 2h, for: 30m}
          - {kind: flood, at: 6h, for: 1h}
"""


def test_cameras_add_problems_to_the_ground_truth_and_the_agent_config(tmp_path):
    from simulators.scenarios.agents import AgentWiring, agent_config_data

    sc = load_scenario(write(tmp_path, SMALL + CAMERA)).scenario
    truth = ground_truth(sc, 600, sc.duration, 0.0)
    cams = [p for p in truth.problems if p.source == "cam-1"]
    assert [(p.subcategory, p.start, p.end) for p in cams] == [
        ("community_safety.fire", 7200.0, 9000.0), ("flood.road_waterlogging", 21600.0, 25200.0)]
    fire = cams[0]
    assert fire.due == 7200.0 + 15.0 * 600 and fire.window[0] < 7200.0 < fire.window[1]
    data = agent_config_data(sc.sites[0], sc, 600, AgentWiring(camera_base_url="http://127.0.0.1:9/"))
    (cam,) = data["cameras"]
    assert cam["url"] == "http://127.0.0.1:9/cameras/cam-1.mjpg" and cam["location"]["grid_id"] == "g-01"
    assert "cameras" not in agent_config_data(sc.sites[0], sc, 600, AgentWiring())


def test_camera_mistakes_are_reported_at_their_line(tmp_path):
    text = SMALL + CAMERA.replace("kind: flood", "kind: river").replace("id: cam-1", "id: wm-1")
    with pytest.raises(ConfigError) as exc:
        load_scenario(write(tmp_path, text))
    found = problems_of(exc)
    assert any(f":{line_of(text, 'river')}:" in p and "kind: Input should be" in p for p in found), found
    text = SMALL + CAMERA.replace("id: cam-1", "id: wm-1").replace("for: 1h}", "for: 9h}")
    with pytest.raises(ConfigError) as exc:
        load_scenario(write(tmp_path, text))
    found = "\n".join(problems_of(exc))
    assert "camera id 'wm-1' is already used" in found and "outlasts the timeline" in found


def test_fire_and_rainstorm_have_cameras_in_their_ground_truth():
    want = {"fire": {"community_safety.smoke", "community_safety.fire"},
            "rainstorm": {"flood.road_waterlogging"}}
    for name, subs in want.items():
        sc = load_scenario(name).scenario
        truth = ground_truth(sc, sc.time_scale, sc.duration, 0.0)
        cameras = {c.id for site in sc.sites for c in site.cameras}
        got = {p.subcategory for p in truth.problems if p.source in cameras}
        assert got == subs, (name, got)
        # each camera incident lasts a few real seconds at the file's pace: detectable
        for site in sc.sites:
            for cam in site.cameras:
                assert all(i.for_ / sc.time_scale >= 4 for i in cam.incidents), (name, cam.id)
