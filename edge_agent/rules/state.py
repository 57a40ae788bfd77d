"""Where rule state lives: the :class:`RuleStore` protocol.

The outbox implements it on the same SQLite database as the events
(:class:`edge_agent.outbox.Outbox`), so a state change and the event it causes commit in
one transaction. :class:`MemoryRuleStore` wraps any plain :class:`EventSink` (tests of
finders, a :class:`~edge_agent.emit.MemorySink`) and keeps state in memory only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from edge_agent.emit import EventDraft, EventSink

__all__ = ["MemoryRuleStore", "RuleStore", "rule_store_for"]


@runtime_checkable
class RuleStore(Protocol):
    def load_states(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        ...

    def commit(
        self, drafts: Sequence[EventDraft], states: Mapping[str, dict[str, Any] | None] | None = None
    ) -> list[int]:
        """Events and state changes, durably and together (or neither)."""
        ...

    def save_states(self, states: Mapping[str, dict[str, Any] | None]) -> None:
        """State changes that come with no event."""
        ...


class MemoryRuleStore:
    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.states: dict[str, dict[str, Any]] = {}

    def load_states(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.states.items() if k.startswith(prefix)}

    def commit(
        self, drafts: Sequence[EventDraft], states: Mapping[str, dict[str, Any] | None] | None = None
    ) -> list[int]:
        seqs = [self.sink.emit(d) for d in drafts]
        self.save_states(states or {})
        return seqs

    def save_states(self, states: Mapping[str, dict[str, Any] | None]) -> None:
        for key, value in states.items():
            if value is None:
                self.states.pop(key, None)
            else:
                self.states[key] = value


def rule_store_for(sink: EventSink) -> RuleStore:
    """The sink itself when it can keep rule state (the outbox), else a memory store."""
    return sink if isinstance(sink, RuleStore) else MemoryRuleStore(sink)
