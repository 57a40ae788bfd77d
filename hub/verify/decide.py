"""The photo verifier's decisions: plain functions over plain numbers, no OpenCV.

:func:`alignment_problem` says whether an estimated homography can be trusted;
:func:`decide` turns what the image measurements found (:class:`Evidence`) into a
:class:`~hub.cases.closure.Verdict`. The bias is deliberate: calling *fixed* what is not
fixed (a false closure) is the expensive mistake, so *fixed* needs every signal to agree —
the context around the problem matches (the photos are aligned), the problem's region
changed over most of its area, and, when the detector is available, the detector saw the
problem in the before-photo and no longer sees it there. Anything less is *uncertain* (a
person looks) or *not fixed* when the evidence says the problem is still there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from protocol.base import StrictModel

from ..cases.closure import Outcome, Verdict

__all__ = ["AlignStats", "Evidence", "Thresholds", "alignment_problem", "decide", "homography_problem"]

NAME = "photo"


class Thresholds(StrictModel):
    """Every number the verifier decides with (``verification.thresholds`` in hub.yaml)."""

    min_inliers: int = Field(20, ge=4, description="RANSAC inliers needed to trust the alignment")
    min_inlier_ratio: float = Field(0.25, ge=0, le=1, description="inliers / good matches needed")
    max_scale_change: float = Field(2.0, gt=1, description="a homography zooming more is degenerate")
    min_context_similarity: float = Field(0.55, ge=-1, le=1, description="SSIM of the surroundings after alignment; below: uncertain")
    changed_fixed: float = Field(0.4, gt=0, le=1, description="share of the region that must change to call it fixed")
    changed_unchanged: float = Field(0.12, ge=0, lt=1, description="at most this share changed: unchanged, not fixed")
    detector_present: float = Field(0.45, gt=0, le=1, description="the problem's class at this score in the after-photo: still there")
    detector_absent: float = Field(0.2, gt=0, le=1, description="below this score the problem's class is gone")
    detector_seen: float = Field(0.5, gt=0, le=1, description="the class must score this in the before-photo to confirm a fix")
    detector_other: float = Field(0.45, gt=0, le=1, description="another problem class at this score in the after-photo's region: not confirmed gone")
    persist_ratio: float = Field(0.75, gt=0, le=2, description="after ≥ this × before score: still there")
    changed_partial: float = Field(0.25, gt=0, le=1, description="a smaller change still counts as fixed when the detector is sure")
    detector_sure: float = Field(0.5, gt=0, le=1, description="before-photo score that makes the detector sure enough for that")
    detector_gone: float = Field(0.15, ge=0, le=1, description="...and after-photo score at most this")
    detector_faded: float = Field(0.35, ge=0, le=1, description="an after-photo score at most this (above detector_absent) "
                                  "still counts as gone when it is also at most faded_ratio × the before-photo score "
                                  "and the region changed by changed_fixed; at or below detector_absent the rule is off")
    faded_ratio: float = Field(0.5, gt=0, lt=1, description="see detector_faded")
    faded_region_similarity: float = Field(0.85, ge=-1, le=1, description="a faint trace counts as gone only "
                                           "where the region's structure changed: its SSIM below this")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.changed_unchanged >= self.changed_fixed:
            raise ValueError("changed_unchanged must be below changed_fixed")
        if self.detector_absent >= self.detector_present:
            raise ValueError("detector_absent must be below detector_present")
        if self.changed_partial > self.changed_fixed:
            raise ValueError("changed_partial must not exceed changed_fixed")
        return self


@dataclass(frozen=True)
class AlignStats:
    """What came out of feature matching and RANSAC (``matrix`` maps after → before)."""

    keypoints: tuple[int, int]  # before, after
    matches: int  # good matches after the ratio test
    inliers: int
    matrix: tuple[tuple[float, ...], ...] | None  # 3×3 homography, None when none was found


@dataclass(frozen=True)
class Evidence:
    """Measurements on the aligned pair, around the problem's region."""

    context_similarity: float  # SSIM of the ring around the region (alignment quality)
    region_similarity: float  # SSIM inside the region
    changed: float  # share of the region's pixels that differ after photometric normalisation
    detector: bool  # the detector ran (model available)
    before_score: float = 0.0  # the problem's class in the before-photo's region
    after_score: float = 0.0  # the same class in the aligned after-photo's region
    label: str = ""  # the class the detector found in the before-photo
    other_score: float = 0.0  # any other problem class in the after-photo's region


def alignment_problem(stats: AlignStats, width: int, height: int, t: Thresholds) -> str | None:
    """Why the homography cannot be trusted, or None when it can."""
    if stats.matrix is None:
        return f"no homography found ({stats.matches} feature matches)"
    if stats.inliers < t.min_inliers:
        return f"only {stats.inliers} RANSAC inliers (need {t.min_inliers}): not the same view"
    ratio = stats.inliers / max(1, stats.matches)
    if ratio < t.min_inlier_ratio:
        return f"only {ratio:.0%} of the matches agree on one view (need {t.min_inlier_ratio:.0%})"
    return homography_problem(stats.matrix, width, height, t)


def homography_problem(matrix, width: int, height: int, t: Thresholds) -> str | None:
    """Why an after → before homography cannot be a re-take of the same view (it mirrors,
    zooms too far, folds over the horizon, twists), or None when it can. Every matrix the
    verifier warps with is checked, not only the whole-view fit."""
    m = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(m)) or abs(m[2, 2]) < 1e-9:
        return "degenerate homography"
    m = m / m[2, 2]
    det = float(np.linalg.det(m[:2, :2]))
    if det <= 0:
        return "the homography mirrors the image (degenerate)"
    if not (1 / t.max_scale_change**2 <= det <= t.max_scale_change**2):
        return f"the homography scales the view by {det ** 0.5:.2f} (degenerate)"
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    mapped = corners @ m.T
    if np.any(mapped[:, 2] <= 1e-6):
        return "the homography folds the view over the horizon (degenerate)"
    pts = mapped[:, :2] / mapped[:, 2:]
    edges = np.roll(pts, -1, axis=0) - pts
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return "the homography twists the view (not convex)"
    area = 0.5 * abs(float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])))
    rel = area / (width * height)
    if not (1 / t.max_scale_change**2 <= rel <= t.max_scale_change**2):
        return f"the aligned view covers {rel:.2f}× the frame (degenerate)"
    return None


def _clamp(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _margin(value: float, threshold: float, top: float = 1.0) -> float:
    """How far past its threshold a signal is, 0 (just) … 1 (as far as it goes)."""
    return _clamp((value - threshold) / max(1e-6, top - threshold))


def _sure(*margins: float) -> float:
    """A decisive verdict's confidence: 0.8 when every signal just passes its threshold,
    up to 1.0 with the weakest signal's margin. ``verification.min_confidence`` above 0.8
    asks for margins; 0.8 (the default) takes every decisive verdict."""
    return 0.8 + 0.2 * min(margins)


def decide(e: Evidence, t: Thresholds) -> Verdict:
    """Fixed / not fixed / uncertain, with a confidence in 0..1 (uncertain: below 0.8)."""
    facts = (f"context {e.context_similarity:.2f}, region {e.region_similarity:.2f}, "
             f"changed {e.changed:.0%}")
    if e.detector:
        facts += f", {e.label or 'problem'} {e.before_score:.2f}→{e.after_score:.2f}"
        if e.other_score >= t.detector_absent:
            facts += f", other {e.other_score:.2f}"
    what = e.label or "the problem"
    aligned = _margin(e.context_similarity, t.min_context_similarity)

    def uncertain(conf: float, why: str) -> Verdict:
        return Verdict(Outcome.UNCERTAIN, conf, f"{why} ({facts})", NAME)

    if e.context_similarity < t.min_context_similarity:
        return uncertain(0.0, "the surroundings do not match after alignment")
    # -- the problem is still there ---------------------------------------------------------
    if e.detector and e.after_score >= t.detector_present:
        return Verdict(Outcome.NOT_FIXED, _sure(_margin(e.after_score, t.detector_present), aligned),
                       f"the detector still sees {what} there ({facts})", NAME)
    if (e.detector and e.before_score >= t.detector_absent and e.after_score >= t.detector_absent
            and e.after_score >= t.persist_ratio * e.before_score):
        return Verdict(Outcome.NOT_FIXED, _sure(_margin(e.after_score / e.before_score, t.persist_ratio), aligned),
                       f"the detector sees {what} there as before ({facts})", NAME)
    if e.changed <= t.changed_unchanged:
        if e.detector and e.before_score >= t.detector_seen and e.after_score < t.detector_absent:
            return uncertain(0.3, f"the region looks unchanged but the detector no longer sees {what}")
        return Verdict(Outcome.NOT_FIXED, _sure(1 - e.changed / max(1e-6, t.changed_unchanged), aligned),
                       f"the region looks unchanged ({facts})", NAME)
    # -- gone? every signal must agree ------------------------------------------------------------
    sure_gone = (e.detector and e.before_score >= t.detector_sure and e.after_score <= t.detector_gone
                 and e.other_score < t.detector_other)
    needed = t.changed_partial if sure_gone else t.changed_fixed
    if e.changed < needed:
        return uncertain(0.3, "the region changed only in part")
    if not e.detector:
        return uncertain(0.5, "the region changed but no detector can confirm the problem is gone")
    if e.before_score < t.detector_seen:
        return uncertain(0.5, "the region changed but the detector did not recognise the problem "
                              "in the before-photo")
    if e.other_score >= t.detector_other:
        return uncertain(0.4, "the region changed but the detector sees another problem there")
    if e.after_score >= t.detector_absent:
        # A faint trace: the region changed over most of its area and the score fell to
        # half or less of a confident before-score (the detector half-seeing the ground the
        # problem stood on). Closer than that, a person looks.
        # ... and where the region's structure changed too (a puddle still there, only
        # lighter, keeps its outline: SSIM stays high while its colour "changed").
        faded = (e.after_score <= t.detector_faded and e.after_score <= t.faded_ratio * e.before_score
                 and e.changed >= t.changed_fixed and e.region_similarity < t.faded_region_similarity)
        if not faded:
            return uncertain(0.4, "the region changed but the detector still half-sees the problem")
        fell = _clamp(1 - e.after_score / (t.faded_ratio * e.before_score))
        return Verdict(Outcome.FIXED, _sure(fell, _margin(e.changed, t.changed_fixed), aligned),
                       f"the problem is gone from its region, a faint trace left ({facts})", NAME)
    gone = _margin(e.before_score - e.after_score, t.detector_seen - t.detector_absent)
    return Verdict(Outcome.FIXED, _sure(gone, _margin(e.changed, needed), aligned),
                   f"the problem is gone from its region ({facts})", NAME)
