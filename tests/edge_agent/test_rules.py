"""Sensor rules on simulated days: each rule's new/update/end for one event id, driven by
a fake clock, through the engine that persists state and builds events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.config.devices import DeviceConfig
from edge_agent.config.registers import RegisterMap
from edge_agent.config.rules import (
    AlarmRuleConfig,
    ContinuousFlowConfig,
    LevelConfig,
    WaterNoUseConfig,
)
from edge_agent.rules import (
    ContinuousFlowRule,
    DeviceRuleSet,
    LevelRule,
    Sample,
    WaterNoUseRule,
    call_button_rule,
    smoke_alarm_rule,
)
from protocol.clock import FakeClock
from protocol.codec import decode_events
from protocol.messages import Event, Location
from protocol.taxonomy import taxonomy

DAY0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def run(rule, samples):
    """Feed (time, values) pairs; return [(time, kind, attributes)] of decisions."""
    state = rule.initial()
    out = []
    for at, values in samples:
        state, d = rule.step(state, Sample(at, values))
        json.dumps(state)  # state must stay JSON-able (it is persisted)
        if d:
            out.append((at, d.kind.value, d.attributes))
    return out


def every(start, end, minutes, fn):
    t = start
    while t <= end:
        yield t, fn(t)
        t += timedelta(minutes=minutes)


# -- water no use ------------------------------------------------------------------

def meter_days(uses_at: list[datetime], end: datetime, poll_min=10):
    """Cumulative volume polled every poll_min; each use adds 20 litres."""
    def volume(t):
        return 100.0 + 0.02 * sum(1 for u in uses_at if u <= t)
    return list(every(DAY0, end, poll_min, lambda t: {"volume": volume(t)}))


def h(day, hour, minute=0):
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def test_no_use_tiers_escalate_then_use_ends_it():
    cfg = WaterNoUseConfig(hours=8, tiers=[{"notify": "grid_worker", "after_min": 0},
                                           {"notify": "family", "after_min": 60},
                                           {"notify": "civil_affairs", "after_min": 180}],
                           resident="3-201")
    uses = [h(0, 7), h(0, 12), h(0, 18), h(0, 23), h(1, 6), h(1, 12), h(1, 18), h(2, 9)]
    got = run(WaterNoUseRule(cfg), meter_days(uses, h(2, 12)))
    assert [(t, k) for t, k, _ in got] == [
        (h(2, 2), "new"), (h(2, 3), "update"), (h(2, 5), "update"), (h(2, 9), "end")]
    assert [a.get("tier") for _, _, a in got[:3]] == [1, 2, 3]
    assert [a.get("notify") for _, _, a in got[:3]] == ["grid_worker", "family", "civil_affairs"]
    assert got[0][2]["resident"] == "3-201" and got[0][2]["idle_hours"] == 8.0
    assert got[3][2] == {"reason": "water_used", "idle_hours": 15.0}


def test_no_use_normal_days_raise_nothing_and_meter_reset_is_not_use():
    uses = [h(d, hh) for d in range(3) for hh in (7, 12, 18, 22)]
    assert run(WaterNoUseRule(WaterNoUseConfig(hours=10)), meter_days(uses, h(3, 0))) == []
    rule = WaterNoUseRule(WaterNoUseConfig(hours=1))
    samples = [(h(0, 0), {"volume": 50.0}), (h(0, 0, 30), {"volume": 0.0}),  # meter replaced
               (h(0, 1, 10), {"volume": 0.0})]
    assert [k for _, k, _ in run(rule, samples)] == ["new"]


def test_no_use_acknowledged_stops_escalating():
    rule = WaterNoUseRule(WaterNoUseConfig(hours=1))
    state = rule.initial()
    for minutes in (0, 61):
        state, d = rule.step(state, Sample(h(0, 0, minutes), {"volume": 1.0}))
    assert d.kind == "new"
    state, d = rule.acknowledge(state, "op-li", h(0, 1, 5).timestamp())
    assert d.kind == "update" and d.attributes["acknowledged"] is True
    assert d.attributes["acknowledged_by"] == "op-li" and d.attributes["tier"] == 1
    assert rule.acknowledge(state, "op-li", h(0, 1, 6).timestamp()) == (state, None)  # once
    state, d = rule.step(state, Sample(h(0, 3), {"volume": 1.0}))
    assert d is None


# -- continuous flow ---------------------------------------------------------------

def test_continuous_flow_opens_updates_hourly_and_ends_after_it_stops():
    def flow(t):
        if h(0, 10) <= t < h(0, 15):
            return {"flow": 0.02}  # a running toilet
        if h(0, 7) <= t < h(0, 7, 20):
            return {"flow": 0.5}  # a shower: flow, then a pause
        return {"flow": 0.0}
    got = run(ContinuousFlowRule(ContinuousFlowConfig(hours=2, clear_after_min=10)),
              every(DAY0, h(1, 0), 5, flow))
    assert [(t, k) for t, k, _ in got] == [
        (h(0, 12), "new"), (h(0, 13), "update"), (h(0, 14), "update"), (h(0, 15, 10), "end")]
    assert got[1][2]["flowing_hours"] == 3.0
    assert got[-1][2] == {"reason": "flow_stopped", "flowing_hours": 5.0, "peak_flow": 0.02}


def test_flow_with_pauses_never_alarms():
    def flow(t):
        return {"flow": 0.3 if t.minute < 50 else 0.0}
    assert run(ContinuousFlowRule(ContinuousFlowConfig(hours=2)), every(DAY0, h(1, 0), 5, flow)) == []


# -- level -------------------------------------------------------------------------

def test_level_hysteresis_updates_and_clear():
    levels = [3.9, 4.1, 4.25, 4.19, 4.21, 4.18, 4.3, 4.5, 4.1, 4.01, 3.99, 4.1, 4.25]
    samples = [(DAY0 + timedelta(minutes=10 * i), {"level": v}) for i, v in enumerate(levels)]
    rule = LevelRule(LevelConfig(high=4.2, clear_below=4.0, update_delta=0.1))
    got = run(rule, samples)
    assert [(round(a["level"], 2), k) for _, k, a in got] == [
        (4.25, "new"), (4.5, "update"), (4.1, "update"), (3.99, "end"), (4.25, "new")]
    assert got[0][2]["trigger"] == "level" and got[3][2]["peak"] == 4.5


def test_level_rate_of_rise_alarms_before_the_threshold():
    # An underpass filling at 0.6 m/h from dry, read every minute; alarm on the rate
    # within the 10-minute window, long before 0.15 m.
    samples = [(DAY0 + timedelta(minutes=i), {"level": max(0.0, (i - 5) * 0.01)}) for i in range(45)]
    rule = LevelRule(LevelConfig(subcategory="flood.underpass_water_level", high=0.3,
                                 clear_below=0.05, rate_of_rise=0.3, rate_window_min=10))
    got = run(rule, samples)
    first = got[0]
    assert first[1] == "new" and first[2]["trigger"] == "rate"
    assert first[0] == DAY0 + timedelta(minutes=10)  # 0.05 m in 5 min of a half-full window
    assert got[-1][2]["trigger"] == "level" and got[-1][1] == "update"
    assert rule.subcategory == "flood.underpass_water_level"


# -- alarms ------------------------------------------------------------------------

def test_smoke_alarm_new_update_end():
    rule = smoke_alarm_rule(AlarmRuleConfig(register="status.alarm", counter="alarm_count",
                                            clear_after_s=60))
    seq = [(0, 0, 3), (5, 1, 4), (10, 1, 4), (15, 1, 5), (20, 0, 5), (50, 1, 5), (55, 0, 5),
           (100, 0, 5), (115, 0, 5), (120, 0, 5)]
    samples = [(DAY0 + timedelta(seconds=s), {"status.alarm": a, "alarm_count": c}) for s, a, c in seq]
    got = run(rule, samples)
    assert [(int((t - DAY0).total_seconds()), k) for t, k, _ in got] == [
        (5, "new"), (15, "update"), (115, "end")]
    assert got[1][2]["count"] == 2


def test_call_button_press_between_polls_is_caught_by_the_counter():
    rule = call_button_rule(AlarmRuleConfig(register="status.call", counter="presses", clear_after_s=5))
    samples = [(DAY0 + timedelta(seconds=2 * i), v) for i, v in enumerate([
        {"status.call": 0, "presses": 7}, {"status.call": 0, "presses": 8},
        {"status.call": 0, "presses": 8}, {"status.call": 0, "presses": 8},
        {"status.call": 0, "presses": 8}])]
    got = run(rule, samples)
    assert [k for _, k, _ in got] == ["new", "end"]
    assert (got[1][0] - got[0][0]).total_seconds() == 6


# -- the engine: one event id per lifecycle, valid protocol events, persistence ------

REGMAP = RegisterMap(model="m", registers={
    "volume": {"address": 0, "type": "uint32", "unit": "m3"},
    "status": {"address": 2, "type": "bitfield", "bits": {"alarm": 0}},
})


def device(**rules):
    return DeviceConfig(id="wm-1", model="m", tcp={"host": "h"}, rules=rules)


LOC = Location(lat=31.2, lon=121.4, grid_id="grid-1", place="flat 1")


def test_engine_gives_one_event_id_per_lifecycle_and_valid_events():
    ids = iter(["ev-a", "ev-b"])
    rules = DeviceRuleSet(device(water_no_use={"hours": 1, "tiers": [
        {"notify": "grid_worker", "after_min": 0}, {"notify": "family", "after_min": 30}]}),
        REGMAP, LOC, {}, new_id=lambda: next(ids))
    clock = FakeClock(DAY0)
    events: list[Event] = []
    volume = 10.0
    for minute in range(0, 300, 10):
        if minute == 150:
            volume += 0.1
        step, updated = rules.step(Sample(clock.now(), {"volume": volume}))
        rules.accept(updated)
        for i, draft in enumerate(step.drafts):
            ev = Event(agent_id="agent-1", seq=len(events) + 1 + i, **{
                k: getattr(draft, k) for k in ("event_id", "kind", "category", "subcategory",
                                               "source", "observed_at", "started_at", "location",
                                               "evidence", "attributes")})
            events.append(ev)
        clock.advance(minutes=10)
    assert [(e.event_id, e.kind.value) for e in events] == [
        ("ev-a", "new"), ("ev-a", "update"), ("ev-a", "end"), ("ev-b", "new"), ("ev-b", "update")]
    assert events[0].evidence.reading.name == "volume" and events[0].evidence.reading.unit == "m3"
    assert events[0].started_at == DAY0 + timedelta(hours=1)
    assert events[2].started_at == events[0].started_at
    for e in events:  # every event is something the hub accepts
        assert taxonomy().is_valid_pair(e.category, e.subcategory)
        decode_events(e.model_dump_json(by_alias=True).encode())


def test_engine_state_survives_a_restart_mid_lifecycle():
    cfg = {"hours": 1}
    first = DeviceRuleSet(device(water_no_use=cfg), REGMAP, LOC, {}, new_id=lambda: "ev-1")
    saved = {}
    for minute in (0, 70):
        step, updated = first.step(Sample(DAY0 + timedelta(minutes=minute), {"volume": 5.0}))
        first.accept(updated)
        saved.update(json.loads(json.dumps(step.states)))
    assert saved["wm-1/water_no_use"]["event_id"] == "ev-1"
    second = DeviceRuleSet(device(water_no_use=cfg), REGMAP, LOC, saved, new_id=lambda: "other")
    step, _ = second.step(Sample(DAY0 + timedelta(minutes=80), {"volume": 6.0}))
    assert [(d.event_id, d.kind.value) for d in step.drafts] == [("ev-1", "end")]


def test_removed_rule_with_an_open_event_is_ended():
    saved = {"wm-1/smoke_alarm": {"rule": {"active": True}, "event_id": "ev-9", "started_at": 1.0,
                                  "category": "fire_alarm", "subcategory": "fire_alarm.smoke_detector"},
             "wm-1/offline": {"event_id": "x"}}
    rules = DeviceRuleSet(device(water_no_use={"hours": 8}), REGMAP, LOC, saved)
    step = rules.close_orphans(DAY0)
    assert [(d.event_id, d.kind.value, d.attributes) for d in step.drafts] == [
        ("ev-9", "end", {"reason": "rule_removed"})]
    assert step.states == {"wm-1/smoke_alarm": None}


@pytest.mark.parametrize("rule", ["water_no_use", "continuous_flow", "level", "smoke_alarm", "call_button"])
def test_every_rule_names_a_taxonomy_code(rule):
    from edge_agent.rules.engine import build_rules
    configs = {"water_no_use": {}, "continuous_flow": {}, "level": {"high": 2, "clear_below": 1},
               "smoke_alarm": {"register": "status.alarm"}, "call_button": {"register": "status.alarm"}}
    (built,) = build_rules(device(**{rule: configs[rule]}))
    assert taxonomy().is_valid_pair(built.category, built.subcategory)
