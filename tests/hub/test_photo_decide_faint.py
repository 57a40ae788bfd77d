"""The faint-trace rule (hub/verify/decide.py) after the renderer's water became opaque and
flood-like (issue 18): the measurements of a rendered puddle still there, lighter in the
after-photo, that the camera detector v2 scored 0.71 → 0.30 (tuning seed 2163)."""

from __future__ import annotations

from hub.cases.closure import Outcome, decide_on_verdict
from hub.verify.decide import Evidence, Thresholds, decide

T = Thresholds()


def evidence(region: float) -> Evidence:
    return Evidence(context_similarity=0.94, region_similarity=region, changed=0.80, detector=True,
                    before_score=0.71, after_score=0.30, label="water", other_score=0.15)


def test_a_faint_trace_whose_outline_is_unchanged_goes_to_an_operator():
    v = decide(evidence(0.895), T)  # the puddle's outline is still there (SSIM 0.90)
    assert v.outcome is Outcome.UNCERTAIN and "half-sees" in v.detail, v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "review"


def test_a_faint_trace_where_the_region_changed_in_structure_still_closes():
    v = decide(evidence(0.6), T)
    assert v.outcome is Outcome.FIXED and "faint trace" in v.detail, v.detail
    assert decide_on_verdict("resolved", v, 0.8).kind == "close"


def test_the_limit_is_a_threshold_people_can_set():
    assert T.faded_region_similarity == 0.85
    v = decide(evidence(0.895), Thresholds(faded_region_similarity=0.95))
    assert v.outcome is Outcome.FIXED
