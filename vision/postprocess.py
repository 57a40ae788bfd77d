"""Pure decoding of detector outputs into :class:`Detection` lists (numpy only).

Three layouts:

* ``centernet`` — the bundled model: one ``(H, W, C + 4)`` map of per-class centre
  heatmaps, box width/height (fractions of the image) and sub-cell offsets;
* ``ssd`` — TFLite's post-processed detection output: boxes ``(N, 4)`` as
  ``ymin, xmin, ymax, xmax``, classes ``(N,)``, scores ``(N,)`` and a count;
* ``yolo`` — raw YOLO output ``(N, 4 + C)`` (v8 style) or ``(N, 5 + C)`` (v5 style, with
  objectness), either orientation, boxes as ``cx, cy, w, h`` in pixels or fractions;
  followed by class-aware non-maximum suppression.

Boxes come out as ``x1, y1, x2, y2`` fractions of the model input, which (the input being a
plain resize of the frame) are fractions of the frame too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Detection",
    "covered",
    "decode_centernet",
    "decode_ssd",
    "decode_yolo",
    "iou",
    "nms",
]


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in 0..1
    label: str = ""


def iou(a: tuple[float, float, float, float] | np.ndarray, b: tuple[float, float, float, float] | np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def covered(a: tuple[float, float, float, float] | np.ndarray, b: tuple[float, float, float, float] | np.ndarray) -> float:
    """The share of box ``a``'s area that lies inside box ``b`` (0 for an empty ``a``)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return float(ix * iy / area) if area > 0 else 0.0


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int = 100) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_out:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        ious = inter / np.maximum(1e-9, areas[i] + areas[rest] - inter)
        order = rest[ious <= iou_threshold]
    return np.array(keep, np.int64)


def _batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_out: int) -> np.ndarray:
    # Shift each class's boxes apart so boxes of different classes never suppress each other.
    shifted = boxes + (classes.astype(np.float32) * 4.0)[:, None]
    return nms(shifted, scores, iou_threshold, max_out)


def _clip(box: np.ndarray) -> tuple[float, float, float, float]:
    b = np.clip(box, 0.0, 1.0)
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _valid(box: tuple[float, float, float, float]) -> bool:
    return box[2] - box[0] > 1e-3 and box[3] - box[1] > 1e-3


def decode_centernet(
    output: np.ndarray,
    num_classes: int,
    score_threshold: float = 0.3,
    max_detections: int = 50,
) -> list[Detection]:
    """Decode an ``(H, W, C + 4)`` CenterNet map: 3×3 peaks of each class heatmap above
    the threshold become boxes sized by the (w, h) and offset channels at that cell."""
    out = np.asarray(output, np.float32)
    if out.ndim == 4:
        out = out[0]
    gh, gw, depth = out.shape
    if depth != num_classes + 4:
        raise ValueError(f"CenterNet output has {depth} channels; expected {num_classes} classes + 4")
    heat = out[..., :num_classes]
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    peak = heat.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            peak = np.where(padded[dy : dy + gh, dx : dx + gw] > heat, -1.0, peak)
    ys, xs, cs = np.nonzero(peak >= score_threshold)
    if len(ys) == 0:
        return []
    scores = heat[ys, xs, cs]
    order = np.argsort(-scores, kind="stable")[: max_detections * 2]
    found: list[Detection] = []
    boxes, kept_scores, kept_classes = [], [], []
    for k in order:
        y, x, c = ys[k], xs[k], cs[k]
        w, h, ox, oy = out[y, x, num_classes:]
        cx, cy = (x + ox) / gw, (y + oy) / gh
        box = _clip(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
        if _valid(box):
            boxes.append(box)
            kept_scores.append(float(scores[k]))
            kept_classes.append(int(c))
    if not boxes:
        return []
    # Neighbouring peaks of one big object (a flood) can both survive the 3x3 test.
    keep = _batched_nms(np.array(boxes, np.float32), np.array(kept_scores, np.float32),
                        np.array(kept_classes), 0.6, max_detections)
    for i in keep:
        found.append(Detection(kept_classes[i], kept_scores[i], boxes[i]))
    return found


def decode_ssd(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray | int,
    score_threshold: float = 0.3,
    num_classes: int | None = None,
) -> list[Detection]:
    """Decode TFLite_Detection_PostProcess outputs (already suppressed by the model)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    c = np.asarray(classes, np.float32).reshape(-1)
    s = np.asarray(scores, np.float32).reshape(-1)
    n = int(np.asarray(count).reshape(-1)[0]) if np.size(count) else len(s)
    n = max(0, min(n, len(s), len(b), len(c)))
    found = []
    for i in range(n):
        if s[i] < score_threshold:
            continue
        cls = int(round(float(c[i])))
        if cls < 0 or (num_classes is not None and cls >= num_classes):
            continue
        ymin, xmin, ymax, xmax = b[i]
        box = _clip(np.array([xmin, ymin, xmax, ymax]))
        if _valid(box):
            found.append(Detection(cls, float(s[i]), box))
    found.sort(key=lambda d: -d.score)
    return found


def yolo_rows(output: np.ndarray, num_classes: int) -> tuple[np.ndarray, bool]:
    """Rows of a raw YOLO output as ``(N, K)`` and whether it has objectness (v5 style)."""
    out = np.asarray(output, np.float32)
    if out.ndim == 3:
        out = out[0]
    if out.ndim != 2:
        raise ValueError(f"YOLO output must be 2-D per image, got shape {output.shape}")
    widths = (num_classes + 4, num_classes + 5)
    if out.shape[1] not in widths and out.shape[0] in widths:
        out = out.T
    if out.shape[1] == num_classes + 4:
        return out, False
    if out.shape[1] == num_classes + 5:
        return out, True
    raise ValueError(f"YOLO output rows have {out.shape[1]} values; expected {num_classes} classes + 4 or + 5")


def decode_yolo(
    output: np.ndarray,
    num_classes: int,
    input_size: tuple[int, int],
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    max_detections: int = 50,
) -> list[Detection]:
    """Decode raw YOLO rows (``cx, cy, w, h, [objectness], class scores...``) with NMS.
    ``input_size`` is the model's (width, height), for outputs in pixels."""
    rows, has_obj = yolo_rows(output, num_classes)
    cls_scores = rows[:, 5:] if has_obj else rows[:, 4:]
    class_ids = np.argmax(cls_scores, axis=1)
    scores = cls_scores[np.arange(len(rows)), class_ids]
    if has_obj:
        scores = scores * rows[:, 4]
    sel = scores >= score_threshold
    if not sel.any():
        return []
    xywh = rows[sel, :4].copy()
    if float(np.abs(xywh).max()) > 2.0:  # pixels of the input, not fractions
        xywh[:, [0, 2]] /= float(input_size[0])
        xywh[:, [1, 3]] /= float(input_size[1])
    boxes = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2,
                      xywh[:, 0] + xywh[:, 2] / 2, xywh[:, 1] + xywh[:, 3] / 2], axis=1)
    scores, class_ids = scores[sel], class_ids[sel]
    keep = _batched_nms(boxes, scores, class_ids, iou_threshold, max_detections)
    found = []
    for i in keep:
        box = _clip(boxes[i])
        if _valid(box):
            found.append(Detection(int(class_ids[i]), float(scores[i]), box))
    return found
