"""The operating point on one still frame: would this box become an event on this camera?

A camera reports a box when its class is enabled, its score reaches the class's
``min_score`` (the bundled model's per-class defaults, ``BUNDLED_CLASS_DEFAULTS``, unless
the camera's ``classes`` say otherwise) and it has something to report: a subcategory by
its class, or a zone that reports one (a vehicle in a fire lane). :class:`OperatingPoint`
answers that for one frame by asking the camera's own :class:`~edge_agent.tracking.Tracker`,
with time taken out (one frame is enough and zones need no dwell), so it cannot drift from
what the agent does live. ``cityops-agent detect`` and the real-photo evaluation use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.camera.config import (
    CameraSection,
    ClassSettings,
    TrackingConfig,
    ZoneConfig,
    default_class_settings,
)
from edge_agent.tracking import Tracker
from protocol.errors import CityopsError
from vision.labels import bundled_class_map
from vision.models import read_thresholds
from vision.postprocess import Detection

__all__ = ["Judgement", "OperatingPoint"]


@dataclass(frozen=True)
class Judgement:
    subcategory: str | None  # what the box would be reported as (None: nothing, by itself)
    event: bool  # the box passes the operating point: the camera would report it
    zone: str | None = None  # the zone it would be reported through


@dataclass(frozen=True)
class OperatingPoint:
    class_settings: Callable[[str], ClassSettings] = default_class_settings
    class_map: Mapping[str, str | None] = field(default_factory=bundled_class_map)
    zones: Sequence[ZoneConfig] = ()

    @classmethod
    def for_camera(cls, section: CameraSection, labels: Sequence[str], camera: str | None = None) -> OperatingPoint:
        """The operating point of one camera of ``section`` (``camera`` may be omitted when
        the section has at most one; with none, the detector's mapping and the defaults)."""
        class_map = section.detector.class_map(list(labels))
        cameras = section.cameras
        if camera is None and len(cameras) > 1:
            raise CityopsError(f"the config has {len(cameras)} cameras ({', '.join(c.id for c in cameras)}); "
                               "name one with --camera")
        if camera is None and not cameras:
            return cls(class_map=class_map)
        chosen = next((c for c in cameras if camera in (None, c.id)), None)
        if chosen is None:
            raise CityopsError(f"no camera {camera!r} in the config (cameras: {', '.join(c.id for c in cameras) or 'none'})")
        return cls(chosen.class_settings, class_map, section.zones_for(chosen.id))

    @classmethod
    def for_model(cls, model: Path | str, labels: Sequence[str],
                  class_map: Mapping[str, str | None] | None = None) -> OperatingPoint:
        """The operating point a model ships with: its folder's ``thresholds.json``
        (:func:`vision.models.read_thresholds`) over the bundled defaults, for a model
        tried without a camera config (``detect --model``, ``eval-model --model``)."""
        shipped = read_thresholds(model) or {}

        def settings(label: str) -> ClassSettings:
            base = default_class_settings(label)
            return base.model_copy(update={"min_score": shipped[label]}) if label in shipped else base

        return cls(settings, dict(class_map) if class_map is not None else bundled_class_map())

    def judge(self, det: Detection) -> Judgement:
        settings = self.class_settings(det.label)
        subcategory = settings.subcategory or self.class_map.get(det.label)
        if not settings.enabled:
            return Judgement(subcategory, False)

        def one_frame(label: str) -> ClassSettings:
            return self.class_settings(label).model_copy(update={"min_frames": 1})

        zones = [z.model_copy(update={"dwell_s": 0.0}) for z in self.zones]
        tracker = Tracker(TrackingConfig(), dict(self.class_map), zones=zones, class_settings=one_frame)
        decisions = tracker.step([det], 0.0)
        if not decisions:
            return Judgement(subcategory, False)
        return Judgement(decisions[0].subcategory, True, decisions[0].zone)

    def fires(self, det: Detection) -> bool:
        return self.judge(det).event
