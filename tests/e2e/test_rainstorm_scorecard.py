"""The rainstorm scenario's scorecard reports its response plan and warning levels (issue
19): the whole stack runs the storm's first hours, and the scorecard read from the hub's
store says the rainstorm plan activated on one of its triggers, after the gauges in its
area warned, and that each gauge's levels rose and fell in a plausible chain; and that
the plan's notices reached the departments it names at the run's local receivers."""

from __future__ import annotations

import json

from simulators.demo import format_summary, run_demo
from simulators.plancard import LEVELS
from simulators.progress import Progress
from simulators.scenarios import load_scenario
from simulators.stack import SimStack, StackOptions

RAIN_AT_S = 2 * 3600  # the first gauge's rain (rainstorm.yaml)
PLAN_AREA = {"g-04", "g-05"}  # hub/examples/plans/rainstorm.yaml
PLAN_LEVEL = "orange"  # its vital trigger: a water level in the area reaches orange


async def test_rainstorm_scorecard_reports_the_plan_and_the_warning_levels(tmp_path):
    loaded = load_scenario("rainstorm")
    scale = 1440.0
    horizon_s = 4.5 * 3600  # three gauges flooded, the creek rising
    # heartbeats (which carry the readings the vital signs grade) every real second
    stack = SimStack(loaded, StackOptions(time_scale=scale, work_dir=tmp_path / "run", telemetry_s=1.0))
    summary = await run_demo(stack, duration=horizon_s / scale, progress=Progress("rainstorm", quiet=True))
    detail = json.dumps({k: summary[k] for k in ("plans", "warning_levels")}, indent=1)

    levels = summary["warning_levels"]
    rank = LEVELS.index
    # every change of an indicator continues from where the previous one left it
    last: dict[str, str] = {}
    for c in levels["changes"]:
        assert c["from"] == last.get(c["indicator"], "normal") != c["to"], detail
        last[c["indicator"]] = c["to"]
        assert levels["highest"][c["indicator"]] == max(levels["highest"][c["indicator"]], c["to"], key=rank)
    water = [c for c in levels["changes"] if c["kind"] == "water_level"]
    assert water and min(c["at_s"] for c in water) >= RAIN_AT_S, detail  # no warning before the rain
    # the Jiuting underpass fills 0.5 m: past the plan's orange (0.25 m)
    assert rank(levels["highest"]["water_level.jt1-underpass"]) >= rank(PLAN_LEVEL), detail

    [activation] = summary["plans"]
    assert activation["plan"] == "rainstorm" and activation["activated_by"] == "auto", detail
    assert activation["deactivated_at_s"] is None, detail
    trigger = activation["trigger"]
    at = activation["activated_at_s"]
    assert RAIN_AT_S < at <= summary["run"]["simulated_s"], detail
    if trigger["type"] == "vital":
        assert trigger == {"type": "vital", "kind": "water_level", "level": PLAN_LEVEL,
                           "reached": trigger["reached"]}, detail
        reached = [c for c in water if c["grid"] in PLAN_AREA and c["at_s"] <= at
                   and rank(c["to"]) >= rank(PLAN_LEVEL)]
        assert reached, detail  # a gauge in the area was at orange or above before it activated
    else:
        assert trigger["type"] == "open_cases" and trigger["categories"] == ["flood"], detail
        assert trigger["open"] >= trigger["count"] == 3, detail
    text = format_summary(summary)
    assert "plan     rainstorm activated at" in text and "water_level.jt1-underpass" in text, text
    # the plan's notices reached the departments it names (drainage, emergency) at the
    # run's receivers, through each department's contacts; every delivery went out
    got = summary["notifications_received"]
    notices = {(m["channel"], m["to"]) for m in got["messages"] if "] plan Rainstorm" in m["subject"]}
    assert notices == {("email", "drainage-duty@example.org"), ("wecom", "drainage-group"),
                       ("email", "emergency@example.org"), ("webhook", "emergency-system")}, notices
    notes = summary["notifications"]
    assert notes["delivered"] == notes["queued"] == got["received"] and notes["pending"] == 0, notes
