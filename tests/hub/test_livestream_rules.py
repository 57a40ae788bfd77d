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
    assert ask(31, [], 30) == 0  # just ended here: the agent, a moment behind, may still send
    assert ask(33, [], 30) is None
    assert ask(5, [], None) is None


def test_frames_faster_than_the_protocol_allows_never_reach_a_viewer():
    """An agent that ignores its rate cap: the hub passes at most MAX_LIVE_FPS a second."""
    import cv2
    import numpy as np

    from hub.livestream import LiveStreams
    from protocol.clock import FakeClock
    from protocol.codec import encode_frame
    from protocol.messages import FrameHeader
    from protocol.topics import Channel, agent_topic

    sent: list[tuple[str, bytes, int]] = []
    clock = FakeClock()
    streams = LiveStreams(lambda t, p, q: sent.append((t, p, q)) or True, clock)
    t = [100.0]
    streams.monotonic = lambda: t[0]
    viewer = streams.open("a1", "c1", 30)
    (stream,) = streams.streams.values()
    _, jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    for n, gap in enumerate([0.0, 0.01, 0.05, 0.2, 0.01, 1.0], start=1):
        t[0] += gap
        header = FrameHeader(agent_id="a1", camera="c1", request_id=stream.request_id, n=n,
                             taken_at=clock.now(), width=8, height=8, remaining_s=1)
        streams.on_frame(agent_topic("a1", Channel.FRAMES), encode_frame(header, jpeg.tobytes()))
    got = []
    while not viewer.queue.empty():
        got.append(viewer.queue.get_nowait().header.n)
    assert stream.frames == 3 and stream.too_fast == 3  # frames 1, 4 and 6 pass
    assert got == [4, 6]  # the viewer's queue keeps the newest two
    assert len(sent) == 1  # one request, nothing else
