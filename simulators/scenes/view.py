"""Ground-plane projection for one frame size and camera pose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import CameraPose

__all__ = ["View"]


@dataclass(frozen=True)
class View:
    width: int
    height: int
    camera: CameraPose

    @property
    def f(self) -> float:
        return self.camera.focal * self.width

    @property
    def horizon_px(self) -> float:
        return self.camera.horizon * self.height

    @property
    def scale(self) -> float:
        """Pixels of this frame per pixel of a 640-wide frame (for blur, line widths)."""
        return self.width / 640.0

    def project(self, x: float | np.ndarray, z: float | np.ndarray) -> tuple:
        """Screen (u, v) of the ground point (x, z) in metres."""
        z = np.maximum(z, 0.1)
        u = self.width / 2 + self.f * (np.asarray(x) - self.camera.pan_m) / z
        v = self.horizon_px + self.f * self.camera.height_m / z
        return u, v

    def ppm(self, z: float) -> float:
        """Pixels per metre of an upright object standing at distance z."""
        return self.f / max(z, 0.1)

    def ground_poly(self, points_xz: np.ndarray) -> np.ndarray:
        """Project a polygon given in ground metres; int32 points for cv2.fillPoly."""
        u, v = self.project(points_xz[:, 0], points_xz[:, 1])
        return np.stack([u, v], axis=1).round().astype(np.int32)

    def z_at_row(self, v: float) -> float:
        dv = v - self.horizon_px
        return self.f * self.camera.height_m / dv if dv > 0 else float("inf")
