"""Live view on the hub's request: one camera's frames as small JPEGs, for N seconds.

::

    hub ──live (LiveRequest: camera, request_id, seconds)──▶ agent
        LiveTap.request()   open a window until now + min(seconds, live.max_seconds);
                            the newest frame the camera read goes out at once
        worker reads a frame ──▶ LiveTap.offer()   keep it; when a window is open and the
                            rate allows (live.fps), encode it off the event loop and send
    agent ──frames (FrameHeader + JPEG, QoS 0)──▶ hub
    window ends (its own deadline, or seconds: 0) ──▶ nothing more is sent

Live frames are not events. They do not go through the outbox: a frame is worth
something only now, so one lost on a bad link is replaced by the next a second later,
and replaying a backlog of stale frames after an outage would only cost bandwidth and
the durable store's writes. They go out QoS 0 and only while a request runs; without
one (the agent has just started, the hub stopped asking, the window ran out) the tap
sends nothing.

The decisions (is a window open, is a frame due, how far to shrink a JPEG) are plain
functions and a small state class; the tap is the thin shell that encodes in a thread
and hands bytes to the session's ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from protocol.clock import Clock
from protocol.codec import encode_frame
from protocol.errors import ProtocolError
from protocol.messages import FrameHeader, LiveRequest

from .config import LiveConfig
from .sources import Frame

__all__ = ["FrameSend", "LiveTap", "LiveWindow", "fit_jpeg"]

log = logging.getLogger(__name__)

# the encoded frame message -> True when handed to the broker connection
FrameSend = Callable[[bytes], bool]

FRESH_S = 2.0  # the newest frame read this recently goes out as soon as a request opens


def fit_jpeg(image: np.ndarray, *, max_side: int, quality: int, max_bytes: int
             ) -> tuple[bytes, int, int] | None:
    """``image`` as a JPEG of at most ``max_bytes``: downscaled to ``max_side`` (never
    enlarged), encoded at ``quality``; over the budget, the quality drops in steps to 30,
    then the picture shrinks by a quarter at a time. None when even 96 px does not fit."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    q = quality
    while True:
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        img = image if (tw, th) == (w, h) else cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            return None
        if enc.size <= max_bytes:
            return enc.tobytes(), tw, th
        if q > 30:
            q = max(30, q - 20)
        elif max(tw, th) > 96:
            scale *= 0.75
        else:
            return None


@dataclass
class LiveWindow:
    """One open request on one camera, in monotonic seconds. Pure."""

    request_id: str
    until: float
    last_sent: float | None = None
    sent: int = 0

    def open(self, now: float) -> bool:
        return now < self.until

    def due(self, now: float, fps: float) -> bool:
        """Open, and at least 1/fps after the last frame sent."""
        return self.open(now) and (self.last_sent is None or now - self.last_sent >= 1.0 / fps - 1e-3)

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


def window_for(req: LiveRequest, config: LiveConfig, now: float,
               current: LiveWindow | None) -> LiveWindow | None:
    """The window after ``req``: None to stop (seconds 0 or live view disabled); the same
    stream (request id) extended or shortened to the new end; a new stream otherwise.
    Never longer than ``live.max_seconds``."""
    if req.seconds <= 0 or not config.enabled:
        return None
    until = now + min(req.seconds, config.max_seconds)
    if current is not None and current.request_id == req.request_id and current.open(now):
        current.until = until
        return current
    return LiveWindow(req.request_id, until)


class LiveTap:
    """One camera's live view: the worker offers every frame it reads (cheap: a reference
    and a comparison), the tap sends the due ones while a window is open."""

    def __init__(self, agent_id: str, camera_id: str, config: LiveConfig, clock: Clock) -> None:
        self.agent_id = agent_id
        self.camera_id = camera_id
        self.config = config
        self.clock = clock
        self.send: FrameSend | None = None
        self.window: LiveWindow | None = None
        self._latest: Frame | None = None
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.too_large = 0  # frames that fitted no size (counted, logged once)
        self.refused = 0  # the connection did not take the frame (not connected, queue full)

    @property
    def active(self) -> bool:
        return self.window is not None and self.window.open(self.clock.monotonic())

    def request(self, req: LiveRequest) -> str:
        """Apply a request; what happened, for the log ("started", "extended", "stopped",
        "disabled")."""
        now = self.clock.monotonic()
        before = self.window
        if not self.config.enabled and req.seconds > 0:
            log.warning("live view of camera %s refused: live.enabled is false in its config",
                        self.camera_id)
            self.window = None
            return "disabled"
        self.window = window_for(req, self.config, now, before)
        if self.window is None:
            if before is not None:
                log.info("live view of camera %s stopped by the hub after %d frame(s)",
                         self.camera_id, before.sent)
            return "stopped"
        if self.window is before:
            return "extended"
        log.info("live view of camera %s for %.0f s (stream %s)", self.camera_id,
                 self.window.remaining(now), req.request_id)
        latest = self._latest
        if latest is not None and now - latest.t <= FRESH_S:
            self.offer(latest)  # the first frame now, not at the camera's next read
        return "started"

    def offer(self, frame: Frame) -> None:
        """Called by the camera worker for every frame it read. Never blocks: a due frame
        is encoded in a thread; while one is being encoded the next is skipped."""
        self._latest = frame
        window = self.window
        if window is None or self.send is None:
            return
        now = self.clock.monotonic()
        if not window.open(now):
            log.info("live view of camera %s ended on its own after %d frame(s)",
                     self.camera_id, window.sent)
            self.window = None
            return
        if self._busy or not window.due(now, self.config.fps):
            return
        window.last_sent = now
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._send(frame, window))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, frame: Frame, window: LiveWindow) -> None:
        cfg = self.config
        try:
            fitted = await asyncio.to_thread(fit_jpeg, frame.image, max_side=cfg.max_side,
                                             quality=cfg.quality, max_bytes=cfg.max_bytes)
            if self.window is not window or not window.open(self.clock.monotonic()):
                return  # stopped or replaced while encoding: never a frame after the end
            if fitted is None:
                self.too_large += 1
                if self.too_large == 1:
                    log.warning("camera %s: a live frame fits no size under live.max_bytes=%d; "
                                "raise it or lower live.max_side", self.camera_id, cfg.max_bytes)
                return
            jpeg, width, height = fitted
            window.sent += 1
            header = FrameHeader(agent_id=self.agent_id, camera=self.camera_id,
                                 request_id=window.request_id, n=window.sent,
                                 taken_at=self.clock.now(), width=width, height=height,
                                 remaining_s=round(window.remaining(self.clock.monotonic()), 2))
            payload = encode_frame(header, jpeg)
            assert self.send is not None  # noqa: S101 - checked before the task started
            if self.send(payload):
                self.frames_sent += 1
                self.bytes_sent += len(jpeg)
            else:
                self.refused += 1
        except (ProtocolError, cv2.error, ValueError) as exc:
            log.warning("camera %s: live frame not sent: %s", self.camera_id, exc)
        finally:
            self._busy = False

    async def close(self) -> None:
        self.window = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
