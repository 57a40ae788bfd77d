"""Painters for the things in a scene. Each draws one object onto the frame and returns
its pixel box ``(x1, y1, x2, y2)`` (before clipping), so ground truth is exact.

``emissive`` is a float mask of self-lit pixels (flames, lamps) that darkness spares.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .spec import SceneObject
from .view import View
from .water import paint_water

__all__ = ["PAINTERS", "PHOTO_WATER"]

Box = tuple[float, float, float, float]


def _rng(o: SceneObject, *extra: int) -> np.random.Generator:
    return np.random.default_rng([o.seed, *extra])


def _blob(rng: np.random.Generator, n: int = 18, jitter: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Unit-circle polygon with a smooth random radius: (cos, sin) scaled."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 5):
        r += jitter / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r * np.cos(theta), r * np.sin(theta)


def _box_of(points: np.ndarray) -> Box:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def _union(*boxes: Box) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _blend(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, box: Box) -> None:
    """img = img * (1 - mask) + colour * mask, inside ``box`` only. ``colour`` is an image
    of the same size or a BGR triple; ``mask`` float32 0..1 of the frame's size."""
    h, w = img.shape[:2]
    x1, y1 = max(0, int(box[0]) - 2), max(0, int(box[1]) - 2)
    x2, y2 = min(w, int(box[2]) + 3), min(h, int(box[3]) + 3)
    if x2 <= x1 or y2 <= y1:
        return
    m = mask[y1:y2, x1:x2, None]
    roi = img[y1:y2, x1:x2].astype(np.float32)
    col = colour[y1:y2, x1:x2].astype(np.float32) if np.ndim(colour) == 3 else np.asarray(colour, np.float32)
    img[y1:y2, x1:x2] = (roi * (1 - m) + col * m).astype(np.uint8)


def _flat_water(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray, *, flood: bool) -> Box | None:
    """The flat tinted water the bundled models (v1-v3) were trained on: the default look
    (``SceneSpec.water == "flat"``); ``"photo"`` paints :func:`.water.paint_water` instead."""
    rng = _rng(o)
    if flood:
        rx, rz = rng.uniform(3.0, 6.0) * o.size, rng.uniform(4.0, 9.0) * o.size
    else:
        rx, rz = rng.uniform(0.8, 2.4) * o.size, rng.uniform(0.6, 2.0) * o.size
    cx, sx = _blob(rng, 28, 0.35 if flood else 0.5)
    ca, sa = np.cos(o.angle * 0.3), np.sin(o.angle * 0.3)
    gx = o.x + rx * cx * ca - rz * sx * sa * 0.3
    gz = o.z + rz * sx + rx * cx * sa * 0.1
    poly = view.ground_poly(np.stack([gx, gz], axis=1))
    box = _box_of(poly)
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [poly], 1.0)
    k = max(3, int(3 * view.scale) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    # Water mirrors the sky and darkens the ground; muddier when it floods.
    sky = img[max(0, int(view.horizon_px) - 3)].astype(np.float32).mean(axis=0)
    base = (sky * 0.75 + np.array([60, 60, 55]) * 0.25) if not flood else (sky * 0.45 + np.array([60, 90, 110]) * 0.55)
    layer = np.empty_like(img)
    layer[:] = np.clip(base + rng.normal(0, 4, 3), 0, 255).astype(np.uint8)
    ph = t * 2.0
    for _ in range(int(rng.integers(4, 12) * (2 if flood else 1))):  # ripples and glints
        px, pz = o.x + rng.uniform(-rx, rx) * 0.8, o.z + rng.uniform(-rz, rz) * 0.8
        u, v = view.project(px, pz)
        length = max(2, int(view.ppm(pz) * rng.uniform(0.3, 1.2)))
        du = int(2 * np.sin(ph + px))
        shade = tuple(int(c) for c in np.clip(base + rng.uniform(25, 60), 0, 255))
        cv2.line(layer, (int(u) - length + du, int(v)), (int(u) + length + du, int(v)), shade, 1)
    _blend(img, mask * (0.9 if flood else 0.8), layer, box)
    return box


def _puddle(img, view, o, t, emissive):
    return _flat_water(img, view, o, t, emissive, flood=False)


def _flood(img, view, o, t, emissive):
    return _flat_water(img, view, o, t, emissive, flood=True)


def _photo_puddle(img, view, o, t, emissive):
    return paint_water(img, view, o, t, emissive, flood=False)


def _photo_flood(img, view, o, t, emissive):
    return paint_water(img, view, o, t, emissive, flood=True)


# The flood-like look (``SceneSpec.water == "photo"``) of the water kinds.
PHOTO_WATER = {"puddle": _photo_puddle, "flood": _photo_flood}


def _flame(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray) -> Box | None:
    rng = _rng(o)
    flicker = _rng(o, int(t * 8) + 1)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    height = rng.uniform(0.8, 2.4) * o.size * ppm * flicker.uniform(0.85, 1.1)
    width = height * rng.uniform(0.45, 0.9)
    boxes = []
    h, w = img.shape[:2]
    glow = np.zeros((h, w), np.float32)
    for scale, colour in ((1.0, (20, 70, 230)), (0.72, (10, 150, 255)), (0.42, (150, 235, 255))):
        tongues = int(rng.integers(2, 5))
        pts = [(u - width / 2 * scale, v)]
        for i in range(tongues):
            fx = u - width / 2 * scale + width * scale * (i + 0.5) / tongues
            pts.append((fx - width * scale / tongues * 0.4, v - height * scale * 0.35))
            pts.append((fx + flicker.normal(0, width * 0.05), v - height * scale * flicker.uniform(0.6, 1.0)))
            pts.append((fx + width * scale / tongues * 0.4, v - height * scale * 0.35))
        pts.append((u + width / 2 * scale, v))
        poly = np.array(pts, np.float64).round().astype(np.int32)
        cv2.fillPoly(img, [poly], colour)
        cv2.fillPoly(glow, [poly], 1.0)
        boxes.append(_box_of(poly))
    emissive[:] = np.maximum(emissive, glow)
    return boxes[0]


def _smoke(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray) -> Box | None:
    rng = _rng(o)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    height = rng.uniform(2.5, 6.0) * o.size * ppm
    base_w = rng.uniform(0.6, 1.2) * o.size * ppm
    drift = rng.uniform(-0.5, 0.5)
    h, w = img.shape[:2]
    x1, y1 = int(u - height * 0.9 - base_w), int(v - height * 1.15)
    x2, y2 = int(u + height * 0.9 + base_w), int(v + base_w * 0.3)
    rx1, ry1, rx2, ry2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if rx2 <= rx1 or ry2 <= ry1:
        return None
    alpha = np.zeros((ry2 - ry1, rx2 - rx1), np.float32)
    for i in range(int(rng.integers(10, 18))):
        f = ((i / 14.0) + t * 0.08 * rng.uniform(0.8, 1.2)) % 1.0
        cy = v - height * f * 0.9 - base_w * 0.3
        cx = u + drift * height * f + rng.normal(0, base_w * 0.2)
        r = base_w * 0.6 + height * 0.28 * f
        cv2.circle(alpha, (int(cx - rx1), int(cy - ry1)), max(1, int(r)), float(rng.uniform(0.7, 1.0)), -1)
    k = max(3, int(base_w * 0.8) | 1)
    alpha = cv2.GaussianBlur(alpha, (k, k), 0)
    ys, xs = np.nonzero(alpha > 0.3)
    if len(xs) == 0:
        return None
    grey = rng.choice([rng.uniform(35, 90), rng.uniform(150, 215)])
    colour = np.array([grey, grey, grey * 1.02], np.float32)
    roi = img[ry1:ry2, rx1:rx2].astype(np.float32)
    a = (alpha * 0.95)[..., None]
    img[ry1:ry2, rx1:rx2] = (roi * (1 - a) + colour * a).astype(np.uint8)
    return (float(xs.min() + rx1), float(ys.min() + ry1), float(xs.max() + rx1), float(ys.max() + ry1))


def _foliage(img: np.ndarray, rng: np.random.Generator, centres: list[tuple[float, float]], r: float) -> Box:
    greens = [(40, 110, 40), (30, 90, 50), (60, 140, 70), (35, 120, 85)]
    pts = []
    for cx, cy in centres:
        rr = r * rng.uniform(0.7, 1.2)
        g = greens[int(rng.integers(0, len(greens)))]
        cv2.circle(img, (int(cx), int(cy)), max(1, int(rr)), g, -1)
        cv2.circle(img, (int(cx + rr * 0.2), int(cy + rr * 0.2)), max(1, int(rr * 0.6)), tuple(int(c * 0.75) for c in g), -1)
        pts += [(cx - rr, cy - rr), (cx + rr, cy + rr)]
    return _box_of(np.array(pts))


def _fallen_tree(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray) -> Box | None:
    rng = _rng(o)
    length = rng.uniform(5.0, 9.0) * o.size
    a = o.angle * 0.35  # mostly across the road
    dx, dz = np.cos(a) * length / 2, np.sin(a) * length / 2
    p = view.ground_poly(np.array([[o.x - dx, o.z - dz], [o.x + dx, o.z + dz]]))
    (u1, v1), (u2, v2) = p[0], p[1]
    ppm = view.ppm(o.z)
    thick = max(2, int(rng.uniform(0.25, 0.45) * ppm))
    trunk = (30, 55, 85) if rng.random() < 0.5 else (45, 70, 95)
    lift = 0.2 * ppm
    cv2.line(img, (int(u1), int(v1 - lift)), (int(u2), int(v2 - lift)), trunk, thick)
    boxes = [(min(u1, u2), min(v1, v2) - lift - thick, max(u1, u2), max(v1, v2))]
    crown = [(u1 + (u2 - u1) * f + rng.normal(0, ppm * 0.3), v1 + (v2 - v1) * f - lift - rng.uniform(0, ppm * 0.9))
             for f in rng.uniform(0.45, 1.0, size=int(rng.integers(5, 9)))]
    for cx, cy in crown[:3]:  # bare branches poking out
        cv2.line(img, (int(cx), int(cy)), (int(cx + rng.normal(0, ppm)), int(cy - rng.uniform(0, ppm))), trunk, max(1, thick // 3))
    boxes.append(_foliage(img, rng, crown, rng.uniform(0.7, 1.2) * ppm))
    return _union(*boxes)


def _tree(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray) -> Box | None:
    rng = _rng(o)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    height = rng.uniform(4.0, 8.0) * ppm
    cv2.line(img, (int(u), int(v)), (int(u), int(v - height * 0.6)), (35, 60, 90), max(2, int(0.35 * ppm)))
    crown = [(u + rng.normal(0, ppm * 0.8), v - height * rng.uniform(0.55, 0.95)) for _ in range(6)]
    _foliage(img, rng, crown, 1.3 * ppm)
    return None


def _garbage(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray, *, overflow: bool = True) -> Box | None:
    rng = _rng(o)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    bw, bh = rng.uniform(0.6, 1.1) * ppm * o.size, rng.uniform(0.9, 1.2) * ppm * o.size
    colour = [(40, 110, 40), (150, 90, 30), (90, 90, 90), (30, 50, 70)][int(rng.integers(0, 4))]
    x1, y1 = u - bw / 2, v - bh
    cv2.rectangle(img, (int(x1), int(y1)), (int(u + bw / 2), int(v)), colour, -1)
    cv2.rectangle(img, (int(x1 - bw * 0.05), int(y1 - bh * 0.08)), (int(u + bw / 2 + bw * 0.05), int(y1)), tuple(int(c * 0.7) for c in colour), -1)
    box = (x1 - bw * 0.05, y1 - bh * 0.08, u + bw / 2 + bw * 0.05, v)
    if not overflow:
        return box
    bags = [(30, 30, 30), (60, 60, 60), (220, 220, 225), (160, 90, 40), (120, 170, 200), (50, 40, 120)]
    pts = [box]
    for i in range(int(rng.integers(6, 14))):
        on_top = i < 4
        r = rng.uniform(0.18, 0.35) * ppm * o.size
        if on_top:
            cx, cy = u + rng.uniform(-bw / 2, bw / 2), y1 - r * rng.uniform(0.3, 1.2)
        else:
            cx, cy = u + rng.choice([-1, 1]) * rng.uniform(bw * 0.5, bw * 1.3), v - r * 0.7
        c = bags[int(rng.integers(0, len(bags)))]
        cv2.ellipse(img, (int(cx), int(cy)), (max(1, int(r)), max(1, int(r * 0.8))), float(rng.uniform(0, 180)), 0, 360, c, -1)
        cv2.ellipse(img, (int(cx - r * 0.3), int(cy - r * 0.3)), (max(1, int(r * 0.3)), max(1, int(r * 0.2))), 0, 0, 360, tuple(min(255, k + 40) for k in c), -1)
        pts.append((cx - r, cy - r * 0.8, cx + r, cy + r * 0.8))
    for _ in range(int(rng.integers(3, 8))):  # litter
        lx, ly = u + rng.uniform(-bw * 1.6, bw * 1.6), v - rng.uniform(0, 0.15 * ppm)
        s = max(1, int(0.08 * ppm))
        cv2.rectangle(img, (int(lx), int(ly)), (int(lx) + s, int(ly) + s), tuple(int(k) for k in rng.integers(60, 255, 3)), -1)
    return _union(*pts)


def _bin(img, view, o, t, emissive):
    _garbage(img, view, o, t, emissive, overflow=False)
    return


_CAR_COLOURS = [(235, 235, 235), (30, 30, 30), (180, 180, 185), (40, 40, 170), (160, 80, 30), (40, 190, 230), (60, 110, 60)]


def _vehicle(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray) -> Box | None:
    rng = _rng(o)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    side = abs(np.cos(o.angle)) > 0.5
    length = (rng.uniform(4.0, 4.8) if side else rng.uniform(1.7, 1.95)) * ppm * o.size
    height = rng.uniform(1.35, 1.7) * ppm * o.size
    colour = _CAR_COLOURS[int(rng.integers(0, len(_CAR_COLOURS)))]
    x1, x2 = u - length / 2, u + length / 2
    wheel_r = 0.33 * ppm * o.size
    body_top = v - height * 0.62
    cv2.rectangle(img, (int(x1), int(body_top)), (int(x2), int(v - wheel_r * 0.6)), colour, -1)
    glass = (90, 70, 60)
    if side:
        cab = np.array([[x1 + length * 0.18, body_top], [x1 + length * 0.3, v - height], [x1 + length * 0.72, v - height], [x1 + length * 0.85, body_top]])
        cv2.fillPoly(img, [cab.round().astype(np.int32)], colour)
        win = np.array([[x1 + length * 0.24, body_top], [x1 + length * 0.33, v - height * 0.93], [x1 + length * 0.69, v - height * 0.93], [x1 + length * 0.79, body_top]])
        cv2.fillPoly(img, [win.round().astype(np.int32)], glass)
        for wx in (x1 + length * 0.2, x1 + length * 0.8):
            cv2.circle(img, (int(wx), int(v - wheel_r)), max(1, int(wheel_r)), (20, 20, 20), -1)
            cv2.circle(img, (int(wx), int(v - wheel_r)), max(1, int(wheel_r * 0.45)), (150, 150, 150), -1)
    else:
        cab = np.array([[x1 + length * 0.08, body_top], [x1 + length * 0.18, v - height], [x2 - length * 0.18, v - height], [x2 - length * 0.08, body_top]])
        cv2.fillPoly(img, [cab.round().astype(np.int32)], colour)
        cv2.fillPoly(img, [(cab * [1, 1] + [[length * 0.03, 0], [length * 0.02, height * 0.05], [-length * 0.02, height * 0.05], [-length * 0.03, 0]]).round().astype(np.int32)], glass)
        lamp = (40, 40, 220) if rng.random() < 0.6 else (200, 230, 240)
        for lx in (x1 + length * 0.06, x2 - length * 0.16):
            cv2.rectangle(img, (int(lx), int(body_top + height * 0.08)), (int(lx + length * 0.1), int(body_top + height * 0.16)), lamp, -1)
        cv2.rectangle(img, (int(u - length * 0.12), int(v - height * 0.25)), (int(u + length * 0.12), int(v - height * 0.15)), (230, 200, 40), -1)
        for wx in (x1 + length * 0.12, x2 - length * 0.12):
            cv2.rectangle(img, (int(wx - wheel_r * 0.5), int(v - wheel_r)), (int(wx + wheel_r * 0.5), int(v)), (20, 20, 20), -1)
    return (x1, v - height, x2, v)


def _cone(img, view, o, t, emissive):
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    hgt, wd = 0.7 * ppm * o.size, 0.35 * ppm * o.size
    pts = np.array([[u - wd / 2, v], [u, v - hgt], [u + wd / 2, v]]).round().astype(np.int32)
    cv2.fillPoly(img, [pts], (0, 110, 250))
    cv2.line(img, (int(u - wd * 0.28), int(v - hgt * 0.45)), (int(u + wd * 0.28), int(v - hgt * 0.45)), (245, 245, 245), max(1, int(hgt * 0.1)))
    return


def _lamp(img, view, o, t, emissive):
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    top = v - 6 * ppm
    cv2.line(img, (int(u), int(v)), (int(u), int(top)), (80, 80, 85), max(1, int(0.15 * ppm)))
    cv2.line(img, (int(u), int(top)), (int(u + 0.8 * ppm), int(top)), (80, 80, 85), max(1, int(0.12 * ppm)))
    cv2.circle(img, (int(u + 0.8 * ppm), int(top + 0.1 * ppm)), max(1, int(0.2 * ppm)), (200, 240, 255), -1)
    cv2.circle(emissive, (int(u + 0.8 * ppm), int(top + 0.1 * ppm)), max(1, int(0.2 * ppm)), 1.0, -1)
    return


def _person(img, view, o, t, emissive):
    rng = _rng(o)
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    hgt = rng.uniform(1.55, 1.85) * ppm
    shirt = tuple(int(c) for c in rng.integers(20, 230, 3))
    cv2.rectangle(img, (int(u - 0.22 * ppm), int(v - hgt * 0.5)), (int(u + 0.22 * ppm), int(v)), (60, 50, 40), -1)
    cv2.rectangle(img, (int(u - 0.25 * ppm), int(v - hgt * 0.85)), (int(u + 0.25 * ppm), int(v - hgt * 0.5)), shirt, -1)
    cv2.circle(img, (int(u), int(v - hgt * 0.92)), max(1, int(0.11 * ppm)), (120, 160, 200), -1)
    return


def _bench(img, view, o, t, emissive):
    u, v = view.project(o.x, o.z)
    ppm = view.ppm(o.z)
    cv2.rectangle(img, (int(u - 0.8 * ppm), int(v - 0.5 * ppm)), (int(u + 0.8 * ppm), int(v - 0.42 * ppm)), (40, 80, 120), -1)
    cv2.rectangle(img, (int(u - 0.8 * ppm), int(v - 0.9 * ppm)), (int(u + 0.8 * ppm), int(v - 0.7 * ppm)), (40, 80, 120), -1)
    for lx in (-0.7, 0.7):
        cv2.line(img, (int(u + lx * ppm), int(v)), (int(u + lx * ppm), int(v - 0.5 * ppm)), (40, 40, 40), max(1, int(0.06 * ppm)))
    return


Painter = Callable[[np.ndarray, View, SceneObject, float, np.ndarray], Box | None]

PAINTERS: dict[str, Painter] = {
    "puddle": _puddle,
    "flood": _flood,
    "flame": _flame,
    "smoke": _smoke,
    "fallen_tree": _fallen_tree,
    "garbage": _garbage,
    "vehicle": _vehicle,
    "cone": _cone,
    "bin": _bin,
    "tree": _tree,
    "lamp": _lamp,
    "person": _person,
    "bench": _bench,
}
