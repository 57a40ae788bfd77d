"""``train-model`` and ``eval-model``: the detector's commands, for ``cityops-agent``.

The agent CLI adds them with :func:`register`; both also run on their own as
``python -m training.train`` and ``python -m training.eval``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vision.models import BUNDLED_LABELS, BUNDLED_MODEL, labels_beside, model_path

from .real import DEFAULT_REAL_DIR

__all__ = ["add_eval_arguments", "register", "run_eval", "run_real"]

log = logging.getLogger(__name__)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=model_path, default=BUNDLED_MODEL,
                        help="the .tflite model, or bundled:real / bundled:rendered (default: bundled:rendered)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="its labels file (default: labels.txt beside the model, else the bundled labels)")
    parser.add_argument("--images", type=int, default=2000, help="held-out scenes for mAP (default %(default)s)")
    parser.add_argument("--clips", type=int, default=60, help="held-out clips for event recall (default %(default)s; 0 to skip)")
    parser.add_argument("--validation", action="store_true",
                        help="use the validation scenes and clips (for tuning) instead of the held-out ones")
    parser.add_argument("--clip-seconds", type=float, default=40.0, help="length of each clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="print the report as JSON (or write it to PATH)")
    real = parser.add_argument_group("real photos (instead of rendered scenes)")
    real.add_argument("--real", nargs="?", type=Path, const=DEFAULT_REAL_DIR, default=None, metavar="DIR",
                      help="evaluate on the real photos of DIR, read in place (manifest.json format of "
                           f"../shared/realworld; DIR defaults to {DEFAULT_REAL_DIR})")
    real.add_argument("--split", choices=("val", "train", "all"), default="val",
                      help="which of its images (default %(default)s)")
    real.add_argument("--limit", type=int, default=None, metavar="N",
                      help="only N images of the split, spread evenly over it (a quick look)")


def _write(report: dict, where: str | None, text: str) -> None:
    if where is None:
        print(text)
    elif where == "-":
        print(json.dumps(report, indent=2))
    else:
        Path(where).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _labels_of(args: argparse.Namespace) -> Path:
    """``--labels``, else the labels.txt beside the model, else the bundled labels."""
    return args.labels if args.labels is not None else labels_beside(args.model, BUNDLED_LABELS)


def run_real(args: argparse.Namespace) -> int:
    """``eval-model --real DIR``: recall at the operating point, negatives firing, AP@0.5 and
    a per-source breakdown on real photos (:mod:`training.real`). Exit 1 when an image of
    the manifest could not be read (it is listed in the report)."""
    from vision.labels import read_labels
    from vision.runtime import Detector

    from .real import evaluate_real, format_real

    detector = Detector(args.model, read_labels(_labels_of(args)), threads=args.threads, score_threshold=0.05)
    from edge_agent.camera.operating import OperatingPoint

    labels = read_labels(_labels_of(args))
    operating = OperatingPoint.for_model(args.model, labels)  # the thresholds the model ships with
    from vision.models import live_threshold

    report = {"model": str(args.model),
              **evaluate_real(detector, args.real, args.split, limit=args.limit, operating=operating,
                              live_threshold=live_threshold(args.model))}
    _write(report, args.json, format_real(report))
    if report["unreadable"]:
        first = report["unreadable"][0]
        log.error("%d image(s) of %s could not be read and are left out (first: %s, %s)",
                  len(report["unreadable"]), args.real, first["file"], first["error"])
        return 1
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if getattr(args, "real", None) is not None:
        return run_real(args)
    from vision.labels import read_labels
    from vision.runtime import Detector

    from .dataset import HELD_OUT_SEED_BASE
    from .evaluate import (
        CLIP_SEED_BASE,
        VALIDATION_CLIP_SEED_BASE,
        VALIDATION_SEED_BASE,
        evaluate_boxes,
        evaluate_events,
    )

    split = "validation" if args.validation else "held-out"
    scenes, clips = (VALIDATION_SEED_BASE, VALIDATION_CLIP_SEED_BASE) if args.validation else (HELD_OUT_SEED_BASE, CLIP_SEED_BASE)
    labels = read_labels(_labels_of(args))
    low = Detector(args.model, labels, threads=args.threads, score_threshold=0.05)
    report: dict = {"model": str(args.model), "split": split, "boxes": evaluate_boxes(low, args.images, seed_base=scenes)}
    if args.clips > 0:
        from vision.models import live_threshold

        live = Detector(args.model, labels, threads=args.threads, score_threshold=live_threshold(args.model))
        from edge_agent.camera.operating import OperatingPoint

        shipped = OperatingPoint.for_model(args.model, labels).class_settings  # the model's own thresholds
        report["events"] = evaluate_events(live, args.clips, seed_base=clips, duration_s=args.clip_seconds,
                                           class_settings=shipped)
    if args.json is None:
        b = report["boxes"]
        print(f"mAP@0.5 {b['map50']:.3f} on {b['images']} {split} scenes")
        for name, c in b["per_class"].items():
            print(f"  {name:12s} AP {c['ap50']:.3f}  P {c['precision']}  R {c['recall']}  ({c['objects']} objects)")
        if "events" in report:
            e = report["events"]
            print(f"events: recall {e['recall']:.3f} ({e['found']}/{e['events']}; {e['unseen']} never drawn), "
                  f"false {e['false_per_camera_hour']}/camera-hour, median delay {e['median_delay_s']} s")
    elif args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-model`` and ``eval-model`` to a CLI's subparsers. Each sets
    ``func(args) -> int``; the caller runs it inside ``protocol.cliutil.run_main``."""
    from . import train

    p = subparsers.add_parser("train-model", help="train the bundled detector from rendered scenes (needs the train extra)")
    train.add_arguments(p)
    p.set_defaults(func=train.run)
    p = subparsers.add_parser("eval-model", help="mAP@0.5 and event recall of a detector on held-out rendered scenes, "
                              "or recall, negatives firing and AP on real photos (--real DIR)")
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)


def main(argv: list[str] | None = None) -> int:
    """A stand-alone runner of both commands (the lead wires them into cityops-agent)."""
    from protocol.cliutil import run_main

    parser = argparse.ArgumentParser(prog="cityops-detect")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_main(lambda: args.func(args), parser.prog)
