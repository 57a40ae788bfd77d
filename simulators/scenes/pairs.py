"""Before/after photo pairs for photo verification.

The "after" photo is the same scene re-taken: the camera slightly moved, rotated and
zoomed, the light and weather possibly different, distractors possibly added (a passer-by)
— and the problem either gone (``fixed``) or still there (``not_fixed``, sometimes a
little changed: a puddle shrunk, a bin emptied halfway). The label is the truth a
verifier must reproduce.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .clips import clearly_visible
from .render import render
from .spec import (
    LABELS,
    PROBLEM_KINDS,
    GroundTruthBox,
    SceneObject,
    SceneSpec,
    random_object,
    random_scene,
)

__all__ = ["PhotoPair", "make_pair", "retake", "write_pairs"]


@dataclass(frozen=True)
class PhotoPair:
    seed: int
    label: str  # "fixed" | "not_fixed"
    category: str  # the problem's detector label
    before: np.ndarray
    after: np.ndarray
    before_boxes: list[GroundTruthBox]
    after_boxes: list[GroundTruthBox]

    def to_json(self) -> dict:
        return {"seed": self.seed, "label": self.label, "category": self.category,
                "before_boxes": [b.to_json() for b in self.before_boxes],
                "after_boxes": [b.to_json() for b in self.after_boxes]}


def make_pair(seed: int, fixed: bool | None = None, *, size: tuple[int, int] = (960, 540), kind: str | None = None) -> PhotoPair:
    """One before/after pair; ``fixed`` None draws it from the seed (about half each)."""
    rng = np.random.default_rng([seed, 11])
    if fixed is None:
        fixed = bool(rng.random() < 0.5)
    kinds = tuple(k for k in PROBLEM_KINDS if k != "vehicle")
    kind = kind or str(rng.choice(kinds))
    base = random_scene(seed, problems=0, distractors=int(rng.integers(1, 4)))
    base = base.replace(light=str(rng.choice(["day", "overcast"])), weather="clear" if rng.random() < 0.7 else base.weather)
    for _ in range(30):  # a problem clearly visible in the before photo, not behind a distractor
        problem = random_object(rng, kind, base.camera)
        if clearly_visible(base.with_objects([*base.objects, problem])):
            break
    before = base.with_objects([*base.objects, problem])
    img_before, boxes_before = render(before, size)
    extra = list(base.objects)
    if rng.random() < 0.4:
        extra.append(random_object(rng, str(rng.choice(["person", "cone", "bench"])), base.camera))
    _, img_after, boxes_after = retake(before, problem, fixed, rng, others=extra, size=size)
    label = "fixed" if fixed else "not_fixed"
    return PhotoPair(seed, label, PROBLEM_KINDS[kind], img_before, img_after, boxes_before, boxes_after)


def retake(before: SceneSpec, problem: SceneObject, fixed: bool, rng: np.random.Generator, *,
           others: list[SceneObject] | None = None, size: tuple[int, int] = (960, 540),
           ) -> tuple[SceneSpec, np.ndarray, list[GroundTruthBox]]:
    """The "after" photo of ``before``: the same place re-taken (camera moved a little,
    other light, noise, compression) with ``problem`` gone (``fixed``) or still there,
    perhaps a little changed. ``others``: what else stands there (default: every object of
    ``before`` but the problem). Returns the after scene, its image and its boxes."""
    if others is None:
        others = [o for o in before.objects if o != problem]
    label = PROBLEM_KINDS.get(problem.kind)
    after, img_after, boxes_after = before, None, []
    for attempt in range(10):  # re-take until a problem that is still there is still in view
        # The last try keeps the camera, the problem's size and the moment of the before-photo:
        # a "still there" pair whose after-photo lost a borderline problem (shrunk below the
        # renderer's floor, a flame between flickers) would be labelled not fixed while
        # showing it gone.
        last = attempt == 9
        after_objects = list(others)
        if not fixed:
            after_objects.append(problem if last else
                                 dataclasses.replace(problem, size=problem.size * float(rng.uniform(0.8, 1.05))))
        after = before.replace(
            camera=before.camera if last else before.camera.moved(rng),
            brightness=before.brightness * float(rng.uniform(0.8, 1.2)),
            light=str(rng.choice(["day", "overcast", before.light])),
            objects=tuple(after_objects),
            noise=float(rng.uniform(0.5, 4.0)),
            jpeg_quality=int(rng.integers(60, 95)),
        )
        img_after, boxes_after = render(after, size, t=0.0 if last else float(rng.uniform(1, 20)))
        if fixed or any(b.label == label for b in boxes_after):
            break
    assert img_after is not None  # noqa: S101 - the loop runs at least once
    return after, img_after, boxes_after


def write_pairs(out: Path | str, count: int, *, seed: int = 0, size: tuple[int, int] = (960, 540)) -> Path:
    """Write ``count`` pairs as ``NNNN_before.jpg`` / ``NNNN_after.jpg`` and their labels
    as ``pairs.jsonl`` (one object per pair). Returns the labels file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        pair = make_pair(seed * 100_000 + i, size=size)
        stem = f"{i:04d}"
        cv2.imwrite(str(out / f"{stem}_before.jpg"), pair.before, [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(out / f"{stem}_after.jpg"), pair.after, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(json.dumps({"before": f"{stem}_before.jpg", "after": f"{stem}_after.jpg", **pair.to_json()}))
    labels = out / "pairs.jsonl"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return labels


assert set(PROBLEM_KINDS.values()) <= set(LABELS)  # noqa: S101 - module invariant
