"""Sequence state under hostile and broken agents: the same answers as the plain model,
bounded ranges and window, and cost that grows with the seqs, not their square. Pure."""

from __future__ import annotations

import random
import time

from hubtest import T0

from hub.ingest.seqs import MAX_RANGES, WINDOW, SeqState, build_acks


def _model_state(handled: set[int]) -> tuple[int, list[list[int]], int]:
    """upto, ranges and highest straight from the set of handled seqs."""
    upto = 0
    while upto + 1 in handled:
        upto += 1
    ranges: list[list[int]] = []
    for seq in sorted(s for s in handled if s > upto):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return upto, ranges, max(handled, default=0)


def test_matches_the_plain_model_for_random_arrival_orders():
    rng = random.Random(7)
    for _ in range(200):
        s, handled = SeqState(), set()
        for _batch in range(rng.randint(1, 12)):
            seqs = [rng.randint(1, 60) for _ in range(rng.randint(0, 15))]
            s.add(seqs)
            handled.update(seqs)
            upto, ranges, highest = _model_state(handled)
            assert (s.upto, s.ranges, s.highest) == (upto, ranges, highest)
            assert s.open_gaps == len(ranges)
            assert s.missing() == highest - upto - sum(hi - lo + 1 for lo, hi in ranges)
            assert all(s.covers(q) == (q in handled) for q in range(1, 70))
            twin = s.copy()
            twin.add([highest + 2])
            assert s.highest == highest  # a copy is independent (a rolled-back batch)


def test_a_stored_state_is_normalised_when_loaded():
    s = SeqState(5, [[3, 4], [6, 8], [8, 9], [12, 12]], 0, 2)
    assert (s.upto, s.ranges, s.highest, s.gaps, s.missing()) == (9, [[12, 12]], 12, 2, 2)
    big = SeqState(0, [[2 * i, 2 * i] for i in range(1, 3001)], 6000, 3000)
    assert big.open_gaps == MAX_RANGES and big.ranges[-1] == [6000, 6000]
    assert big.covers(2) and not big.covers(2001 * 2 + 1)


def test_at_the_range_cap_the_oldest_gap_is_given_up_and_nothing_held_is_forgotten():
    s = SeqState(max_ranges=3)
    s.add([1, 3, 5, 7])
    assert (s.upto, s.ranges) == (1, [[3, 3], [5, 5], [7, 7]])
    assert s.add([9]) == 1
    # Four holes would be open (2, 4, 6, 8): the oldest, 2, is given up; 3 stays handled.
    assert (s.upto, s.ranges, s.given_up, s.gaps) == (3, [[5, 5], [7, 7], [9, 9]], 1, 4)
    assert s.covers(2) and s.covers(3) and not s.covers(4) and s.missing() == 3
    s.add([4, 6, 8])  # the backlog arrives: everything closes
    assert (s.upto, s.ranges, s.missing()) == (9, [], 0)
    [ack] = build_acks("a1", SeqState(0, [[2 * i, 2 * i] for i in range(1, 5000)]), [], T0)
    assert len(ack.ranges) == MAX_RANGES  # an ack carries every range held


def test_a_seq_far_above_the_highest_is_refused_and_moves_nothing():
    s = SeqState(window=100)
    assert s.admits(10**15)  # a state the hub has never seen starts wherever the agent is
    s.add([1, 2, 3])
    assert s.admits(103) and not s.admits(104)
    assert "more than 100 above the highest seq the hub holds from this agent (3)" in s.refusal(104)
    assert s.add([104, 10**15]) == 0
    assert (s.upto, s.ranges, s.highest) == (3, [], 3)
    s.add([50])  # a real jump (an outage) within the window: a gap, reported
    assert s.admits(150) and not s.admits(151) and s.open_gaps == 1
    assert WINDOW >= 10**9  # decades of outage at any real event rate


def _every_other(n: int) -> tuple[float, int]:
    """``n`` seqs, every other one, in 500-seq messages as the writer handles them: a copy
    per batch, covers and admits per seq, add, the ack and the stored ranges. CPU seconds
    and the most ranges held at any time."""
    seqs = list(range(1, 2 * n, 2))
    s, most = SeqState(), 0
    began = time.process_time()
    for i in range(0, n, 500):
        chunk = seqs[i:i + 500]
        state = s.copy()
        for q in chunk:
            state.admits(q)
            state.covers(q)
        state.add(chunk)
        build_acks("hostile", state, [], T0)
        most = max(most, len(state.ranges))
        s = state
    assert s.gaps == n - 1 and s.highest == 2 * n - 1
    return time.process_time() - began, most


def test_one_agent_sending_every_other_seq_costs_linear_time():
    """Issue 17: 20,000 every-other seqs took 57 s of the writer (the range list rescanned
    and rebuilt for every seq), stalling every other agent's acks."""
    spent, most = _every_other(20_000)
    assert spent < 2.0, f"{spent:.2f} s of CPU for 20,000 seqs"
    assert most <= MAX_RANGES  # the work per seq is bounded by the cap, whatever comes
    # Four times the seqs: about four times the time (a quadratic structure: sixteen).
    small = min(_every_other(20_000)[0] for _ in range(3))
    large = min(_every_other(80_000)[0] for _ in range(3))
    assert large < 8 * small + 0.05, f"20,000 seqs {small:.3f} s, 80,000 seqs {large:.3f} s"


def test_a_large_ack_is_split_into_messages_that_each_fit_and_together_say_everything():
    """A hostile or badly broken agent can earn an ack of 2,000 ranges of 16-digit seqs and
    hundreds of long rejections: far over the 64 KiB an ack may be. One unsendable ack left
    every event of that agent unacknowledged; now it goes out in as many messages as it
    needs, each a valid ack with the same ``upto``."""
    from protocol.codec import decode_ack, encode
    from protocol.limits import MAX_ACK_BYTES
    from protocol.messages import Rejection

    big = 9_000_000_000_000_000
    state = SeqState(7, [[big + 2 * i, big + 2 * i] for i in range(MAX_RANGES)])
    rejected = [Rejection(seq=big + 2 * i + 1, event_id=f"{i:04d}" + "x" * 190,
                          reason="invalid: " + "y" * 180) for i in range(700)]
    acks = build_acks("hostile", state, rejected, T0)
    assert len(acks) > 1
    ranges, rejections = [], []
    for ack in acks:
        wire = encode(ack)  # raises over the limit
        assert len(wire) <= MAX_ACK_BYTES
        back = decode_ack(wire, agent_id="hostile")
        assert back.upto == 7
        ranges += back.ranges
        rejections += [r.event_id for r in back.rejected]
    assert ranges == [(lo, hi) for lo, hi in state.ranges]
    assert rejections == [r.event_id for r in rejected]
    # The everyday ack is still one message.
    assert len(build_acks("a1", SeqState(3, [[5, 6]]), rejected[:2], T0)) == 1
