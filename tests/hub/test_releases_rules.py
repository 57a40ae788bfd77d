"""The rollout's pure decisions (hub/releases/rollout.py): every way a canary rolls back,
when it is promoted, when the whole rollout is done or rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.releases.model import Stage
from hub.releases.rollout import (
    Action,
    AgentFigures,
    Policy,
    RolloutFigures,
    decide,
    false_alarm_limit,
)

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
POLICY = Policy(offline_grace=timedelta(minutes=5), false_alarm_factor=2, false_alarm_margin=3,
                max_failed_share=0.1)


def canary(*agents: AgentFigures, minutes: float = 10, before: int = 0, after: int = 0,
           stage: Stage = Stage.CANARY) -> RolloutFigures:
    return RolloutFigures(stage, T0, timedelta(minutes=30), T0 + timedelta(minutes=minutes), agents,
                          before, after)


def a(agent_id: str, state: str | None, canary: bool = True, **kw) -> AgentFigures:
    return AgentFigures(agent_id, canary, state, **kw)


def test_a_failed_canary_rolls_back_naming_the_agent_and_its_reason():
    d = decide(canary(a("c1", "active"), a("c2", "failed", reason="labels.txt is empty")), POLICY)
    assert d.action is Action.ROLLBACK
    assert "c2" in d.reason and "labels.txt is empty" in d.reason


def test_a_canary_offline_past_the_grace_rolls_back_for_health():
    early_drop = a("c1", "downloading", online=False, offline_since=T0 - timedelta(hours=2))
    # offline since before the start: counted from the start, so 4 min in is within the grace
    assert decide(canary(early_drop, minutes=4), POLICY).action is Action.WAIT
    d = decide(canary(early_drop, minutes=6), POLICY)
    assert d.action is Action.ROLLBACK and "c1 offline for 6 min" in d.reason
    # offline for 2 minutes of a long canary: not yet
    brief = a("c1", "active", online=False, offline_since=T0 + timedelta(minutes=20))
    assert decide(canary(brief, minutes=22), POLICY).action is Action.WAIT


@pytest.mark.parametrize(("before", "after", "rolls_back"), [
    (0, 3, False), (0, 4, True),  # before + 3 is the bar when few false alarms came before
    (5, 10, False), (5, 11, True),  # 2 x before above that
])
def test_canary_false_alarms_over_the_bar_roll_back(before, after, rolls_back):
    d = decide(canary(a("c1", "active"), minutes=40, before=before, after=after), POLICY)
    assert (d.action is Action.ROLLBACK) is rolls_back
    if rolls_back:
        assert f"{after} since the start, {before} in the window before" in d.reason
    assert false_alarm_limit(before, POLICY) == max(2 * before, before + 3)


def test_the_canary_waits_for_every_canary_agent_and_the_whole_window_then_promotes():
    assert decide(canary(a("c1", "active"), a("c2", "downloading"), minutes=40), POLICY).action is Action.WAIT
    d = decide(canary(a("c1", "active"), a("c2", "active"), minutes=29), POLICY)
    assert d.action is Action.WAIT and "window ends" in d.reason
    d = decide(canary(a("c1", "active"), a("c2", "active"), a("x", None, canary=False), minutes=30), POLICY)
    assert d.action is Action.PROMOTE
    # agents outside the canary play no part before promotion
    d = decide(canary(a("c1", "active"), a("x", "failed", canary=False), minutes=30), POLICY)
    assert d.action is Action.PROMOTE


def test_stage_all_is_done_when_every_agent_runs_it_and_rolls_back_over_the_failed_share():
    ten = [a(f"a{i}", "active", canary=i == 0) for i in range(10)]
    assert decide(canary(*ten, stage=Stage.ALL), POLICY).action is Action.DONE
    waiting = [*ten[:9], a("a9", "verified", canary=False)]
    d = decide(canary(*waiting, stage=Stage.ALL), POLICY)
    assert d.action is Action.WAIT and "a9" in d.reason
    one_failed = [*ten[:9], a("a9", "failed", canary=False, reason="no space")]
    d = decide(canary(*one_failed, stage=Stage.ALL), POLICY)  # 10 %: not over the share
    assert d.action is Action.DONE and "a9 (no space)" in d.reason
    two_failed = [*ten[:8], a("a8", "failed", canary=False), a("a9", "failed", canary=False)]
    d = decide(canary(*two_failed, stage=Stage.ALL), POLICY)
    assert d.action is Action.ROLLBACK and "2 of 10 agents failed" in d.reason


def test_a_rollout_that_ended_only_waits():
    for stage in (Stage.DONE, Stage.ROLLED_BACK):
        assert decide(canary(a("c1", "failed"), stage=stage), POLICY).action is Action.WAIT
