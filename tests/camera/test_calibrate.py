"""``python -m training.calibrate``: a class with no licensed training photos (water) gets
its operating point from the real ``val`` split, written into the model's thresholds.json
next to the classes calibrated in training, which it leaves alone."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np

from training.calibrate import main, pick_threshold
from vision.models import BUNDLED_LABELS, BUNDLED_MODEL, read_thresholds


def test_the_threshold_keeps_negatives_under_the_rate_and_reports_recall():
    rng = np.random.default_rng(1)
    pos, neg = rng.uniform(0.3, 0.9, 100), rng.uniform(0.0, 0.5, 300)
    row = pick_threshold(pos, neg, 0.02, floor=0.1)
    assert row["negatives_firing"] <= 0.02
    assert row["threshold"] > 0.45  # above all but the top 2% of negatives
    assert row["recall"] == round(float((pos >= row["threshold"]).mean()), 3)
    # a floor above what the negatives need wins
    assert pick_threshold(pos, np.zeros(50), 0.02, floor=0.4)["threshold"] == 0.4


def test_water_is_calibrated_on_val_and_the_rest_is_kept(tmp_path, capsys):
    from simulators.scenes import SceneObject, SceneSpec, render
    from simulators.scenes.spec import CameraPose, near_z

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = model_dir / BUNDLED_MODEL.name
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_LABELS, model_dir / "labels.txt")
    (model_dir / "thresholds.json").write_text(json.dumps({"min_score": {"flame": 0.55, "water": 0.35}}))
    root = tmp_path / "real"
    root.mkdir()
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    images = []
    for i in range(10):
        water = i % 2 == 0
        objects = (SceneObject("flood", x=0.0, z=near_z(cam) * 1.4, size=3.0, seed=i, angle=0.0),) if water else ()
        img, _ = render(SceneSpec(seed=100 + i, place="road", camera=cam, light="day", weather="clear",
                                  objects=objects), (480, 270))
        cv2.imwrite(str(root / f"{i}.jpg"), img)
        images.append({"file": f"{i}.jpg", "source": "mishra" if water else "sgtraffic",
                       "classes": ["water"] if water else [], "boxes": [], "annotated": [],
                       "split": "val", "group": f"g{i}"})
    images.append({"file": "0.jpg", "source": "mishra", "classes": ["water"], "boxes": [], "annotated": [],
                   "split": "train", "group": "t"})  # another split: not used
    (root / "manifest.json").write_text(json.dumps({"version": 2, "classes": ["water"], "images": images}))

    assert main(["--model", str(model), "--real", str(root), "--classes", "water",
                 "--max-negative-rate", "0.0", "--floor", "0.1"]) == 0
    doc = json.loads((model_dir / "thresholds.json").read_text())
    water = doc["calibration"]["water"]
    assert water["positives"] == 5 and water["negatives"] == 5 and water["negatives_firing"] == 0.0
    assert "val split" in water["chosen_by"]
    shipped = read_thresholds(model)
    assert shipped == {"flame": 0.55, "water": water["threshold"]}  # flame untouched
    assert "wrote" in capsys.readouterr().out


def test_a_class_the_model_lacks_is_an_error_naming_its_classes(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="has no class"):
        main(["--model", str(BUNDLED_MODEL), "--labels", str(BUNDLED_LABELS), "--real", str(tmp_path),
              "--classes", "person"])


def test_a_class_calibrated_below_the_live_threshold_lowers_it_unless_the_installer_set_one(tmp_path):
    from edge_agent.camera.config import DetectorConfig
    from vision.models import live_threshold

    model = tmp_path / BUNDLED_MODEL.name
    shutil.copy(BUNDLED_MODEL, model)
    shutil.copy(BUNDLED_LABELS, tmp_path / "labels.txt")
    assert live_threshold(model) == 0.3  # no thresholds.json: the default
    (tmp_path / "thresholds.json").write_text(json.dumps({"min_score": {"water": 0.16, "flame": 0.5}}))
    assert live_threshold(model) == 0.16
    assert DetectorConfig(model=model, labels=tmp_path / "labels.txt").live_score() == 0.16
    assert DetectorConfig(model=model, labels=tmp_path / "labels.txt", score_threshold=0.4).live_score() == 0.4
