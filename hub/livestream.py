"""Live view on demand: the hub side of the ``live`` command and the ``frames`` it brings.

::

    operator opens a camera ──▶ LiveStreams.open(agent, camera, seconds) ──▶ a Viewer
        first viewer of that camera: one LiveRequest (QoS 1, not retained) to its agent
        more viewers: the same stream, no new request
    agent ──frames──▶ the hub's live MQTT client ──▶ every viewer of that stream (the newest
        frame wins in a slow viewer's queue; the last frame greets a viewer that joins)
    every TICK_S: a viewer whose time is up gets ENDED (its page says the view ended);
        while viewers remain, the request is refreshed before the agent's window runs out
        (never more than ``request_s`` ahead, so a hub that dies leaves no camera streaming
        for long); once nobody watches, one request with ``seconds: 0`` stops the agent.

A frame counts only on the topic of the agent that runs the camera, with the stream's
request id, and at most ``MAX_LIVE_FPS`` a second (the agent caps its rate; the hub holds
an agent that does not to the protocol's): the broker's ACL lets an agent publish only on its own topics, so a frame for
agent A's camera can never come from agent B, and frames nobody asked for (an old stream,
a confused or hostile agent) are counted and dropped.

The decision of what to ask the agent (:func:`next_request`) is a plain function; the
service is the thin shell around it, on the hub's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.clock import Clock
from protocol.codec import decode_frame, encode
from protocol.errors import ProtocolError, Refusal, TopicError
from protocol.ids import new_event_id
from protocol.limits import MAX_LIVE_FPS, MAX_LIVE_FRAME_BYTES, MAX_LIVE_HEADER_BYTES
from protocol.messages import FrameHeader, LiveRequest
from protocol.topics import QOS, Channel, agent_topic, parse_topic

__all__ = ["ENDED", "LiveFrame", "LiveStreams", "Stream", "Viewer", "next_request"]

log = logging.getLogger(__name__)

TICK_S = 0.25
STOP_GRACE_S = 2.0  # a window that ended this recently may still run on the agent's side
MIN_GAP_S = 0.9 / MAX_LIVE_FPS  # a stream's frames closer than this are dropped (jitter allowed)
ENDED = "ended"  # the last item a viewer gets (``Viewer.ended`` says why)


@dataclass(frozen=True)
class LiveFrame:
    header: FrameHeader
    jpeg: bytes


@dataclass(eq=False)
class Viewer:
    """One open live view (a browser tab, a tile of the video wall)."""

    agent_id: str
    camera: str
    until: float  # monotonic: the view stops on its own then
    queue: asyncio.Queue[LiveFrame | str] = field(default_factory=lambda: asyncio.Queue(maxsize=2))
    frames: int = 0
    ended: str | None = None  # "time" (its seconds are up) or "hub" (the hub stops)

    def end(self, reason: str) -> None:
        self.ended = reason
        self.put(ENDED)

    def put(self, item: LiveFrame | str) -> None:
        """The newest wins: a slow browser skips frames instead of falling behind."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(item)


@dataclass(eq=False)
class Stream:
    """One camera's stream: one request id, shared by all its viewers."""

    agent_id: str
    camera: str
    request_id: str
    viewers: set[Viewer] = field(default_factory=set)
    agent_until: float | None = None  # monotonic end of the window last asked for
    commands: int = 0
    frames: int = 0
    bytes: int = 0
    too_fast: int = 0  # frames dropped for coming faster than MAX_LIVE_FPS
    last: LiveFrame | None = None
    last_at: float | None = None


def next_request(now: float, viewers_until: list[float], agent_until: float | None, *,
                 request_s: float, refresh_s: float) -> float | None:
    """Seconds to ask the agent for now: a positive number (start or refresh), 0 (stop),
    or None (nothing to send). Pure.

    With viewers: ask when the agent's window is not open or ends within ``refresh_s``
    while a viewer still wants more, for what the longest viewer still wants, at most
    ``request_s``. Without viewers: stop a window still open, or one that ended within
    ``STOP_GRACE_S`` (the agent counts its window from when the request reached it, a
    moment after the hub sent it, so it may still be sending)."""
    if not viewers_until:
        return 0.0 if agent_until is not None and agent_until > now - STOP_GRACE_S else None
    wanted = max(viewers_until) - now
    if wanted <= 0:
        return None
    ends = agent_until if agent_until is not None else now
    if ends - now > refresh_s or ends >= now + wanted:
        return None
    return round(min(wanted, request_s), 2)


class LiveStreams:
    """Every camera stream the hub runs; lives on the hub's event loop."""

    def __init__(self, publish: Callable[[str, bytes, int], bool], clock: Clock, *,
                 request_s: float = 30.0, refresh_s: float = 5.0) -> None:
        self.publish = publish
        self.clock = clock  # dates the requests
        # A view lasts real seconds (a person watches it), also when the hub runs on a
        # simulated clock (the demo's): durations, refreshes and ends on this.
        self.monotonic: Callable[[], float] = time.monotonic
        self.request_s = request_s
        self.refresh_s = min(refresh_s, request_s / 2)
        self.streams: dict[tuple[str, str], Stream] = {}
        self.commands_sent = 0
        self.frames_in = 0
        self.unasked = 0  # frames of no stream (dropped)
        self.bad = 0  # frames that did not decode (dropped)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------
    async def start(self) -> asyncio.Task[None]:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._ticker(), name="hub-live-streams")
        return self._task

    async def stop(self) -> None:
        for stream in list(self.streams.values()):
            for viewer in list(stream.viewers):
                viewer.end("hub")
            stream.viewers.clear()
            self._decide(stream, self.monotonic())  # the agents stop now, not later
        self.streams.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- viewers -----------------------------------------------------------------------------
    def open(self, agent_id: str, camera: str, seconds: float) -> Viewer:
        """Watch one camera for ``seconds``: joins its stream or starts one (one request to
        the agent right away). The viewer gets the stream's last frame at once, if any."""
        now = self.monotonic()
        key = (agent_id, camera)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream(agent_id, camera, new_event_id())
        viewer = Viewer(agent_id, camera, now + seconds)
        stream.viewers.add(viewer)
        if stream.last is not None and stream.agent_until is not None and stream.agent_until > now:
            viewer.put(stream.last)
        self._decide(stream, now)
        return viewer

    def close(self, viewer: Viewer) -> None:
        """A viewer leaves (page closed, time up); the last one out stops the agent."""
        stream = self.streams.get((viewer.agent_id, viewer.camera))
        if stream is None or viewer not in stream.viewers:
            return
        stream.viewers.discard(viewer)
        if not stream.viewers:
            self._decide(stream, self.monotonic())
            del self.streams[(viewer.agent_id, viewer.camera)]

    def watching(self) -> dict[str, Any]:
        """What ``GET /api/v1/live-view`` and the metrics show."""
        return {"streams": [{"agent_id": s.agent_id, "camera": s.camera, "viewers": len(s.viewers),
                             "frames": s.frames, "bytes": s.bytes, "commands": s.commands,
                             "too_fast": s.too_fast}
                            for s in self.streams.values()],
                "commands_sent": self.commands_sent, "frames_in": self.frames_in,
                "unasked": self.unasked, "bad": self.bad}

    # -- the agent ---------------------------------------------------------------------------
    def _decide(self, stream: Stream, now: float) -> None:
        seconds = next_request(now, [v.until for v in stream.viewers], stream.agent_until,
                               request_s=self.request_s, refresh_s=self.refresh_s)
        if seconds is None:
            return
        req = LiveRequest(agent_id=stream.agent_id, camera=stream.camera,
                          request_id=stream.request_id, seconds=seconds, issued_at=self.clock.now())
        try:
            ok = self.publish(agent_topic(stream.agent_id, Channel.LIVE), encode(req),
                              QOS[Channel.LIVE])
        except (ProtocolError, TopicError) as exc:
            log.error("live request for %s/%s not sent: %s", stream.agent_id, stream.camera, exc)
            ok = False
        if not ok:
            log.warning("live request for %s/%s not sent (broker link down); trying again",
                        stream.agent_id, stream.camera)
            return
        stream.commands += 1
        self.commands_sent += 1
        stream.agent_until = now + seconds if seconds > 0 else None
        log.info("live view %s/%s: asked for %.1f s (stream %s, %d viewer(s))", stream.agent_id,
                 stream.camera, seconds, stream.request_id, len(stream.viewers))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.monotonic()
            for key, stream in list(self.streams.items()):
                try:
                    for viewer in [v for v in stream.viewers if v.until <= now]:
                        viewer.end("time")  # its time is up: the page says so
                        stream.viewers.discard(viewer)
                    self._decide(stream, now)
                    if not stream.viewers:
                        del self.streams[key]
                except Exception:
                    log.exception("live stream %s/%s failed", *key)

    # -- frames ------------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        """From the MQTT client's thread: hand the frame to the event loop."""
        if len(payload) > MAX_LIVE_FRAME_BYTES + MAX_LIVE_HEADER_BYTES + 1:
            self.bad += 1
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.on_frame, topic, payload)

    def on_frame(self, topic: str, payload: bytes) -> None:
        """One frame message: to its stream's viewers, or counted and dropped."""
        try:
            parsed = parse_topic(topic)
            if parsed.channel is not Channel.FRAMES:
                raise ProtocolError(Refusal.BAD_TOPIC, f"not a frames topic: {topic}")
            header, jpeg = decode_frame(payload, agent_id=parsed.agent_id)
        except ProtocolError as exc:
            self.bad += 1
            if self.bad in (1, 10) or self.bad % 1000 == 0:
                log.warning("live frame refused (%d so far): %s", self.bad, exc)
            return
        stream = self.streams.get((parsed.agent_id, header.camera))
        if stream is None or header.request_id != stream.request_id:
            self.unasked += 1
            if self.unasked in (1, 10) or self.unasked % 1000 == 0:
                log.warning("live frame nobody asked for from %s camera %s (%d so far): dropped",
                            parsed.agent_id, header.camera, self.unasked)
            return
        now = self.monotonic()
        if stream.last_at is not None and now - stream.last_at < MIN_GAP_S:
            stream.too_fast += 1  # an agent over the protocol's rate: its viewers never see it
            if stream.too_fast in (1, 100):
                log.warning("live frames from %s camera %s come faster than %g a second: dropped",
                            parsed.agent_id, header.camera, MAX_LIVE_FPS)
            return
        stream.last_at = now
        frame = LiveFrame(header, jpeg)
        self.frames_in += 1
        stream.frames += 1
        stream.bytes += len(jpeg)
        stream.last = frame
        for viewer in stream.viewers:
            viewer.frames += 1
            viewer.put(frame)
