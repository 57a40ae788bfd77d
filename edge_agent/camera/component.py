"""The camera component: every configured camera as a :class:`CameraWorker`, all sharing
one detector through a :class:`~vision.runtime.DetectorService`.

Building it loads the model and labels, so a bad model fails at start-up with the file
and the fix named (:class:`~vision.runtime.ModelError`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from edge_agent.emit import EventSink
from protocol.clock import Clock, SystemClock
from protocol.messages import LiveRequest
from vision.labels import read_labels
from vision.models import model_tag
from vision.runtime import Detector, DetectorService

from .clips import ClipEncoder
from .config import CameraConfig, CameraSection, DetectorConfig
from .live import FrameSend
from .sources import FrameSource, open_source
from .worker import CameraWorker

__all__ = ["CameraComponent", "build_detector"]

log = logging.getLogger(__name__)


def build_detector(section: CameraSection) -> DetectorService:
    cfg = section.detector
    labels = read_labels(cfg.labels)
    detector = Detector(cfg.model, labels, layout=cfg.layout, threads=cfg.threads, input_order=cfg.input_order,
                        input_range=cfg.input_range, score_threshold=cfg.live_score(),
                        iou_threshold=cfg.iou_threshold, max_detections=cfg.max_detections)
    return DetectorService(detector)


def _model_key(cfg: DetectorConfig) -> tuple:
    return (cfg.model, cfg.labels, cfg.layout, cfg.threads, cfg.input_order, cfg.input_range)


class CameraComponent:
    name = "camera"

    def __init__(
        self,
        section: CameraSection,
        *,
        clock: Clock | None = None,
        detector: DetectorService | None = None,
        source_factory: Callable[[CameraConfig], FrameSource] = open_source,
        include_readings: bool = True,
    ) -> None:
        self.section = section
        self.include_readings = include_readings  # telemetry.include_readings: the people counts
        self.clock = clock or SystemClock()
        self._owns_detector = detector is None
        self.detector = detector or build_detector(section)
        class_map = section.detector.class_map(self.detector.detector.labels)
        self.workers = [
            CameraWorker(cam, section.zones_for(cam.id), self.detector.detect, class_map, self.clock,
                         source_factory, inference_ms=lambda: self.detector.inference_ms,
                         model_tag=model_tag(section.detector.model))
            for cam in section.cameras if cam.enabled
        ]
        self.encoder = ClipEncoder()  # one thread encodes every camera's event clips
        for w in self.workers:
            w.encoder = self.encoder

    async def run(self, sink: EventSink, stop: asyncio.Event) -> None:
        self.detector.start()
        inner = asyncio.Event()  # ours to set when a worker fails; ``stop`` belongs to the app
        tasks = [asyncio.create_task(w.run(sink, inner), name=f"camera:{w.camera.id}") for w in self.workers]
        waiter = asyncio.create_task(stop.wait())
        try:
            pending = {waiter, *tasks}
            while not stop.is_set():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not waiter and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if waiter in done:
                    break  # (cameras whose file has played out just stay idle until then)
        finally:
            inner.set()
            waiter.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)
            await self._finish_clips(sink)
            await asyncio.gather(*(w.live.close() for w in self.workers), return_exceptions=True)
            if self._owns_detector:
                self.detector.stop()

    async def _finish_clips(self, sink: EventSink) -> None:
        """Recordings under way are encoded as they are, the encoder drains its queue, and
        the clips reach the outbox before the component is gone."""
        for w in self.workers:
            w.finish_clips(sink)
        await asyncio.to_thread(self.encoder.stop, 30.0)
        shipping = [t for w in self.workers for t in w.shipping]
        if shipping:
            await asyncio.wait(shipping, timeout=10)

    def reconfigure(self, new: CameraComponent) -> bool:
        """Take ``new``'s settings in place when only what can change while running
        differs (frame rates, thresholds, classes, zones, masks, tracking, detector score
        and NMS thresholds): tracks, their events and connections carry on. Otherwise
        (cameras come or go, a source changes, another model) hand every camera's open
        tracks and DOWN state to ``new``'s worker of the same id and return False: the
        agent then replaces this component by ``new``. Checks before changing anything."""
        old, fresh = self.section.detector, new.section.detector
        by_id = {w.camera.id: w for w in self.workers}
        cameras = [c for c in new.section.cameras if c.enabled]
        if (_model_key(old) != _model_key(fresh) or self.detector.detector.labels != new.detector.detector.labels
                or sorted(c.id for c in cameras) != sorted(by_id)
                or any(c.source_key() != by_id[c.id].camera.source_key() for c in cameras)):
            for worker in new.workers:
                if worker.camera.id in by_id:
                    worker.adopt(by_id[worker.camera.id])
            return False
        det = self.detector.detector
        det.score_threshold, det.iou_threshold, det.max_detections = (
            fresh.live_score(), fresh.iou_threshold, fresh.max_detections)
        class_map = fresh.class_map(det.labels)
        for cam in cameras:
            by_id[cam.id].retune(cam, new.section.zones_for(cam.id), class_map)
        self.section = new.section
        self.include_readings = new.include_readings
        log.info("camera settings changed in place (%d camera(s))", len(cameras))
        return True

    def attach_live(self, agent_id: str, send: FrameSend) -> None:
        """Where live frames go (the session's QoS 0 publish), and the agent id they carry."""
        for w in self.workers:
            w.live.agent_id, w.live.send = agent_id, send

    def live_request(self, req: LiveRequest) -> str | None:
        """Apply the hub's live view request to its camera; None when no running camera
        here has that id (the app says so in its log)."""
        for w in self.workers:
            if w.camera.id == req.camera:
                return w.live.request(req)
        return None

    def telemetry(self) -> dict[str, Any]:
        """Each camera's state, and its people counts as ``readings`` (``<camera>.people``,
        ``<camera>.<zone>.people``) where it counts and ``telemetry.include_readings`` is on."""
        readings: dict[str, float] = {}
        if self.include_readings:
            for w in self.workers:
                readings.update(w.readings())
        return {"cameras": {w.camera.id: w.telemetry().model_dump() for w in self.workers}, "readings": readings}
