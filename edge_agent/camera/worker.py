"""One camera's loop: connect, read frames at the configured rate, gate on motion, detect,
track, and emit events; a watchdog reconnects a broken or stalled stream with jittered
exponential backoff (tenacity's wait strategy) and reports the camera DOWN and UP again as
a ``device.camera_down`` event (``new`` then ``end``). Each analysed frame is also counted
for people (:mod:`.people`), sent as telemetry readings, and kept (downscaled) for event
clips (:mod:`.clips`): a problem event that starts records its clip, encoded off the loop
and sent after the event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import tenacity

from edge_agent.emit import ClipDraft, EventDraft, EventSink
from edge_agent.errors import OutboxError
from edge_agent.tracking import Lifecycle, Tracker
from protocol.clock import Clock
from protocol.ids import new_event_id
from protocol.messages import CameraTelemetry, ClipTelemetry, EventKind, Evidence, Location

from .clips import ClipEncoder, ClipRecorder, EncodedClip, Recording
from .config import CameraConfig, ZoneConfig
from .live import LiveTap
from .motion import MotionGate
from .people import PeopleCounter
from .snapshot import snapshot_jpeg
from .sources import EndOfStream, Frame, FrameSource, SourceError

__all__ = ["CameraWorker"]

log = logging.getLogger(__name__)

class _Stopped(Exception):
    pass


class CameraWorker:
    def __init__(
        self,
        camera: CameraConfig,
        zones: Sequence[ZoneConfig],
        detect: Callable,
        class_map: dict[str, str | None],
        clock: Clock,
        source_factory: Callable[[CameraConfig], FrameSource],
        *,
        inference_ms: Callable[[], float] = lambda: 0.0,
        model_tag: str = "",
    ) -> None:
        self.camera = camera
        self.model_tag = model_tag  # which model saw it: every detection event says so
        self.detect = detect
        self.clock = clock
        self.source_factory = source_factory
        self.inference_ms = inference_ms
        self.gate = MotionGate(camera.motion, camera.masks)
        self.tracker = Tracker(camera.tracking, class_map, zones=zones, class_settings=camera.class_settings)
        self.people = PeopleCounter(camera, zones, list(class_map))  # class_map: every model label
        self.clips = ClipRecorder(camera.id, camera.clip, camera.fps)  # event clips' frames
        self.encoder: ClipEncoder | None = None  # the component's: set before run
        self.shipping: set[asyncio.Task] = set()  # clips being encoded, then stored
        self.clips_recorded = 0
        self.clips_failed = 0
        self.live = LiveTap("", camera.id, camera.live, clock)  # live view on the hub's request
        self.state = "down"
        self.down_since: float | None = None
        self.down_event: str | None = None
        self.down_reason = ""
        self.failures = 0
        self.frames = 0
        self.detections = 0
        self._frame_times: deque[float] = deque(maxlen=32)
        self._source: FrameSource | None = None
        self._predecessor: CameraWorker | None = None
        self._wait = self._backoff(camera)

    @staticmethod
    def _backoff(camera: CameraConfig) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(multiplier=camera.reconnect_initial_s, max=camera.reconnect_max_s, jitter=camera.reconnect_initial_s)

    def retune(self, camera: CameraConfig, zones: Sequence[ZoneConfig], class_map: dict[str, str | None]) -> None:
        """New settings for the same camera (same source) while it runs: frame rate,
        thresholds, classes, zones, masks, tracking. Tracks, their events and the
        connection carry on; only a changed motion set-up starts a fresh background."""
        if camera.motion != self.camera.motion or camera.masks != self.camera.masks:
            self.gate = MotionGate(camera.motion, camera.masks)
        self.camera = camera
        self.tracker.config = camera.tracking
        self.tracker.zones = list(zones)
        self.tracker.class_map = dict(class_map)
        self.tracker.class_settings = camera.class_settings
        people = PeopleCounter(camera, zones, list(class_map))
        people.carry_on(self.people)
        if people.note != self.people.note:
            self._say_people(people)
        self.people = people
        self.clips.retune(camera.clip, camera.fps)
        self.live.config = camera.live
        self._wait = self._backoff(camera)
        retune = getattr(self._source, "retune", None)
        if retune is not None:
            retune(camera)

    def adopt(self, old: CameraWorker) -> None:
        """Carry on from ``old`` (the same camera in a component being replaced) once this
        worker starts (``old`` has stopped by then): its open tracks keep their event ids,
        and a camera reported DOWN stays that one DOWN event, so a restart never leaves an
        event open at the hub or repeats one."""
        self._predecessor = old

    def _say_people(self, people: PeopleCounter) -> None:
        if people.note is not None:
            level = logging.WARNING if people.camera.people.enabled else logging.INFO
            log.log(level, "camera %s sends no people count: %s", self.camera.id, people.note)
        else:
            log.info("camera %s counts people (%s)", self.camera.id, ", ".join(people.labels))

    def _take_over(self) -> None:
        old, self._predecessor = self._predecessor, None
        if old is None or old.people.note != self.people.note:
            self._say_people(self.people)  # once per camera, not again when a change keeps it
        if old is None:
            return
        self.tracker.tracks = list(old.tracker.tracks)
        self.tracker._next_id = old.tracker._next_id  # noqa: SLF001 - same lifecycle, new settings
        self.down_event, self.down_since, self.down_reason = old.down_event, old.down_since, old.down_reason
        self.failures = old.failures
        self.people.carry_on(old.people)
        self.live.window = old.live.window  # a live view running then carries on

    # -- telemetry -------------------------------------------------------------------
    def telemetry(self) -> CameraTelemetry:
        times = self._frame_times
        fps = 0.0
        if len(times) >= 2 and times[-1] > times[0]:
            fps = (len(times) - 1) / (times[-1] - times[0])
            if time.monotonic() - times[-1] > max(5.0, 3 / self.camera.fps):
                fps = 0.0
        return CameraTelemetry(state=self.state, fps=round(fps, 2), inference_ms=round(self.inference_ms(), 2),
                               motion_ratio=round(min(1.0, max(0.0, self.gate.ratio)), 4),
                               no_people_count=self.people.note, clips=self._clip_telemetry())

    def _clip_telemetry(self) -> ClipTelemetry | None:
        if not self.camera.clip.enabled:
            return None
        if self.encoder is None:
            return ClipTelemetry(recorded=self.clips_recorded, overlapping=self.clips.overlapping,
                                 failed=self.clips_failed, memory_bytes=self.clips.memory_bytes())
        return self.encoder.telemetry(self.camera.id, self.clips, self.clips_recorded, self.clips_failed)

    def readings(self) -> dict[str, float]:
        """This camera's people counts for the heartbeat's ``readings`` (see :mod:`.people`)."""
        return self.people.readings(time.monotonic())

    # -- events ----------------------------------------------------------------------
    def _location(self) -> Location:
        loc = self.camera.location
        return Location(lat=loc.lat, lon=loc.lon, grid_id=loc.grid_id, place=loc.place)

    def _wall(self, t: float) -> datetime:
        return self.clock.now() - timedelta(seconds=max(0.0, self.clock.monotonic() - t))

    def _draft(self, d: Lifecycle, frame: Frame) -> EventDraft:
        x1, y1, x2, y2 = (min(1.0, max(0.0, round(v, 4))) for v in d.box)
        bbox = (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else None
        jpeg = size = None
        if d.kind != EventKind.END:
            jpeg, size = snapshot_jpeg(frame.image, d.box, max_side=self.camera.snapshot_width, label=d.label)
        return EventDraft(
            event_id=d.event_id,
            kind=d.kind,
            category=d.subcategory.split(".", 1)[0],
            subcategory=d.subcategory,
            source=self.camera.id,
            observed_at=self.clock.now(),
            location=self._location(),
            confidence=round(min(1.0, max(0.0, d.score)), 3),
            evidence=Evidence(bbox=bbox, zone=d.zone, frames=d.frames),
            attributes={"label": d.label, "track": d.track_id,
                        **({"model": self.model_tag} if self.model_tag else {})},
            started_at=self._wall(d.first_seen),
            snapshot_jpeg=jpeg,
            snapshot_size=size,
        )

    def _camera_event(self, kind: EventKind, sink: EventSink) -> None:
        assert self.down_event is not None  # noqa: S101
        sink.emit(EventDraft(
            event_id=self.down_event,
            kind=kind,
            category="device",
            subcategory="device.camera_down",
            source=self.camera.id,
            observed_at=self.clock.now(),
            location=self._location(),
            confidence=1.0,
            attributes={"reason": self.down_reason[:200], "failures": self.failures},
            started_at=self._wall(self.down_since) if self.down_since is not None else None,
        ))

    def _maybe_report_down(self, sink: EventSink) -> None:
        if self.down_event is None and self.down_since is not None \
                and self.clock.monotonic() - self.down_since >= self.camera.down_after_s:
            self.down_event = new_event_id()
            log.warning("camera %s DOWN: %s", self.camera.id, self.down_reason)
            self._camera_event(EventKind.NEW, sink)

    def _up(self, sink: EventSink) -> None:
        self.state = "up"
        self.failures = 0
        if self.down_event is not None:
            log.info("camera %s UP again", self.camera.id)
            self._camera_event(EventKind.END, sink)
        self.down_event = None
        self.down_since = None

    # -- the loop ----------------------------------------------------------------------
    async def process(self, frame: Frame, sink: EventSink) -> list[Lifecycle]:
        """Motion gate → detector → tracker → events for one frame."""
        self.frames += 1
        self._frame_times.append(time.monotonic())
        ratio = self.gate.measure(frame.image)
        if self.gate.should_detect(ratio, frame.t, tracking=self.tracker.active):
            found = [d for d in await self.detect(frame.image) if self.camera.class_settings(d.label).enabled]
            self.detections += 1
            self.people.add(found, frame.t)
            decisions = self.tracker.step(found, frame.t)
        else:
            decisions = self.tracker.tick(frame.t)
        for d in decisions:
            sink.emit(self._draft(d, frame))
        self._clip_step(frame, decisions, sink)  # after the events: a clip never delays one
        return decisions

    # -- event clips -----------------------------------------------------------------
    def _clip_step(self, frame: Frame, decisions: list[Lifecycle], sink: EventSink) -> None:
        for rec in self.clips.add(frame.t, frame.image):
            self._encode(rec, sink)
        if self.encoder is not None:
            for d in decisions:
                if d.kind == EventKind.NEW:
                    self.clips.trigger(d.event_id, frame.t)

    def _encode(self, rec: Recording, sink: EventSink) -> None:
        """Hand a finished recording to the encoder thread; never waits for it."""
        if self.encoder is None:
            return
        fut = self.encoder.submit(self.clips.job(rec, self._wall(rec.event_t)))
        if fut is None:
            return  # the encoder is behind: counted (clips.busy) and logged by it
        task = asyncio.ensure_future(self._ship(asyncio.wrap_future(fut), sink))
        self.shipping.add(task)
        task.add_done_callback(self.shipping.discard)

    async def _ship(self, encoded: asyncio.Future[EncodedClip], sink: EventSink) -> None:
        """The encoded clip into the outbox (on the loop: the outbox has one writer)."""
        try:
            clip = await encoded
        except Exception:  # noqa: BLE001 - the encoder logged the reason
            self.clips_failed += 1
            return
        add_clip = getattr(sink, "add_clip", None)
        if add_clip is None:
            self.clips_failed += 1
            log.error("camera %s: the clip of event %s has nowhere to go (this sink takes no clips)",
                      self.camera.id, clip.event_id)
            return
        try:
            add_clip(ClipDraft(clip.event_id, clip.data, clip.width, clip.height, clip.fps, clip.frames,
                               clip.duration_s, clip.started_at, clip.event_offset_s))
        except OutboxError as exc:
            self.clips_failed += 1
            log.error("camera %s: the clip of event %s was not stored: %s", self.camera.id,
                      clip.event_id, exc)
            return
        self.clips_recorded += 1
        log.info("camera %s: clip of event %s: %d frames, %.1f s, %d bytes, encoded in %.0f ms",
                 self.camera.id, clip.event_id, clip.frames, clip.duration_s, len(clip.data), clip.encode_ms)

    def finish_clips(self, sink: EventSink) -> None:
        """The camera stops (or its file ended): recordings under way are encoded as they are."""
        for rec in self.clips.flush():
            self._encode(rec, sink)

    async def _sleep(self, delay: float, sink: EventSink, stop: asyncio.Event) -> None:
        deadline = self.clock.monotonic() + delay
        while True:
            self._maybe_report_down(sink)
            now = self.clock.monotonic()
            if now >= deadline:
                return
            step = deadline - now
            if self.down_event is None and self.down_since is not None:
                step = min(step, max(0.05, self.down_since + self.camera.down_after_s - now))
            try:
                await asyncio.wait_for(stop.wait(), timeout=step)
            except TimeoutError:
                continue
            raise _Stopped

    async def _session(self, sink: EventSink, stop: asyncio.Event) -> None:
        source = self._source = self.source_factory(self.camera)
        try:
            await asyncio.wait_for(source.open(), timeout=self.camera.stall_timeout_s + 5)
            while not stop.is_set():
                reader = asyncio.ensure_future(source.read())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({reader, stopper}, timeout=self.camera.stall_timeout_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if reader not in done:
                    reader.cancel()
                    if stop.is_set():
                        return
                    raise SourceError(self.camera.id, f"no frame for {self.camera.stall_timeout_s:g} s (stalled)")
                frame = reader.result()
                if self.state != "up":
                    self._up(sink)
                self.live.offer(frame)  # a reference kept; encoded in a thread only when asked
                await self.process(frame, sink)
        except TimeoutError:
            raise SourceError(self.camera.id, "timed out connecting") from None
        finally:
            self._source = None
            await source.close()

    async def run(self, sink: EventSink, stop: asyncio.Event) -> None:
        """Until ``stop``: stream, and on any source failure mark the camera down, back off
        and reconnect. A camera that never connects is DOWN, never a crash."""
        self._take_over()
        attempt = 0
        while not stop.is_set():
            frames_before = self.frames
            try:
                await self._session(sink, stop)
            except EndOfStream:
                log.info("camera %s: the video file has played to its end", self.camera.id)
                self.state = "down"
                self.finish_clips(sink)
                return
            except SourceError as exc:
                self.down_reason = exc.detail
                log.info("%s", exc)
            if stop.is_set():
                return
            self.state = "down"
            self.failures += 1
            if self.down_since is None:
                self.down_since = self.clock.monotonic()
            attempt = 1 if self.frames > frames_before else attempt + 1
            state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
            state.attempt_number = attempt
            try:
                await self._sleep(self._wait(state), sink, stop)
            except _Stopped:
                return
