"""Runs a device's rules over its samples and turns decisions into events.

The engine is the thin shell around the pure rules: it keeps each rule's state (loaded
from and saved to the outbox database), gives each lifecycle one event id
(``protocol.ids.new_event_id``) from ``new`` to ``end``, and builds the
:class:`~edge_agent.emit.EventDraft` with the device's place and a
:class:`~protocol.messages.Reading` as evidence. It never writes anything itself:
``step`` returns drafts and the states to save; the caller commits both in one
transaction and only then calls ``accept`` (a failed write leaves the rules where they
were, so the next sample decides again).

A state whose rule or device is no longer configured and still has an open event is
ended (``reason: rule_removed``), so the hub's case does not stay open forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_agent.config.devices import DeviceConfig
from edge_agent.config.registers import RegisterMap
from edge_agent.config.sections import LocationConfig
from edge_agent.emit import EventDraft
from protocol.ids import new_event_id
from protocol.messages import EventKind, Evidence, Location, Reading

from .alarm import call_button_rule, smoke_alarm_rule
from .base import Decision, Rule, Sample, State
from .level import LevelRule
from .water import ContinuousFlowRule, WaterNoUseRule

__all__ = ["DeviceRuleSet", "Lifecycle", "Step", "build_rules", "closing_draft", "state_key"]

IdFactory = Callable[[], str]


def build_rules(device: DeviceConfig) -> list[Rule]:
    r = device.rules
    rules: list[Rule] = []
    if r.water_no_use:
        rules.append(WaterNoUseRule(r.water_no_use))
    if r.continuous_flow:
        rules.append(ContinuousFlowRule(r.continuous_flow))
    if r.level:
        rules.append(LevelRule(r.level))
    if r.smoke_alarm:
        rules.append(smoke_alarm_rule(r.smoke_alarm))
    if r.call_button:
        rules.append(call_button_rule(r.call_button))
    return rules


def state_key(device_id: str, rule: str, prefix: str = "") -> str:
    """Where a rule's lifecycle is saved: ``{prefix}{device}/{rule}``."""
    return f"{prefix}{device_id}/{rule}"


@dataclass
class Lifecycle:
    """The persisted record of one rule on one device: its own state and the event
    lifecycle it drives. ``category``/``subcategory`` are kept so an orphaned open event
    can still be ended."""

    rule: State
    event_id: str | None = None
    started_at: float | None = None
    category: str | None = None
    subcategory: str | None = None
    signal: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "event_id": self.event_id, "started_at": self.started_at,
                "category": self.category, "subcategory": self.subcategory, "signal": self.signal}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lifecycle:
        return cls(dict(data.get("rule") or {}), data.get("event_id"), data.get("started_at"),
                   data.get("category"), data.get("subcategory"), data.get("signal"))


@dataclass(frozen=True)
class Step:
    drafts: list[EventDraft] = field(default_factory=list)
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.drafts or self.states)


def to_location(loc: LocationConfig, grid_id: str | None) -> Location:
    return Location(lat=loc.lat, lon=loc.lon, grid_id=grid_id, place=loc.place)


def closing_draft(
    device_id: str, life: Lifecycle, location: Location, at: datetime, reason: str
) -> EventDraft | None:
    """The ``end`` of an open lifecycle whose rule or device went away."""
    if life.event_id is None or life.category is None or life.subcategory is None:
        return None
    return EventDraft(
        event_id=life.event_id, kind=EventKind.END, category=life.category,
        subcategory=life.subcategory, source=device_id, observed_at=at, location=location,
        started_at=_dt(life.started_at), attributes={"reason": reason},
    )


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


class DeviceRuleSet:
    """The rules of one device, with their persisted lifecycles."""

    def __init__(
        self, device: DeviceConfig, regmap: RegisterMap, location: Location,
        saved: Mapping[str, Mapping[str, Any]], *, new_id: IdFactory = new_event_id,
        prefix: str = "",
    ) -> None:
        self.device_id = device.id
        self.prefix = prefix
        self.location = location
        self.rules = build_rules(device)
        self.new_id = new_id
        self._units = {name: spec.unit for name, spec in regmap.registers.items()}
        self.lifecycles: dict[str, Lifecycle] = {}
        for rule in self.rules:
            data = saved.get(state_key(device.id, rule.name, prefix))
            self.lifecycles[rule.name] = Lifecycle.from_json(data) if data else Lifecycle(rule.initial())
        configured = {state_key(device.id, r.name, prefix) for r in self.rules}
        self.orphans = {
            key: Lifecycle.from_json(data) for key, data in saved.items()
            if key.startswith(state_key(device.id, "", prefix)) and key not in configured
            and not key.endswith("/offline")
        }

    def close_orphans(self, at: datetime) -> Step:
        """End open events of rules this device no longer has; forget their state."""
        step = Step()
        for key, life in self.orphans.items():
            draft = closing_draft(self.device_id, life, self.location, at, "rule_removed")
            if draft:
                step.drafts.append(draft)
            step.states[key] = None
        return step

    def step(self, sample: Sample) -> tuple[Step, dict[str, Lifecycle]]:
        """Run every rule on the sample. Returns what to commit and the lifecycles to
        ``accept`` once it is committed."""
        out = Step()
        updated: dict[str, Lifecycle] = {}
        for rule in self.rules:
            life = self.lifecycles[rule.name]
            new_state, decision = rule.step(life.rule, sample)
            if decision is None and new_state == life.rule:
                continue
            nxt = Lifecycle(new_state, life.event_id, life.started_at, rule.category,
                            rule.subcategory, life.signal)
            if decision is not None:
                nxt, draft = self._lifecycle(rule, nxt, decision, sample.at)
                if draft is not None:
                    out.drafts.append(draft)
            updated[rule.name] = nxt
            out.states[state_key(self.device_id, rule.name, self.prefix)] = nxt.to_json()
        return out, updated

    def accept(self, updated: Mapping[str, Lifecycle]) -> None:
        self.lifecycles.update(updated)

    def acknowledge(self, event_id: str, by: str, at: datetime) -> tuple[Step, dict[str, Lifecycle]]:
        """The hub says someone took the open alarm ``event_id``: its rule stops
        escalating and answers with an ``update`` saying so (``acknowledged: true``).
        Returns what to commit and the lifecycles to ``accept`` (empty when no open alarm
        of this device has that id, or it was acknowledged already: idempotent)."""
        out = Step()
        updated: dict[str, Lifecycle] = {}
        for rule in self.rules:
            life = self.lifecycles[rule.name]
            ack = getattr(rule, "acknowledge", None)
            if life.event_id != event_id or ack is None:
                continue
            new_state, decision = ack(life.rule, by, at.timestamp())
            if decision is None:
                continue
            nxt = Lifecycle(new_state, life.event_id, life.started_at, rule.category,
                            rule.subcategory, life.signal)
            nxt, draft = self._lifecycle(rule, nxt, decision, at)
            if draft is not None:
                out.drafts.append(draft)
            updated[rule.name] = nxt
            out.states[state_key(self.device_id, rule.name, self.prefix)] = nxt.to_json()
        return out, updated

    def _lifecycle(
        self, rule: Rule, life: Lifecycle, d: Decision, at: datetime
    ) -> tuple[Lifecycle, EventDraft | None]:
        if d.kind == EventKind.NEW:
            life.event_id, life.started_at, life.signal = self.new_id(), at.timestamp(), d.signal
        elif life.event_id is None:
            # An update or end with no open event (state lost): nothing to continue.
            return life, None
        draft = EventDraft(
            event_id=life.event_id, kind=d.kind, category=rule.category,
            subcategory=rule.subcategory, source=self.device_id, observed_at=at,
            location=self.location, started_at=_dt(life.started_at),
            evidence=Evidence(reading=Reading(name=d.signal, value=d.value,
                                              unit=self._units.get(d.signal.split(".")[0], ""))),
            attributes={"rule": rule.name, **d.attributes},
        )
        if d.kind == EventKind.END:
            life.event_id = life.started_at = life.signal = None
        return life, draft
