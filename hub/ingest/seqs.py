"""Per-agent sequence tracking and the acks built from it. Pure.

The hub keeps, per agent, ``upto`` (every seq ``<= upto`` is durably handled: stored or
refused) and the sorted, coalesced ranges handled above it. A seq above ``upto + 1``
with nothing in between opens a gap: it is reported (logged, counted, shown on the
agent) but never fatal, and never papered over — after an outage an agent sends live
events first and its backlog later, so a gap usually fills.

An ack says ``upto`` plus the ranges beyond it, so a lost ack heals with the next one.

Cost and bounds (an agent is not trusted to be well behaved):

* The ranges are two sorted lists (starts and ends) searched with :mod:`bisect`:
  ``covers`` and ``add`` cost O(log n) comparisons per seq, plus a list insert or
  delete of at most :data:`MAX_RANGES` pointers when a range opens or closes.
* At most :data:`MAX_RANGES` (2,000, the protocol's cap on an ack's ranges) are held,
  so every ack carries all of them. When one more would open, the **oldest gap is given
  up**: ``upto`` moves over it and its seqs are counted in ``given_up``. Nothing the hub
  holds is forgotten, and a late message inside that gap is still stored (the ingest
  sees it as covered and inserts it if the store does not have it). Refusing the new
  seq instead would delete a live event from the agent's outbox; holding more ranges
  would let one agent grow every ack and the writer's work without bound. A real agent
  gets there only after thousands of permanent holes (updates its outbox dropped under
  its cap), and the oldest of those is the one least likely ever to arrive.
* A seq more than :data:`WINDOW` above the highest seq the hub holds from the agent is
  refused (:meth:`SeqState.admits`, dead letter ``seq_out_of_window``). The reference
  is ``highest``, not ``upto``: a permanent hole keeps ``upto`` where it is while a real
  agent's seqs go on rising forever. An agent's next seq is above ``highest`` only by
  the events it made while the hub heard nothing from it (dropped updates included), so
  10**9 is decades of outage at any real event rate, while a broken counter (a clock
  read as a seq, a value near the protocol's limit) is refused. The first seq of an
  agent the hub has no state for (``highest == 0``: new agent, restored backup) is
  always admitted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime

from protocol.codec import encode
from protocol.limits import MAX_ACK_BYTES
from protocol.messages import Ack, Rejection

__all__ = ["MAX_ACK_REJECTIONS", "MAX_RANGES", "WINDOW", "SeqState", "build_acks"]

MAX_ACK_REJECTIONS = 500  # the protocol's cap on an ack's rejections
MAX_RANGES = 2000  # the protocol's cap on an ack's ranges (protocol.messages.Ack)
# Upper bounds of one range and one rejection in an ack's JSON: two 16-digit seqs; a seq
# and two 200-character strings of the worst escaping (six bytes a character).
_RANGE_MAX = 40
_REJECTION_MAX = 2 * 200 * 6 + 64
WINDOW = 1_000_000_000  # how far above ``highest`` a seq may land


class SeqState:
    """``upto``, the ranges above it, ``highest`` seen and ``gaps`` ever opened."""

    __slots__ = ("_held", "_hi", "_lo", "gaps", "given_up", "highest", "max_ranges", "upto", "window")

    def __init__(self, upto: int = 0, ranges: Iterable[Iterable[int]] = (), highest: int = 0,
                 gaps: int = 0, *, max_ranges: int = MAX_RANGES, window: int = WINDOW) -> None:
        if not 1 <= max_ranges <= MAX_RANGES:
            raise ValueError(f"max_ranges must be 1..{MAX_RANGES} (an ack carries them all)")
        self.upto = upto
        self.highest = max(highest, upto)
        self.gaps = gaps  # gaps opened so far (a report, not an error)
        self.given_up = 0  # seqs of gaps given up under the range cap (this process)
        self.max_ranges = max_ranges
        self.window = window
        self._lo: list[int] = []  # starts, sorted; every start > upto + 1
        self._hi: list[int] = []  # the matching ends
        self._held = 0  # seqs inside the ranges
        for lo, hi in sorted(tuple(r) for r in ranges):  # a stored state: normalise it
            self.highest = max(self.highest, hi)
            self._load(lo, hi)
        self._advance()
        while len(self._lo) > self.max_ranges:
            self._give_up_oldest()

    def _load(self, lo: int, hi: int) -> None:
        lo = max(lo, self.upto + 1)
        if hi < lo:
            return
        if self._lo and lo <= self._hi[-1] + 1:
            if hi > self._hi[-1]:
                self._held += hi - self._hi[-1]
                self._hi[-1] = hi
            return
        self._lo.append(lo)
        self._hi.append(hi)
        self._held += hi - lo + 1

    def copy(self) -> SeqState:
        twin = SeqState(self.upto, (), self.highest, self.gaps, max_ranges=self.max_ranges,
                        window=self.window)
        twin._lo, twin._hi, twin._held = list(self._lo), list(self._hi), self._held
        twin.given_up = self.given_up
        return twin

    # -- reading ---------------------------------------------------------------------------------
    @property
    def ranges(self) -> list[list[int]]:
        """The ranges above ``upto``, ``[[lo, hi], ...]`` ascending (as stored)."""
        return [[lo, hi] for lo, hi in zip(self._lo, self._hi, strict=True)]

    @property
    def open_gaps(self) -> int:
        """Gaps open now: each range above ``upto`` has one hole below it."""
        return len(self._lo)

    def covers(self, seq: int) -> bool:
        if seq <= self.upto:
            return True
        i = bisect_right(self._lo, seq) - 1
        return i >= 0 and seq <= self._hi[i]

    def missing(self) -> int:
        """Seqs between upto and highest that the hub has not seen."""
        return max(0, self.highest - self.upto - self._held)

    def admits(self, seq: int) -> bool:
        """False for a seq too far above what the hub holds (refuse it: see the module)."""
        return self.highest == 0 or seq <= self.highest + self.window

    def refusal(self, seq: int) -> str:
        """Why :meth:`admits` said no, for the dead letter and the agent's log."""
        return (f"seq {seq} is more than {self.window:,} above the highest seq the hub holds from "
                f"this agent ({self.highest}); no outbox replay jumps that far: check the agent's "
                "sequence counter")

    # -- writing ---------------------------------------------------------------------------------
    def add(self, seqs: Iterable[int]) -> int:
        """Mark seqs handled. Returns how many new gaps this opened.

        Seqs :meth:`admits` refuses (judged against the state before this call, as the
        caller judged them) are left out: the caller refused them already."""
        opened = 0
        fresh = self.highest == 0
        limit = self.highest + self.window
        for seq in sorted(set(seqs)):
            if seq <= self.upto or (not fresh and seq > limit):
                continue
            i = bisect_right(self._lo, seq) - 1
            if i >= 0 and seq <= self._hi[i]:
                continue
            if seq > self.highest + 1:
                opened += 1
            self._insert(seq, i)
            if seq > self.highest:
                self.highest = seq
        self.gaps += opened
        return opened

    def _insert(self, seq: int, i: int) -> None:
        """Put ``seq`` (not yet held) in; ``i`` is the last range starting at or below it."""
        lo, hi = self._lo, self._hi
        self._held += 1
        if seq == self.upto + 1:  # then i == -1: every range starts above upto + 1
            self.upto = seq
            self._held -= 1
            self._advance()
            return
        left = i >= 0 and hi[i] == seq - 1
        right = i + 1 < len(lo) and lo[i + 1] == seq + 1
        if left and right:
            hi[i] = hi[i + 1]
            del lo[i + 1], hi[i + 1]
        elif left:
            hi[i] = seq
        elif right:
            lo[i + 1] = seq
        else:
            lo.insert(i + 1, seq)
            hi.insert(i + 1, seq)
            if len(lo) > self.max_ranges:
                self._give_up_oldest()

    def _advance(self) -> None:
        """Pull ``upto`` over a first range that now touches it."""
        if self._lo and self._lo[0] == self.upto + 1:
            self._held -= self._hi[0] - self._lo[0] + 1
            self.upto = self._hi[0]
            del self._lo[0], self._hi[0]

    def _give_up_oldest(self) -> None:
        """The range cap: stop waiting for the lowest gap (see the module docstring)."""
        self.given_up += self._lo[0] - self.upto - 1
        self._held -= self._hi[0] - self._lo[0] + 1
        self.upto = self._hi[0]
        del self._lo[0], self._hi[0]

    def summary(self) -> dict[str, int]:
        """What an operator needs, instead of the ranges themselves."""
        return {"seq_upto": self.upto, "seq_highest": self.highest, "seq_gaps_open": self.open_gaps,
                "seq_gaps_opened": self.gaps, "missing_seqs": self.missing()}


def build_acks(agent_id: str, state: SeqState, rejected: list[Rejection], at: datetime,
               *, limit: int = MAX_ACK_BYTES) -> list[Ack]:
    """Acks saying ``state`` and ``rejected``, split so each message fits ``limit`` bytes
    and the protocol's caps (2,000 ranges, 500 rejections). Every one carries ``upto``;
    the ranges and rejections are shared out among them, so each is a whole, valid ack
    on its own and together they say everything. Usually that is one message: it takes
    hundreds of long rejections, or thousands of ranges of large seqs, to need two."""
    ranges = [(lo, hi) for lo, hi in state.ranges]
    if len(ranges) * _RANGE_MAX + len(rejected) * _REJECTION_MAX + 1024 <= limit \
            and len(rejected) <= MAX_ACK_REJECTIONS:  # surely one message: no measuring
        return [Ack(agent_id=agent_id, upto=state.upto, ranges=ranges, rejected=rejected, at=at)]
    base = len(encode(Ack(agent_id=agent_id, upto=state.upto, at=at), limit=limit)) + 32
    budget = limit - base
    acks: list[Ack] = []
    chunk_r: list[tuple[int, int]] = []
    chunk_j: list[Rejection] = []
    used = 0

    def flush() -> None:
        nonlocal chunk_r, chunk_j, used
        acks.append(Ack(agent_id=agent_id, upto=state.upto, ranges=chunk_r, rejected=chunk_j, at=at))
        chunk_r, chunk_j, used = [], [], 0

    for lo, hi in ranges:
        size = len(f"[{lo},{hi}],")
        if chunk_r and (used + size > budget or len(chunk_r) >= MAX_RANGES):
            flush()
        chunk_r.append((lo, hi))
        used += size
    for r in rejected:
        size = len(r.model_dump_json(by_alias=True, exclude_none=True)) + 1
        if (chunk_r or chunk_j) and (used + size > budget or len(chunk_j) >= MAX_ACK_REJECTIONS):
            flush()
        chunk_j.append(r)
        used += size
    if chunk_r or chunk_j or not acks:
        flush()
    return acks
