"""The v4 training path (training/realtrain.py): what a real photo teaches and what it must
not, views that keep their boxes, thresholds chosen from held-out photos, and the whole
path in its reduced mode on a folder in the real-photo manifest format (made here from
renders, so the suite never needs ../shared/realworld)."""

from __future__ import annotations

import numpy as np
import pytest

from training.real import RealImage
from training.realtrain import (
    RealSample,
    augment,
    choose_thresholds,
    class_weights,
    flooded,
    train_v4,
    weighted_loss,
)
from vision.labels import read_labels
from vision.models import read_thresholds
from vision.runtime import Detector

LABELS = ["water", "flame", "smoke", "fallen_tree", "garbage", "vehicle"]


def entry(classes=(), annotated=(), boxes=(), source="atanu", group="g") -> RealImage:
    return RealImage("x.jpg", source, tuple(classes), tuple(boxes), tuple(annotated), "train", group)


def test_a_photo_teaches_only_what_its_labels_say():
    # boxes for garbage are exhaustive: every other problem class is known absent, but
    # vehicles are in many photos and annotated in none, so they are never a negative
    w = class_weights(entry(["garbage"], ["garbage"]), LABELS)
    assert dict(zip(LABELS, w.tolist(), strict=True)) == {"water": 1, "flame": 1, "smoke": 1, "fallen_tree": 1,
                                             "garbage": 1, "vehicle": 0}
    # smoke shown without exhaustive boxes: no loss either way for smoke on this photo
    w = class_weights(entry(["flame", "smoke"], ["flame"]), LABELS)
    assert w[LABELS.index("smoke")] == 0 and w[LABELS.index("flame")] == 1 and w[LABELS.index("water")] == 1


def test_an_ignored_class_adds_no_loss_and_a_known_absent_one_does():
    tf = pytest.importorskip("tensorflow")
    c = len(LABELS)
    loss = weighted_loss(c)
    pred = np.full((1, 4, 4, c + 4), 0.01, np.float32)
    pred[..., LABELS.index("smoke")] = 0.9  # the model sees smoke everywhere
    target = np.zeros((1, 4, 4, c + 5 + c), np.float32)
    target[..., c + 5:] = 1.0
    known = float(loss(tf.constant(target), tf.constant(pred)))
    target[..., c + 5 + LABELS.index("smoke")] = 0.0
    ignored = float(loss(tf.constant(target), tf.constant(pred)))
    assert known > 10 * ignored and ignored < 0.05


def test_a_mirrored_cropped_view_keeps_its_boxes_on_the_object():
    img = np.zeros((300, 400, 3), np.uint8)
    img[60:150, 40:160] = (0, 0, 255)  # a red block: the object
    box = np.array([[40 / 400, 60 / 300, 160 / 400, 150 / 300]], np.float32)
    for seed in range(30):
        s = augment(img, np.array([1]), box, (320, 192), np.random.default_rng(seed))
        assert s.image.shape == (192, 320, 3)
        for b in s.boxes:
            assert 0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1
            x0, y0, x1, y1 = (b * [320, 192, 320, 192]).astype(int)
            inside = s.image[y0:y1, x0:x1].astype(int)
            # the box still frames the red block (colour jitter and grey frames aside)
            assert inside[..., 2].mean() > inside[..., 1].mean() or np.ptp(inside.mean(axis=(0, 1))) < 8


def test_thresholds_keep_known_negatives_quiet_and_report_recall():
    rng = np.random.default_rng(0)
    samples, scores = [], []
    for i in range(200):
        has = i < 50
        samples.append(RealSample(np.zeros((4, 4, 3), np.uint8), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                                  class_weights(entry(["garbage"] if has else [], ["garbage"] if has else []), LABELS),
                                  entry(["garbage"] if has else [])))
        row = np.zeros(len(LABELS), np.float32)
        row[LABELS.index("garbage")] = rng.uniform(0.6, 1.0) if has else rng.uniform(0.0, 0.7)
        scores.append(row)
    chosen = choose_thresholds(np.array(scores), samples, LABELS, default={"water": 0.35})
    g = chosen["garbage"]
    assert g["negatives_firing"] <= 0.03 and g["recall"] > 0.3 and g["positives"] == 50 and g["negatives"] == 150
    assert chosen["water"]["threshold"] == 0.35 and "default" in chosen["water"]["chosen_by"]
    assert "vehicle" not in chosen  # never known absent on real photos, and no default given


def test_a_flooded_photo_gains_a_water_box_and_loses_what_the_water_covers():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 255, (240, 320, 3), np.uint8)
    img[:60] = (200, 160, 120)  # sky and buildings to mirror
    boxes = np.array([[0.1, 0.02, 0.3, 0.2],  # high up: stays dry
                      [0.0, 0.9, 1.0, 1.0]], np.float32)  # along the bottom edge: under water
    src = RealSample(img, np.array([4, 1]), boxes, np.ones(len(LABELS), np.float32), entry(["garbage", "flame"]))
    for seed in range(5):
        out, labels, got = flooded(src, LABELS.index("water"), np.random.default_rng(seed))
        assert out.shape == img.shape and not np.array_equal(out, img)
        assert list(labels) == [4, 0]  # the garbage kept, the flame drowned, the water added
        x0, y0, x1, y1 = got[-1]
        assert y1 == 1.0 and 0.25 <= y0 <= 0.85 and x1 - x0 >= 0.3
        # below the waterline the photo changed, the dry box did not
        assert np.abs(out[int(y0 * 240) + 20:].astype(int) - img[int(y0 * 240) + 20:]).mean() > 10
        np.testing.assert_array_equal(out[5:48, 32:96], img[5:48, 32:96])


def test_reduced_v4_training_writes_a_model_the_runtime_loads_with_its_thresholds(photo_folder, tmp_path):
    summary = train_v4(tmp_path, photo_folder, quick=True, calibration=0.3)
    assert set(summary["training_sources"]) == {"atanu"}  # the unlicensed source stayed out
    assert "CC BY 4.0" in summary["training_sources"]["atanu"]["licence"]
    labels = read_labels(tmp_path / "labels.txt")
    assert labels == LABELS
    det = Detector(tmp_path / "cityops_detector_int8.tflite", labels, score_threshold=0.01)
    assert det.info.layout == "centernet" and det.info.input_dtype == "int8" and det.info.input_size == (320, 192)
    assert isinstance(det.detect(np.zeros((720, 1280, 3), np.uint8)), list)
    shipped = read_thresholds(tmp_path / "cityops_detector_int8.tflite")
    assert shipped is not None and set(shipped) >= {"water", "fallen_tree"}
    assert all(0.3 <= v <= 1.0 for v in shipped.values())
