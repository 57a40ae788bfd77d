"""The motion gate: a cheap frame difference on a small gray frame decides whether the
detector runs. Masked areas (a tree in the wind, a clock, a road's traffic) never count."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .config import MotionConfig

__all__ = ["MotionGate"]


class MotionGate:
    def __init__(self, config: MotionConfig, masks: Sequence[Sequence[tuple[float, float]]] = ()) -> None:
        self.config = config
        self.masks = [list(m) for m in masks]
        self._background: np.ndarray | None = None
        self._valid: np.ndarray | None = None  # 1 where motion counts
        self.ratio = 0.0
        self.last_detect: float | None = None

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        sw = self.config.width
        sh = max(1, round(h * sw / w))
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (3, 3), 0)

    def _mask_for(self, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        valid = np.ones((h, w), np.uint8)
        for poly in self.masks:
            pts = np.array([[x * w, y * h] for x, y in poly], np.float64).round().astype(np.int32)
            cv2.fillPoly(valid, [pts], 0)
        return valid

    def measure(self, frame: np.ndarray) -> float:
        """Fraction of unmasked pixels that changed against the background (1.0 for the
        first frame, or after the frame size changed); updates the background."""
        small = self._small(frame)
        if self._background is None or self._background.shape != small.shape:
            self._background = small.astype(np.float32)
            self._valid = self._mask_for(small.shape)
            self.ratio = 1.0
            return self.ratio
        diff = cv2.absdiff(small, cv2.convertScaleAbs(self._background))
        changed = (diff >= self.config.threshold).astype(np.uint8) & self._valid
        total = int(self._valid.sum())
        self.ratio = float(changed.sum()) / total if total else 0.0
        cv2.accumulateWeighted(small.astype(np.float32), self._background, self.config.background_rate)
        return self.ratio

    def should_detect(self, ratio: float, t: float, *, tracking: bool) -> bool:
        """Run the detector on motion, while objects are tracked, or every
        ``idle_detect_s`` regardless (problems that appear slowly do not move)."""
        cfg = self.config
        run = (not cfg.enabled or ratio >= cfg.min_ratio or tracking
               or self.last_detect is None or t - self.last_detect >= cfg.idle_detect_s)
        if run:
            self.last_detect = t
        return run
