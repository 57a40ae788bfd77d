"""Retraining on operators' verdicts behind a gate (training/retrain.py): a verdict
teaches only the classes the operator judged; the gate names every reason a candidate
may not ship (a regression on real or rendered photos, false alarms not cut, a true alarm
lost); and the whole path, in its reduced mode, writes the gate's figures and refuses a
candidate that is worse than its base (exit 3), so no weak model becomes a release."""

from __future__ import annotations

import json

import cv2
import pytest

from training.real import RealImage
from training.retrain import (
    EXIT_REFUSED,
    GATE_FILE,
    GateRules,
    decide_gate,
    judged_weights,
    main,
    verdict_figures,
)
from vision.models import REAL_MODEL

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


@pytest.fixture
def verdict_export(tmp_path, photo_folder):
    """What `cityops-hub dataset export` writes: snapshots judged by operators (rendered
    here): garbage judged false as water, and true garbage."""
    root = tmp_path / "export"
    (root / "images").mkdir(parents=True)
    manifest = json.loads((photo_folder / "manifest.json").read_text())
    images = []
    for i, e in enumerate(m for m in manifest["images"] if m["source"] == "atanu"):
        img = cv2.imread(str(photo_folder / e["file"]))
        name = f"images/v{i}.jpg"
        cv2.imwrite(str(root / name), img)
        if i % 2:
            images.append({"file": name, "source": "verdicts", "classes": [], "boxes": [], "annotated": ["water"],
                           "split": "train", "group": f"event-{i}"})
        else:
            images.append({**e, "file": name, "source": "verdicts", "annotated": e["classes"], "group": f"event-{i}"})
    (root / "manifest.json").write_text(json.dumps({"version": 2, "classes": LABELS, "images": images}))
    return root


def test_a_reduced_retrain_writes_the_gate_and_refuses_a_candidate_worse_than_its_base(
        tmp_path, photo_folder, verdict_export, capsys):
    out = tmp_path / "candidate"
    code = main(["--verdicts", str(verdict_export), "--base", str(REAL_MODEL.parent), "--out", str(out),
                 "--real", str(photo_folder), "--quick", "--rendered-images", "8", "--held-out", "0.4"])
    gate = json.loads((out / GATE_FILE).read_text())
    assert code == EXIT_REFUSED and gate["passed"] is False and gate["reasons"]
    assert "gate refused: " in capsys.readouterr().out
    assert gate["verdicts"]["trained_on"] > 0 and gate["verdicts"]["held_out"] > 0
    for side in ("base", "candidate"):
        assert set(gate[side]) >= {"verdicts", "real", "rendered"}
        assert gate[side]["rendered"]["images"] == 8
    # the candidate ships its base's operating point, so the comparison is like with like
    assert json.loads((out / "thresholds.json").read_text()) == json.loads(
        (REAL_MODEL.parent / "thresholds.json").read_text())
    training = json.loads((out / "training.json").read_text())
    assert training["extra_source"]["name"] == "operator verdicts"


def test_retrain_refuses_a_base_that_is_not_a_model_folder(tmp_path, verdict_export, capsys):
    code = main(["--verdicts", str(verdict_export), "--base", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2 and "--base takes a model folder" in capsys.readouterr().err
