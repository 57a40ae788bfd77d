"""Event clips on the agent: a ring buffer of downscaled frames per camera, recordings
that run on for ``post_s`` seconds after an event starts, and one encoder thread that
turns a finished recording into an H.264 MP4 (docs/camera.md, Event clips).

* :class:`ClipRecorder` (one per camera, on the event loop, no I/O): keeps the last
  ``clip.pre_s`` seconds of frames at ``clip.fps``, shrunk to ``clip.width`` and held as
  YUV 4:2:0 (1.5 bytes a pixel, what H.264 takes, so the encoder converts nothing). An
  event adds a recording that collects frames until ``post_s`` have passed, then
  becomes a :class:`ClipJob`. Ring and recordings share frames, so a camera holds at most
  ``(pre_s + post_s) x fps + 2`` frames however many recordings overlap
  (:meth:`~edge_agent.camera.config.ClipConfig.memory_bytes`: 5.1 MiB at the defaults
  on a 16:9 camera).
* :class:`ClipEncoder` (one per camera component): a thread with a bounded queue. A job
  that finds the queue full is not encoded: it is counted (telemetry ``clips.busy``) and
  logged, never queued without bound and never waited for. Detection never waits on the
  encoder, and the event itself went to the outbox when it started; its clip follows.

The encoder is PyAV (the ``av`` wheel, which bundles FFmpeg's libraries with libx264):
no binary to install or find at run time and no process per clip; encoding runs in
FFmpeg's C code, mostly without the GIL (a Python loop beside it keeps about 80 % of its
rate: benchmarks/edge_clips.py), one x264 thread, ``veryfast`` preset.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from protocol.messages import ClipTelemetry

from .config import ClipConfig, even_size

__all__ = ["ClipEncoder", "ClipFrame", "ClipJob", "ClipRecorder", "EncodedClip", "Recording", "encode_mp4", "shrink"]

log = logging.getLogger(__name__)

ENCODER_QUEUE = 4  # finished recordings waiting for the encoder, per camera component
_JITTER = 0.25  # a frame this share of 1/fps early still takes its slot on the clip's grid


FRAME_QUALITY = 92  # JPEG quality of the frames held for clips (H.264 at crf 30 loses more)


class ClipFrame:
    """One frame held for clips, kept as a JPEG: a 320x180 frame is about 8-15 kB instead of
    86 kB of raw I420, so 16 cameras all recording at once hold about 10 MB, not 83 MB
    (edge_combined: the agent's RSS stays under 200 MB). ``yuv`` decodes it again for the
    encoder; compressing costs about 0.3 ms a frame (1 % of a core at 16 cameras x 2 fps)."""

    __slots__ = ("data", "size", "t")

    def __init__(self, t: float, yuv: np.ndarray) -> None:
        self.t = t  # the camera clock's monotonic time of the frame
        height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
        self.size = (width, height)
        bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, FRAME_QUALITY])
        if not ok:
            raise ValueError("could not compress a clip frame")
        self.data = buf.tobytes()

    @property
    def yuv(self) -> np.ndarray:
        """The frame as I420, (height * 3 / 2, width) uint8."""
        bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass
class ClipJob:
    camera_id: str
    event_id: str
    event_t: float  # when the event started (monotonic)
    event_wall: datetime  # the same moment on the wall clock
    frames: list[ClipFrame]
    fps: float
    crf: int

    def memory_bytes(self) -> int:
        return sum(f.nbytes for f in self.frames)


@dataclass(frozen=True)
class EncodedClip:
    camera_id: str
    event_id: str
    data: bytes  # the MP4
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    started_at: datetime  # wall time of the first frame
    event_offset_s: float  # the event's moment, seconds into the clip
    encode_ms: float


def shrink(image: np.ndarray, width: int) -> np.ndarray:
    """A BGR frame as a clip frame: downscaled (area averaging) and converted to I420."""
    h, w = image.shape[:2]
    size = even_size((w, h), width)
    small = image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420)


@dataclass
class Recording:
    event_id: str
    event_t: float
    until: float
    frames: list[ClipFrame] = field(default_factory=list)


class ClipRecorder:
    """One camera's ring buffer and recordings. Pure bookkeeping over frames and times:
    the worker feeds it every frame it reads and every event that starts."""

    def __init__(self, camera_id: str, config: ClipConfig, camera_fps: float) -> None:
        self.camera_id = camera_id
        self.config = config
        self.fps = config.rate(camera_fps)
        self.ring: deque[ClipFrame] = deque()
        self.recordings: list[Recording] = []
        self.overlapping = 0  # events with no clip: max_recording already running
        self._due: float | None = None  # when the next frame is wanted (the clip rate's grid)

    def retune(self, config: ClipConfig, camera_fps: float) -> None:
        """New settings while the camera runs: a new width starts an empty ring; recordings
        under way keep their frames and end at the time set when they started."""
        if config.width != self.config.width or not config.enabled:
            self.ring.clear()
        self.config = config
        self.fps = config.rate(camera_fps)

    def _keep(self, t: float) -> bool:
        """Keep frames on a grid of 1/fps: a frame a little early (jitter) counts for its
        slot, and a stall starts the grid again rather than catching up."""
        period = 1.0 / self.fps
        tolerance = _JITTER * period
        if self._due is None or t < self._due - 2 * period - tolerance:  # first, or the clock went back
            self._due = t
        if t < self._due - tolerance:
            return False
        self._due = max(self._due + period, t + period - tolerance)
        return True

    def add(self, t: float, image: np.ndarray) -> list[Recording]:
        """Keep a frame (when the clip rate wants one) and return the recordings it finished."""
        if not self.config.enabled:
            return []
        if self._keep(t):
            frame = ClipFrame(t, shrink(image, self.config.width))
            if self.ring and self.ring[-1].size != frame.size:
                self.ring.clear()  # the source changed size: older frames cannot join this clip
            self.ring.append(frame)
            for rec in self.recordings:
                if not rec.frames or rec.frames[-1].size == frame.size:
                    rec.frames.append(frame)
        horizon = t - self.config.pre_s
        while self.ring and self.ring[0].t < horizon - 1e-9:
            self.ring.popleft()
        done = [r for r in self.recordings if t >= r.until]
        if done:
            self.recordings = [r for r in self.recordings if t < r.until]
        return done

    def trigger(self, event_id: str, t: float) -> bool:
        """An event started at ``t``: record its clip. False (counted) when the camera is
        already recording ``max_recording`` clips."""
        if not self.config.enabled:
            return False
        if len(self.recordings) >= self.config.max_recording:
            self.overlapping += 1
            log.warning("camera %s: event %s gets no clip: already recording %d (clip.max_recording)",
                        self.camera_id, event_id, len(self.recordings))
            return False
        frames = [f for f in self.ring if f.t >= t - self.config.pre_s - 1e-9]
        self.recordings.append(Recording(event_id, t, t + self.config.post_s, frames))
        return True

    def job(self, rec: Recording, event_wall: datetime) -> ClipJob:
        """What the encoder needs of a finished recording."""
        return ClipJob(self.camera_id, rec.event_id, rec.event_t, event_wall, rec.frames,
                       self.fps, self.config.crf)

    def flush(self) -> list[Recording]:
        """Every recording under way, cut short (the camera stops, or its file ended)."""
        done, self.recordings = self.recordings, []
        return [r for r in done if r.frames]

    def memory_bytes(self) -> int:
        seen: dict[int, int] = {id(f): f.nbytes for f in self.ring}
        for rec in self.recordings:
            for f in rec.frames:
                seen[id(f)] = f.nbytes
        return sum(seen.values())


def encode_mp4(job: ClipJob) -> EncodedClip:
    """Encode a job's frames as an H.264 MP4 (yuv420p, one x264 thread, ``veryfast``,
    ``+faststart`` so a browser can play it before it has it all). Frame times follow the
    frames' own clock (millisecond timestamps), so a late frame is shown late, not early."""
    if not job.frames:
        raise ValueError("a clip needs at least one frame")
    started = time.perf_counter()
    width, height = job.frames[0].size
    frames = [f for f in job.frames if f.size == (width, height)]
    t0 = frames[0].t
    # A real file: +faststart moves the index to the front in a second pass over the file.
    with tempfile.TemporaryDirectory(prefix="cityops-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        _write_mp4(path, frames, t0, width, height, job)
        data = path.read_bytes()
    duration = (frames[-1].t - t0) + 1.0 / job.fps
    wall0 = job.event_wall - timedelta(seconds=job.event_t - t0)
    return EncodedClip(
        job.camera_id, job.event_id, data, width, height, job.fps, len(frames),
        round(duration, 3), wall0, round(max(0.0, job.event_t - t0), 3),
        round((time.perf_counter() - started) * 1000, 2))


def _write_mp4(path: Path, frames: list[ClipFrame], t0: float, width: int, height: int, job: ClipJob) -> None:
    import av  # noqa: PLC0415 - FFmpeg loads only in agents that record clips

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(job.fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": str(job.crf), "preset": "veryfast", "threads": "1"}
        last_pts = -1
        for f in frames:
            vf = av.VideoFrame.from_ndarray(f.yuv, format="yuv420p")
            pts = max(last_pts + 1, round((f.t - t0) * 1000))
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            last_pts = pts
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))


class ClipEncoder:
    """One thread encoding finished recordings, oldest first, from a bounded queue."""

    def __init__(self, queue_size: int = ENCODER_QUEUE,
                 encode: Callable[[ClipJob], EncodedClip] | None = None) -> None:
        self._encode = encode or encode_mp4
        self._queue: queue.Queue[tuple[ClipJob, concurrent.futures.Future[EncodedClip]] | None] = \
            queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.encoded = 0
        self.failed = 0
        self.busy: dict[str, int] = {}  # per camera: jobs refused because the queue was full
        self.encode_ms: dict[str, list[float]] = {}  # per camera: [total ms, clips]

    def submit(self, job: ClipJob) -> concurrent.futures.Future[EncodedClip] | None:
        """Queue a job; None (counted, logged) when the queue is full: the encoder is behind."""
        fut: concurrent.futures.Future[EncodedClip] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clip-encoder", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((job, fut))
        except queue.Full:
            self.busy[job.camera_id] = self.busy.get(job.camera_id, 0) + 1
            log.warning("camera %s: event %s gets no clip: the clip encoder is %d clips behind "
                        "(it cannot keep up; see telemetry clips.busy)", job.camera_id, job.event_id,
                        self._queue.qsize())
            return None
        return fut

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                clip = self._encode(job)
            except Exception as exc:  # noqa: BLE001 - reported on the future and counted
                self.failed += 1
                log.error("camera %s: encoding the clip of event %s failed: %s", job.camera_id,
                          job.event_id, exc)
                fut.set_exception(exc)
                continue
            self.encoded += 1
            total = self.encode_ms.setdefault(job.camera_id, [0.0, 0])
            total[0] += clip.encode_ms
            total[1] += 1
            fut.set_result(clip)

    def stop(self, timeout: float = 30.0) -> None:
        """Encode what is queued, then end the thread (waits at most ``timeout`` s)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        with self._lock:
            self._thread = None

    def telemetry(self, camera_id: str, recorder: ClipRecorder, recorded: int, failed: int) -> ClipTelemetry:
        total, n = self.encode_ms.get(camera_id, [0.0, 0])
        return ClipTelemetry(recorded=recorded, busy=self.busy.get(camera_id, 0),
                             overlapping=recorder.overlapping, failed=failed,
                             encode_ms=round(total / n, 2) if n else 0.0,
                             memory_bytes=recorder.memory_bytes())
