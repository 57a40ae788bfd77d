"""The photo verifier's pure decisions (hub/verify/decide.py) on hand-made numbers, and
its configuration (verification: in hub.yaml)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hubtest import make_config

from hub.cases.closure import Outcome, Verdict, decide_on_verdict
from hub.config import load_config
from hub.verify import build_verifier
from hub.verify.decide import (
    AlignStats,
    Evidence,
    Thresholds,
    alignment_problem,
    decide,
    homography_problem,
)
from protocol.errors import ConfigError

T = Thresholds()
W, H = 640, 360


def stats(matrix, inliers: int = 200, matches: int = 300) -> AlignStats:
    m = None if matrix is None else tuple(tuple(float(v) for v in row) for row in np.asarray(matrix))
    return AlignStats((1000, 1000), matches, inliers, m)


def rotation(deg: float, scale: float = 1.0, tx: float = 0.0) -> np.ndarray:
    c, s = math.cos(math.radians(deg)) * scale, math.sin(math.radians(deg)) * scale
    return np.array([[c, -s, tx], [s, c, 0], [0, 0, 1]])


def test_a_plausible_homography_is_trusted():
    assert alignment_problem(stats(rotation(3, 1.05, 12)), W, H, T) is None


@pytest.mark.parametrize(("st", "words"), [
    (stats(None, 0, 5), "no homography"),
    (stats(np.eye(3), inliers=12), "only 12 RANSAC inliers"),
    (stats(np.eye(3), inliers=40, matches=400), "10% of the matches"),
    (stats(np.diag([-1.0, 1.0, 1.0])), "mirrors"),
    (stats(rotation(0, 3.0)), "scales the view by 3.00"),
    (stats(np.array([[1, 0, 0], [0, 1, 0], [-0.003, 0, 1]])), "folds the view"),
    (stats(np.full((3, 3), np.nan)), "degenerate"),
])
def test_untrustworthy_homographies_are_refused_with_the_reason(st, words):
    assert words in alignment_problem(st, W, H, T)


def test_a_local_fit_that_is_no_retake_of_the_view_is_refused_too():
    # Fitted on a few matches around a bin on a plain lawn (held-out pair 1,200,259): it put
    # the region's corners near the right place, warped everything else beyond recognition,
    # and the verifier closed a case whose overflowing bin was still there.
    local = np.array([[-6.282, 0.193, 863.452], [-2.839, -2.229, 590.82], [-0.016, 0.001, 1.0]])
    assert "scales the view" in homography_problem(local, W, H, T)
    assert homography_problem(rotation(2, 0.97, -8), W, H, T) is None


def ev(ctx=0.9, changed=0.7, before=0.8, after=0.0, other=0.0, detector=True) -> Evidence:
    return Evidence(ctx, 0.5, changed, detector, before, after, "water", other)


def test_gone_with_every_signal_agreeing_is_fixed_and_confident():
    v = decide(ev(), T)
    assert v.outcome is Outcome.FIXED and v.confidence >= 0.8 and v.verifier == "photo"
    assert "water 0.80→0.00" in v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "close"


def test_margins_raise_the_confidence():
    just = decide(ev(ctx=0.56, changed=0.41, before=0.51, after=0.19), T)
    clear = decide(ev(ctx=0.99, changed=0.95, before=0.95, after=0.0), T)
    assert just.outcome is clear.outcome is Outcome.FIXED
    assert 0.8 <= just.confidence < 0.82 < 0.95 < clear.confidence <= 1.0
    assert decide_on_verdict("resolved", just, 0.9).kind == "review"


@pytest.mark.parametrize(("e", "words"), [
    (ev(after=0.7), "still sees water"),
    (ev(before=0.5, after=0.42, changed=0.3), "as before"),
    (ev(changed=0.05, before=0.1, after=0.0), "unchanged"),
    (ev(changed=0.05, detector=False), "unchanged"),
])
def test_a_problem_still_there_is_not_fixed(e, words):
    v = decide(e, T)
    assert v.outcome is Outcome.NOT_FIXED and v.confidence >= 0.8 and words in v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "send_back"


@pytest.mark.parametrize(("e", "words"), [
    (ev(ctx=0.3), "surroundings do not match"),
    (ev(changed=0.3, before=0.45), "changed only in part"),
    (ev(detector=False), "no detector can confirm"),
    (ev(before=0.3), "did not recognise the problem"),
    (ev(after=0.4), "half-sees"),  # above detector_faded
    (ev(before=0.55, after=0.3), "half-sees"),  # more than half the before-score
    (ev(other=0.6), "another problem"),
    (ev(changed=0.05, before=0.8, after=0.0), "detector no longer sees"),
])
def test_doubt_goes_to_an_operator(e, words):
    v = decide(e, T)
    assert v.outcome is Outcome.UNCERTAIN and words in v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "review"


def test_a_faint_trace_of_a_confident_detection_counts_as_gone():
    """After-score above detector_absent but at most detector_faded and at most half the
    before-score, the region changed over changed_fixed: fixed, and says a trace is left."""
    v = decide(ev(before=0.84, after=0.29, changed=0.78), T)
    assert v.outcome is Outcome.FIXED and "faint trace" in v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "close"
    # each condition alone keeps it with an operator
    assert decide(ev(before=0.84, after=0.29, changed=0.35), T).outcome is Outcome.UNCERTAIN
    assert decide(ev(before=0.84, after=0.29, changed=0.78, other=0.5), T).outcome is Outcome.UNCERTAIN
    assert decide(ev(before=0.56, after=0.29, changed=0.78), T).outcome is Outcome.UNCERTAIN
    assert decide(ev(before=0.95, after=0.36, changed=0.78), T).outcome is Outcome.UNCERTAIN


def test_a_sure_detector_accepts_a_partial_change():
    """A thin problem (a fallen branch) fills little of its box: when the detector was sure
    before and sees nothing now, a third of the region changing is enough."""
    assert decide(ev(changed=0.3, before=0.8, after=0.05), T).outcome is Outcome.FIXED
    assert decide(ev(changed=0.3, before=0.8, after=0.18), T).outcome is Outcome.UNCERTAIN
    assert decide(ev(changed=0.2, before=0.9, after=0.0), T).outcome is Outcome.UNCERTAIN


def test_no_evidence_combination_closes_without_the_detector():
    for ctx in (0.6, 0.9, 1.0):
        for changed in (0.0, 0.2, 0.5, 0.9, 1.0):
            assert decide(ev(ctx=ctx, changed=changed, detector=False), T).outcome is not Outcome.FIXED


def test_verification_config_defaults_and_kinds(tmp_path):
    cfg = make_config(tmp_path)
    assert cfg.verification.kind == "photo" and cfg.verification.min_confidence == 0.8
    assert build_verifier(cfg.verification).name == "photo"
    none = make_config(tmp_path, verification={"kind": "none"})
    v = build_verifier(none.verification)
    assert v.name == "none" and v.verify(b"", b"", None) == Verdict(
        Outcome.UNCERTAIN, 0.0, "no photo verifier is configured", "none")


def _write(tmp_path, verification: str):
    make_config(tmp_path)  # copies grids and routing next to it
    path = tmp_path / "hub.yaml"
    path.write_text(f"grids: grids.geojson\nverification:\n{verification}", encoding="utf-8")
    return path


@pytest.mark.parametrize(("yaml", "where", "words"), [
    ("  kind: ssim\n", "verification.kind", "photo"),
    ("  min_confidence: 1.5\n", "verification.min_confidence", "less than or equal to 1"),
    ("  thresholds:\n    changed_fixed: 0.1\n", "verification.thresholds", "changed_unchanged must be below"),
    ("  thresholds:\n    min_inlier: 5\n", "verification.thresholds.min_inlier", ""),
    ("  model: my.tflite\n", "verification", "set both model and labels"),
])
def test_bad_verification_settings_point_at_the_line(tmp_path, yaml, where, words):
    path = _write(tmp_path, yaml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:" in text and where in text and words in text


def test_a_model_path_is_relative_to_the_config(tmp_path):
    path = _write(tmp_path, "  model: models/d.tflite\n  labels: models/labels.txt\n")
    cfg, _ = load_config(path)
    assert cfg.verification.model == tmp_path.resolve() / "models" / "d.tflite"


def test_the_old_min_confidence_key_says_where_it_moved(tmp_path):
    make_config(tmp_path)
    path = tmp_path / "hub.yaml"
    path.write_text("grids: grids.geojson\nclosure:\n  verify_min_confidence: 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "verification.min_confidence" in str(err.value) and f"{path}:" in str(err.value)
