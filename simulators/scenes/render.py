"""Turn a :class:`SceneSpec` into a frame and its ground-truth boxes."""

from __future__ import annotations

import cv2
import numpy as np

from .objects import PAINTERS, PHOTO_WATER
from .places import fire_lane_polygon, paint_background
from .spec import GroundTruthBox, SceneSpec
from .view import View
from .water import WATER_KINDS, finish_water

__all__ = ["fire_lane_zone", "render"]

_FLAT = WATER_KINDS  # painted on the ground before anything stands on it
_AIR = ("smoke",)  # painted last, over everything
MIN_BOX_FRACTION = 0.045  # a labelled object smaller than this (of the frame side) is left out
MIN_VISIBLE = 0.5  # ...and so is one mostly outside the frame, or mostly hidden behind others


def _order(spec: SceneSpec) -> list[int]:
    def key(i: int) -> tuple[int, float]:
        kind = spec.objects[i].kind
        layer = 0 if kind in _FLAT else 2 if kind in _AIR else 1
        return (layer, -spec.objects[i].z)

    return sorted(range(len(spec.objects)), key=key)


def _roll_matrix(spec: SceneSpec, w: int, h: int) -> np.ndarray | None:
    if abs(spec.camera.roll_deg) < 1e-3:
        return None
    return cv2.getRotationMatrix2D((w / 2, h / 2), spec.camera.roll_deg, 1.0)


def _transform_box(m: np.ndarray | None, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if m is None:
        return box
    x1, y1, x2, y2 = box
    # Shrink the corners a little: a rotated rectangle's bounding box overstates round shapes.
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * 0.93, (y2 - y1) / 2 * 0.93
    pts = np.array([[cx - hw, cy - hh, 1], [cx + hw, cy - hh, 1], [cx + hw, cy + hh, 1], [cx - hw, cy + hh, 1]])
    out = pts @ m.T
    return (float(out[:, 0].min()), float(out[:, 1].min()), float(out[:, 0].max()), float(out[:, 1].max()))


def _clip_box(box, w: int, h: int) -> tuple[tuple[float, float, float, float], float]:
    x1, y1, x2, y2 = box
    area = max(1e-6, (x2 - x1) * (y2 - y1))
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    vis = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1) / area
    return (cx1, cy1, cx2, cy2), vis


def _weather(img: np.ndarray, spec: SceneSpec, view: View, rng: np.random.Generator, t: float) -> np.ndarray:
    h, w = img.shape[:2]
    if spec.weather == "fog":
        rows = np.arange(h, dtype=np.float32)
        depth = np.clip(1.0 - (rows - view.horizon_px) / max(1.0, h - view.horizon_px), 0, 1)
        depth[rows < view.horizon_px] = 1.0
        a = (0.25 + 0.45 * depth)[:, None, None] * rng.uniform(0.5, 1.0)
        img = (img.astype(np.float32) * (1 - a) + 200.0 * a).astype(np.uint8)
    elif spec.weather == "rain":
        streaks = np.zeros_like(img)
        drops = np.random.default_rng([spec.seed, 3, int(t * 10)])
        n = int(w * h / 900)
        xs, ys = drops.integers(0, w, n), drops.integers(0, h, n)
        ln = max(4, int(12 * view.scale))
        for x, y in zip(xs, ys, strict=True):
            cv2.line(streaks, (int(x), int(y)), (int(x) - ln // 4, int(y) + ln), (200, 200, 200), 1)
        img = cv2.addWeighted(img, 0.85, streaks, 0.35, 0)
    return img


_TINT = {"day": (1.0, 1.0, 1.0), "overcast": (0.9, 0.9, 0.92), "dusk": (0.75, 0.7, 0.8), "night": (0.45, 0.3, 0.28)}


def _light(img: np.ndarray, spec: SceneSpec, emissive: np.ndarray) -> np.ndarray:
    gain = np.array(_TINT[spec.light], np.float32) * spec.brightness
    lit = cv2.transform(img, np.diag(gain).astype(np.float32))
    if spec.light == "overcast":
        lit = cv2.convertScaleAbs(lit, alpha=0.85, beta=float(lit.mean()) * 0.15)
    ys, xs = np.nonzero(emissive > 0)
    if len(xs):
        h, w = img.shape[:2]
        sigma = max(2.0, w / 160)
        pad = int(sigma * 4)
        x1, y1 = max(0, xs.min() - pad), max(0, ys.min() - pad)
        x2, y2 = min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)
        em = emissive[y1:y2, x1:x2]
        glow = cv2.GaussianBlur(em, (0, 0), sigmaX=sigma)
        strength = 0.25 if spec.light in ("day", "overcast") else 0.6
        roi = lit[y1:y2, x1:x2].astype(np.float32) + glow[..., None] * np.array([40, 120, 255], np.float32) * strength
        e = em[..., None]
        roi = roi * (1 - e) + img[y1:y2, x1:x2].astype(np.float32) * e
        lit[y1:y2, x1:x2] = np.clip(roi, 0, 255).astype(np.uint8)
    return lit


_SUM = np.ones((1, 3), np.float32)


def _paint(spec: SceneSpec, view: View, t: float, roll: np.ndarray | None, skip: frozenset[int],
           ) -> tuple[np.ndarray, np.ndarray, list[GroundTruthBox], list[int]]:
    """Background and objects, nearest last, without the objects in ``skip``. Returns the
    image, its emissive map, the labelled boxes and the labelled objects that later
    (opaque) objects left less than ``MIN_VISIBLE`` of: a puddle under a fallen tree, a
    bin behind a car. Smoke, painted last and translucent, hides nothing."""
    w, h = view.width, view.height
    img = paint_background(spec, view)
    emissive = np.zeros((h, w), np.float32)
    owner = np.full((h, w), -1, np.int16)  # which object each pixel shows
    painted: dict[int, int] = {}  # labelled object -> pixels it painted
    boxes: list[GroundTruthBox] = []
    for i in _order(spec):
        if i in skip:
            continue
        obj = spec.objects[i]
        backup = img.copy()
        em_backup = emissive.copy() if obj.label else None
        owner_backup = owner.copy() if obj.label else None
        paint = PHOTO_WATER.get(obj.kind, PAINTERS[obj.kind]) if spec.water == "photo" else PAINTERS[obj.kind]
        raw = paint(img, view, obj, t, emissive)
        changed = cv2.transform(cv2.absdiff(img, backup), _SUM) > 0  # pixels it painted
        if obj.kind not in _AIR:
            owner[changed] = i
        if obj.label is None:
            continue
        keep = raw is not None
        if raw is not None:
            box, vis = _clip_box(_transform_box(roll, raw), w, h)
            keep = (vis >= MIN_VISIBLE and (box[2] - box[0]) >= MIN_BOX_FRACTION * w
                    and (box[3] - box[1]) >= MIN_BOX_FRACTION * h)
        if not keep:
            img[:], emissive[:], owner[:] = backup, em_backup, owner_backup
            continue
        if obj.kind not in _AIR:  # painted last: nothing can hide it
            painted[i] = int(changed.sum())
        boxes.append(GroundTruthBox(obj.label, (box[0] / w, box[1] / h, box[2] / w, box[3] / h), obj.kind, i))
    hidden = []
    if painted:
        shown = np.bincount(owner.ravel() + 1, minlength=len(spec.objects) + 1)
        hidden = [i for i, n in painted.items() if n and shown[i + 1] < MIN_VISIBLE * n]
    if not hidden and spec.water == "photo":  # (with hidden objects it is painted again without them)
        finish_water(img, emissive, owner, view, spec, t, [g.index for g in boxes if g.kind in _FLAT])
    return img, emissive, boxes, hidden


def render(
    spec: SceneSpec,
    size: tuple[int, int] = (640, 360),
    t: float = 0.0,
    *,
    artefacts: bool = True,
) -> tuple[np.ndarray, list[GroundTruthBox]]:
    """Render ``spec`` at ``size`` (width, height) and time ``t`` (seconds; flames flicker,
    smoke rises, rain falls). Returns the BGR frame and the labelled objects' boxes.

    Labelled objects too small, mostly outside the frame or mostly hidden behind nearer
    objects are not painted at all, so every labelled problem can be seen and every
    visible problem is in the ground truth. ``artefacts`` adds blur, sensor noise
    and JPEG compression.
    """
    w, h = size
    view = View(w, h, spec.camera)
    roll = _roll_matrix(spec, w, h)
    img, emissive, boxes, hidden = _paint(spec, view, t, roll, skip=frozenset())
    if hidden:  # paint the scene again without them: what is left is at least as visible
        img, emissive, boxes, _ = _paint(spec, view, t, roll, skip=frozenset(hidden))
    rng = np.random.default_rng([spec.seed, 2, int(t * 1000)])
    img = _weather(img, spec, view, rng, t)
    img = _light(img, spec, emissive)
    if roll is not None:
        img = cv2.warpAffine(img, roll, (w, h), borderMode=cv2.BORDER_REFLECT)
    if artefacts:
        if spec.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=spec.blur * view.scale)
        if spec.noise > 0:
            noise = np.empty(img.shape, np.int16)
            cv2.setRNGSeed(int(rng.integers(0, 2**31)))
            cv2.randn(noise, 0, spec.noise)
            img = cv2.add(img, noise, dtype=cv2.CV_8U)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return img, boxes


def fire_lane_zone(spec: SceneSpec, size: tuple[int, int] = (640, 360)) -> list[tuple[float, float]]:
    """The marked fire lane's outline, normalised 0..1 (as a camera zone polygon)."""
    w, h = size
    view = View(w, h, spec.camera)
    poly = fire_lane_polygon(view).astype(np.float64)
    roll = _roll_matrix(spec, w, h)
    if roll is not None:
        poly = np.hstack([poly, np.ones((len(poly), 1))]) @ roll.T
    return [(float(np.clip(x / w, 0, 1)), float(np.clip(y / h, 0, 1))) for x, y in poly]
