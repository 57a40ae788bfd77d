"""``cityops-agent detect IMAGE... [--model M --labels L] [--camera-config C [--camera ID]]
[--jsonl]``: what a camera's model sees in still frames, for installers.

Each image gets one result: its size, the time of the whole detect call, and every box the
detector keeps (at the detector's ``score_threshold``) with its label, the subcategory it
would be reported as, its score, the box as fractions of the frame, and ``event``: whether
the box passes the operating point the agent ships (the bundled per-class thresholds) or
that of the given camera config (:class:`~edge_agent.camera.operating.OperatingPoint`).
An image or model that cannot be read gives an error result and the command carries on;
the exit code is 1 when any image failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from edge_agent.camera.config import CameraSection, load_camera_section
from edge_agent.camera.operating import OperatingPoint
from edge_agent.cli import command
from protocol.errors import CityopsError
from vision.labels import LabelsError, read_labels
from vision.models import labels_beside, live_threshold, model_path
from vision.postprocess import Detection
from vision.runtime import Detector, ModelError

__all__ = ["detect_images", "detection_record", "format_table", "load_section", "read_image"]


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="still frames (JPEG, PNG, …)")
    p.add_argument("--model", type=model_path, default=None,
                   help="the .tflite model, or bundled:real / bundled:rendered (default: the camera config's, else the bundled one)")
    p.add_argument("--labels", type=Path, default=None,
                   help="its labels file (default: labels.txt beside --model, else the camera config's or the bundled one)")
    p.add_argument("--camera-config", type=Path, default=None, metavar="FILE",
                   help="an agent config (or a file of cameras/zones/detector): its detector, and the thresholds, "
                        "class mapping and zones of its camera decide `event`")
    p.add_argument("--camera", default=None, metavar="ID", help="which camera of --camera-config (needed when it has several)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="show boxes down to this score (default: the detector's score_threshold: 0.3, or the "
                        "model's lowest shipped class threshold where lower)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per image instead of a table")


def load_section(path: Path) -> CameraSection:
    """The camera part of an agent config, or of a file holding only cameras/zones/detector."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None  # the loader reports it with its position
    if isinstance(data, dict) and "agent" in data:
        from edge_agent.config import load_agent_config

        cfg = load_agent_config(path).config
        return CameraSection.model_construct(cameras=cfg.cameras, zones=cfg.zones, detector=cfg.detector)
    return load_camera_section(path)


def read_image(path: Path) -> Any:
    """The image as BGR; :class:`CityopsError` saying why it cannot be read."""
    if not path.is_file():
        raise CityopsError("file not found" if not path.exists() else "not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CityopsError("cannot decode it as an image (corrupt, truncated or not an image format OpenCV reads)")
    return image


def detection_record(det: Detection, operating: OperatingPoint) -> dict[str, Any]:
    judged = operating.judge(det)
    return {"label": det.label, "subcategory": judged.subcategory, "score": round(det.score, 3),
            "box": [round(v, 4) for v in det.box], "event": judged.event}


def _detector(args: argparse.Namespace, section: CameraSection | None) -> tuple[Detector, OperatingPoint]:
    from edge_agent.camera.config import DetectorConfig

    cfg = section.detector if section is not None else DetectorConfig()
    labels_path = args.labels or (labels_beside(args.model, cfg.labels) if args.model is not None else cfg.labels)
    labels = read_labels(labels_path)
    detector = Detector(args.model or cfg.model, labels, layout=cfg.layout, threads=cfg.threads,
                        input_order=cfg.input_order, input_range=cfg.input_range,
                        score_threshold=args.score_threshold if args.score_threshold is not None
                        else live_threshold(args.model) if args.model is not None else cfg.live_score(),
                        iou_threshold=cfg.iou_threshold, max_detections=cfg.max_detections)
    w, h = detector.info.input_size
    detector.detect(np.zeros((h, w, 3), np.uint8))  # the first call sets the interpreter up: keep it out of "ms"
    if section is None:  # the model's own operating point (its folder's thresholds.json)
        return detector, OperatingPoint.for_model(args.model or cfg.model, labels, cfg.class_map(labels))
    return detector, OperatingPoint.for_camera(section, labels, args.camera)


def detect_images(paths: Sequence[Path], setup: Callable[[], tuple[Detector, OperatingPoint]]) -> Iterator[dict[str, Any]]:
    """One result per image, as it is done: ``{"image", "width", "height", "ms",
    "detections"}`` or ``{"image", "error"}``. ``setup`` loads the detector once; when it
    fails, every image carries that error."""
    try:
        detector, operating = setup()
    except (ModelError, LabelsError) as exc:
        yield from ({"image": str(p), "error": str(exc)} for p in paths)
        return
    for path in paths:
        try:
            image = read_image(path)
        except CityopsError as exc:
            yield {"image": str(path), "error": str(exc)}
            continue
        started = time.perf_counter()
        found = detector.detect(image)
        ms = (time.perf_counter() - started) * 1000
        yield {"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
               "ms": round(ms, 2), "detections": [detection_record(d, operating) for d in found]}


def format_table(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['image']}: error: {result['error']}"
    head = f"{result['image']}  {result['width']}x{result['height']}  {result['ms']:.1f} ms"
    if not result["detections"]:
        return f"{head}  (nothing detected)"
    rows = [head, f"  {'label':<12} {'subcategory':<28} {'score':>5}  {'event':<5}  box (x0 y0 x1 y1)"]
    for d in result["detections"]:
        box = " ".join(f"{v:.3f}" for v in d["box"])
        rows.append(f"  {d['label']:<12} {d['subcategory'] or '-':<28} {d['score']:>5.2f}  "
                    f"{'yes' if d['event'] else 'no':<5}  {box}")
    return "\n".join(rows)


@command("detect", "run the camera detector on still images: boxes, scores and whether each would "
         "become an event at the shipped (or a camera config's) thresholds", _configure)
def detect(args: argparse.Namespace) -> int:
    section = load_section(args.camera_config) if args.camera_config is not None else None
    if section is not None:
        OperatingPoint.for_camera(section, [], args.camera)  # a wrong --camera fails before any image
    failed = 0
    for result in detect_images(args.images, lambda: _detector(args, section)):
        failed += "error" in result
        if args.jsonl:
            print(json.dumps(result), flush=True)
        else:
            print(format_table(result), file=sys.stderr if "error" in result else sys.stdout, flush=True)
    return 1 if failed else 0
