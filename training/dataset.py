"""Training and evaluation data for the bundled detector, rendered by the scene renderer.

Seeds decide everything, and the ranges never overlap: training renders seeds
``[TRAIN_SEED_BASE, TRAIN_SEED_BASE + n)`` offset by the training seed, evaluation renders
from ``HELD_OUT_SEED_BASE`` up. This is an offline tool: it imports ``simulators.scenes``
(the agent at run time never does).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

__all__ = [
    "HELD_OUT_SEED_BASE",
    "INPUT_SIZE",
    "TRAIN_SEED_BASE",
    "Sample",
    "render_samples",
    "train_seeds",
]

INPUT_SIZE = (256, 160)  # width, height of the v1/v2 models' input (the default size)
TRAIN_SEED_BASE = 0
HELD_OUT_SEED_BASE = 10_000_000  # evaluation seeds start here; training never reaches it
_RENDER_SIZES = ((384, 216), (384, 216), (352, 264), (384, 240), (448, 252))


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # BGR uint8, at the model's input size
    labels: np.ndarray  # (n,) int class ids
    boxes: np.ndarray  # (n, 4) float x1 y1 x2 y2 normalised


def train_seeds(count: int, seed: int) -> list[int]:
    """The scene seeds of a training run: disjoint from held-out seeds for any ``seed``."""
    start = TRAIN_SEED_BASE + (seed % 999) * 10_000
    if start + count >= HELD_OUT_SEED_BASE:
        raise ValueError("too many training images for the seed space")
    return list(range(start, start + count))


def _render_one(scene_seed: int, size: tuple[int, int] = INPUT_SIZE, water: str = "flat") -> Sample:
    from simulators.scenes import LABELS, random_scene, render

    rng = np.random.default_rng([scene_seed, 99])
    spec = random_scene(scene_seed, problems=int(rng.choice([0, 1, 1, 2, 2, 3, 4]))).replace(water=water)
    rendered = _RENDER_SIZES[int(rng.integers(0, len(_RENDER_SIZES)))]
    img, boxes = render(spec, rendered, t=float(rng.uniform(0, 30)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    labels = np.array([LABELS.index(b.label) for b in boxes], np.int64)
    arr = np.array([b.box for b in boxes], np.float32).reshape(-1, 4)
    return Sample(img, labels, arr)


def render_samples(seeds: list[int], workers: int = 2,
                   size: tuple[int, int] = INPUT_SIZE, water: str = "flat") -> list[Sample]:
    """Render the samples for ``seeds`` (in order; deterministic whatever ``workers``),
    each scene drawn at its own render size and resized to ``size`` (the model's input)."""
    one = partial(_render_one, size=tuple(size), water=water)
    if workers <= 1 or len(seeds) < 64:
        return [one(s) for s in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, seeds, chunksize=64))
