"""Per-agent sequence tracking and the acks built from it. Pure.

The hub keeps, per agent, ``upto`` (every seq ``<= upto`` is durably handled: stored or
refused) and the sorted, coalesced ranges handled above it. A seq above ``upto + 1``
with nothing in between opens a gap: it is reported (logged, counted, shown on the
agent) but never fatal, and never papered over — after an outage an agent sends live
events first and its backlog later, so a gap usually fills.

An ack says ``upto`` plus the ranges beyond it (at most 2,000, the protocol's cap),
so a lost ack heals with the next one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from protocol.messages import Ack, Rejection

__all__ = ["SeqState", "build_ack"]

MAX_RANGES = 2000


@dataclass
class SeqState:
    upto: int = 0
    ranges: list[list[int]] = field(default_factory=list)  # sorted, disjoint, all > upto + 1
    highest: int = 0
    gaps: int = 0  # gaps opened so far (a report, not an error)

    def add(self, seqs: Iterable[int]) -> int:
        """Mark seqs handled. Returns how many new gaps this opened."""
        opened = 0
        for seq in sorted(set(seqs)):
            if seq <= self.upto or any(lo <= seq <= hi for lo, hi in self.ranges):
                continue
            if seq > self.highest + 1:
                opened += 1
            self._insert(seq)
            self.highest = max(self.highest, seq)
        self.gaps += opened
        return opened

    def _insert(self, seq: int) -> None:
        if seq == self.upto + 1:
            self.upto = seq
            while self.ranges and self.ranges[0][0] == self.upto + 1:
                self.upto = self.ranges.pop(0)[1]
            return
        out: list[list[int]] = []
        placed = False
        for lo, hi in self.ranges:
            if placed or seq > hi + 1:
                out.append([lo, hi])
            elif seq < lo - 1:
                out.append([seq, seq])
                out.append([lo, hi])
                placed = True
            else:
                out.append([min(lo, seq), max(hi, seq)])
                placed = True
        if not placed:
            out.append([seq, seq])
        merged: list[list[int]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.ranges = merged

    def covers(self, seq: int) -> bool:
        return seq <= self.upto or any(lo <= seq <= hi for lo, hi in self.ranges)

    def missing(self) -> int:
        """Seqs between upto and highest that the hub has not seen."""
        have = sum(hi - lo + 1 for lo, hi in self.ranges)
        return max(0, self.highest - self.upto - have)


def build_ack(agent_id: str, state: SeqState, rejected: list[Rejection], at: datetime) -> Ack:
    ranges = [(lo, hi) for lo, hi in state.ranges[-MAX_RANGES:]]
    return Ack(agent_id=agent_id, upto=state.upto, ranges=ranges, rejected=rejected[:500], at=at)
