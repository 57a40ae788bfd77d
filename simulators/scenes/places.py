"""Backgrounds: sky, skyline and the ground of each kind of place."""

from __future__ import annotations

import cv2
import numpy as np

from .spec import SceneSpec, near_z
from .view import View

__all__ = ["FIRE_LANE_XZ", "fire_lane_polygon", "paint_background"]

FAR = 400.0  # metres: "the horizon" for ground polygons

_SKY = {
    "day": ((235, 200, 150), (250, 230, 200)),
    "overcast": ((200, 195, 190), (225, 222, 220)),
    "dusk": ((150, 110, 120), (120, 170, 240)),
    "night": ((45, 25, 20), (70, 50, 45)),
}


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _sky(img: np.ndarray, view: View, light: str) -> None:
    top, bottom = _SKY[light]
    hp = max(1, int(view.horizon_px) + 2)
    t = np.linspace(0, 1, hp, dtype=np.float32)[:, None]
    grad = (np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t).astype(np.uint8)
    img[:hp] = grad[:, None, :]


def _skyline(img: np.ndarray, view: View, rng: np.random.Generator, night: bool) -> None:
    w, hp = view.width, int(view.horizon_px)
    x = -int(rng.integers(0, 40))
    while x < w:
        bw = int(rng.integers(30, 110) * view.scale)
        bh = int(rng.uniform(0.15, 0.7) * max(hp, 10))
        colour = _jitter(rng, (120, 125, 135), 35)
        cv2.rectangle(img, (x, hp - bh), (x + bw, hp + 2), colour, -1)
        win = (200, 230, 250) if night else _jitter(rng, (90, 80, 70), 20)
        step = max(4, int(9 * view.scale))
        for wy in range(hp - bh + step // 2, hp - step // 2, step):
            for wx in range(x + step // 2, x + bw - step // 2, step):
                if not night or rng.random() < 0.35:
                    cv2.rectangle(img, (wx, wy), (wx + step // 3, wy + step // 3), win, -1)
        x += bw + int(rng.integers(0, 12))


def _ground_quad(view: View, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    return view.ground_poly(np.array([[x0, z0], [x1, z0], [x1, z1], [x0, z1]], np.float64))


def _dashes(img: np.ndarray, view: View, x: float, colour, width_m: float, z0: float, dash: float = 3.0) -> None:
    z = z0
    while z < 120:
        cv2.fillPoly(img, [_ground_quad(view, x - width_m / 2, x + width_m / 2, z, z + dash)], colour)
        z += dash * 2.5


def _grid(img: np.ndarray, view: View, x0: float, x1: float, z0: float, step: float, colour) -> None:
    for gx in np.arange(x0, x1, step):
        p = view.ground_poly(np.array([[gx, z0], [gx, FAR]]))
        cv2.line(img, tuple(p[0]), tuple(p[1]), colour, 1)
    z = z0
    while z < 150:
        p = view.ground_poly(np.array([[x0, z], [x1, z]]))
        cv2.line(img, tuple(p[0]), tuple(p[1]), colour, 1)
        z += step


def _block(img: np.ndarray, view: View, rng: np.random.Generator, x: float, z: float, night: bool) -> None:
    """An apartment block standing on the ground at (x, z)."""
    ppm = view.ppm(z)
    u, v = view.project(x, z)
    bw, bh = rng.uniform(12, 25) * ppm, rng.uniform(15, 40) * ppm
    x0, y0 = int(u - bw / 2), int(v - bh)
    cv2.rectangle(img, (x0, y0), (int(u + bw / 2), int(v)), _jitter(rng, (170, 180, 190), 30), -1)
    step = max(4, int(3 * ppm))
    win = (150, 210, 240) if night else (110, 95, 80)
    for wy in range(y0 + step // 2, int(v) - step, step):
        for wx in range(x0 + step // 2, int(u + bw / 2) - step // 2, step):
            if not night or rng.random() < 0.4:
                cv2.rectangle(img, (wx, wy), (wx + max(1, step // 2), wy + max(1, step // 3)), win, -1)


# The fire lane, in ground metres: x from, x to, z offset from the near edge, length.
FIRE_LANE_XZ = (-1.8, 1.8, 0.5, 16.0)


def fire_lane_polygon(view: View) -> np.ndarray:
    """The fire lane's outline in pixels before camera roll (int32, 4 points)."""
    x0, x1, dz, length = FIRE_LANE_XZ
    z0 = near_z(view.camera) + dz
    return _ground_quad(view, x0, x1, z0, z0 + length)


def _near(view: View) -> float:
    return view.z_at_row(view.height - 1)


def _fire_lane(img: np.ndarray, view: View, spec: SceneSpec) -> None:
    x0, x1, dz, length = FIRE_LANE_XZ
    z0 = near_z(view.camera) + dz
    z1 = z0 + length
    yellow, red = (0, 210, 240), (40, 40, 200)
    cv2.fillPoly(img, [_ground_quad(view, x0, x1, z0, z1)], (70, 75, 150))
    z = z0
    while z < z1:  # hatching
        quad = view.ground_poly(np.array([[x0, z], [x0, z + 0.6], [x1, z + 2.2], [x1, z + 1.6]]))
        cv2.fillPoly(img, [quad], yellow)
        z += 2.4
    cv2.polylines(img, [_ground_quad(view, x0, x1, z0, z1)], True, yellow, max(2, int(3 * view.scale)))
    u, v = view.project((x0 + x1) / 2, z0 + 1.5)
    fs = max(0.3, view.ppm(z0 + 1.5) / 60)
    cv2.putText(img, "FIRE LANE", (int(u - 2.3 * 20 * fs), int(v)), cv2.FONT_HERSHEY_SIMPLEX, fs, red, max(1, int(2 * fs)))


def paint_background(spec: SceneSpec, view: View) -> np.ndarray:
    """Sky, skyline and ground of the scene (no objects), BGR uint8."""
    rng = np.random.default_rng([spec.seed, 1])
    w, h = view.width, view.height
    img = np.empty((h, w, 3), np.uint8)
    night = spec.light == "night"
    _sky(img, view, spec.light)
    _skyline(img, view, rng, night)
    hp = int(view.horizon_px)
    ground = _jitter(rng, {"road": (95, 120, 110), "pavement": (150, 155, 160),
                           "riverside": (80, 130, 95), "estate": (70, 140, 90)}[spec.place], 20)
    img[hp:] = ground
    zn = _near(view)
    asphalt = _jitter(rng, (88, 90, 92), 14)
    if spec.place == "road":
        half = rng.uniform(3.5, 7.5)
        cv2.fillPoly(img, [_ground_quad(view, half, half + 3.5, zn - 5, FAR)], _jitter(rng, (165, 165, 170)))
        cv2.fillPoly(img, [_ground_quad(view, -half - 3.5, -half, zn - 5, FAR)], _jitter(rng, (165, 165, 170)))
        cv2.fillPoly(img, [_ground_quad(view, -half, half, zn - 5, FAR)], asphalt)
        _dashes(img, view, 0.0, (235, 235, 235) if rng.random() < 0.6 else (40, 200, 230), 0.15, zn - 3)
        for edge in (-half + 0.3, half - 0.3):
            cv2.fillPoly(img, [_ground_quad(view, edge - 0.08, edge + 0.08, zn - 5, FAR)], (220, 220, 220))
    elif spec.place == "pavement":
        img[hp:] = _jitter(rng, (160, 165, 170), 25)
        _grid(img, view, -30, 30, zn - 2, float(rng.uniform(0.8, 1.6)), _jitter(rng, (120, 125, 130)))
        cv2.fillPoly(img, [_ground_quad(view, 9, 20, zn - 5, FAR)], asphalt)
    elif spec.place == "riverside":
        cv2.fillPoly(img, [_ground_quad(view, -6, 4, zn - 5, FAR)], _jitter(rng, (140, 150, 155)))
        river = _jitter(rng, (95, 105, 60), 15)
        cv2.fillPoly(img, [_ground_quad(view, 5, 60, zn - 5, FAR)], river)
        for _ in range(30):
            rz = rng.uniform(zn, 80)
            rx = rng.uniform(6, 30)
            p = view.ground_poly(np.array([[rx, rz], [rx + 1.5, rz]]))
            cv2.line(img, tuple(p[0]), tuple(p[1]), _jitter(rng, (130, 140, 100)), 1)
        for pz in np.arange(zn, 80, 2.5):  # railing posts
            u, v = view.project(4.3, pz)
            cv2.line(img, (int(u), int(v)), (int(u), int(v - 1.0 * view.ppm(pz))), (60, 60, 60), max(1, int(view.ppm(pz) * 0.08)))
        top = view.ground_poly(np.array([[4.3, zn], [4.3, FAR]]))
        cv2.line(img, (top[0][0], int(top[0][1] - view.ppm(zn))), tuple(top[1]), (70, 70, 70), max(1, int(2 * view.scale)))
    else:  # estate
        cv2.fillPoly(img, [_ground_quad(view, -3.5, 3.5, zn - 5, FAR)], _jitter(rng, (150, 150, 155)))
        for bz in sorted(rng.uniform(zn + 15, 90, size=4), reverse=True):
            _block(img, view, rng, float(rng.choice([-1, 1]) * rng.uniform(12, 25)), float(bz), night)
    if spec.fire_lane:
        _fire_lane(img, view, spec)
    return img
