"""Where frames come from: MJPEG over HTTP (our own reader), RTSP and other URLs, video
files and local devices (OpenCV). Every source delivers at most ``fps`` frames a second
and skips the rest as cheaply as it can: the MJPEG reader drops JPEG parts unread-as-
images, OpenCV sources ``grab()`` without ``retrieve()``.

URLs go to aiohttp or to OpenCV's FFmpeg backend as data; nothing here starts a process
or a shell. A source raises :class:`SourceError` for anything expected (cannot connect,
stream ended, garbage), which the camera worker's watchdog turns into a reconnect.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import cv2
import numpy as np

from protocol.errors import CityopsError

from .config import CameraConfig

__all__ = [
    "EndOfStream",
    "Frame",
    "FrameSource",
    "MjpegSource",
    "OpenCVSource",
    "SourceError",
    "normalize_frame",
    "open_source",
]

_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}


class SourceError(CityopsError):
    def __init__(self, camera: str, detail: str) -> None:
        self.camera = camera
        self.detail = detail
        super().__init__(f"camera {camera}: {detail}")


class EndOfStream(SourceError):
    """A video file that is not looped has played to its end: done, not broken."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8
    t: float  # monotonic seconds when it was taken
    index: int  # frames delivered so far by this source


class FrameSource(Protocol):
    async def open(self) -> None: ...

    async def read(self) -> Frame:
        """The next frame due; raises SourceError when the stream fails or ends."""
        ...

    async def close(self) -> None: ...

    # Optional: ``retune(camera)`` takes new settings of the same source (a new frame
    # rate) while it runs; sources without it keep the settings they were opened with until the next reconnect.


def normalize_frame(image: np.ndarray | None, resolution: tuple[int, int] | None) -> np.ndarray:
    """A frame as 3-channel BGR uint8 (gray, BGRA, 16-bit are converted), resized to
    ``resolution`` (width, height) when given and different. ValueError when unusable."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise ValueError("empty frame")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame of shape {image.shape} is not an image")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise ValueError(f"frame of {image.shape[1]}x{image.shape[0]} is too small")
    if resolution and (image.shape[1], image.shape[0]) != tuple(resolution):
        image = cv2.resize(image, tuple(resolution), interpolation=cv2.INTER_AREA)
    return image


class _Pacer:
    """Decides which frames are due at ``fps``."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_due = 0.0

    def set_fps(self, fps: float) -> None:
        """A new rate from the next frame on (no wait longer than the new period)."""
        old, self.period = self.period, 1.0 / fps
        self.next_due -= max(0.0, old - self.period)

    def due(self, t: float) -> bool:
        if t + 1e-6 < self.next_due:
            return False
        # Stay on the grid, but never build up a backlog after a stall (or at the start).
        nd = self.next_due + self.period
        self.next_due = nd if nd > t else t + self.period
        return True


class MjpegSource:
    """``multipart/x-mixed-replace`` JPEG stream over HTTP(S), read with aiohttp."""

    def __init__(self, camera: CameraConfig, *, connect_timeout: float = 10.0) -> None:
        assert camera.url is not None  # noqa: S101 - only built for url cameras
        self.camera = camera
        self.url = camera.url
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._boundary = b""
        self._pacer = _Pacer(camera.fps)
        self._count = 0
        self.skipped = 0

    def _error(self, detail: str) -> SourceError:
        return SourceError(self.camera.id, detail)

    def retune(self, camera: CameraConfig) -> None:
        """Take new settings of the same source (frame rate, timeouts) without reconnecting."""
        self.camera = camera
        self._pacer.set_fps(camera.fps)

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.camera.stall_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            self._response = await self._session.get(self.url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self.close()
            raise self._error(f"cannot connect to the stream ({type(exc).__name__}: {exc})") from None
        ctype = self._response.headers.get("Content-Type", "")
        if self._response.status != 200:
            status = self._response.status
            await self.close()
            raise self._error(f"the stream answered HTTP {status}")
        if "multipart" not in ctype.lower() or "boundary=" not in ctype:
            await self.close()
            raise self._error(f"not an MJPEG stream (Content-Type {ctype!r}); use an rtsp:// URL for other streams")
        boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        self._boundary = b"--" + boundary.encode().removeprefix(b"--")

    async def _part(self) -> bytes:
        assert self._response is not None  # noqa: S101
        content = self._response.content
        headers: dict[str, str] = {}
        while True:  # boundary line, then part headers up to a blank line
            line = await content.readline()
            if not line:
                raise self._error("the stream ended")
            text = line.strip()
            if text.startswith(self._boundary) or not text and not headers:
                continue
            if not text:
                break
            name, _, value = text.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > 16 * 1024 * 1024:
            raise self._error("MJPEG part without a usable Content-Length")
        return await content.readexactly(int(length))

    async def read(self) -> Frame:
        if self._response is None:
            raise self._error("not open")
        while True:
            try:
                data = await self._part()
            except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
                raise self._error(f"stream broke ({type(exc).__name__})") from None
            t = time.monotonic()
            if not self._pacer.due(t):
                self.skipped += 1
                continue  # skipped without decoding
            image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[self.camera.decode_scale])
            try:
                image = normalize_frame(image, self.camera.resolution)
            except ValueError as exc:
                raise self._error(f"undecodable frame ({exc})") from None
            self._count += 1
            return Frame(image, t, self._count)

    async def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class OpenCVSource:
    """RTSP and other URLs, files and devices through OpenCV (FFmpeg / V4L2), in a thread."""

    def __init__(self, camera: CameraConfig, *, open_timeout_s: float = 10.0) -> None:
        self.camera = camera
        self.open_timeout_s = open_timeout_s
        self._cap: cv2.VideoCapture | None = None
        self._pacer = _Pacer(camera.fps)
        self._count = 0
        self._file_fps = 0.0
        self._file_index = 0
        self._started = 0.0
        self._lock = threading.Lock()  # grab/retrieve and release never overlap
        self.skipped = 0

    @property
    def is_file(self) -> bool:
        return self.camera.file is not None

    def _error(self, detail: str) -> SourceError:
        return SourceError(self.camera.id, detail)

    def retune(self, camera: CameraConfig) -> None:
        """Take new settings of the same source (frame rate, timeouts) without reopening.
        (No lock: the reading thread may hold it for a frame period; both assignments
        are atomic and the pacer tolerates a change between two frames.)"""
        self.camera = camera
        self._pacer.set_fps(camera.fps)

    def _open_blocking(self) -> cv2.VideoCapture:
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.camera.stall_timeout_s * 1000)]
        if self.camera.device is not None:
            cap = cv2.VideoCapture(self.camera.device, cv2.CAP_ANY)
        else:
            target = str(self.camera.file) if self.is_file else str(self.camera.url)
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)
        return cap

    async def open(self) -> None:
        if self.is_file and not Path(str(self.camera.file)).is_file():
            raise self._error(f"video file {self.camera.file} not found")
        cap = await asyncio.to_thread(self._open_blocking)
        if not cap.isOpened():
            cap.release()
            what = self.camera.file or self.camera.url or f"device {self.camera.device}"
            raise self._error(f"cannot open {what}")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self._file_fps = fps if fps and 0 < fps <= 240 else 25.0
        self._file_index = 0
        self._started = time.monotonic()

    def _next_blocking(self) -> tuple[np.ndarray | None, float, str | None]:
        with self._lock:
            cap = self._cap
            if cap is None:
                return None, 0.0, "closed"
            return self._next_locked(cap)

    def _next_locked(self, cap: cv2.VideoCapture) -> tuple[np.ndarray | None, float, str | None]:
        while True:
            if not cap.grab():
                if self.is_file and self.camera.loop and self._file_index > 0:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    self._started += self._file_index / self._file_fps
                    self._file_index = 0
                    continue
                if self.is_file:
                    return None, 0.0, "end of file"
                return None, 0.0, "the stream stopped delivering frames"
            if self.is_file:
                t_media = self._file_index / self._file_fps
                self._file_index += 1
                t = self._started + t_media  # media time: as fast as it decodes unless realtime
                if self.camera.realtime:
                    wait = t - time.monotonic()
                    if wait > 0 and self._pacer.next_due <= t + 1e-6:
                        time.sleep(wait)
            else:
                t = time.monotonic()
            if not self._pacer.due(t):
                self.skipped += 1
                continue
            ok, image = cap.retrieve()
            if not ok:
                return None, t, "could not decode a frame"
            return image, t, None

    async def read(self) -> Frame:
        if self._cap is None:
            raise self._error("not open")
        image, t, error = await asyncio.to_thread(self._next_blocking)
        if error == "end of file":
            raise EndOfStream(self.camera.id, error)
        if error:
            raise self._error(error)
        try:
            image = normalize_frame(image, self.camera.resolution)
        except ValueError as exc:
            raise self._error(f"unusable frame ({exc})") from None
        self._count += 1
        return Frame(image, t, self._count)

    def _release_blocking(self) -> None:
        with self._lock:  # waits for a grab in flight (bounded by the read timeout)
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    async def close(self) -> None:
        if self._cap is not None:
            await asyncio.to_thread(self._release_blocking)


def open_source(camera: CameraConfig) -> FrameSource:
    """The right source for a camera config (not yet opened)."""
    if camera.url is not None and camera.url.lower().startswith(("http://", "https://")):
        return MjpegSource(camera)
    return OpenCVSource(camera)
