"""Evaluate a detector on real photos: a folder in the manifest format of
``../shared/realworld`` (``manifest.json``: ``version``, ``classes``, ``images`` with
``file``, ``source``, ``classes``, ``boxes`` [{``label``, ``box``}], ``annotated``,
``split``, ``group``). Images are read in place, never copied.

Per class of the model that the photos carry:

* **recall at the operating point**: the share of images showing the class on which a box
  of that class passes the shipped thresholds (the camera's operating point,
  :class:`~edge_agent.camera.operating.OperatingPoint`: class ``min_score`` and a
  subcategory to report), and the share on which another problem class fires instead;
* **AP@0.5** where boxes exist: over the images whose ``annotated`` lists the class (their
  boxes of it are exhaustive), with the synthetic evaluation's matching and AP
  (:class:`~training.evaluate.ClassTally`);

and the share of **negatives** (``classes`` empty) on which any problem class fires, all
of it again per source. :func:`score_real` is the arithmetic, on detections already made;
:func:`evaluate_real` reads the images and runs the detector.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2

from edge_agent.camera.operating import OperatingPoint
from protocol.errors import CityopsError
from vision.postprocess import Detection
from vision.runtime import Detector

from .evaluate import ClassTally

__all__ = ["DEFAULT_REAL_DIR", "RealImage", "evaluate_real", "format_real", "read_manifest", "score_real", "select"]

# The shared real-photo folder beside the project checkout, when there is one.
DEFAULT_REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "realworld"
Split = Literal["val", "train", "all"]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class RealImage:
    file: str
    source: str
    classes: tuple[str, ...]
    boxes: tuple[tuple[str, Box], ...]
    annotated: tuple[str, ...]
    split: str
    group: str


def _entry(raw: Any, where: str) -> RealImage:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    try:
        boxes = tuple((str(b["label"]), tuple(float(v) for v in b["box"])) for b in raw.get("boxes", []))
        if any(len(box) != 4 for _, box in boxes):
            raise ValueError("a box is not [x0, y0, x1, y1]")
        return RealImage(str(raw["file"]), str(raw["source"]), tuple(raw["classes"]), boxes,  # type: ignore[arg-type]
                         tuple(raw.get("annotated", [])), str(raw["split"]), str(raw.get("group", raw["file"])))
    except KeyError as exc:
        raise ValueError(f"{where} has no {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_manifest(root: Path) -> list[RealImage]:
    """The entries of ``root/manifest.json``; :class:`CityopsError` naming the file and the
    problem when it is missing or not in the format."""
    path = Path(root) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CityopsError(f"{path}: not found; --real takes a folder holding manifest.json and the images "
                           "(the format of ../shared/realworld, see its README.md)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CityopsError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CityopsError(f"{path}: expected an object with an 'images' list")
    try:
        return [_entry(raw, f"images[{i}]") for i, raw in enumerate(data["images"])]
    except ValueError as exc:
        raise CityopsError(f"{path}: {exc}") from None


def select(images: Sequence[RealImage], split: Split = "val", limit: int | None = None) -> list[RealImage]:
    """The images of ``split`` (``all``: both), in manifest order; with ``limit``, that many
    spread evenly over them (every source and class keeps a share)."""
    chosen = [im for im in images if split == "all" or im.split == split]
    if limit is not None and 0 <= limit < len(chosen):
        step = len(chosen) / limit if limit else 1
        chosen = [chosen[int(i * step)] for i in range(limit)]
    return chosen


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _recall_counts(results: Iterable[tuple[RealImage, set[str]]], labels: Sequence[str]) -> dict[str, Any]:
    """Image-level counts of a set of results: per class present, images and detected;
    negatives and how many fired (and of which class)."""
    per_class: dict[str, dict[str, Any]] = {}
    negatives, fired_on = 0, 0
    by_class: dict[str, int] = {}
    for image, fired in results:
        if not image.classes:
            negatives += 1
            fired_on += bool(fired)
            for label in fired:
                by_class[label] = by_class.get(label, 0) + 1
            continue
        for label in image.classes:
            if label not in labels:
                continue
            row = per_class.setdefault(label, {"images": 0, "detected": 0, "other_fired": 0})
            row["images"] += 1
            row["detected"] += label in fired
            row["other_fired"] += bool(fired - set(image.classes))
    for row in per_class.values():
        row["recall"] = _ratio(row["detected"], row["images"])
        row["other_fired_rate"] = _ratio(row["other_fired"], row["images"])
    return {"per_class": dict(sorted(per_class.items(), key=lambda kv: labels.index(kv[0]))),
            "negatives": {"images": negatives, "fired": fired_on, "rate": _ratio(fired_on, negatives),
                          "by_class": dict(sorted(by_class.items()))}}


def score_real(
    results: Sequence[tuple[RealImage, Sequence[Detection]]],
    labels: Sequence[str],
    operating: OperatingPoint | None = None,
    *,
    live_threshold: float = 0.3,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """The report for images already run through a detector (``results``: each image with
    its detections, taken at a low score threshold so the AP curve is whole). A detection
    fires when it reaches ``live_threshold`` (the detector's ``score_threshold`` on a
    camera) and passes ``operating`` (default: the shipped thresholds)."""
    operating = operating or OperatingPoint()
    labels = list(labels)
    fired = [(image, {d.label for d in found if d.score >= live_threshold and operating.fires(d)})
             for image, found in results]
    report = _recall_counts(fired, labels)
    tallies = {label: ClassTally() for label in labels}
    box_images = dict.fromkeys(labels, 0)
    for image, found in results:
        for label in image.annotated:
            if label not in tallies:
                continue
            truth = [box for lab, box in image.boxes if lab == label]
            tallies[label].add([d for d in found if d.label == label], truth, iou_threshold)
            box_images[label] += 1
    for label, tally in tallies.items():
        if not tally.positives:
            continue
        row = report["per_class"].setdefault(label, {"images": 0, "detected": 0, "other_fired": 0,
                                                     "recall": None, "other_fired_rate": None})
        row.update({"ap50": round(tally.ap(), 4), "boxes": tally.positives, "box_images": box_images[label]})
    aps = [row["ap50"] for row in report["per_class"].values() if "ap50" in row]
    report["map50"] = round(sum(aps) / len(aps), 4) if aps else None
    sources = sorted({image.source for image, _ in results})
    report["per_source"] = {src: {"images": sum(1 for im, _ in fired if im.source == src),
                                  **_recall_counts(((im, f) for im, f in fired if im.source == src), labels)}
                            for src in sources}
    seen = {c for image, _ in results for c in image.classes}
    report["not_in_model"] = {c: sum(1 for im, _ in results if c in im.classes) for c in sorted(seen - set(labels))}
    report["images"] = len(results)
    return report


def evaluate_real(
    detector: Detector,
    root: Path,
    split: Split = "val",
    *,
    limit: int | None = None,
    operating: OperatingPoint | None = None,
    live_threshold: float = 0.3,
) -> dict[str, Any]:
    """Run ``detector`` (at a low score threshold, e.g. 0.05) on the ``split`` images of the
    folder ``root`` in place and score them (:func:`score_real`). Images that cannot be
    read are listed under ``unreadable`` and left out of the figures."""
    root = Path(root)
    images = select(read_manifest(root), split, limit)
    if not images:
        raise CityopsError(f"{root / 'manifest.json'}: no images in split {split!r}")
    operating = operating or OperatingPoint()
    results: list[tuple[RealImage, list[Detection]]] = []
    unreadable: list[dict[str, str]] = []
    started = time.perf_counter()
    for image in images:
        frame = cv2.imread(str(root / image.file), cv2.IMREAD_COLOR)
        if frame is None:
            why = "not found" if not (root / image.file).is_file() else "cannot decode it"
            unreadable.append({"file": image.file, "error": why})
            continue
        results.append((image, detector.detect(frame)))
    report = score_real(results, detector.labels, operating, live_threshold=live_threshold)
    thresholds = {label: operating.class_settings(label).min_score for label in detector.labels
                  if operating.class_map.get(label) is not None}
    return {"dir": str(root), "split": split, "limit": limit, **report, "unreadable": unreadable,
            "operating_point": {"live_threshold": live_threshold, "min_score": thresholds},
            "seconds": round(time.perf_counter() - started, 1)}


def _pct(value: float | None) -> str:
    return "   —" if value is None else f"{value * 100:3.0f}%"


def format_real(report: dict[str, Any]) -> str:
    """The report as a readable table."""

    def ap(row: dict) -> str:
        value = row.get("ap50")
        return "—" if value is None or math.isnan(value) else f"{value:.3f} ({row['boxes']} boxes on {row['box_images']} images)"

    lines = [f"real photos in {report['dir']}: split {report['split']}, {report['images']} images"
             + (f" ({len(report['unreadable'])} unreadable, left out)" if report["unreadable"] else ""),
             f"  {'class':<12} {'images':>6}  {'recall':>6}  {'other class fired':>17}  AP@0.5"]
    for label, row in report["per_class"].items():
        lines.append(f"  {label:<12} {row['images']:>6}  {_pct(row['recall']):>6}  {_pct(row['other_fired_rate']):>17}  {ap(row)}")
    neg = report["negatives"]
    fired = ", ".join(f"{k} {v}" for k, v in neg["by_class"].items()) or "none"
    lines.append(f"  {'negatives':<12} {neg['images']:>6}  a problem class fires on {_pct(neg['rate']).strip()} "
                 f"({neg['fired']}; by class: {fired})")
    if report["map50"] is not None:
        lines.append(f"  mAP@0.5 over the classes with boxes: {report['map50']:.3f}")
    if report["not_in_model"]:
        lines.append("  classes the model does not have: "
                     + ", ".join(f"{k} ({v} images)" for k, v in report["not_in_model"].items()))
    lines.append("  per source:")
    for src, part in report["per_source"].items():
        cells = [f"{label} {_pct(row['recall']).strip()} of {row['images']}" for label, row in part["per_class"].items()]
        if part["negatives"]["images"]:
            cells.append(f"negatives firing {_pct(part['negatives']['rate']).strip()} of {part['negatives']['images']}")
        lines.append(f"    {src:<14} {part['images']:>5} images  " + ("; ".join(cells) or "no class of the model"))
    return "\n".join(lines)
