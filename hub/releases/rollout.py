"""The rollout's decisions, pure: figures in, one action and its reason out.

A rollout sends a release to its canary agents first. :func:`decide` runs every few
seconds on the figures the hub has now:

canary stage
    * a canary agent reported ``failed`` for the release        → roll back (its reason)
    * a canary agent offline longer than the grace period, counted
      from the rollout's start at the earliest                    → roll back (health)
    * false alarms closed on the canary agents' cases since the start
      exceed ``max(factor × before, before + margin)``, *before* being
      the same agents over an equally long window before the start → roll back
    * every canary agent active and the canary window elapsed     → promote to all
all stage
    * more than ``max_failed_share`` of the agents in scope failed → roll back
    * no agent is still on its way (each is active or failed)     → done
otherwise: wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from protocol.releases import ReleaseState

from .model import Stage

__all__ = ["Action", "AgentFigures", "Decision", "Policy", "RolloutFigures", "decide",
           "false_alarm_limit"]


class Action(StrEnum):
    WAIT = "wait"
    PROMOTE = "promote"
    DONE = "done"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Policy:
    offline_grace: timedelta = timedelta(minutes=5)
    false_alarm_factor: float = 2.0
    false_alarm_margin: int = 3
    max_failed_share: float = 0.1


@dataclass(frozen=True)
class AgentFigures:
    agent_id: str
    canary: bool
    state: str | None  # its latest report about *this rollout's release* (None: none yet)
    reason: str | None = None  # with a failed report
    online: bool = True
    offline_since: datetime | None = None  # when its status said offline


@dataclass(frozen=True)
class RolloutFigures:
    stage: Stage
    started_at: datetime
    canary_window: timedelta
    now: datetime
    agents: tuple[AgentFigures, ...]
    false_alarms_before: int = 0  # the canary agents, the window before the start
    false_alarms_after: int = 0  # the canary agents, since the start


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def false_alarm_limit(before: int, policy: Policy) -> float:
    """The most false alarms the canary may have: more than this rolls back."""
    return max(policy.false_alarm_factor * before, before + policy.false_alarm_margin)


def _failed(agents: tuple[AgentFigures, ...]) -> list[AgentFigures]:
    return [a for a in agents if a.state == ReleaseState.FAILED]


def _decide_canary(f: RolloutFigures, policy: Policy) -> Decision:
    canary = tuple(a for a in f.agents if a.canary)
    failed = _failed(canary)
    if failed:
        a = failed[0]
        return Decision(Action.ROLLBACK, f"canary agent {a.agent_id} failed: {a.reason or 'no reason given'}")
    for a in canary:
        if a.online:
            continue
        since = max(a.offline_since or f.started_at, f.started_at)
        if f.now - since > policy.offline_grace:
            minutes = (f.now - since).total_seconds() / 60
            return Decision(Action.ROLLBACK, f"canary agent {a.agent_id} offline for {minutes:.0f} min "
                                             f"(grace {policy.offline_grace.total_seconds() / 60:.0f} min)")
    limit = false_alarm_limit(f.false_alarms_before, policy)
    if f.false_alarms_after > limit:
        return Decision(Action.ROLLBACK, f"canary false alarms: {f.false_alarms_after} since the start, "
                                         f"{f.false_alarms_before} in the window before (limit {limit:g})")
    waiting = [a.agent_id for a in canary if a.state != ReleaseState.ACTIVE]
    if waiting:
        return Decision(Action.WAIT, f"canary not yet active: {', '.join(waiting[:10])}")
    if f.now < f.started_at + f.canary_window:
        left = (f.started_at + f.canary_window - f.now).total_seconds() / 60
        return Decision(Action.WAIT, f"canary active; window ends in {left:.1f} min")
    return Decision(Action.PROMOTE, f"{len(canary)} canary agent(s) active for the whole "
                                    f"{f.canary_window.total_seconds() / 60:g} min window, "
                                    f"false alarms {f.false_alarms_after} (before {f.false_alarms_before})")


def _decide_all(f: RolloutFigures, policy: Policy) -> Decision:
    n = len(f.agents)
    failed = _failed(f.agents)
    if n and len(failed) / n > policy.max_failed_share:
        names = ", ".join(f"{a.agent_id} ({a.reason or 'no reason'})" for a in failed[:5])
        return Decision(Action.ROLLBACK, f"{len(failed)} of {n} agents failed "
                                         f"(over {policy.max_failed_share:.0%}): {names}")
    pending = [a.agent_id for a in f.agents if a.state not in (ReleaseState.ACTIVE, ReleaseState.FAILED)]
    if pending:
        return Decision(Action.WAIT, f"{n - len(pending)} of {n} agents done; waiting for "
                                     f"{', '.join(pending[:10])}{' ...' if len(pending) > 10 else ''}")
    if failed:
        return Decision(Action.DONE, f"{n - len(failed)} of {n} agents active; failed: "
                                     + ", ".join(f"{a.agent_id} ({a.reason or 'no reason'})" for a in failed[:10]))
    return Decision(Action.DONE, f"all {n} agents active")


def decide(f: RolloutFigures, policy: Policy) -> Decision:
    """What the rollout does now (a rollout that is not in progress only waits)."""
    if f.stage == Stage.CANARY:
        return _decide_canary(f, policy)
    if f.stage == Stage.ALL:
        return _decide_all(f, policy)
    return Decision(Action.WAIT, f"rollout is {f.stage}")
