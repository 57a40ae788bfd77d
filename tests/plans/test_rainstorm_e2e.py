"""Issue 10's done-when, end to end: a simulated rainstorm over one area.

Three real agents (``edge_agent.app.AgentApp``) read simulated Modbus gauges and send
telemetry through the hub's managed Mosquitto: the Jiuting Road underpass (g-04) fills,
Hutai Road (g-05) and Xinqiao station (g-03) stay dry. The hub's vital signs grade the
rising level blue → yellow → orange; at orange the example rainstorm plan (area g-04 +
g-05) activates by itself, pushes its desired config through the broker to exactly the
two Jiuting agents, which apply it and report it; deactivation restores their previous
config the same way, and Xinqiao never hears of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from simulators.scenarios import load_scenario
from simulators.stack import SimStack, StackOptions

SCENARIO = """
name: plan-storm
start: "08:00"
duration: 6h
time_scale: 240
repeat: false
hub:
  clear_hold: 5m
  vitals: vitals
  plans: [rainstorm]
sites:
  - id: underpass-jt1
    grid: g-04
    location: {lat: 31.2150, lon: 121.4050, place: Jiuting Road underpass}
    poll: 30s
    devices:
      - id: underpass-gauge
        model: water_level_gauge
        behaviour: {level: {base: 0.0, swing: 0.0}}
        rules:
          level: {subcategory: flood.underpass_water_level, high: 0.5, clear_below: 0.1, update_delta: 0.1}
        incidents:
          - rain: {at: 5m, rise_m: 0.6, rise_for: 2h, hold_for: 3h, fall_for: 10m}
  - id: underpass-jt2
    grid: g-05
    location: {lat: 31.2150, lon: 121.4150, place: Hutai Road underpass}
    poll: 30s
    devices:
      - id: underpass-gauge
        model: water_level_gauge
        behaviour: {level: {base: 0.0, swing: 0.0}}
  - id: underpass-xq3
    grid: g-03
    location: {lat: 31.2050, lon: 121.4250, place: Xinqiao station underpass}
    poll: 30s
    devices:
      - id: underpass-gauge
        model: water_level_gauge
        behaviour: {level: {base: 0.0, swing: 0.0}}
"""

BAD_PLAN = """
name: bad-overlay
title: An overlay no agent accepts
kind: other
area: {grids: [g-03]}
points: [{agent: underpass-xq3, device: underpass-gauge, purpose: drill}]
actions:
  agent_config: {scope: points, overlay: {telemetry: {interval_s: 0.1}}}
"""

FILE_INTERVAL = 2.0  # the agents' own telemetry interval (StackOptions.telemetry_s), real s


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 45.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _level_runs(levels: list[int]) -> list[int]:
    out: list[int] = []
    for lv in levels:
        if not out or out[-1] != lv:
            out.append(lv)
    return out


async def test_rainstorm_raises_levels_activates_the_plan_and_restores_configs(tmp_path):
    path = tmp_path / "plan-storm.yaml"
    path.write_text(SCENARIO)
    stack = SimStack(load_scenario(path), StackOptions(telemetry_s=FILE_INTERVAL, operator=False))
    await stack.start()
    try:
        hub = stack.hub
        apps = {s.agent_id: s.app for s in stack.sites}

        # -- the levels rise, in order, and the plan activates by itself ---------------------
        act = await until("the rainstorm plan to activate",
                          lambda: hub.read(lambda r: r.open_activation("rainstorm")))
        assert act["activated_by"] == "auto"
        assert "water_level reached orange" in act["reason"]
        samples = await hub.read(lambda r: r.vital_samples(stack.clock.now().replace(year=2000),
                                                           "water_level.jt1-underpass"))
        runs = _level_runs([s["level"] for s in samples])
        assert runs[:4] == [0, 1, 2, 3], runs  # normal, blue, yellow, orange: never skipped, never back
        dry = await hub.read(lambda r: [x for x in r.vital_levels()
                                        if x["indicator"] in ("water_level.jt2-underpass",
                                                              "water_level.xq3-underpass")])
        assert dry and all(x["level"] == 0 for x in dry)

        # A level change is an event: a vital_signs case dispatched like any other.
        cases = await until("the warning's case", lambda: hub.read(lambda r: [
            c for c in r.list_cases(limit=100) if c.subcategory == "vital_signs.water_level"]))
        assert cases[0].department == "emergency" and cases[0].grid_id == "g-04"

        # -- the desired config reaches exactly the agents in scope, through the broker ------
        pushes = act_pushes = await hub.read(lambda r: r.pushes(act["id"]))
        assert sorted(p["agent_id"] for p in pushes) == ["underpass-jt1", "underpass-jt2"]
        await until("both agents to report the plan's config", lambda: hub.read(
            lambda r: all(p["acked_at"] for p in r.pushes(act["id"]))))
        for p in act_pushes:
            app = apps[p["agent_id"]]
            assert app.config_version == p["version"]
            assert app.session.telemetry_config.interval_s == 1  # the plan's overlay, applied
        assert apps["underpass-xq3"].config_version is None
        assert apps["underpass-xq3"].session.telemetry_config.interval_s == FILE_INTERVAL
        assert hub.engine.deadline_overrides == {"flood": 20, "flood.underpass_water_level": 15}
        notices = await hub.read(lambda r: r.plan_notices())
        assert sorted(n["department"] for n in notices) == ["drainage", "emergency"]

        # -- deactivation restores every agent's previous config -----------------------------
        await hub.plans.deactivate("rainstorm", actor="operator-on-duty", reason="rain over")
        restores = [p for p in await hub.read(lambda r: r.pushes(act["id"])) if p["purpose"] == "restore"]
        assert sorted(p["agent_id"] for p in restores) == ["underpass-jt1", "underpass-jt2"]
        assert all(p["config"] == {} for p in restores)  # they had no overlay before the plan
        # The water is still high, but the operator's decision sticks: no re-activation
        # until the triggers have stopped firing once.
        assert await hub.plans.evaluate() == []
        assert await hub.read(lambda r: r.open_activation("rainstorm")) is None
        try:
            await until("both agents to report the restored config", lambda: hub.read(
                lambda r: all(p["acked_at"] for p in r.pushes(act["id"]))))
        except AssertionError:
            rows = await hub.read(lambda r: (r.pushes(act["id"]), r.list_agents()))
            raise AssertionError(f"pushes {rows[0]}; agents {[(a.agent_id, a.config_version, a.config_error) for a in rows[1]]}") from None
        for p in restores:
            app = apps[p["agent_id"]]
            assert app.config_version == p["version"]
            assert app.session.telemetry_config.interval_s == FILE_INTERVAL
        assert apps["underpass-xq3"].config_version is None
        assert hub.engine.deadline_overrides == {}
        audit = await hub.read(lambda r: r.plan_audit("rainstorm"))
        assert [a["action"] for a in audit][:2] == ["deactivated", "activated"]
        assert audit[0]["actor"] == "operator-on-duty"

        # -- an overlay the agent cannot run is refused, visibly, and the old config stays ---
        await hub.plans.save(BAD_PLAN, "admin")
        board = await hub.plans.activate("bad-overlay", actor="op", reason="drill")
        bad = await until("the agent's refusal", lambda: hub.read(
            lambda r: [p for p in r.pushes(board["activation"]["id"]) if p["error"]]))
        assert bad[0]["agent_id"] == "underpass-xq3" and "telemetry.interval_s" in bad[0]["error"]
        assert apps["underpass-xq3"].config_version is None
        assert apps["underpass-xq3"].session.telemetry_config.interval_s == FILE_INTERVAL
    finally:
        await stack.stop()
