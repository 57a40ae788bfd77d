"""Motion gate and snapshot crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.camera.config import MotionConfig
from edge_agent.camera.motion import MotionGate
from edge_agent.camera.snapshot import snapshot_jpeg


def frame(square_at: tuple[int, int] | None = None) -> np.ndarray:
    img = np.full((360, 640, 3), 90, np.uint8)
    if square_at:
        x, y = square_at
        cv2.rectangle(img, (x, y), (x + 60, y + 60), (250, 250, 250), -1)
    return img


def test_still_scene_has_no_motion_and_a_change_has():
    gate = MotionGate(MotionConfig())
    assert gate.measure(frame()) == 1.0  # first frame: nothing to compare with
    assert gate.measure(frame()) == 0.0
    ratio = gate.measure(frame((300, 150)))
    assert ratio > MotionConfig().min_ratio


def test_masked_area_never_counts():
    mask = [(0.4, 0.3), (0.65, 0.3), (0.65, 0.7), (0.4, 0.7)]
    gate = MotionGate(MotionConfig(), masks=[mask])
    gate.measure(frame())
    assert gate.measure(frame((300, 150))) == 0.0
    assert gate.measure(frame((20, 20))) > 0.0


def test_detector_runs_on_motion_while_tracking_and_every_idle_interval():
    gate = MotionGate(MotionConfig(idle_detect_s=10, min_ratio=0.01))
    assert gate.should_detect(0.0, 0.0, tracking=False)  # the very first frame
    assert not gate.should_detect(0.0, 1.0, tracking=False)
    assert gate.should_detect(0.5, 2.0, tracking=False)
    assert gate.should_detect(0.0, 3.0, tracking=True)
    assert not gate.should_detect(0.0, 12.9, tracking=False)
    assert gate.should_detect(0.0, 13.0, tracking=False)
    assert MotionGate(MotionConfig(enabled=False)).should_detect(0.0, 0.0, tracking=False)


def test_a_new_frame_size_resets_the_background():
    gate = MotionGate(MotionConfig())
    gate.measure(frame())
    assert gate.measure(np.zeros((100, 100, 3), np.uint8)) == 1.0


def test_snapshot_is_a_small_jpeg_with_the_box_drawn():
    img = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), np.uint8)
    data, (w, h) = snapshot_jpeg(img, (0.4, 0.4, 0.5, 0.6), max_side=320)
    assert data[:2] == b"\xff\xd8" and max(w, h) <= 320
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == (h, w)
    red = (decoded[..., 2] > 180) & (decoded[..., 1] < 80) & (decoded[..., 0] < 80)
    assert red.sum() > 50  # the red box is there


@pytest.mark.parametrize("limit", [20_000, 4_000])
def test_snapshot_is_reencoded_until_it_fits(limit):
    noise = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), np.uint8)
    data, size = snapshot_jpeg(noise, (0.0, 0.0, 1.0, 1.0), max_side=1920, limit=limit)
    assert len(data) <= limit and data[:2] == b"\xff\xd8"
    big, _ = snapshot_jpeg(noise, (0.0, 0.0, 1.0, 1.0), max_side=1920)
    assert len(big) > limit
