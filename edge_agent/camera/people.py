"""People counts of one camera, sent as telemetry readings for the hub's ``people`` vital sign.

Each analysed frame (one the detector ran on) gives a count: the detections of the
camera's people labels (``people.labels``, default ``person``) whose score reaches that
label's ``min_score`` on this camera, minus those an ``ignore`` zone hides (the tracker's
own rule). A person is *in* a ``count`` zone when the bottom centre of its box (the feet)
lies inside the polygon.

A heartbeat carries the **median** of the counts of the frames analysed in the last
``people.window_s`` seconds (the higher middle value when there are two): one frame that
misses half a crowd, or boxes one person twice, does not move it, while a real change
shows within half a window. Readings are named ``<camera>.people`` and
``<camera>.<zone>.people``, like a Modbus ``device.register``, so a hub gauge names them
the same way. With no analysed frame in the window (the camera is down or stalled) no
count is sent: the hub keeps the last one rather than reading an empty square.

A camera that cannot count (its model has none of the labels, counting is off, or the
reading name would not be an id) sends no count and says why in its telemetry
(``no_people_count``); the worker logs it once.

Pure: detections and times in, counts out; the worker owns the clock and the log.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.tracking import ignored, point_in_polygon
from protocol.ids import is_safe_id
from vision.postprocess import Detection

from .config import PEOPLE_LABEL, CameraConfig, ZoneConfig, ZonePurpose, people_reading

__all__ = ["FrameCount", "PeopleCounter", "count_frame", "counted_labels"]


@dataclass(frozen=True)
class FrameCount:
    total: int
    zones: dict[str, int]  # count zone id -> people inside


def _feet_in(det: Detection, zone: ZoneConfig) -> bool:
    x1, _, x2, y2 = det.box
    return point_in_polygon((x1 + x2) / 2, y2, zone.polygon)


def count_frame(detections: Sequence[Detection], labels: Sequence[str], min_score: Callable[[str], float],
                zones: Sequence[ZoneConfig]) -> FrameCount:
    """People in one analysed frame: in total and per count zone among ``zones``."""
    people = [d for d in detections
              if d.label in labels and d.score >= min_score(d.label) and not ignored(d, zones)]
    per_zone = {z.id: sum(1 for d in people if _feet_in(d, z)) for z in zones if z.purpose == ZonePurpose.COUNT}
    return FrameCount(len(people), per_zone)


def counted_labels(camera: CameraConfig, model_labels: Sequence[str]) -> tuple[list[str], str | None]:
    """The labels ``camera`` counts with this model, and why it counts nothing (or None)."""
    if not camera.people.enabled:
        return [], "counting is off in this camera's config (people.enabled: false)"
    if not is_safe_id(people_reading(camera.id)):
        return [], (f"the reading {people_reading(camera.id)!r} would be longer than 64 characters; "
                    "shorten the camera id")
    wanted = camera.people.labels or [PEOPLE_LABEL]
    labels = [label for label in wanted if label in model_labels]
    if not labels:
        return [], (f"the model has no {' or '.join(map(repr, wanted))} label (its labels: "
                    f"{', '.join(model_labels)}); use a model that detects people, or set "
                    "people.labels to the label it has for them")
    return labels, None


class PeopleCounter:
    """One camera's counts over its window, and the readings a heartbeat carries."""

    def __init__(self, camera: CameraConfig, zones: Sequence[ZoneConfig], model_labels: Sequence[str]) -> None:
        self.camera = camera
        self.zones = [z for z in zones if z.purpose in (ZonePurpose.COUNT, ZonePurpose.IGNORE)]
        self.model_labels = list(model_labels)
        self.labels, self.note = counted_labels(camera, self.model_labels)
        self._frames: deque[tuple[float, FrameCount]] = deque()

    def carry_on(self, old: PeopleCounter) -> None:
        """Keep ``old``'s counts so far when it counted the same labels in the same zones
        (a config change that touched something else, or a replaced component)."""
        if (self.labels, self.zones) == (old.labels, old.zones):
            self._frames = old._frames  # noqa: SLF001 - same camera, same counting

    def add(self, detections: Sequence[Detection], t: float) -> None:
        """One analysed frame's detections (after the camera's class settings), taken at ``t``."""
        if not self.labels:
            return
        self._frames.append((t, count_frame(detections, self.labels,
                                            lambda label: self.camera.class_settings(label).min_score, self.zones)))
        self._forget(t)

    def _forget(self, now: float) -> None:
        while self._frames and now - self._frames[0][0] > self.camera.people.window_s:
            self._frames.popleft()

    def readings(self, now: float) -> dict[str, float]:
        """``{<camera>.people: n, <camera>.<zone>.people: n}`` over the window ending ``now``;
        empty when nothing was analysed in it, or the camera cannot count."""
        self._forget(now)
        if not self.labels or not self._frames:
            return {}
        counts = [c for _, c in self._frames]
        out = {people_reading(self.camera.id): float(statistics.median_high(c.total for c in counts))}
        for zone_id in counts[-1].zones:
            out[people_reading(self.camera.id, zone_id)] = float(
                statistics.median_high(c.zones.get(zone_id, 0) for c in counts))
        return out
