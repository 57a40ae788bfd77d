"""Standing water on the ground: puddles and road waterlogging that look like the real thing.

Real street floods are an opaque brown or grey-green sheet whose flat surface mirrors the
sky, the buildings and whatever stands in it (a flipped, darkened, ripple-smeared copy),
growing more mirror-like towards the horizon; cars stand in it to their wheels and people
to their knees, lamps at night draw long vertical streaks on it, rain makes rings.

Two steps, because the reflection needs what is painted after the water:

- :func:`paint_water` (the painter, on the ground layer) lays the water's own body: muddy
  colour, turbidity texture, shallow soft edges where the ground shows through.
- :func:`finish_water` (once every object is painted) mirrors the frame into the water
  with ripple displacement and a Fresnel-like blend, submerges the feet of what stands in
  a flood, and adds glints, night light streaks, rain rings and floating debris.

The ground-truth box is the water's outline, as before.
"""

from __future__ import annotations

import cv2
import numpy as np

from .spec import SceneObject, SceneSpec
from .view import View

__all__ = ["WATER_KINDS", "finish_water", "paint_water", "water_outline"]

Box = tuple[float, float, float, float]

WATER_KINDS = ("puddle", "flood")

# Body colours of flood water (BGR): muddy browns, grey-greens, dark silty grey.
_MUD = np.array([
    (62, 96, 128), (52, 82, 108), (72, 108, 136), (80, 100, 112),
    (78, 102, 92), (66, 92, 84), (62, 66, 70), (90, 112, 122),
], np.float32)


def _rng(o: SceneObject, *extra: int) -> np.random.Generator:
    return np.random.default_rng([o.seed, *extra])


def _outline_radius(rng: np.random.Generator, theta: np.ndarray, flood: bool) -> np.ndarray:
    """A smooth random radius with a ragged fringe; floods are squarer (they fill a road)."""
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += (0.35 if flood else 0.5) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for k in (9, 14, 23):
        r += rng.uniform(0.005, 0.03) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if flood:  # a superellipse: long straight sides along the kerbs
        c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
        r /= (c ** 4 + s ** 4) ** 0.25
    return r


def water_outline(view: View, o: SceneObject, flood: bool) -> np.ndarray:
    """The water's outline in pixels (int32 polygon), deterministic per object seed. A
    puddle keeps the place and size it always had; a flood spreads wider, across a road."""
    rng = _rng(o)
    if flood:
        rx, rz = rng.uniform(3.0, 6.0) * o.size * 1.35, rng.uniform(4.0, 9.0) * o.size
    else:
        rx, rz = rng.uniform(0.8, 2.4) * o.size, rng.uniform(0.6, 2.0) * o.size
    theta = np.linspace(0, 2 * np.pi, 56, endpoint=False)
    r = _outline_radius(rng, theta, flood)
    cx, sx = r * np.cos(theta), r * np.sin(theta)
    ca, sa = np.cos(o.angle * 0.3), np.sin(o.angle * 0.3)
    gx = o.x + rx * cx * ca - rz * sx * sa * 0.3
    gz = o.z + rz * sx + rx * cx * sa * 0.1
    return view.ground_poly(np.stack([gx, gz], axis=1))


def _region(box: Box, w: int, h: int) -> tuple[int, int, int, int] | None:
    x1, y1 = max(0, int(box[0]) - 2), max(0, int(box[1]) - 2)
    x2, y2 = min(w, int(box[2]) + 3), min(h, int(box[3]) + 3)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise in -1..1 of ``shape`` (rows, cols) from a coarse random grid."""
    coarse = rng.uniform(-1, 1, (max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _masks(view: View, o: SceneObject, flood: bool, reg: tuple[int, int, int, int],
           poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, depth) over the region: coverage is the soft-edged outline; depth grows
    from 0 at the shore, so shallow edges let the ground through."""
    x1, y1, x2, y2 = reg
    mask = np.zeros((y2 - y1, x2 - x1), np.float32)
    cv2.fillPoly(mask, [poly - np.array([x1, y1], np.int32)], 1.0)
    k = max(3, int(3 * view.scale) | 1)
    cover = cv2.GaussianBlur(mask, (k, k), 0)
    s = max(1.0, (x2 - x1) / (8.0 if flood else 5.0))
    depth = np.clip(cv2.GaussianBlur(mask, (0, 0), sigmaX=s, sigmaY=s / 3) * 2.0 - 0.1, 0, 1)
    return cover, depth


def _body(img: np.ndarray, view: View, o: SceneObject, flood: bool, reg: tuple[int, int, int, int],
          depth: np.ndarray) -> np.ndarray:
    """The water's own colour over the region (float32 BGR): opaque mud in a flood, a dark
    film over the ground in a puddle, with slow turbidity swirls."""
    rng = _rng(o, 11)
    x1, y1, x2, y2 = reg
    ground = img[y1:y2, x1:x2].astype(np.float32)
    swirl = _noise(rng, depth.shape, (int(rng.integers(3, 7)), int(rng.integers(4, 10))))
    if flood:
        mud = _MUD[int(rng.integers(0, len(_MUD)))] + rng.normal(0, 8, 3).astype(np.float32)
        tone = 1.0 + 0.12 * swirl[..., None]
        opacity = float(rng.uniform(0.88, 1.0))
        a = (opacity * np.clip(depth * 1.6, 0, 1))[..., None]
        return (ground * 0.7 * (1 - a) + mud * tone * a).astype(np.float32)
    film = np.array([55, 60, 64], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    a = (0.45 + 0.3 * depth)[..., None]
    return ground * 0.55 * (1 - a) + film * (1 + 0.08 * swirl[..., None]) * a


def paint_water(img: np.ndarray, view: View, o: SceneObject, t: float, emissive: np.ndarray,
                *, flood: bool) -> Box | None:
    """The ground-layer painter: the water's body. Returns the outline's box."""
    poly = water_outline(view, o, flood)
    box = (float(poly[:, 0].min()), float(poly[:, 1].min()), float(poly[:, 0].max()), float(poly[:, 1].max()))
    h, w = img.shape[:2]
    reg = _region(box, w, h)
    if reg is None:
        return box
    x1, y1, x2, y2 = reg
    cover, depth = _masks(view, o, flood, reg, poly)
    body = _body(img, view, o, flood, reg, depth)
    c = cover[..., None]
    roi = img[y1:y2, x1:x2].astype(np.float32)
    img[y1:y2, x1:x2] = np.clip(roi * (1 - c) + body * c, 0, 255).astype(np.uint8)
    return box


def _contact(view: View, o: SceneObject) -> tuple[float, float]:
    u, v = view.project(o.x, o.z)
    return float(u), float(v)


def finish_water(img: np.ndarray, emissive: np.ndarray, owner: np.ndarray, view: View, spec: SceneSpec,
                 t: float, water: list[int]) -> None:
    """Reflections, waterlines and surface detail on the labelled water objects ``water``
    (indices into ``spec.objects``), in place, once everything else is painted."""
    for i in water:
        _finish_one(img, emissive, owner, view, spec, t, i)


def _finish_one(img: np.ndarray, emissive: np.ndarray, owner: np.ndarray, view: View, spec: SceneSpec,
                t: float, i: int) -> None:
    o = spec.objects[i]
    flood = o.kind == "flood"
    h, w = img.shape[:2]
    poly = water_outline(view, o, flood)
    box = (float(poly[:, 0].min()), float(poly[:, 1].min()), float(poly[:, 0].max()), float(poly[:, 1].max()))
    reg = _region(box, w, h)
    if reg is None:
        return
    x1, y1, x2, y2 = reg
    rh, rw = y2 - y1, x2 - x1
    rng = _rng(o, 21)
    cover, depth = _masks(view, o, flood, reg, poly)
    own = owner[y1:y2, x1:x2]
    visible = (own == i).astype(np.float32) * cover

    rows = np.arange(y1, y2, dtype=np.float32)[:, None]
    cols = np.arange(x1, x2, dtype=np.float32)[None, :]
    hp = view.horizon_px
    # Mirror axis per pixel: the horizon (sky and skyline are far away), or the waterline of
    # an object standing behind or in the water where the mirrored ray meets it.
    axis = np.full((rh, rw), hp, np.float32)
    sub = np.zeros((rh, rw), bool)
    wade = float(rng.uniform(0.25, 0.6)) if flood else 0.0
    stand = [j for j, s in enumerate(spec.objects) if s.kind not in WATER_KINDS and s.kind != "smoke"]
    for j in sorted(stand, key=lambda j: -spec.objects[j].z):
        s = spec.objects[j]
        u, v = _contact(view, s)
        if v >= y2 or u < x1 - rw or u > x2 + rw:  # in front of the water: never mirrored in it
            continue
        inside = flood and y1 <= v < y2 and x1 <= u < x2 and cover[int(v) - y1, int(u) - x1] > 0.5
        line = v - wade * view.ppm(s.z) if inside else v
        src = np.clip((2 * line - rows).astype(np.int32), 0, h - 1)
        src = np.broadcast_to(src, (rh, rw))
        hit = (owner[src, np.broadcast_to(np.arange(x1, x2), (rh, rw))] == j) & (rows > line)
        axis[hit] = line
        if inside:  # the flood hides its feet: from the waterline down, the object is water
            sub |= (own == j) & (rows >= line) & (rows <= v + 1)
    if not visible.any() and not sub.any():
        return
    visible = np.maximum(visible, sub.astype(np.float32) * np.maximum(cover, 0.9))

    # Ripples: a smooth displacement field, stretched across, scaled by perspective.
    # Ground distance of each row (rows at or above the horizon count as far away).
    z = view.f * spec.camera.height_m / np.maximum(rows - np.float32(hp), 1e-3)
    ppm_row = np.minimum(view.f / np.maximum(z, 0.1), view.f)
    rough = float(rng.uniform(0.02, 0.08) if flood else rng.uniform(0.005, 0.03))
    phase = t * 1.5
    n1 = _noise(rng, (rh, rw), (max(2, rh // 6), max(2, rw // 24)))
    n2 = _noise(rng, (rh, rw), (max(2, rh // 3), max(2, rw // 12)))
    dx = rough * ppm_row * np.sin(3.0 * n1 + phase)
    dy = rough * 2.0 * ppm_row * np.sin(3.0 * n2 + phase * 1.3)
    map_y = (2 * axis - rows + dy).astype(np.float32)
    map_x = (cols + dx).astype(np.float32)
    refl = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    smear = max(1, int(view.scale * (3 + 40 * rough)))
    refl = cv2.blur(refl, (1, 2 * smear + 1))

    # The water's own colour where the frame now shows water (the body under standing things too).
    base = img[y1:y2, x1:x2].astype(np.float32)
    if sub.any():  # the submerged part of a wading object: deep, opaque water
        base[sub] = _body(img, view, o, flood, reg, np.where(sub, 1.0, depth).astype(np.float32))[sub]
    # Fresnel-like: steep near the camera the water shows its body, grazing it is a mirror.
    cos_i = spec.camera.height_m / np.sqrt(spec.camera.height_m ** 2 + np.minimum(z, 1e4) ** 2)
    r_min = float(rng.uniform(0.1, 0.3) if flood else rng.uniform(0.25, 0.45))
    fres = r_min + (1 - r_min) * (1 - cos_i) ** 3
    # The mirror image is darker and takes on the water's colour.
    tint = np.float32(rng.uniform(0.65, 0.9)) * (0.7 + 0.3 * base / np.maximum(1.0, base.mean(axis=2, keepdims=True)))
    a = (visible * fres)[..., None]
    out = base * (1 - a) + refl * tint * a
    # Glints: short bright dashes where ripples tilt towards the sky.
    sky = img[max(0, int(hp) - 3), x1:x2].astype(np.float32).mean(axis=0)
    glint = np.clip((np.sin(9.0 * n2 + 5.0 * n1 + phase) - 0.93) * 12, 0, 1) * visible * (0.3 + 0.7 * fres)
    out += glint[..., None] * (sky * 1.1 - out) * 0.8
    img[y1:y2, x1:x2] = np.clip(out, 0, 255).astype(np.uint8)
    _light_streaks(img, emissive, reg, map_x, map_y, visible, view)
    _surface(img, view, spec, o, t, reg, visible, flood)


def _light_streaks(img: np.ndarray, emissive: np.ndarray, reg: tuple[int, int, int, int], map_x: np.ndarray,
                   map_y: np.ndarray, visible: np.ndarray, view: View) -> None:
    """Lamps and flames mirrored in the water as long vertical streaks that stay lit at night."""
    if not emissive.any():
        return
    x1, y1, x2, y2 = reg
    em = cv2.remap(emissive, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if not em.any():
        return
    length = max(3, int(0.2 * view.height)) | 1
    streak = cv2.blur(em, (max(1, int(2 * view.scale)) | 1, length)) * 6.0
    streak = np.clip(streak, 0, 0.9) * visible
    lit = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    colour = cv2.blur(lit * em[..., None], (1, length)) / np.maximum(cv2.blur(em, (1, length)), 1e-3)[..., None]
    roi = img[y1:y2, x1:x2].astype(np.float32)
    s = streak[..., None]
    img[y1:y2, x1:x2] = np.clip(roi * (1 - s) + colour * s, 0, 255).astype(np.uint8)
    emissive[y1:y2, x1:x2] = np.maximum(emissive[y1:y2, x1:x2], streak)


def _surface(img: np.ndarray, view: View, spec: SceneSpec, o: SceneObject, t: float, reg: tuple[int, int, int, int],
             visible: np.ndarray, flood: bool) -> None:
    """Rain rings and floating debris, drawn only where the water shows."""
    x1, y1, x2, y2 = reg
    rh, rw = y2 - y1, x2 - x1
    layer = img[y1:y2, x1:x2].copy()
    h_cam = spec.camera.height_m
    rng = _rng(o, 31)
    if flood:  # leaves, plastic, foam
        for _ in range(int(rng.integers(0, 7))):
            px, py = int(rng.integers(0, rw)), int(rng.integers(0, rh))
            if visible[py, px] < 0.8:
                continue
            z = view.z_at_row(py + y1)
            r = max(1, int(rng.uniform(0.08, 0.3) * view.ppm(z)))
            flat = h_cam / np.hypot(h_cam, z)
            colour = [(40, 60, 70), (200, 205, 210), (30, 90, 60), (60, 130, 190), (170, 190, 200)][int(rng.integers(0, 5))]
            cv2.ellipse(layer, (px, py), (r, max(1, int(r * flat))), float(rng.uniform(-20, 20)), 0, 360, colour, -1)
    if spec.weather == "rain":  # expanding rings where drops land
        drops = np.random.default_rng([o.seed, 41, int(t * 10)])
        n = int(visible.sum() / max(60.0, 400 * view.scale ** 2))
        for _ in range(min(n, 300)):
            px, py = int(drops.integers(0, rw)), int(drops.integers(0, rh))
            if visible[py, px] < 0.8:
                continue
            z = view.z_at_row(py + y1)
            r = drops.uniform(0.04, 0.18) * view.ppm(z)
            if r < 1.0:
                continue
            flat = h_cam / np.hypot(h_cam, z)
            c = tuple(int(min(255, k * 1.25 + 18)) for k in layer[py, px])
            cv2.ellipse(layer, (px, py), (int(r), max(1, int(r * flat))), 0, 0, 360, c, 1)
    m = (visible > 0.5)[..., None]
    img[y1:y2, x1:x2] = np.where(m, layer, img[y1:y2, x1:x2])
