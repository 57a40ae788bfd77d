"""Set the operating point of classes that have no licensed training photos on the real
``val`` split, and write it into the model's ``thresholds.json``.

    python -m training.calibrate --model DIR/cityops_detector_int8.tflite [--real ../shared/realworld]
        [--classes water] [--max-negative-rate 0.02] [--floor 0.1]

Issue 18 allows exactly this for ``water``: no source with a licence holds street floods,
so water is learnt from pretrained features and flood-like renders only, and its threshold
is the one thing the real photos may set. Every other class keeps the threshold chosen on
held-out *train* photos (:func:`training.realtrain.choose_thresholds`).

The rule is the same as there (:func:`pick_threshold`): the lowest score at which at most
``--max-negative-rate`` of the photos that do not show the class fire it, never below
``--floor``. The camera's detector keeps only boxes at or above its ``score_threshold``
(0.3 by default), so a threshold below that needs the cameras' ``score_threshold`` lowered
too; the command says so.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vision.labels import read_labels
from vision.models import THRESHOLDS_FILE
from vision.runtime import Detector

from .real import DEFAULT_REAL_DIR, RealImage, read_manifest, select

__all__ = ["calibrate_on_split", "image_scores", "pick_threshold", "main"]


def pick_threshold(positives: np.ndarray, negatives: np.ndarray, max_negative_rate: float,
                   floor: float) -> dict[str, float]:
    """The lowest threshold at which at most ``max_negative_rate`` of ``negatives`` (image
    scores of photos without the class) reach it, never below ``floor``; with the recall on
    ``positives`` and the share of negatives firing there."""
    neg = np.sort(np.asarray(negatives, np.float32))[::-1]
    k = int(math.floor(max_negative_rate * len(neg)))
    thr = max(floor, float(neg[k]) + 1e-3) if k < len(neg) else floor
    thr = round(thr, 3)
    return {"threshold": thr,
            "recall": round(float((np.asarray(positives) >= thr).mean()), 3) if len(positives) else None,
            "negatives_firing": round(float((neg >= thr).mean()), 3) if len(neg) else None}


def image_scores(detector: Detector, root: Path, images: Sequence[RealImage]) -> tuple[list[RealImage], np.ndarray]:
    """Per readable image, per label of ``detector``: its best box score (0 when none)."""
    labels = list(detector.labels)
    kept, rows = [], []
    for image in images:
        frame = cv2.imread(str(root / image.file), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        row = np.zeros(len(labels), np.float32)
        for d in detector.detect(frame):
            i = labels.index(d.label)
            row[i] = max(row[i], d.score)
        kept.append(image)
        rows.append(row)
    return kept, np.array(rows, np.float32).reshape(-1, len(labels))


def calibrate_on_split(images: Sequence[RealImage], scores: np.ndarray, labels: Sequence[str],
                       classes: Sequence[str], max_negative_rate: float, floor: float) -> dict[str, dict]:
    """Per class of ``classes``: :func:`pick_threshold` over the photos showing it and the
    photos that do not (photos showing only classes the model lacks count as negatives)."""
    out = {}
    for name in classes:
        c = list(labels).index(name)
        has = np.array([name in im.classes for im in images], bool)
        if not has.any():
            raise SystemExit(f"no photo of the split shows {name!r}: nothing to calibrate it on")
        row = pick_threshold(scores[has, c], scores[~has, c], max_negative_rate, floor)
        out[name] = {**row, "positives": int(has.sum()), "negatives": int((~has).sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the int8 .tflite; its thresholds.json is updated")
    p.add_argument("--labels", type=Path, default=None, help="default: labels.txt beside the model")
    p.add_argument("--real", type=Path, default=DEFAULT_REAL_DIR)
    p.add_argument("--split", default="val")
    p.add_argument("--classes", nargs="+", default=["water"])
    p.add_argument("--max-negative-rate", type=float, default=0.02)
    p.add_argument("--floor", type=float, default=0.1)
    p.add_argument("--dry-run", action="store_true", help="print the thresholds, do not write them")
    args = p.parse_args(argv)
    labels = read_labels(args.labels or args.model.with_name("labels.txt"))
    unknown = sorted(set(args.classes) - set(labels))
    if unknown:
        raise SystemExit(f"{args.model}: the model has no class {unknown}; it has {labels}")
    detector = Detector(args.model, labels, score_threshold=min(0.05, args.floor))
    images, scores = image_scores(detector, args.real, select(read_manifest(args.real), args.split))
    chosen = calibrate_on_split(images, scores, labels, args.classes, args.max_negative_rate, args.floor)
    where = f"{args.split} split of {args.real.name} ({len(images)} photos)"
    for row in chosen.values():
        row["chosen_by"] = f"{where}, <= {args.max_negative_rate:.0%} of the photos without the class firing"
    print(json.dumps(chosen, indent=1))
    low = {k: v["threshold"] for k, v in chosen.items() if v["threshold"] < 0.3}
    if low:
        print(f"note: {low} is below the cameras' default score_threshold 0.3; lower it to "
              f"{min(low.values())} for these thresholds to take effect")
    if not args.dry_run:
        path = args.model.with_name(THRESHOLDS_FILE)
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"min_score": {}, "calibration": {}}
        for name, row in chosen.items():
            doc["min_score"][name] = row["threshold"]
            doc.setdefault("calibration", {})[name] = row
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
