"""Road waterlogging painted onto real licensed photos: the water teacher of the v4 recipe.

No source with a licence holds street floods (issue 18), and water painted into our own
renders does not teach the model what real flood photos look like (the first v4 candidate
scored 0 on every one). What a street flood *is* in a photo is mostly the photo itself:
an opaque muddy sheet over the ground that mirrors the buildings, sky and people above
its waterline, rippled and darkened, turning to a mirror towards the horizon. So the real
photos we may train on (a street with bins, a burnt room, a kerb) get a flood laid over
their lower part, with *their own* content mirrored in it; the untouched photo stays in
the set as its negative. The box is the water's outline.

Everything here is plain NumPy/OpenCV on one image and a seeded generator, so a composite
is reproducible from (photo, seed).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["flood_photo"]

# Flood body colours (BGR): muddy browns, grey-greens, silty greys, dark rain water.
_MUD = np.array([
    (62, 96, 128), (52, 82, 108), (72, 108, 136), (80, 100, 112), (78, 102, 92),
    (66, 92, 84), (62, 66, 70), (90, 112, 122), (48, 56, 60), (96, 118, 140),
], np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise in about -1..1 of ``shape`` (rows, cols)."""
    coarse = rng.uniform(-1, 1, (max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _waterline(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """Per column, the row where the water starts (inf where it does not reach), and the
    water's left and right ends. Waterlines are nearly level (the surface is flat) with a
    ragged shore, sometimes bounded left or right by a kerb or wall."""
    top = rng.uniform(0.3, 0.8) * h
    tilt = rng.uniform(-0.08, 0.08) * h
    x = np.arange(w, dtype=np.float32)
    line = top + tilt * (x / w - 0.5)
    line += _noise(rng, (1, w), (2, int(rng.integers(4, 14))))[0] * rng.uniform(0.01, 0.05) * h
    left, right = 0, w
    if rng.random() < 0.4:
        left = int(rng.uniform(0.0, 0.35) * w)
    if rng.random() < 0.4:
        right = int(w - rng.uniform(0.0, 0.35) * w)
    # the shore curves up towards the ends of a bounded sheet (the far edge looks higher)
    span = max(1, right - left)
    u = np.clip((x - left) / span, 0, 1)
    line += rng.uniform(0.0, 0.06) * h * (4 * (u - 0.5) ** 2)
    line[:left] = np.inf
    line[right:] = np.inf
    return line, left, right


def flood_photo(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """``img`` (BGR uint8) with a street flood over its lower part. Returns the new image,
    the water's box (normalised x0 y0 x1 y1) and the water's coverage mask (float 0..1)."""
    h, w = img.shape[:2]
    line, left, right = _waterline(rng, w, h)
    rows = np.arange(h, dtype=np.float32)[:, None]
    inside = (rows >= line[None, :]).astype(np.float32)
    soft = max(1, int(0.006 * h)) * 2 + 1
    cover = cv2.GaussianBlur(inside, (soft, soft), 0)
    # Depth grows away from the shore: shallow edges let the ground show through.
    dist = np.clip((rows - line[None, :]) / max(1.0, 0.08 * h), 0, 1)
    depth = np.where(np.isfinite(dist), dist, 0).astype(np.float32)

    base = img.astype(np.float32)
    mud = _MUD[int(rng.integers(0, len(_MUD)))] + rng.normal(0, 10, 3).astype(np.float32)
    swirl = _noise(rng, (h, w), (int(rng.integers(3, 8)), int(rng.integers(4, 12))))
    body_a = (rng.uniform(0.75, 1.0) * np.clip(0.35 + depth, 0, 1))[..., None]
    body = base * 0.6 * (1 - body_a) + mud * (1 + 0.12 * swirl[..., None]) * body_a

    # The mirror: row r below the waterline shows row 2*line - r above it, rippled.
    cols = np.arange(w, dtype=np.float32)[None, :]
    finite_line = np.where(np.isfinite(line), line, h).astype(np.float32)[None, :]
    rough = rng.uniform(0.002, 0.012) * h
    n1 = _noise(rng, (h, w), (max(2, h // 24), max(2, w // 60)))
    n2 = _noise(rng, (h, w), (max(2, h // 12), max(2, w // 30)))
    dx = rough * np.sin(6.0 * n1)
    dy = 2.0 * rough * np.sin(6.0 * n2)
    map_y = np.clip(2 * finite_line - rows + dy, 0, h - 1).astype(np.float32)
    map_x = np.clip(cols + dx, 0, w - 1).astype(np.float32)
    refl = cv2.remap(img, map_x, np.broadcast_to(map_y, (h, w)).copy(), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    refl = cv2.blur(refl, (1, max(1, int(rng.uniform(0.002, 0.012) * h)) * 2 + 1))
    # Fresnel-like: a mirror near the waterline (grazing view), its body nearer the camera.
    near = np.clip((rows - finite_line) / max(1.0, h - finite_line.min()), 0, 1)
    r_min = rng.uniform(0.15, 0.45)
    fres = r_min + (1 - r_min) * (1 - near) ** rng.uniform(1.5, 3.0)
    tint = rng.uniform(0.55, 0.9) * (0.75 + 0.25 * mud / max(1.0, float(mud.mean())))
    a = fres[..., None]
    water = body * (1 - a) + refl * tint * a
    # Sheen: broad, horizontally stretched bands of brighter and darker surface, and a few
    # short specular dashes where wind ruffles it.
    sheen = _noise(rng, (h, w), (max(2, h // 40), max(2, w // 200)))
    water *= (1 + rng.uniform(0.04, 0.12) * sheen)[..., None]
    dashes = _noise(rng, (h, w), (max(2, h // 3), max(2, w // 16)))
    glint = cv2.blur(np.clip((dashes - 0.9) * 10, 0, 1), (max(1, w // 60) * 2 + 1, 1)) * fres * rng.uniform(0, 0.5)
    water += glint[..., None] * (230.0 - water)
    c = cover[..., None]
    out = np.clip(base * (1 - c) + water * c, 0, 255).astype(np.uint8)

    ys = np.where(inside.any(axis=1))[0]
    y0 = float(ys[0]) / h if len(ys) else 1.0
    box = (left / w, y0, right / w, 1.0)
    return out, box, cover
