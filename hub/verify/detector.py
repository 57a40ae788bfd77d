"""Re-running a camera detector on the problem's region (by default the camera model v2,
pinned in ``hub/verify/models``; the shared runtime's :class:`vision.runtime.Detector`,
loaded once, used from one thread at a time).

:meth:`RegionDetector.scores` crops the region with context at the model's aspect ratio
(the detector was trained on whole street scenes, so the crops keep plenty of scene
around the problem), at three scales, and returns the best score per class among
detections that overlap the region in any of them: one flaky view cannot make a problem
"gone".
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vision.labels import read_labels
from vision.postprocess import covered
from vision.runtime import Detector

__all__ = ["BUNDLED_LABELS", "BUNDLED_MODEL", "RegionDetector"]

# The camera detector v2, pinned: the verifier's thresholds were tuned on its scores (see
# hub/verify/models/__init__.py). The camera agent's own bundled model moves on separately.
_MODELS = Path(__file__).resolve().parent / "models"
BUNDLED_MODEL = _MODELS / "photo_detector_int8.tflite"
BUNDLED_LABELS = _MODELS / "labels.txt"


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over the smaller box's area."""
    return max(covered(a, b), covered(b, a))


class RegionDetector:
    def __init__(self, model: Path | str = BUNDLED_MODEL, labels: Path | str = BUNDLED_LABELS,
                 *, contexts: tuple[float, ...] = (2.0, 3.0, 4.5), min_overlap: float = 0.3,
                 ignore: tuple[str, ...] = ("vehicle",)) -> None:
        self.detector = Detector(model, read_labels(labels), score_threshold=0.05, max_detections=50)
        self.contexts = contexts
        self.min_overlap = min_overlap
        self.ignore = set(ignore)
        self._lock = threading.Lock()

    def _window(self, shape: tuple[int, ...], box: tuple[int, int, int, int],
                context: float) -> tuple[int, int, int, int]:
        h, w = shape[:2]
        mw, mh = self.detector.info.input_size
        aspect = mw / mh
        bw, bh = box[2] - box[0], box[3] - box[1]
        cw = max(bw * context, bh * context * aspect, w * 0.3)
        ch = cw / aspect
        if ch > h:
            ch, cw = h, min(w, h * aspect)
        cw = min(cw, w)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0 = int(np.clip(cx - cw / 2, 0, w - cw))
        y0 = int(np.clip(cy - ch / 2, 0, h - ch))
        return x0, y0, int(x0 + cw), int(y0 + ch)

    def scores(self, image: np.ndarray, box: tuple[int, int, int, int],
               grow: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
        """Best score per label among detections overlapping ``box`` (pixels x0, y0, x1, y1)
        grown by ``grow`` pixels (x, y) on each side (the after-photo is searched wider: a
        problem that moved with the camera's parallax is still there)."""
        out: dict[str, float] = {}
        gx, gy = grow
        for context in self.contexts:  # several views: the best score of each class counts
            x0, y0, x1, y1 = self._window(image.shape, box, context)
            cw, ch = max(1, x1 - x0), max(1, y1 - y0)
            rel = ((box[0] - gx - x0) / cw, (box[1] - gy - y0) / ch,
                   (box[2] + gx - x0) / cw, (box[3] + gy - y0) / ch)
            with self._lock:
                found = self.detector.detect(image[y0:y1, x0:x1])
            for d in found:
                if d.label in self.ignore or _overlap(tuple(d.box), rel) < self.min_overlap:
                    continue
                out[d.label] = max(out.get(d.label, 0.0), float(d.score))
        return out
