"""Pairs made from real photos for ``benchmarks/photo_verify.py --real`` (benchmarks/_realpairs.py):
the camera-like re-take on synthetic images, the region and pair planning on hand-made
manifest entries, the verifier on a re-taken rendered scene, and the whole real mode on one
photo per class only where ``../shared/realworld`` exists (never needed to pass)."""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest

from benchmarks import _realpairs as rp
from hub.cases.closure import Outcome
from hub.verify.photo import PhotoVerifier
from simulators.scenes import make_pair
from training.real import DEFAULT_REAL_DIR, RealImage


def scene(h: int = 360, w: int = 640) -> np.ndarray:
    """A textured frame."""
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.integers(0, 200, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    return img


def square_centre(img: np.ndarray, threshold: float) -> tuple[float, float]:
    ys, xs = np.nonzero(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > threshold)
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize("seed", range(6))
def test_a_retake_keeps_the_size_and_moves_the_scene_by_a_few_percent(seed):
    img = scene()
    r = rp.draw_retake(random.Random(seed))
    assert 30 <= r.quality <= 90 and 0.75 <= r.gain <= 1.25 and abs(r.dx) <= 0.04 and abs(r.dy) <= 0.04
    after = cv2.imdecode(np.frombuffer(rp.retake_jpeg(img, r, seed), np.uint8), cv2.IMREAD_COLOR)
    assert after.shape == img.shape and after.dtype == np.uint8
    # exposure and noise change the square's level, not where it is
    plain = np.zeros_like(img)
    plain[150:210, 300:380] = 255
    moved = rp.retake(plain, r, seed)
    cx, cy = square_centre(moved, threshold=float(moved.min()) / 2 + float(moved.max()) / 2)
    ex, ey = rp.retake_matrix(r, 640, 360) @ np.array([339.5, 179.5, 1.0])
    assert abs(cx - ex) < 3 and abs(cy - ey) < 3  # the square went where the re-take says
    assert abs(cx - 339.5) <= 0.08 * 640 and abs(cy - 179.5) <= 0.08 * 360  # ... a few percent away
    moved = rp.retake(img, r, seed)
    assert not np.array_equal(moved, img)


def test_retakes_are_the_same_for_a_seed_and_differ_between_seeds():
    img = scene()
    a, b = rp.draw_retake(random.Random(3)), rp.draw_retake(random.Random(3))
    assert a == b and rp.retake_jpeg(img, a, 11) == rp.retake_jpeg(img, b, 11)
    assert rp.retake_jpeg(img, a, 11) != rp.retake_jpeg(img, a, 12)  # the noise follows the seed
    assert rp.draw_retake(random.Random(4)) != a


def entry(file: str, source: str, classes: tuple[str, ...], boxes=(), group: str | None = None) -> RealImage:
    return RealImage(file, source, classes, tuple(boxes), classes, "val", group or file)


def test_the_region_is_the_largest_box_of_the_first_problem_class_or_the_road_for_water():
    fire = entry("f.jpg", "a", ("flame", "smoke"), [("smoke", (0, 0, 1, 1)), ("flame", (0.1, 0.1, 0.2, 0.2)),
                                                    ("flame", (0.5, 0.5, 0.9, 0.8))])
    assert rp.problem_region(fire) == ("flame", (0.5, 0.5, 0.9, 0.8), "largest box")
    flood = entry("w.jpg", "b", ("water",))
    assert rp.problem_region(flood) == ("water", rp.WATER_REGION, "lower middle (no boxes)")
    assert rp.problem_region(entry("n.jpg", "a", ())) is None  # a negative: no case
    assert rp.problem_region(entry("p.jpg", "c", ("person",))) is None
    assert rp.problem_region(entry("g.jpg", "a", ("garbage",))) is None  # no box, no region an agent sends


def test_pairs_never_take_the_after_photo_from_the_before_photos_group():
    images = [entry(f"a{i}.jpg", "a", ("flame",), [("flame", (0.2, 0.2, 0.6, 0.6))], group=f"a{i // 2}")
              for i in range(6)]
    images += [entry(f"na{i}.jpg", "a", ()) for i in range(3)] + [entry(f"nb{i}.jpg", "b", ()) for i in range(3)]
    images += [entry(f"w{i}.jpg", "b", ("water",)) for i in range(3)]
    pairs = rp.plan_pairs(images, 5, unrelated=2)
    assert pairs == rp.plan_pairs(images, 5, unrelated=2)  # seeded
    still = [p for p in pairs if p.kind == "still_there"]
    assert [p.before for p in still] == [im.file for im in images if im.classes]
    assert all(p.after == p.before and p.retake is not None for p in still)
    group = {im.file: im.group for im in images}
    source = {im.file: im.source for im in images}
    unrelated = [p for p in pairs if p.kind == "unrelated"]
    assert len(unrelated) == 2 * len(still)
    for p in unrelated:
        assert group[p.after] != group[p.before]
        assert (source[p.after] == source[p.before]) == p.same_source_unrelated
    assert {p.after_kind for p in unrelated} >= {"negative, other source", "negative, same source",
                                                 "flame, other source", "water, other source"}


@pytest.mark.parametrize("seed", [1002, 1010])  # a garbage bin and a puddle still there (tuning seeds)
def test_the_verifier_never_closes_a_camera_like_retake_of_the_same_photo(seed):
    verifier = PhotoVerifier()
    p = make_pair(seed)
    box = next(b.box for b in p.before_boxes if b.label == p.category)
    before = cv2.imencode(".jpg", p.before, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    rng = random.Random(seed)
    for k in range(3):
        v = verifier.verify(before, rp.retake_jpeg(p.before, rp.draw_retake(rng), seed + k), box)
        assert v.outcome is not Outcome.FIXED, v.detail


@pytest.mark.skipif(not (DEFAULT_REAL_DIR / "manifest.json").is_file(), reason="no ../shared/realworld here")
def test_the_real_mode_runs_on_one_photo_per_class(tmp_path, capsys):
    from benchmarks.photo_verify import main

    out = tmp_path / "real.json"
    assert main(["--real", str(DEFAULT_REAL_DIR), "--split", "val", "--limit", "1",
                 "--unrelated-per-photo", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["mode"] == "real" and r["photos"] == 4 and r["unreadable"] == []
    (m,) = r["models"]
    assert set(m["by_class"]) == {"water", "flame", "smoke", "garbage"}
    assert m["still_there"]["pairs"] == 4 and m["unrelated"]["pairs"] == 4
    assert m["wrong_closures"] == 0, m["wrong_closure_pairs"]
    assert "still there, all" in capsys.readouterr().out


SINGULAR = np.array([[1.0, 2.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("which", ["local", "global"])
def test_a_singular_homography_is_no_alignment_not_a_crash(monkeypatch, which):
    """Two unrelated real photos (a fire frame against a smoke frame of the same CCTV source)
    once made RANSAC return a singular matrix, and inverting it raised out of verify().
    Here OpenCV's fit is made singular on purpose: the whole-view fit (the first call) or
    the one near the region (the second)."""
    real = cv2.findHomography
    calls = []

    def fit(*args, **kwargs):
        matrix, inliers = real(*args, **kwargs)
        calls.append(which)
        if (len(calls) == 1) == (which == "global") and matrix is not None:
            return SINGULAR.copy(), np.ones_like(inliers)
        return matrix, inliers

    monkeypatch.setattr(cv2, "findHomography", fit)
    p = make_pair(1002)
    box = next(b.box for b in p.before_boxes if b.label == p.category)
    before = cv2.imencode(".jpg", p.before, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    after = rp.retake_jpeg(p.before, rp.draw_retake(random.Random(1)), 1)
    v = PhotoVerifier().verify(before, after, box)
    assert len(calls) >= (2 if which == "local" else 1)
    if which == "global":
        assert v.outcome is Outcome.UNCERTAIN and "cannot be aligned" in v.detail, v.detail
    else:  # the whole-view fit still holds: the bin is still there
        assert v.outcome is Outcome.NOT_FIXED, v.detail
