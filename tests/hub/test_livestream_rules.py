"""What the hub asks an agent for, as a plain function (hub.livestream.next_request)."""

from __future__ import annotations

from hub.livestream import next_request


def ask(now, viewers, agent_until):
    return next_request(now, viewers, agent_until, request_s=30, refresh_s=5)


def test_the_first_viewer_starts_a_request_of_what_it_wants_at_most_request_s():
    assert ask(0, [10], None) == 10
    assert ask(0, [600], None) == 30


def test_no_request_while_the_agent_window_covers_the_viewers_or_is_far_from_ending():
    assert ask(1, [10, 11], 10) is None  # a second viewer joins: no new request yet
    assert ask(2, [600], 30) is None  # 28 s left: not yet


def test_a_refresh_shortly_before_the_window_ends_while_somebody_wants_more():
    assert ask(26, [600], 30) == 30
    assert ask(26, [40], 30) == 14
    assert ask(26, [29], 30) is None  # the window already covers it


def test_nobody_watching_stops_an_open_window_and_nothing_else():
    assert ask(5, [], 30) == 0
    assert ask(31, [], 30) is None
    assert ask(5, [], None) is None
