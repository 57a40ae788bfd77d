"""Response plans in the running hub: saved versions, activation and deactivation (one
writer transaction each, audited), desired configs published to the agents in scope,
their acknowledgements tracked from the agents' status, deadlines and notices, triggers
evaluated when a vital sign changes level or cases open.

The decisions are in :mod:`hub.plans.decide`; this module only reads, writes and
publishes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.codec import encode
from protocol.errors import ConfigError, ConfigProblem
from protocol.messages import DesiredConfig
from protocol.topics import Channel, agent_topic

from ..errors import HubError
from ..vitals.levels import Level
from .checks import area_grids, parse_plan
from .decide import (
    Desired,
    deadline_overrides,
    fired,
    merge_patch,
    push_for,
    restore_for,
    scope_agents,
)
from .model import Plan

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["PlanError", "PlanService"]

log = logging.getLogger(__name__)


class PlanError(HubError):
    """A plan action that cannot be done (unknown plan, already active, not active)."""

    def __init__(self, plan: str, message: str) -> None:
        super().__init__(f"plan {plan!r}: {message}")
        self.plan = plan


@dataclass
class Loaded:
    plan: Plan
    version: int
    text: str


class PlanService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.plans: dict[str, Loaded] = {}
        self._lock = asyncio.Lock()  # one activation/deactivation/evaluation at a time
        # Automatic triggers fire on the way in: after an activation (or a deactivation while
        # the condition still holds) a plan re-arms only once no trigger fires any more,
        # so an operator's deactivation during a long storm sticks.
        self._armed: dict[str, bool] = {}

    # -- loading and saving -----------------------------------------------------------------
    def parse(self, text: str, filename: str = "<plan>") -> Plan:
        s = self.hub.setup
        return parse_plan(text, filename, s.taxonomy, s.grids, s.departments)

    async def start(self) -> list[asyncio.Task]:
        """Store the plans folder's files (a changed file is a new version), load the latest
        version of every plan, put active plans' deadlines back."""
        for name, (_plan, text) in self.hub.setup.plans.items():
            latest = await self.hub.read(lambda repo, n=name: repo.plan_text(n))
            if latest is None or latest["text"] != text:
                await self.hub.write(lambda repo, n=name, t=text: repo.save_plan_version(
                    n, t, self.hub.clock.now(), "plans folder", "loaded from the plans folder"))
        rows = await self.hub.read(lambda repo: repo.latest_plans())
        for row in rows:
            try:
                plan = self.parse(row["text"], f"plan {row['name']} v{row['version']}")
            except ConfigError as exc:  # e.g. a grid that left the grids file since
                log.error("stored plan %s v%s no longer loads: %s", row["name"], row["version"], exc)
                continue
            self.plans[plan.name] = Loaded(plan, row["version"], row["text"])
        await self._set_deadlines()
        used = {r["name"] for r in await self.hub.read(lambda repo: repo.activations(None, 10_000))}
        self._armed = {name: name not in used for name in self.plans}
        return [asyncio.create_task(self._track_loop(), name="hub-plan-acks")]

    async def save(self, text: str, actor: str, comment: str = "", name: str | None = None) -> Loaded:
        """Validate and store a new version. ``name``: the plan being edited (the text must
        keep it)."""
        # off the event loop: parsing and checking a plan of up to 64 KiB takes a while
        plan = await asyncio.to_thread(self.parse, text, f"plan {name or 'upload'}")
        if name is not None and plan.name != name:
            raise ConfigError([ConfigProblem(f"plan {name}", None, None, "name",
                                             f"the name must stay {name!r} (got {plan.name!r}); "
                                             "upload it as a new plan instead")])
        now = self.hub.clock.now()

        def write(repo: Any) -> int:
            version = repo.save_plan_version(plan.name, text, now, actor, comment)
            repo.add_plan_audit(now, plan.name, "saved", actor, f"version {version} saved"
                                + (f": {comment}" if comment else ""), {"version": version})
            return version

        version = await self.hub.write(write)
        loaded = Loaded(plan, version, text)
        self.plans[plan.name] = loaded
        return loaded

    def get(self, name: str) -> Loaded:
        loaded = self.plans.get(name)
        if loaded is None:
            raise PlanError(name, "no such plan")
        return loaded

    def export(self, name: str, fmt: str = "yaml", version: int | None = None,
               text: str | None = None) -> str:
        """The plan to share with the city level: its YAML as saved, or JSON."""
        loaded = self.get(name)
        source = text if text is not None else loaded.text
        if fmt == "json":
            plan = self.parse(source) if text is not None else loaded.plan
            data = {"schema": "cityops.plan/1", "version": version or loaded.version,
                    "plan": plan.model_dump(mode="json", exclude_none=True)}
            return json.dumps(data, ensure_ascii=False, indent=2)
        if fmt == "yaml":
            return source
        raise PlanError(name, f"unknown export format {fmt!r}: use yaml or json")

    # -- activation -------------------------------------------------------------------------
    async def _agent_grids(self) -> dict[str, str | None]:
        rows = await self.hub.read(lambda repo: repo.list_agents(limit=100_000))
        grids: dict[str, str | None] = {a.agent_id: a.grid_id for a in rows}
        for agent, grid in self.hub.vitals.monitor.agent_grids().items():
            if grids.get(agent) is None:
                grids[agent] = grid
        return grids

    async def activate(self, name: str, *, actor: str, reason: str = "manual") -> dict[str, Any]:
        async with self._lock:
            return await self._activate(name, actor, reason)

    async def _activate(self, name: str, actor: str, reason: str) -> dict[str, Any]:
        loaded = self.get(name)
        plan = loaded.plan
        area = area_grids(plan, self.hub.setup.grids)
        agents = scope_agents(plan, area, await self._agent_grids())
        overlay = plan.actions.agent_config.overlay if plan.actions.agent_config else {}
        now = self.hub.clock.now()

        def write(repo: Any) -> tuple[int, list[Desired]]:
            if repo.open_activation(name) is not None:
                raise PlanError(name, "is already active")
            activation = repo.add_activation(name, loaded.version, now, actor, reason)
            pushes = []
            for agent_id in agents:
                current = repo.agent_desired(agent_id)
                row = repo.get_agent(agent_id)
                highest = max(current["version"] if current else 0,
                              (row.config_version or 0) if row else 0)
                d = push_for(agent_id, overlay, current["version"] if current else None,
                             current["config"] if current else None, highest)
                repo.set_agent_desired(agent_id, d.version, d.config, now, f"plan {name} activated")
                repo.add_push(activation, agent_id, "apply", d.version, d.config, d.previous_version,
                              d.previous_config, now)
                pushes.append(d)
            outbox = self.hub.engine.outbox
            for dep in plan.actions.notify:
                text = f"Plan {plan.title} activated ({reason})"
                notice = repo.add_plan_notice(now, name, dep, text)
                if outbox is not None:  # delivered to the department's contacts (hub/notify/)
                    outbox.plan_notice(repo, plan=name, title=plan.title, activation_id=activation,
                                       department=dep, notice_id=notice, text=text, now=now)
            repo.add_plan_audit(now, name, "activated", actor, reason,
                                {"version": loaded.version, "activation": activation, "agents": agents,
                                 "deadlines": plan.actions.deadlines, "notify": plan.actions.notify})
            return activation, pushes

        activation, pushes = await self.hub.write(write)
        self._armed[name] = False
        await self._publish(pushes, f"plan {name} activated")
        await self._set_deadlines()
        log.info("plan %s activated by %s (%s): %d agents", name, actor, reason, len(pushes))
        return await self.board(name)

    async def deactivate(self, name: str, *, actor: str, reason: str = "manual") -> dict[str, Any]:
        async with self._lock:
            self.get(name)
            now = self.hub.clock.now()
            others = {n: lo.plan for n, lo in self.plans.items() if n != name}

            def write(repo: Any) -> list[Desired]:
                act = repo.open_activation(name)
                if act is None:
                    raise PlanError(name, "is not active")
                # Overlays of other active plans on each agent, in activation order, go back on top.
                layered: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for other in repo.open_activations():
                    plan = others.get(other["name"])
                    if other["id"] == act["id"] or plan is None or plan.actions.agent_config is None:
                        continue
                    for p in repo.pushes(other["id"]):
                        if p["purpose"] == "apply":
                            layered[p["agent_id"]].append(plan.actions.agent_config.overlay)
                restores = []
                for p in repo.pushes(act["id"]):
                    if p["purpose"] != "apply":
                        continue
                    current = repo.agent_desired(p["agent_id"])
                    row = repo.get_agent(p["agent_id"])
                    highest = max(current["version"] if current else 0,
                                  (row.config_version or 0) if row else 0)
                    config = p["previous_config"] or {}
                    for overlay in layered.get(p["agent_id"], []):
                        config = merge_patch(config, overlay)
                    d = restore_for(p["agent_id"], config, highest)
                    repo.set_agent_desired(d.agent_id, d.version, d.config, now, f"plan {name} deactivated")
                    repo.add_push(act["id"], d.agent_id, "restore", d.version, d.config, None, None, now)
                    restores.append(d)
                repo.close_activation(act["id"], now, actor, reason)
                repo.add_plan_audit(now, name, "deactivated", actor, reason,
                                    {"activation": act["id"], "agents": [d.agent_id for d in restores]})
                return restores

            restores = await self.hub.write(write)
            self._armed[name] = False  # re-armed when its triggers stop firing
            await self._publish(restores, f"plan {name} deactivated")
            await self._set_deadlines()
            log.info("plan %s deactivated by %s (%s): %d agents restored", name, actor, reason, len(restores))
            return await self.board(name)

    async def _publish(self, pushes: list[Desired], reason: str) -> None:
        now = self.hub.clock.now()
        failed = []
        for d in pushes:
            msg = DesiredConfig(agent_id=d.agent_id, version=d.version, config=d.config, issued_at=now,
                                issued_by="hub", reason=reason[:200])
            if not self.hub.publish_retained(agent_topic(d.agent_id, Channel.CONFIG), encode(msg)):
                failed.append(d)
        if failed:
            log.warning("desired config not queued for %s", ", ".join(d.agent_id for d in failed))
            error = "not published: the hub's broker link refused it; activate again when connected"
            versions = {(d.agent_id, d.version) for d in failed}

            def mark(repo: Any) -> None:
                for p in repo.pending_pushes():
                    if (p["agent_id"], p["version"]) in versions:
                        repo.settle_push(p["id"], now, error)

            await self.hub.write(mark)

    async def _set_deadlines(self) -> None:
        rows = await self.hub.read(lambda repo: repo.open_activations())
        active = [self.plans[r["name"]].plan for r in rows if r["name"] in self.plans]
        self.hub.engine.deadline_overrides = deadline_overrides(active)

    # -- acknowledgements --------------------------------------------------------------------
    async def track(self) -> int:
        """Settle pushes the agents have reported: applied (their status names the version)
        or refused (their config_error names it). Returns how many settled."""
        pending = await self.hub.read(lambda repo: repo.pending_pushes())
        if not pending:
            return 0
        agents = await self.hub.read(lambda repo: {a.agent_id: a for a in repo.list_agents(limit=100_000)})
        now = self.hub.clock.now()
        settle: list[tuple[int, str | None]] = []
        for p in pending:
            row = agents.get(p["agent_id"])
            if row is None:
                continue
            if row.config_version == p["version"]:
                settle.append((p["id"], None))
            elif row.config_error and f"v{p['version']} " in row.config_error + " ":
                settle.append((p["id"], row.config_error))
            elif row.config_version is not None and row.config_version > p["version"]:
                settle.append((p["id"], f"superseded by v{row.config_version}"))
        if settle:
            await self.hub.write(lambda repo: [repo.settle_push(i, now, e) for i, e in settle])
        return len(settle)

    async def _track_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.track()
            except Exception:
                log.exception("plan acknowledgement tracking failed")

    # -- triggers ----------------------------------------------------------------------------
    async def evaluate(self) -> list[str]:
        """Activate every inactive plan whose automatic trigger fires now."""
        activated = []
        async with self._lock:
            open_names = {r["name"] for r in await self.hub.read(lambda repo: repo.open_activations())}
            counts = await self.hub.read(lambda repo: repo.open_case_counts())
            monitor = self.hub.vitals.monitor
            for name, loaded in sorted(self.plans.items()):
                if name in open_names:
                    self._armed[name] = False
                    continue
                plan = loaded.plan
                area = area_grids(plan, self.hub.setup.grids)
                in_area: dict[str, int] = defaultdict(int)
                for grid, category, n in counts:
                    if grid in area:
                        in_area[category] += n
                why = None
                for trigger in plan.triggers:
                    level = monitor.highest({trigger.kind} if trigger.kind else None, area) \
                        if trigger.type == "vital" else Level.NORMAL
                    why = fired(trigger, level_in_area=level, open_cases=in_area)
                    if why is not None:
                        break
                if why is None:
                    self._armed[name] = True
                    continue
                if not self._armed.get(name, True):
                    continue  # deactivated while the condition holds: wait for it to clear
                try:
                    await self._activate(name, "auto", why)
                    activated.append(name)
                except PlanError as exc:
                    log.info("%s", exc)
        return activated

    # -- reading -----------------------------------------------------------------------------
    async def board(self, name: str) -> dict[str, Any]:
        """What the plan's board shows: the plan, its activation, each agent's push and
        acknowledgement, the levels in its area, notices, the audit trail."""
        loaded = self.get(name)
        plan = loaded.plan
        area = sorted(area_grids(plan, self.hub.setup.grids))

        def read(repo: Any) -> dict[str, Any]:
            act = repo.open_activation(name)
            last = act or next(iter(repo.activations(name, 1)), None)
            return {"activation": last, "active": act is not None,
                    "pushes": repo.pushes(last["id"]) if last else [],
                    "audit": repo.plan_audit(name, 20),
                    "versions": repo.plan_versions(name),
                    "levels": [r for r in repo.vital_levels() if r["grid_id"] in area]}

        data = await self.hub.read(read)
        data.update({"name": name, "version": loaded.version, "plan": plan.model_dump(mode="json"),
                     "area_grids": area})
        return data

    async def summaries(self) -> list[dict[str, Any]]:
        open_rows = {r["name"]: r for r in await self.hub.read(lambda repo: repo.open_activations())}
        return [{"name": n, "title": lo.plan.title, "kind": lo.plan.kind.value, "version": lo.version,
                 "active": n in open_rows, "pin_board": lo.plan.actions.pin_board,
                 "activated_at": open_rows[n]["activated_at"] if n in open_rows else None,
                 "reason": open_rows[n]["reason"] if n in open_rows else None}
                for n, lo in sorted(self.plans.items())]

