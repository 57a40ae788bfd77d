"""Pure decoders: CenterNet maps, SSD outputs, raw YOLO rows, NMS."""

from __future__ import annotations

import numpy as np
import pytest

from vision.postprocess import decode_centernet, decode_ssd, decode_yolo, iou, nms


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert list(nms(boxes, scores, 0.5)) == [1, 2]
    assert list(nms(boxes, scores, 0.99)) == [1, 0, 2]
    assert list(nms(boxes, scores, 0.5, max_out=1)) == [1]


def test_iou():
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 2, 1), (1, 0, 3, 1)) == pytest.approx(1 / 3)


def test_centernet_peak_becomes_a_box():
    out = np.zeros((20, 32, 2 + 4), np.float32)
    out[5, 10, 1] = 0.9  # class 1 peak at cell (x=10, y=5)
    out[5, 11, 1] = 0.7  # a neighbour, not a peak
    out[5, 10, 2:] = (0.25, 0.5, 0.5, 0.5)  # w, h, dx, dy
    found = decode_centernet(out, 2, 0.3)
    assert len(found) == 1
    d = found[0]
    assert d.class_id == 1 and d.score == pytest.approx(0.9)
    cx, cy = 10.5 / 32, 5.5 / 20
    assert d.box == pytest.approx((cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25))
    assert decode_centernet(out, 2, 0.95) == []
    with pytest.raises(ValueError, match="expected 3 classes"):
        decode_centernet(out, 3)


def test_ssd_skips_low_scores_unknown_classes_and_beyond_count():
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.6, 0.6]])
    found = decode_ssd(boxes, np.array([0, 7, 1]), np.array([0.8, 0.9, 0.95]), np.array([2]), 0.5, num_classes=3)
    assert [(d.class_id, d.box) for d in found] == [(0, pytest.approx((0.2, 0.1, 0.4, 0.3)))]


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("objectness", [False, True])
def test_yolo_rows_in_pixels_or_fractions(transpose, objectness):
    rows = [[50, 50, 20, 40], [52, 51, 20, 40], [10, 10, 4, 4]]
    cls = [[0.1, 0.8], [0.1, 0.7], [0.9, 0.0]]
    data = [r + ([1.0] if objectness else []) + c for r, c in zip(rows, cls, strict=True)]
    arr = np.array(data, np.float32)
    if transpose:
        arr = arr.T
    found = decode_yolo(arr[None], 2, (100, 100), 0.5, 0.5)
    assert [(d.class_id, round(d.score, 2)) for d in found] == [(0, 0.9), (1, 0.8)]
    dog = next(d for d in found if d.class_id == 1)
    assert dog.box == pytest.approx((0.4, 0.3, 0.6, 0.7))


def test_yolo_rejects_rows_of_the_wrong_width():
    with pytest.raises(ValueError, match="expected 2 classes"):
        decode_yolo(np.zeros((1, 10, 9)), 2, (64, 64))
