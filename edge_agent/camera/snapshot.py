"""The small JPEG attached to a camera event: a crop around the object with its box drawn,
re-encoded smaller until it fits the protocol's snapshot limit."""

from __future__ import annotations

import cv2
import numpy as np

from protocol.limits import MAX_SNAPSHOT_BYTES

__all__ = ["snapshot_jpeg"]


def snapshot_jpeg(
    frame: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    max_side: int = 320,
    limit: int = MAX_SNAPSHOT_BYTES,
    label: str = "",
) -> tuple[bytes, tuple[int, int]]:
    """JPEG bytes and (width, height) of a crop around ``box`` (fractions of ``frame``),
    with context around it and the box drawn. Never larger than ``limit`` bytes."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    bw, bh = x2 - x1, y2 - y1
    mx, my = max(bw * 0.5, w * 0.08), max(bh * 0.5, h * 0.08)
    cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
    cx2, cy2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
    crop = np.ascontiguousarray(frame[cy1:max(cy2, cy1 + 1), cx1:max(cx2, cx1 + 1)])
    scale = min(1.0, max_side / max(crop.shape[:2]))
    quality = 85
    while True:
        img = crop if scale >= 1.0 else cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        img = img.copy()
        s = img.shape[1] / crop.shape[1]
        p1 = (int((x1 - cx1) * s), int((y1 - cy1) * s))
        p2 = (int((x2 - cx1) * s), int((y2 - cy1) * s))
        thick = max(1, img.shape[1] // 160)
        cv2.rectangle(img, p1, p2, (0, 0, 255), thick)
        if label:
            cv2.putText(img, label, (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        data = enc.tobytes()
        if len(data) <= limit:
            return data, (img.shape[1], img.shape[0])
        if quality > 40:
            quality -= 15
        else:
            scale *= 0.7
            quality = 70
