"""Starting, advancing and rolling back a rollout: each one store transaction (run by the
hub's writer, or by the CLI as a short second writer). They only write the desired
release of each agent; the hub's release loop publishes it (retained) to the agents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import RolloutAgent, RolloutRow, Stage
from .package import ReleaseError

__all__ = ["find_rollout", "finish", "parse_agents", "promote", "roll_back", "start_rollout"]

MAX_CANARY_MINUTES = 7 * 24 * 60


def parse_agents(text: str | Sequence[str] | None) -> list[str]:
    """``a1,a2`` (or a list of such) → the agent ids, in order, without repeats."""
    parts = [text] if isinstance(text, str) else list(text or [])
    out: list[str] = []
    for part in parts:
        for name in str(part).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def start_rollout(repo: Any, release_id: str, *, canary: Sequence[str], agents: str | Sequence[str],
                  canary_minutes: float, now: datetime, by: str) -> RolloutRow:
    """Record a rollout of ``release_id`` to ``agents`` ("all": every agent the hub has
    enrolled or heard from; else the ids, the canary agents always among them) with ``canary`` first, remember what each agent
    in scope had desired, and give the canary agents the release."""
    release = repo.release_get(release_id)
    if release is None:
        known = ", ".join(r.release_id for r in repo.release_list(10)) or "none yet"
        raise ReleaseError(f"no release {release_id!r} (latest: {known}; add one with "
                           "cityops-hub release add)")
    canary = parse_agents(canary)
    if not canary:
        raise ReleaseError("name at least one canary agent (--canary a1,a2): the release reaches "
                           "them first, and the rest only when they run it well")
    if not 0 < canary_minutes <= MAX_CANARY_MINUTES:
        raise ReleaseError(f"canary minutes must be above 0 and at most {MAX_CANARY_MINUTES} (a week), "
                           f"not {canary_minutes:g}")
    known_agents = set(repo.agent_ids())
    if agents == "all" or agents == ["all"]:
        scope: str | list[str] = "all"
        in_scope = sorted(known_agents | set(canary))
    else:
        in_scope = list(dict.fromkeys([*canary, *parse_agents(agents)]))  # the canary is in scope
        scope = in_scope
    unknown = [a for a in in_scope if a not in known_agents]
    if unknown:
        raise ReleaseError(f"unknown agent(s) {', '.join(unknown[:10])}: the hub has neither enrolled "
                           "them nor heard from them (see the agents page; check the spelling)")
    busy = repo.agents_in_rollouts(in_scope)
    if busy:
        names = ", ".join(f"{a} ({r})" for a, r in sorted(busy.items())[:10])
        raise ReleaseError(f"agent(s) already in a rollout in progress: {names}; wait for it to finish "
                           "or roll it back first (cityops-hub release rollback ROLLOUT_ID)")
    before = repo.agent_releases(in_scope)
    rollout = repo.rollout_insert(release_id, scope, canary, canary_minutes, now, by,
                                  f"started by {by}: canary {', '.join(canary)}")
    repo.rollout_agents_insert([
        RolloutAgent(rollout.rollout_id, a, a in canary,
                     before[a].desired_release if a in before else None,
                     before[a].rollout_id if a in before else None)
        for a in in_scope])
    repo.agent_release_desire(canary, release_id, rollout.rollout_id, now)
    return rollout


def find_rollout(repo: Any, rollout_id: str) -> RolloutRow:
    """A rollout by its id (``rollout-3``) or its number (``3``)."""
    key = f"rollout-{rollout_id}" if rollout_id.isdigit() else rollout_id
    row = repo.rollout_get(key)
    if row is None:
        latest = ", ".join(r.rollout_id for r in repo.rollout_list(5)) or "none yet"
        raise ReleaseError(f"no rollout {rollout_id!r} (latest: {latest})")
    return row


def promote(repo: Any, rollout: RolloutRow, now: datetime, reason: str) -> list[str]:
    """Canary → all: every agent in scope is given the release. The agents given it."""
    agents = [a.agent_id for a in repo.rollout_agents(rollout.rollout_id) if not a.canary]
    repo.agent_release_desire(agents, rollout.release_id, rollout.rollout_id, now)
    repo.rollout_set_stage(rollout.rollout_id, Stage.ALL, now, reason)
    return agents


def finish(repo: Any, rollout: RolloutRow, now: datetime, reason: str) -> None:
    repo.rollout_set_stage(rollout.rollout_id, Stage.DONE, now, reason)


def roll_back(repo: Any, rollout_id: str, now: datetime, reason: str) -> RolloutRow:
    """Give every agent in scope whose desired release this rollout set the release it had
    desired before (or none: its config's model), and mark the rollout rolled back. A
    rollout already rolled back is refused; one that is done can be rolled back too (every
    release is reversible), as long as no later rollout has taken its agents."""
    rollout = find_rollout(repo, rollout_id)
    if rollout.stage == Stage.ROLLED_BACK:
        raise ReleaseError(f"{rollout.rollout_id} was already rolled back ({rollout.reason})")
    members = repo.rollout_agents(rollout.rollout_id)
    current = repo.agent_releases([a.agent_id for a in members])
    by_previous: dict[tuple[str | None, str | None], list[str]] = {}
    for a in members:
        now_desired = current.get(a.agent_id)
        if now_desired is None or now_desired.rollout_id != rollout.rollout_id:
            continue  # never given the release (canary stage), or a later rollout took it
        by_previous.setdefault((a.previous_release, a.previous_rollout), []).append(a.agent_id)
    for (release_id, previous_rollout), agent_ids in by_previous.items():
        repo.agent_release_desire(agent_ids, release_id, previous_rollout, now)
    repo.rollout_set_stage(rollout.rollout_id, Stage.ROLLED_BACK, now, reason)
    row = repo.rollout_get(rollout.rollout_id)
    assert row is not None
    return row
