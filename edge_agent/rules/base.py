"""What every sensor rule shares: the samples it reads, the decisions it makes.

A rule is a pure state machine: ``step(state, sample) -> (state, decision | None)``.
State is a small JSON-able dict (persisted in SQLite by the engine), times are unix
seconds taken from the sample (so a fake clock drives simulated days), and a decision
says where the rule's one event is in its lifecycle: ``new`` (the alarm opens),
``update`` (it changed: a tier escalated, the level rose), ``end`` (it cleared).
The engine (:mod:`edge_agent.rules.engine`) turns decisions into events with one event
id per lifecycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from protocol.messages import EventKind

__all__ = ["Decision", "Rule", "Sample", "SingleSignalRule", "State"]

State = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One poll of a device: every signal that was read and plausible, at one time.

    ``values`` maps ``register`` and ``register.bit`` names to numbers; a signal whose
    reading was rejected (out of range) or not read this time is absent."""

    at: datetime
    values: Mapping[str, float]

    @property
    def t(self) -> float:
        return self.at.timestamp()


@dataclass(frozen=True)
class Decision:
    kind: EventKind
    signal: str  # the signal whose value backs the event (its Reading)
    value: float
    attributes: dict[str, str | int | float | bool | None] = field(default_factory=dict)


class Rule(Protocol):
    name: str  # the config key: water_no_use, continuous_flow, level, smoke_alarm, ...
    category: str
    subcategory: str

    def initial(self) -> State:
        ...

    def step(self, state: State, sample: Sample) -> tuple[State, Decision | None]:
        """Pure: the next state and, when the lifecycle moves, a decision."""
        ...


class SingleSignalRule:
    """Base of rules that watch one signal (``config.signal``): a sample without it (not
    read this time, or rejected as implausible) changes nothing; the others go to
    ``advance(state_copy, value, t)``."""

    config: Any

    def step(self, state: State, sample: Sample) -> tuple[State, Decision | None]:
        value = sample.values.get(self.config.signal)
        if value is None:
            return state, None
        return self.advance(dict(state), value, sample.t)

    def advance(self, s: State, value: float, t: float) -> tuple[State, Decision | None]:
        raise NotImplementedError
