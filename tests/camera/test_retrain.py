"""Retraining on operators' verdicts behind a gate (training/retrain.py): a verdict
teaches only the classes the operator judged; the gate names every reason a candidate
may not ship (a regression on real or rendered photos, false alarms not cut, a true alarm
lost). The whole path, in its reduced mode, runs from the hub's command in
tests/web/test_retrain_command.py."""

from __future__ import annotations

import pytest

from training.real import RealImage
from training.retrain import (
    GateRules,
    decide_gate,
    judged_weights,
    main,
    verdict_figures,
)

LABELS = ["water", "flame", "smoke", "fallen_tree", "garbage", "vehicle"]


def verdict(classes=(), annotated=()) -> RealImage:
    return RealImage("v.jpg", "verdicts", tuple(classes), (), tuple(annotated), "train", "e1")


def figures(real_map=0.4, rendered_map=0.6, neg=0.05, water=(40, 0.5), fa=10, caught=5, positives=6, negatives=20):
    return {"real": {"map50": real_map, "negatives_rate": neg,
                     "recall": {"water": {"images": water[0], "recall": water[1]}}},
            "rendered": {"map50": rendered_map},
            "verdicts": {"false_alarms": fa, "negatives": negatives, "caught": caught, "positives": positives}}


def test_a_verdict_teaches_only_what_the_operator_judged():
    # "this 'water' was a false alarm": water is known absent; nothing is known of the rest
    assert list(judged_weights(verdict(annotated=["water"]), LABELS)) == [1, 0, 0, 0, 0, 0]
    # "not water: garbage" (wrong class with a box): both judged
    assert list(judged_weights(verdict(["garbage"], ["water", "garbage"]), LABELS)) == [1, 0, 0, 0, 1, 0]


def test_held_out_verdicts_count_false_alarms_and_caught_alarms():
    found = [(verdict(annotated=["water"]), {"water"}),  # a false alarm again
             (verdict(annotated=["water"]), set()),  # quiet now
             (verdict(["garbage"], ["water", "garbage"]), {"garbage"}),  # right class, caught
             (verdict(["flame"], ["flame"]), set())]  # a true alarm missed
    assert verdict_figures(found) == {"false_alarms": 1, "negatives": 3, "caught": 1, "positives": 2}


def test_the_gate_passes_a_candidate_that_cuts_false_alarms_without_regressing():
    assert decide_gate(figures(), figures(real_map=0.39, fa=4, caught=6)) == []


@pytest.mark.parametrize(("cand", "reason"), [
    (figures(real_map=0.35, fa=2), "real mAP@0.5 fell from 0.400 to 0.350"),
    (figures(rendered_map=0.5, fa=2), "rendered mAP@0.5 fell"),
    (figures(water=(40, 0.4), fa=2), "real water recall fell from 50% to 40%"),
    (figures(neg=0.08, fa=2), "real negatives firing rose from 5.0% to 8.0%"),
    (figures(fa=6), "fell only from 10 to 6 (a cut of at least 50% is required)"),
    (figures(fa=2, caught=4), "true alarms caught on held-out verdicts fell from 5 to 4"),
])
def test_the_gate_names_why_a_candidate_may_not_ship(cand, reason):
    reasons = decide_gate(figures(), cand)
    assert len(reasons) == 1 and reason in reasons[0]


def test_a_class_with_few_real_photos_does_not_block_and_no_false_alarm_means_nothing_to_cut():
    assert decide_gate(figures(water=(5, 0.8)), figures(water=(5, 0.2), fa=2)) == []
    (reason,) = decide_gate(figures(fa=0), figures(fa=0))
    assert "no false alarm on the 20 held-out" in reason
    assert decide_gate(figures(), figures(fa=5), GateRules(min_cut=0.5)) == []


def test_retrain_refuses_a_base_that_is_not_a_model_folder(tmp_path, capsys):
    code = main(["--verdicts", str(tmp_path), "--base", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2 and "--base takes a model folder" in capsys.readouterr().err
