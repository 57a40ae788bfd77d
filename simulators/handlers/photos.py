"""After-photos for resolved cases, rendered with the shared scene renderer
(:mod:`simulators.scenes.pairs`).

When the case came from a simulated camera whose scene is known (the demo's camera
simulator), the after-photo re-takes that very scene; otherwise a matching scene is
drawn: one showing the same kind of problem as the case's subcategory. Either way the
photo shows the problem gone (``fixed``) or still there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.labels import bundled_class_map

from ..scenes.pairs import make_pair, retake
from ..scenes.spec import SceneObject, SceneSpec

__all__ = ["MAX_PHOTO_BYTES", "SUBCATEGORY_KINDS", "KnownScene", "after_photo", "encode_jpeg"]

MAX_PHOTO_BYTES = 256 * 1024  # the handler API's limit
_KIND_OF_LABEL = {"water": "puddle", "flame": "flame", "smoke": "smoke", "fallen_tree": "fallen_tree",
                  "garbage": "garbage"}
# taxonomy subcategory -> the renderer's problem kind showing it
SUBCATEGORY_KINDS: dict[str, str] = {sub: _KIND_OF_LABEL[label]
                                     for label, sub in bundled_class_map().items()
                                     if sub is not None and label in _KIND_OF_LABEL}


@dataclass(frozen=True)
class KnownScene:
    """The scene a case's before-photo was taken of, and which object is the problem."""

    scene: SceneSpec
    problem: SceneObject


def encode_jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    """JPEG bytes within the API's size limit (quality lowered until it fits)."""
    while True:
        ok, enc = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        if enc.nbytes <= MAX_PHOTO_BYTES or quality <= 30:
            return enc.tobytes()
        quality -= 10


def after_photo(subcategory: str, fixed: bool, seed: int, *, known: KnownScene | None = None,
                size: tuple[int, int] = (960, 540)) -> bytes:
    """The after-photo of a case, as JPEG bytes."""
    if known is not None:
        rng = np.random.default_rng([seed, 23])
        _, image, _ = retake(known.scene, known.problem, fixed, rng, size=size)
    else:
        image = make_pair(seed, fixed, size=size, kind=SUBCATEGORY_KINDS.get(subcategory)).after
    return encode_jpeg(image)
