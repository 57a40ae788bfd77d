"""Before/after pairs made from real photos, for ``benchmarks/photo_verify.py --real``.

A *still there* pair is one real photo as the before-photo (its file's bytes, as a camera
would have sent it) and, as the after-photo, the same photo re-taken the way a camera
re-takes it: moved a little (shift, small zoom, a slight roll), re-exposed (gain and
offset), with sensor noise, re-encoded at a JPEG quality of 30–90 (:func:`draw_retake`,
:func:`retake`). The problem is still in view, so the verifier must never call it fixed.

An *unrelated* pair has another real photo as the after-photo (of another near-duplicate
group; ordinary scenes from ``negative/`` and other problem photos in turn), from another
source or from the same one (:func:`plan_pairs`): no such pair may close a case. A
same-source after-photo can be the same CCTV camera at another moment (the manifest does
not say which camera took a frame), so a closure there is listed for a person to look at.

The region is the problem's box as a camera agent's event carries it: the largest box of
the photo's first class (normalised x0, y0, x1, y1). Street-flood photos carry no boxes;
their region is the lower middle of the frame (:data:`WATER_REGION`), where the road is.

Everything here is plain and seeded: the same seed gives the same pair, byte for byte.
Nothing reads or writes files except :func:`read_photo`; photos are read in place.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from training.real import RealImage

__all__ = ["PROBLEMS", "WATER_REGION", "RealPair", "Retake", "draw_retake", "plan_pairs", "problem_region",
           "read_photo", "retake", "retake_jpeg", "spread"]

# The problem classes the verifier knows that the real photos carry (fallen_tree and
# vehicle have no real photos; person is no problem).
PROBLEMS = ("water", "flame", "smoke", "garbage")
# Street floods: the water covers the road in the lower part of the frame.
WATER_REGION = (0.2, 0.55, 0.8, 0.95)
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Retake:
    """How the after-photo differs from the before-photo (all relative to the frame)."""

    dx: float  # shift, share of the width (the view moves right: content moves left)
    dy: float  # shift, share of the height
    zoom: float  # >1 zooms in
    angle: float  # roll, degrees
    gain: float  # contrast
    offset: float  # brightness, 0..255 levels
    noise: float  # Gaussian sensor noise, standard deviation in levels
    quality: int  # JPEG quality of the after-photo


def draw_retake(rng: random.Random, *, max_shift: float = 0.04, zoom: tuple[float, float] = (0.97, 1.06),
                max_angle: float = 1.0, gain: tuple[float, float] = (0.75, 1.25),
                max_offset: float = 25.0, noise: tuple[float, float] = (1.0, 6.0),
                quality: tuple[int, int] = (30, 90)) -> Retake:
    """A camera-like re-take, drawn from ``rng``."""
    return Retake(dx=rng.uniform(-max_shift, max_shift), dy=rng.uniform(-max_shift, max_shift),
                  zoom=rng.uniform(*zoom), angle=rng.uniform(-max_angle, max_angle),
                  gain=rng.uniform(*gain), offset=rng.uniform(-max_offset, max_offset),
                  noise=rng.uniform(*noise), quality=rng.randint(*quality))


def retake_matrix(r: Retake, width: int, height: int) -> np.ndarray:
    """The 2×3 affine map from before-photo pixels to after-photo pixels."""
    m = cv2.getRotationMatrix2D((width / 2, height / 2), r.angle, r.zoom)
    m[0, 2] -= r.dx * width
    m[1, 2] -= r.dy * height
    return m


def retake(img: np.ndarray, r: Retake, seed: int) -> np.ndarray:
    """The photo re-taken (same size, uint8 BGR); the strips a zoom-out or shift uncovers are
    filled by reflection, as the scene around continues. Noise is seeded by ``seed``."""
    h, w = img.shape[:2]
    moved = cv2.warpAffine(img, retake_matrix(r, w, h), (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    out = moved.astype(np.float32) * r.gain + r.offset + (128.0 * (1.0 - r.gain))
    out += np.random.default_rng(seed).normal(0.0, r.noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def retake_jpeg(img: np.ndarray, r: Retake, seed: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", retake(img, r, seed), [cv2.IMWRITE_JPEG_QUALITY, r.quality])
    if not ok:
        raise ValueError("OpenCV could not encode the re-taken photo as JPEG")
    return buf.tobytes()


def problem_region(image: RealImage) -> tuple[str, Box, str] | None:
    """(class, region, where the region came from) for a photo showing a problem the
    verifier knows; None for any other photo (negatives, people)."""
    label = next((c for c in image.classes if c in PROBLEMS), None)
    if label is None:
        return None
    boxes = [b for lab, b in image.boxes if lab == label]
    if boxes:
        return label, max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])), "largest box"
    if label == "water":
        return label, WATER_REGION, "lower middle (no boxes)"
    return None  # a class without boxes other than water: no region an agent would report


PairKind = Literal["still_there", "unrelated"]


@dataclass(frozen=True)
class RealPair:
    kind: PairKind
    label: str  # the problem's class in the before-photo
    source: str  # the before-photo's source
    before: str  # file, relative to the folder
    after: str  # the same file (still there) or another (unrelated)
    region: Box
    region_from: str
    seed: int
    retake: Retake | None = None  # still there only
    after_kind: str = ""  # unrelated only: "negative" or the after-photo's class, and "same/other source"

    @property
    def same_source_unrelated(self) -> bool:
        return self.kind == "unrelated" and self.after_kind.endswith("same source")


def plan_pairs(images: list[RealImage], seed: int, *, unrelated: int = 2) -> list[RealPair]:
    """One still-there pair per problem photo, then ``unrelated`` unrelated pairs per
    problem photo, all from ``images`` and never from the before-photo's near-duplicate
    group. The first unrelated pair's after-photo comes from another source (another
    repository: surely another scene), the second from the same source (often the same
    kind of camera; sometimes, for CCTV frames, the same camera at another moment), and so
    on alternately; negatives and problem photos take turns within each."""
    rng = random.Random(seed)
    problems = [(im, r) for im in images if (r := problem_region(im)) is not None]
    pairs: list[RealPair] = []
    for i, (im, (label, region, how)) in enumerate(problems):
        pairs.append(RealPair("still_there", label, im.source, im.file, im.file, region, how, seed + i,
                              draw_retake(rng)))
    negatives = [im for im in images if not im.classes]
    others = [im for im, _ in problems]
    for i, (im, (label, region, how)) in enumerate(problems):
        for j in range(unrelated):
            same_source = j % 2 == 1
            negative = (i + j // 2) % 2 == 0
            pool = [o for o in (negatives if negative else others)
                    if o.group != im.group and (o.source == im.source) == same_source]
            if not pool:
                continue
            after = rng.choice(pool)
            kind = "negative" if negative else next(c for c in after.classes if c in PROBLEMS)
            pairs.append(RealPair("unrelated", label, im.source, im.file, after.file, region, how,
                                  seed + i, after_kind=f"{kind}, {'same' if same_source else 'other'} source"))
    return pairs


def read_photo(root: Path, file: str) -> bytes:
    """The photo's bytes, read in place."""
    return (Path(root) / file).read_bytes()


def spread(images: list[RealImage], per_class: int | None) -> list[RealImage]:
    """At most ``per_class`` problem photos of each class, spread evenly over the manifest's
    order (every source keeps a share); every other photo (negatives) is kept."""
    if per_class is None:
        return list(images)
    by_class: dict[str, list[RealImage]] = {}
    for im in images:
        found = problem_region(im)
        if found is not None:
            by_class.setdefault(found[0], []).append(im)
    keep: set[str] = set()
    for members in by_class.values():
        step = max(1.0, len(members) / per_class)
        keep.update(members[int(i * step)].file for i in range(min(per_class, len(members))))
    return [im for im in images if im.file in keep or problem_region(im) is None]
