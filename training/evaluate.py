"""Evaluate a detector on held-out rendered scenes: box-level mAP@0.5 with per-class
precision and recall, and event-level recall on rendered clips (an event is found when a
``new`` is decided within 3 s of the object appearing) with false events per camera-hour.

Held-out scenes use seeds from ``HELD_OUT_SEED_BASE`` up, which training never renders;
a separate validation split (``VALIDATION_*``) is for tuning. Offline tool: imports the
scene renderer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.camera.config import (
    ClassSettings,
    MotionConfig,
    TrackingConfig,
    ZoneConfig,
    default_class_settings,
)
from edge_agent.camera.motion import MotionGate
from edge_agent.tracking import Tracker
from protocol.messages import EventKind
from vision.labels import bundled_class_map
from vision.postprocess import Detection, iou
from vision.runtime import Detector

from .dataset import HELD_OUT_SEED_BASE, render_samples

if TYPE_CHECKING:
    from simulators.scenes.clips import Clip

__all__ = [
    "CLIP_SEED_BASE",
    "ClassTally",
    "VALIDATION_CLIP_SEED_BASE",
    "VALIDATION_SEED_BASE",
    "PlayedClip",
    "average_precision",
    "evaluate_boxes",
    "evaluate_events",
    "play_clips",
    "score_clips",
]

# Above HELD_OUT_SEED_BASE, which training never reaches: the held-out scenes (from the
# base), the held-out clips, and apart from both a validation split to tune on (score
# thresholds, model choice), so the held-out figures are only ever measured, never fitted.
CLIP_SEED_BASE = HELD_OUT_SEED_BASE + 500_000
VALIDATION_SEED_BASE = HELD_OUT_SEED_BASE + 300_000
VALIDATION_CLIP_SEED_BASE = HELD_OUT_SEED_BASE + 700_000


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation, as VOC 2010+)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


Box = tuple[float, float, float, float]


@dataclass
class ClassTally:
    """One class's detections over a set of images, each marked a hit or not at an IoU
    threshold, and how many true boxes there were: enough for AP and for precision and
    recall at any score."""

    scores: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    positives: int = 0

    def add(self, detections: Sequence[Detection], truth: Sequence[Box], iou_threshold: float = 0.5) -> None:
        """One image: ``detections`` and ``truth`` of this class. Best score first, each
        detection takes the unused true box it overlaps most; a hit at ``iou_threshold``."""
        self.positives += len(truth)
        used = [False] * len(truth)
        for det in sorted(detections, key=lambda d: -d.score):
            best, best_j = 0.0, -1
            for j, g in enumerate(truth):
                if not used[j]:
                    o = iou(det.box, g)
                    if o > best:
                        best, best_j = o, j
            hit = best >= iou_threshold
            if hit:
                used[best_j] = True
            self.scores.append(det.score)
            self.hits.append(hit)

    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores and hits, best score first."""
        order = np.argsort(-np.array(self.scores)) if self.scores else np.zeros(0, int)
        return np.array(self.scores, float)[order], np.array(self.hits, bool)[order]

    def ap(self) -> float:
        """Average precision (NaN when there was no true box)."""
        if not self.positives:
            return float("nan")
        _, hits = self.ranked()
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        return average_precision(tp / self.positives, tp / np.maximum(1, tp + fp))


def evaluate_boxes(
    detector: Detector,
    images: int = 400,
    *,
    seed_base: int = HELD_OUT_SEED_BASE,
    iou_threshold: float = 0.5,
    operating_score: float = 0.4,
    workers: int = 2,
) -> dict:
    """mAP@``iou_threshold`` over ``images`` held-out scenes, plus per-class AP, and
    precision/recall at ``operating_score``. The detector should run with a low score
    threshold (e.g. 0.05) so the PR curve is complete."""
    labels = detector.labels
    # At the detector's own input size: the same scenes, as little resampling as possible.
    samples = render_samples(list(range(seed_base, seed_base + images)), workers=workers,
                             size=detector.info.input_size)
    tally = {i: ClassTally() for i in range(len(labels))}
    started = time.perf_counter()
    for s in samples:
        found = detector.detect(s.image)
        for c in range(len(labels)):
            gts = [tuple(b) for b, lab in zip(s.boxes, s.labels, strict=True) if lab == c]
            tally[c].add([d for d in found if d.class_id == c], gts, iou_threshold)
    per_class = {}
    for c, t in tally.items():
        scores, hits = t.ranked()
        ap = t.ap()
        at = scores >= operating_score
        tp_op, n_op = int(hits[at].sum()), int(at.sum())
        per_class[labels[c]] = {
            "ap50": round(ap, 4),
            "precision": round(tp_op / n_op, 4) if n_op else None,
            "recall": round(tp_op / t.positives, 4) if t.positives else None,
            "objects": t.positives,
        }
    aps = [v["ap50"] for v in per_class.values() if v["objects"]]
    return {
        "images": images,
        "seed_base": seed_base,
        "map50": round(float(np.mean(aps)), 4) if aps else 0.0,
        "operating_score": operating_score,
        "per_class": per_class,
        "ms_per_image": round((time.perf_counter() - started) * 1000 / max(1, len(samples)), 2),
    }


@dataclass
class PlayedClip:
    """One rendered clip played through motion measurement and the detector, frame by
    frame, so any tracker settings can be scored on it without rendering it again."""

    clip: Clip
    zones: Sequence[ZoneConfig]
    frames: list[tuple[float, float, list[Detection]]]  # t, motion ratio, detections
    drawn: set[int]  # events whose object was drawn within ``within_s`` of appearing


def play_clips(
    detector: Detector,
    clips: int = 24,
    *,
    seed_base: int = CLIP_SEED_BASE,
    duration_s: float = 40.0,
    fps: float = 2.0,
    size: tuple[int, int] = (640, 360),
    within_s: float = 3.0,
    motion: MotionConfig | None = None,
) -> list[PlayedClip]:
    """Render ``clips`` clips (one problem each, appearing after a quiet start) and run
    the motion measurement and the detector on every frame. The detector's answer on a
    frame the motion gate would skip is recorded too and simply not used then."""
    from edge_agent.camera.config import ZonePurpose
    from simulators.scenes import random_clip, render_clip_frame
    from simulators.scenes.render import fire_lane_zone

    played = []
    for k in range(clips):
        clip = random_clip(seed_base + k, duration_s=duration_s, fps=fps, size=size, problems=1)
        zones: Sequence[ZoneConfig] = ()
        if clip.scene.fire_lane:
            zones = [ZoneConfig(id="lane", camera="sim", polygon=fire_lane_zone(clip.scene, size),
                                purpose=ZonePurpose.FIRE_LANE, dwell_s=0.0)]
        gate = MotionGate(motion or MotionConfig())
        run = PlayedClip(clip, zones, [], set())
        for i in range(int(duration_s * fps)):
            t = i / fps
            img, truth = render_clip_frame(clip, t, size)
            run.drawn.update(ei for ei, e in enumerate(clip.events) if e.appear_s <= t <= e.appear_s + within_s
                             and any(g.index == e.index for g in truth))
            run.frames.append((t, gate.measure(img), detector.detect(img)))
        played.append(run)
    return played


def score_clips(
    played: Sequence[PlayedClip],
    *,
    within_s: float = 3.0,
    class_settings: Callable[[str], ClassSettings] = default_class_settings,
    motion: MotionConfig | None = None,
) -> dict:
    """Event recall and false events of played clips through motion gate → tracker, as the
    camera worker runs them, with ``class_settings`` (the camera's defaults unless given).
    An appearance is found when a ``new`` of its label comes within ``within_s``; every
    other ``new`` is a false event.

    An appearance the renderer never draws during ``within_s`` (the clip generator can
    place an object that stays under the renderer's size floor, or behind a nearer one,
    and then it has no pixels at all) cannot be found by anything: it is counted as
    ``unseen`` and left out of the recall."""
    class_map = bundled_class_map()
    found = missed = unseen = 0
    delays: list[float] = []
    per_label: dict[str, list[int]] = {}  # found, events, false
    duration = 0.0
    for run in played:
        clip = run.clip
        tracker = Tracker(TrackingConfig(end_after_s=4.0), class_map, zones=run.zones, class_settings=class_settings)
        gate = MotionGate(motion or MotionConfig())
        news: list[tuple[float, str]] = []
        for t, ratio, detections in run.frames:
            if gate.should_detect(ratio, t, tracking=tracker.active):  # as the camera worker does:
                decisions = tracker.step([d for d in detections if class_settings(d.label).enabled], t)
            else:
                decisions = tracker.tick(t)
            news += [(d.t, d.label) for d in decisions if d.kind == EventKind.NEW]
        duration += clip.duration_s
        matched: set[int] = set()
        for ei, e in enumerate(clip.events):
            if ei not in run.drawn:
                unseen += 1
                continue
            hit = next((j for j, (t, lab) in enumerate(news) if j not in matched and lab == e.label
                        and e.appear_s - 0.01 <= t <= e.appear_s + within_s), None)
            per_label.setdefault(e.label, [0, 0, 0])[1] += 1
            if hit is None:
                missed += 1
            else:
                matched.add(hit)
                found += 1
                per_label[e.label][0] += 1
                delays.append(news[hit][0] - e.appear_s)
        for j, (t, lab) in enumerate(news):
            if j not in matched and not any(lab == e.label and e.appear_s - 0.01 <= t < e.disappear_s + 1
                                            for e in clip.events):
                per_label.setdefault(lab, [0, 0, 0])[2] += 1
    false = sum(v[2] for v in per_label.values())
    hours = duration / 3600
    return {
        "clips": len(played),
        "fps": played[0].clip.fps if played else 0.0,
        "events": found + missed,
        "found": found,
        "recall": round(found / max(1, found + missed), 4),
        "unseen": unseen,
        "false_events": false,
        "false_per_camera_hour": round(false / hours, 2) if hours else 0.0,
        "median_delay_s": round(float(np.median(delays)), 2) if delays else None,
        "per_label": {k: {"found": v[0], "events": v[1], "false": v[2]} for k, v in sorted(per_label.items())},
    }


def evaluate_events(
    detector: Detector,
    clips: int = 24,
    *,
    within_s: float = 3.0,
    class_settings: Callable[[str], ClassSettings] = default_class_settings,
    motion: MotionConfig | None = None,
    **clip_options: Any,
) -> dict:
    """Play ``clips`` rendered clips through motion gate → detector → tracker, as the camera
    worker does (:func:`play_clips`; ``clip_options``: its ``seed_base``, ``duration_s``,
    ``fps``, ``size``), and score them (:func:`score_clips`)."""
    played = play_clips(detector, clips, within_s=within_s, motion=motion, **clip_options)
    return score_clips(played, within_s=within_s, class_settings=class_settings, motion=motion)


def detections_summary(found: list[Detection]) -> list[dict]:
    return [{"label": d.label, "score": round(d.score, 3), "box": [round(v, 3) for v in d.box]} for d in found]
