"""The Modbus component: polls every configured device, runs its rules, reports health.

For each device: its register map is planned into batched reads per period
(:mod:`.plan`), read over its bus (:mod:`.link`), decoded and range-checked
(:mod:`.decode`; a reading outside the valid range is rejected and counted, never fed
to a rule), and the plausible values go to the device's rules
(:mod:`edge_agent.rules`). A device that stops answering goes DOWN after
``down_after`` failed polls (a ``device.offline`` event), is polled with backoff, and
comes UP with the first answer (the event ends) — :mod:`.health`.

Events and the rule state behind them are committed together (the outbox implements
:class:`~edge_agent.rules.state.RuleStore`); state changes without an event are saved
in batches every ``outbox.state_flush_s``.

Scheduling uses the event loop's clock; sample times come from the injected
:class:`~protocol.clock.Clock` (tests drive simulated days with a fake one).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.config.devices import DeviceConfig
from edge_agent.config.loader import LoadedConfig
from edge_agent.config.registers import DataType, RegisterMap
from edge_agent.emit import EventDraft, EventSink
from edge_agent.errors import DeviceError, OutboxError
from edge_agent.rules.base import Sample
from edge_agent.rules.engine import (
    DeviceRuleSet,
    Lifecycle,
    Step,
    closing_draft,
    state_key,
    to_location,
)
from edge_agent.rules.state import RuleStore, rule_store_for
from protocol.clock import Clock, SystemClock
from protocol.ids import is_safe_id, new_event_id
from protocol.messages import EventKind, Location

from .decode import check_valid, decode
from .health import Health, HealthState, Transition
from .link import ClientFactory, ModbusLink, make_client
from .plan import Read, plan_by_period, slice_read

__all__ = ["ModbusComponent", "PREFIX"]

log = logging.getLogger(__name__)

PREFIX = "modbus/"  # rule-state keys of this component
OFFLINE = "offline"
_REJECT_LOG_EVERY_S = 600.0


@dataclass
class _Group:
    period: float
    reads: list[Read]
    next_due: float = 0.0


@dataclass
class _Device:
    config: DeviceConfig
    regmap: RegisterMap
    link: ModbusLink
    location: Location
    groups: list[_Group]
    rules: DeviceRuleSet
    health: Health
    offline: Lifecycle
    readings: dict[str, float] = field(default_factory=dict)
    rejected_logged: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.config.id


class ModbusComponent:
    """A :class:`edge_agent.component.Component` for the config's Modbus devices."""

    name = "modbus"

    def __init__(
        self, loaded: LoadedConfig, *, clock: Clock | None = None,
        client_factory: ClientFactory = make_client, new_id: Callable[[], str] = new_event_id,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.clock = clock or SystemClock()
        self.client_factory = client_factory
        self.new_id = new_id
        self.devices: dict[str, _Device] = {}
        self.rejected_readings = 0
        self.polls = 0
        self.failed_polls = 0
        self.emit_errors = 0
        self.lateness: deque[float] = deque(maxlen=20_000)  # seconds late, recent polls
        self._store: RuleStore | None = None
        self._dirty: dict[str, dict[str, Any] | None] = {}
        self._links: dict[str, ModbusLink] = {}
        self._pending_acks: dict[str, str] = {}  # acknowledged before the devices were built

    # -- Component -------------------------------------------------------------------
    async def run(self, sink: EventSink, stop: asyncio.Event) -> None:
        store = self._store = rule_store_for(sink)
        saved = store.load_states(PREFIX)
        self._build(saved)
        self._close_removed(saved)
        pending, self._pending_acks = self._pending_acks, {}
        for event_id, by in pending.items():
            self.acknowledge(event_id, by)
        tasks = [asyncio.create_task(self._run_device(dev, stop), name=f"modbus:{dev.id}")
                 for dev in self.devices.values()]
        tasks.append(asyncio.create_task(self._flush_loop(stop), name="modbus:flush"))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._flush()
            for link in self._links.values():
                await link.close()

    def telemetry(self) -> dict[str, Any]:
        readings: dict[str, float] = {}
        if self.config.telemetry.include_readings:
            for dev in self.devices.values():
                for name, value in dev.readings.items():
                    key = f"{dev.id}.{name}"
                    if is_safe_id(key):  # an id of 60+ characters leaves no room for the name
                        readings[key] = value
        return {
            "devices": {d.id: d.health.state.value for d in self.devices.values()},
            "readings": readings,
            "rejected_readings": self.rejected_readings,
        }

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and inspection."""
        return {"polls": self.polls, "failed_polls": self.failed_polls,
                "rejected_readings": self.rejected_readings, "emit_errors": self.emit_errors,
                "lateness_s": list(self.lateness)}

    def acknowledge(self, event_id: str, by: str = "") -> bool | None:
        """The hub says someone took the alarm ``event_id``: its rule stops escalating
        tiers, and the ``update`` that says so (``acknowledged: true``) is committed with
        the rule's state. True when it was taken now; False when no open alarm has that
        id or it was taken before (idempotent); None when it could not be stored (the
        next time the hub's state arrives decides again). Before the devices are built,
        it waits and is applied once they are."""
        if not self.devices or self._store is None:
            self._pending_acks[event_id] = by
            return False
        for dev in self.devices.values():
            step, updated = dev.rules.acknowledge(event_id, by, self.clock.now())
            if not updated:
                continue
            if not self._commit(step):
                return None
            dev.rules.accept(updated)
            log.info("alarm %s of %s acknowledged by %s on the hub: no further tier",
                     event_id, dev.id, by or "the hub", extra={"device": dev.id})
            return True
        return False

    # -- building ----------------------------------------------------------------------
    def _build(self, saved: dict[str, dict[str, Any]]) -> None:
        cfg = self.config
        by_link: dict[str, list[DeviceConfig]] = {}
        for d in cfg.devices:
            if d.enabled:
                by_link.setdefault(d.link_key, []).append(d)
        self._links = {key: ModbusLink(key, devs, self.client_factory) for key, devs in by_link.items()}
        agent_loc = cfg.agent.location
        for d in cfg.devices:
            if not d.enabled:
                continue
            regmap = self.loaded.maps[d.model]
            location = to_location(d.location or agent_loc, cfg.agent.grid_id)
            plan = plan_by_period(regmap, d.poll_period_s, max_gap=cfg.modbus.max_gap,
                                  max_batch=cfg.modbus.max_batch)
            # Spread first polls over the period so many devices do not ask at once.
            phase = (zlib.crc32(d.id.encode()) % 1000) / 1000.0
            groups = [_Group(period, reads, next_due=phase * min(period, 10.0))
                      for period, reads in plan.items()]
            offline = Lifecycle.from_json(saved.get(state_key(d.id, OFFLINE, PREFIX)) or {"rule": {}})
            health = Health(d.down_after, d.backoff_max_s)
            if offline.event_id is not None:  # it was DOWN when the agent stopped
                health.state, health.failures = HealthState.DOWN, d.down_after
            self.devices[d.id] = _Device(
                d, regmap, self._links[d.link_key], location, groups,
                DeviceRuleSet(d, regmap, location, saved, new_id=self.new_id, prefix=PREFIX),
                health, offline,
            )

    def _close_removed(self, saved: dict[str, dict[str, Any]]) -> None:
        """End open events of rules and devices no longer configured."""
        now = self.clock.now()
        step = Step()
        for dev in self.devices.values():
            s = dev.rules.close_orphans(now)
            step.drafts.extend(s.drafts)
            step.states.update(s.states)
        known = {state_key(d, "", PREFIX) for d in self.devices}
        agent_loc = to_location(self.config.agent.location, self.config.agent.grid_id)
        for key, data in saved.items():
            if any(key.startswith(k) for k in known):
                continue
            device_id = key[len(PREFIX):].split("/", 1)[0]
            draft = closing_draft(device_id, Lifecycle.from_json(data), agent_loc, now, "device_removed")
            if draft:
                step.drafts.append(draft)
            step.states[key] = None
        if step:
            self._commit(step)

    # -- polling -----------------------------------------------------------------------
    async def _run_device(self, dev: _Device, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for g in dev.groups:
            g.next_due += start
        while not stop.is_set():
            now = loop.time()
            if dev.health.state == HealthState.DOWN:
                due = dev.groups  # probe with every read while down
                wait = min(g.next_due for g in due) - now
            else:
                due = [g for g in dev.groups if g.next_due <= now + 0.0005]
                wait = 0.0 if due else min(g.next_due for g in dev.groups) - now
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                continue
            if dev.health.state != HealthState.DOWN:
                for g in due:
                    self.lateness.append(now - g.next_due)
            await self._poll(dev, due)
            after = loop.time()
            if dev.health.state == HealthState.DOWN:
                delay = dev.health.delay(min(g.period for g in dev.groups))
                for g in dev.groups:
                    g.next_due = after + delay
            else:
                for g in due:
                    g.next_due += g.period
                    if g.next_due < after:  # fell behind: skip the missed periods
                        g.next_due += g.period * ((after - g.next_due) // g.period + 1)

    async def _poll(self, dev: _Device, groups: list[_Group]) -> None:
        self.polls += 1
        words: dict[Read, list[int]] = {}
        try:
            for g in groups:
                for read in g.reads:
                    words[read] = await dev.link.read(dev.config, read)
        except DeviceError as exc:
            self.failed_polls += 1
            self._health_change(dev, ok=False, error=str(exc))
            return
        self._health_change(dev, ok=True)
        self._run_rules(dev, self._sample_values(dev, words))

    def _sample_values(self, dev: _Device, words: dict[Read, list[int]]) -> dict[str, float]:
        values: dict[str, float] = {}
        now = self.clock.monotonic()
        for read, data in words.items():
            for name in read.registers:
                spec = dev.regmap.registers[name]
                try:
                    decoded = decode(spec, slice_read(read, data, spec))
                    why = check_valid(spec, decoded.value)
                except ValueError as exc:
                    why = str(exc)
                if why is not None:
                    self.rejected_readings += 1
                    last = dev.rejected_logged.get(name)
                    if last is None or now - last >= _REJECT_LOG_EVERY_S:
                        dev.rejected_logged[name] = now
                        log.warning("rejected reading %s.%s: %s", dev.id, name, why,
                                    extra={"device": dev.id, "register": name})
                    continue
                values[name] = decoded.value
                dev.readings[name] = decoded.value
                if spec.type == DataType.BITFIELD:
                    for flag, bit in decoded.flags.items():
                        values[f"{name}.{flag}"] = float(bit)
        return values

    def _run_rules(self, dev: _Device, values: dict[str, float]) -> None:
        if not values or not dev.rules.rules:
            return
        step, updated = dev.rules.step(Sample(self.clock.now(), values))
        if not step:
            return
        if step.drafts:
            if self._commit(step):
                dev.rules.accept(updated)
        else:
            dev.rules.accept(updated)
            self._dirty.update(step.states)

    def _health_change(self, dev: _Device, *, ok: bool, error: str | None = None) -> None:
        trial = copy.copy(dev.health)
        t = self.clock.now()
        transition = trial.success(t.timestamp()) if ok else trial.failure(t.timestamp(), error or "")
        if transition is None:
            if not ok:
                log.debug("poll of %s failed (%d in a row): %s", dev.id, trial.failures, error,
                          extra={"device": dev.id})
            dev.health = trial
            return
        life = copy.copy(dev.offline)
        if transition == Transition.WENT_DOWN:
            life.event_id, life.started_at = self.new_id(), t.timestamp()
            life.category, life.subcategory = "device", "device.offline"
            kind, attrs = EventKind.NEW, {"error": (error or "")[:200], "failures": trial.failures,
                                          "link": dev.link.key, "unit_id": dev.config.unit_id}
        else:
            if life.event_id is None:  # came up with no open event: nothing to end
                dev.health = trial
                return
            down_for = t.timestamp() - (life.started_at or t.timestamp())
            kind, attrs = EventKind.END, {"down_for_s": round(down_for, 1), "reason": "answering"}
        draft = EventDraft(
            event_id=life.event_id or "", kind=kind, category="device", subcategory="device.offline",
            source=dev.id, observed_at=t, location=dev.location, attributes=attrs,
            started_at=datetime.fromtimestamp(life.started_at, t.tzinfo) if life.started_at else None,
        )
        if kind == EventKind.END:
            life = Lifecycle({})
        state = life.to_json() if life.event_id else None
        if self._commit(Step([draft], {state_key(dev.id, OFFLINE, PREFIX): state})):
            dev.health, dev.offline = trial, life
            level = logging.WARNING if kind == EventKind.NEW else logging.INFO
            log.log(level, "device %s is %s%s", dev.id, trial.state.value,
                    f": {error}" if error else "", extra={"device": dev.id})
        # else: the transition is retried on the next poll (nothing was taken)

    # -- persistence -------------------------------------------------------------------
    def _commit(self, step: Step) -> bool:
        assert self._store is not None
        try:
            self._store.commit(step.drafts, step.states)
        except OutboxError as exc:
            self.emit_errors += 1
            log.error("could not store %d event(s); the rules will decide again on the next "
                      "reading: %s", len(step.drafts), exc)
            return False
        for key in step.states:
            self._dirty.pop(key, None)
        return True

    def _flush(self) -> None:
        if not self._dirty or self._store is None:
            return
        dirty, self._dirty = self._dirty, {}
        try:
            self._store.save_states(dirty)
        except OutboxError as exc:
            log.error("could not save rule state (kept in memory, retried): %s", exc)
            self._dirty = {**dirty, **self._dirty}

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        period = self.config.outbox.state_flush_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)
            self._flush()

