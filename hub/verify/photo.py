"""The photo verifier the hub runs by default (``verification.kind: photo``).

``PhotoVerifier().verify(before_jpeg, after_jpeg, region)`` decodes both photos, aligns
the after-photo onto the before-photo (ORB + RANSAC homography), refuses a pair it cannot
align, measures the region against its surroundings (SSIM, normalised difference) and
re-runs the bundled detector on the region of both photos; :func:`hub.verify.decide.decide`
turns that into fixed / not fixed / uncertain. CPU-bound (≈ 0.1 s a pair): the hub calls
it in a worker thread (``Hub.verify_pending`` → ``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..cases.closure import Outcome, Region, Verdict
from . import images
from .decide import NAME, Evidence, Thresholds, alignment_problem, decide, homography_problem
from .detector import BUNDLED_LABELS, BUNDLED_MODEL, RegionDetector

__all__ = ["PhotoVerifier"]

log = logging.getLogger(__name__)

# The after-photo's region is searched wider for the problem's class, on each side by this
# share of the region's size or of the photo's, whichever is more: a re-taken photo's
# parallax moves a problem on the near ground by up to about its own width even after
# alignment, and a small problem that moved out of its box must not look "gone".
AFTER_SEARCH = 0.5
AFTER_SEARCH_FRAME = 0.05


class PhotoVerifier:
    name = NAME

    def __init__(self, thresholds: Thresholds | None = None, *, margin: float = 0.6,
                 detector: bool = True, model: Path | str = BUNDLED_MODEL,
                 labels: Path | str = BUNDLED_LABELS) -> None:
        self.thresholds = thresholds or Thresholds()
        self.margin = margin
        self.use_detector = detector
        self.model, self.labels = Path(model), Path(labels)
        self._detector: RegionDetector | None = None
        self._detector_error: str | None = None
        self._lock = threading.Lock()

    def region_detector(self) -> RegionDetector | None:
        """The detector, loaded on first use; None when it is off or cannot be loaded
        (the reason is logged once and shown in every verdict's detail)."""
        if not self.use_detector:
            return None
        with self._lock:
            if self._detector is None and self._detector_error is None:
                try:
                    self._detector = RegionDetector(self.model, self.labels)
                except Exception as exc:  # noqa: BLE001 - any load failure means: verify without it
                    self._detector_error = str(exc)
                    log.warning("photo verification runs without the detector: %s", exc)
            return self._detector

    def close(self) -> None:
        """Let the detector go (the hub calls this when it stops); the next verdict loads
        it again."""
        with self._lock:
            self._detector = None

    def describe(self) -> str:
        """One line for people: what this verifier uses (``cityops-hub serve`` prints it)."""
        det = self.region_detector()
        if det is not None:
            return f"photo (ORB + RANSAC, SSIM, detector {self.model.name})"
        why = "turned off" if not self.use_detector else self._detector_error
        return f"photo without the detector ({why}): nothing closes automatically"

    def _uncertain(self, why: str) -> Verdict:
        return Verdict(Outcome.UNCERTAIN, 0.0, why, self.name)

    def verify(self, before_jpeg: bytes, after_jpeg: bytes, region: Region | None) -> Verdict:
        return self.examine(before_jpeg, after_jpeg, region)[1]

    def examine(self, before_jpeg: bytes, after_jpeg: bytes,
                region: Region | None) -> tuple[Evidence | None, Verdict]:
        """The verdict and the measurements it was decided on (None when the photos could
        not be compared at all)."""
        t = self.thresholds
        before, after = images.decode(before_jpeg), images.decode(after_jpeg)
        if before is None:
            return None, self._uncertain("the before-photo cannot be decoded")
        if after is None:
            return None, self._uncertain("the after-photo cannot be decoded")
        crop = images.region_crop(before.shape, region, self.margin)
        aligned = images.align(before, after, crop)
        h, w = before.shape[:2]
        problem = alignment_problem(aligned.stats, w, h, t)
        if problem is not None or aligned.matrix is None:
            return None, self._uncertain(f"the photos cannot be aligned: {problem}")
        # The fit near the region follows the ground the problem lies on, unless it is no
        # re-take of the view at all (a few matches on a plain lawn can fit a mirrored,
        # folded plane that still puts the region's corners near the right place).
        local_ok = aligned.local is not None and homography_problem(aligned.local, w, h, t) is None
        start = aligned.local if local_ok else aligned.matrix
        warped, valid = images.warp(after, start, before.shape)
        matrix = images.refine(before, warped, valid, crop, start)
        if matrix is not start:
            warped, valid = images.warp(after, matrix, before.shape)
        m = images.measure(before, warped, valid, crop)
        if m.valid < 0.65:
            return None, self._uncertain(f"the after-photo covers only {m.valid:.0%} of the region and "
                                   "its surroundings")
        evidence = Evidence(m.context_similarity, m.region_similarity, m.changed, detector=False)
        det = self.region_detector()
        if det is not None:
            box = (crop.x0 + crop.bx0, crop.y0 + crop.by0, crop.x0 + crop.bx1, crop.y0 + crop.by1)
            seen_before = det.scores(before, box)
            grow = (max(AFTER_SEARCH * (box[2] - box[0]), AFTER_SEARCH_FRAME * w),
                    max(AFTER_SEARCH * (box[3] - box[1]), AFTER_SEARCH_FRAME * h))
            seen_after = det.scores(images.match_light(before, warped, valid, crop), box, grow=grow)
            evidence = _with_detections(evidence, seen_before, seen_after, t)
        verdict = decide(evidence, t)
        if self.use_detector and det is None:
            verdict = Verdict(verdict.outcome, verdict.confidence,
                              f"{verdict.detail}; detector unavailable: {self._detector_error}", self.name)
        return evidence, verdict


def _with_detections(e: Evidence, before: dict[str, float], after: dict[str, float],
                     t: Thresholds) -> Evidence:
    """Fold the detector's per-class scores into the evidence: the problem's class is the
    best one in the before-photo; every class seen there counts as the problem."""
    label, best = max(before.items(), key=lambda kv: kv[1], default=("", 0.0))
    seen = {k for k, v in before.items() if v >= t.detector_seen} | ({label} if label else set())
    after_score = max((after.get(k, 0.0) for k in seen), default=0.0)
    other = max((v for k, v in after.items() if k not in seen), default=0.0)
    return Evidence(e.context_similarity, e.region_similarity, e.changed, detector=True,
                    before_score=best, after_score=after_score, label=label, other_score=other)
