"""Tracking, zones and the event lifecycle of one camera: pure, driven by timestamps.

:class:`Tracker` takes each analysed frame's detections with its time ``t`` (monotonic
seconds) and returns :class:`Lifecycle` decisions:

* ``new`` once a track has been seen in ``min_frames`` frames with a median score of at
  least ``min_score`` and has something to report (its class maps to a subcategory, or it
  has dwelt ``dwell_s`` inside a zone that reports one, e.g. a vehicle in a fire lane);
* ``update`` when its box or score has changed materially since the last message, at most
  once per ``update_min_interval_s``;
* ``end`` when it has not been seen (inside its zone, for zone events) for ``end_after_s``.

Association is greedy per class: the pair with the highest IoU first, then, for pairs
below ``match_iou``, the nearest centres within ``match_distance``. Nothing here touches
pixels, clocks or I/O; the camera component turns decisions into events and snapshots.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.camera.config import ClassSettings, TrackingConfig, ZoneConfig, ZonePurpose
from protocol.ids import new_event_id
from protocol.messages import EventKind
from vision.postprocess import Detection, covered, iou

__all__ = ["Lifecycle", "Track", "Tracker", "box_in_polygon", "ignored", "point_in_polygon"]

Box = tuple[float, float, float, float]


def point_in_polygon(x: float, y: float, poly: Sequence[tuple[float, float]]) -> bool:
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def box_in_polygon(box: Box, poly: Sequence[tuple[float, float]], min_overlap: float) -> bool:
    """Whether the bottom third of ``box`` (where an object meets the ground) lies inside
    ``poly`` by at least ``min_overlap`` of a 5×3 grid of sample points."""
    x1, y1, x2, y2 = box
    ys = np.linspace(y2 - (y2 - y1) / 3, y2, 3)
    xs = np.linspace(x1, x2, 5)
    hits = sum(point_in_polygon(float(x), float(y), poly) for y in ys for x in xs)
    return hits / 15 >= max(min_overlap, 1e-9)


def ignored(det: Detection, zones: Sequence[ZoneConfig]) -> bool:
    """Whether an ``ignore`` zone of ``zones`` hides ``det`` (its classes, the bottom third's
    overlap): the tracker drops such a detection, and people counts do not count it."""
    return any(z.purpose == ZonePurpose.IGNORE and z.applies_to(det.label)
               and box_in_polygon(det.box, z.polygon, z.min_overlap) for z in zones)


@dataclass
class Track:
    track_id: int
    label: str
    box: Box
    first_seen: float
    last_seen: float
    hits: int = 1
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=7))
    zone_entered: dict[str, float] = field(default_factory=dict)
    event_id: str | None = None
    subcategory: str | None = None
    zone: str | None = None
    last_relevant: float = 0.0
    sent_box: Box | None = None
    sent_score: float = 0.0
    sent_at: float = 0.0

    @property
    def score(self) -> float:
        return float(statistics.median(self.scores)) if self.scores else 0.0

    @property
    def reported(self) -> bool:
        return self.event_id is not None


@dataclass(frozen=True)
class Lifecycle:
    kind: EventKind
    event_id: str
    track_id: int
    label: str
    subcategory: str
    box: Box
    score: float
    frames: int
    zone: str | None
    first_seen: float  # monotonic t the object was first seen
    t: float


class Tracker:
    def __init__(
        self,
        config: TrackingConfig,
        class_map: dict[str, str | None],
        *,
        zones: Sequence[ZoneConfig] = (),
        class_settings: Callable[[str], ClassSettings] | None = None,
        new_id: Callable[[], str] = new_event_id,
    ) -> None:
        self.config = config
        self.class_map = dict(class_map)
        self.zones = list(zones)
        self.class_settings = class_settings or (lambda _label: ClassSettings())
        self.new_id = new_id
        self.tracks: list[Track] = []
        self._next_id = 1

    @property
    def active(self) -> bool:
        """True while any object is being followed (the detector should keep running)."""
        return bool(self.tracks)

    # -- association --------------------------------------------------------------
    def _associate(self, detections: Sequence[Detection]) -> tuple[list[tuple[Track, Detection]], list[Detection]]:
        cfg = self.config
        pairs: list[tuple[float, float, int, int]] = []
        for ti, tr in enumerate(self.tracks):
            tcx, tcy = (tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2
            for di, det in enumerate(detections):
                if det.label != tr.label:
                    continue
                overlap = iou(tr.box, det.box)
                dist = float(np.hypot((det.box[0] + det.box[2]) / 2 - tcx, (det.box[1] + det.box[3]) / 2 - tcy))
                if overlap >= cfg.match_iou or dist <= cfg.match_distance:
                    pairs.append((overlap, -dist, ti, di))
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        matched = []
        for _, _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            matched.append((self.tracks[ti], detections[di]))
        return matched, [d for i, d in enumerate(detections) if i not in used_d]

    # -- reporting ----------------------------------------------------------------
    def _target(self, tr: Track, t: float) -> tuple[str | None, str | None]:
        """(subcategory, zone id) this track would report now, or (None, None)."""
        label_zones = [z for z in self.zones if z.purpose != ZonePurpose.IGNORE and z.applies_to(tr.label)]
        for z in label_zones:
            entered = tr.zone_entered.get(z.id)
            if entered is None or t - entered < z.dwell_s:
                continue
            sub = self.class_settings(tr.label).subcategory if z.purpose == ZonePurpose.WATCH else None
            sub = z.reported_subcategory() or sub or self.class_map.get(tr.label)
            if sub:
                return sub, z.id
        if any(z.purpose == ZonePurpose.WATCH for z in label_zones):
            return None, None  # watched classes are reported only inside their zones
        sub = self.class_settings(tr.label).subcategory or self.class_map.get(tr.label)
        return sub, None

    def _decision(self, kind: EventKind, tr: Track, t: float) -> Lifecycle:
        assert tr.event_id is not None and tr.subcategory is not None  # noqa: S101 - internal invariant
        return Lifecycle(kind, tr.event_id, tr.track_id, tr.label, tr.subcategory, tr.box, tr.score,
                         tr.hits, tr.zone, tr.first_seen, t)

    def step(self, detections: Sequence[Detection], t: float) -> list[Lifecycle]:
        """Feed one analysed frame's detections taken at ``t``; get the decisions."""
        cfg = self.config
        dets = [d for d in detections if not ignored(d, self.zones)]
        matched, fresh = self._associate(dets)
        seen: list[Track] = []
        for tr, det in matched:
            tr.box, tr.last_seen, tr.hits = det.box, t, tr.hits + 1
            tr.scores.append(det.score)
            seen.append(tr)
        for det in fresh:
            tr = Track(self._next_id, det.label, det.box, t, t, scores=deque([det.score], maxlen=cfg.score_window))
            self._next_id += 1
            self.tracks.append(tr)
            seen.append(tr)
        seen = self._absorb_duplicates(seen)
        out: list[Lifecycle] = []
        for tr in seen:
            for z in self.zones:
                if z.purpose == ZonePurpose.IGNORE or not z.applies_to(tr.label):
                    continue
                if box_in_polygon(tr.box, z.polygon, z.min_overlap):
                    tr.zone_entered.setdefault(z.id, t)
                else:
                    tr.zone_entered.pop(z.id, None)
            if not tr.reported:
                settings = self.class_settings(tr.label)
                if tr.hits < settings.min_frames or tr.score < settings.min_score:
                    continue
                sub, zone = self._target(tr, t)
                if sub is None:
                    continue
                tr.event_id, tr.subcategory, tr.zone = self.new_id(), sub, zone
                tr.sent_box, tr.sent_score, tr.sent_at, tr.last_relevant = tr.box, tr.score, t, t
                out.append(self._decision(EventKind.NEW, tr, t))
                continue
            if tr.zone is not None and tr.zone not in tr.zone_entered:
                continue  # seen, but outside the zone it was reported for
            tr.last_relevant = t
            changed = (iou(tr.box, tr.sent_box or tr.box) < cfg.update_iou
                       or abs(tr.score - tr.sent_score) >= cfg.update_score_delta)
            if changed and t - tr.sent_at >= cfg.update_min_interval_s:
                tr.sent_box, tr.sent_score, tr.sent_at = tr.box, tr.score, t
                out.append(self._decision(EventKind.UPDATE, tr, t))
        out.extend(self.tick(t))
        return out

    def _absorb_duplicates(self, seen: list[Track]) -> list[Track]:
        """A detector may box one object twice (the whole flame and its brighter core, or
        two neighbouring peaks), and the spare box then grows a track of its own. A track
        not yet reported that overlaps a reported (or else older) track of its class by
        ``duplicate_iou`` (IoU, or that share of its own box) is that object: it is folded
        into the other track, so one object never becomes two events."""
        limit = self.config.duplicate_iou
        if limit >= 1.0 or len(self.tracks) < 2:
            return seen
        by_priority = sorted(self.tracks, key=lambda tr: (not tr.reported, tr.track_id))
        dropped: set[int] = set()
        for i, keep in enumerate(by_priority):
            if id(keep) in dropped:
                continue
            for other in by_priority[i + 1:]:
                if other.reported or id(other) in dropped or other.label != keep.label:
                    continue
                if iou(keep.box, other.box) >= limit or covered(other.box, keep.box) >= limit:
                    dropped.add(id(other))
                    keep.last_seen = max(keep.last_seen, other.last_seen)
        if not dropped:
            return seen
        self.tracks = [tr for tr in self.tracks if id(tr) not in dropped]
        return [tr for tr in seen if id(tr) not in dropped]

    def tick(self, t: float) -> list[Lifecycle]:
        """Advance time without a detector run: end what has been gone too long."""
        out: list[Lifecycle] = []
        keep: list[Track] = []
        for tr in self.tracks:
            last = tr.last_relevant if tr.reported else tr.last_seen
            if t - last >= self.config.end_after_s:
                if tr.reported:
                    out.append(self._decision(EventKind.END, tr, t))
                continue
            keep.append(tr)
        self.tracks = keep
        return out
