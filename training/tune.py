"""Choose the tracker's per-class score thresholds for a detector on the validation clips.

    python -m training.tune --model /tmp/m/cityops_detector_int8.tflite --clips 60

A new model scores differently from the last one, so the thresholds a track's median
score must reach before it is reported (``BUNDLED_CLASS_DEFAULTS`` in
``edge_agent/camera/config.py``) are chosen again for it. The clips are played once
(render, motion, detector on every frame) and each candidate threshold is then scored on
the recorded frames, which is exact: the motion gate and the tracker see what they
would have seen live. Only validation clips are used; the held-out clips that
``eval-model`` reports on stay unfitted.

For each label: of the thresholds that find the most of its appearances, the highest is
dropped (one step of margin: above it appearances start to be missed, and a validation
set has only a dozen appearances a label), then the one with the fewest false events of
that label wins, then the middle of the tied values. Labels a track is decided for separately, so the labels
are chosen one at a time and the final combination is scored once more as a whole.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from edge_agent.camera.config import (
    BUNDLED_LABELS,
    BUNDLED_MODEL,
    ClassSettings,
    default_class_settings,
)

__all__ = ["choose_thresholds", "main"]

GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(9))  # 0.30 … 0.70


def choose_thresholds(played: Sequence, labels: Sequence[str], grid: Sequence[float] = GRID) -> dict:
    """``{"chosen": {label: min_score}, "table": {label: {score: [found, events, false]}},
    "result": score_clips with the chosen thresholds}`` for ``played`` clips."""
    from .evaluate import score_clips

    table: dict[str, dict[float, list[int]]] = {}
    for value in grid:
        def settings(label: str, value: float = value) -> ClassSettings:
            return default_class_settings(label).model_copy(update={"min_score": value})

        for label, v in score_clips(played, class_settings=settings)["per_label"].items():
            table.setdefault(label, {})[value] = [v["found"], v["events"], v["false"]]
    chosen: dict[str, float] = {}
    for label in labels:
        rows = table.get(label)
        if not rows:
            continue  # no appearance and no false event of it: nothing to choose on
        most = max(r[0] for r in rows.values())
        finding = [v for v, r in sorted(rows.items()) if r[0] == most]
        if len(finding) > 1:  # one step of margin below the value where appearances start to be missed
            finding = finding[:-1]
        fewest = min(rows[v][2] for v in finding)
        tied = [v for v in finding if rows[v][2] == fewest]
        chosen[label] = tied[len(tied) // 2]

    def final(label: str) -> ClassSettings:
        base = default_class_settings(label)
        return base.model_copy(update={"min_score": chosen[label]}) if label in chosen else base

    return {"chosen": chosen, "table": table, "result": score_clips(played, class_settings=final)}


def main(argv: list[str] | None = None) -> int:
    from protocol.cliutil import run_main

    parser = argparse.ArgumentParser(prog="python -m training.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--labels", type=Path, default=BUNDLED_LABELS)
    parser.add_argument("--clips", type=int, default=60, help="validation clips (default %(default)s)")
    parser.add_argument("--clip-seconds", type=float, default=40.0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def run() -> int:
        from vision.labels import read_labels
        from vision.runtime import Detector

        from .evaluate import VALIDATION_CLIP_SEED_BASE, play_clips

        labels = read_labels(args.labels)
        detector = Detector(args.model, labels, score_threshold=0.3)
        played = play_clips(detector, args.clips, seed_base=VALIDATION_CLIP_SEED_BASE, duration_s=args.clip_seconds)
        report = choose_thresholds(played, labels)
        for label, rows in sorted(report["table"].items()):
            cells = "  ".join(f"{v:.2f}:{r[0]}/{r[1]},{r[2]}f" for v, r in sorted(rows.items()))
            print(f"{label:12s} {cells}")
        r = report["result"]
        print(f"chosen {report['chosen']}: recall {r['recall']:.3f} ({r['found']}/{r['events']}), "
              f"false {r['false_per_camera_hour']}/camera-hour on {r['clips']} validation clips")
        if args.json is not None:
            table = {k: {str(v): row for v, row in rows.items()} for k, rows in report["table"].items()}
            args.json.write_text(json.dumps({**report, "table": table, "model": str(args.model)}, indent=2) + "\n",
                                 encoding="utf-8")
        return 0

    return run_main(run, "tune-thresholds")


if __name__ == "__main__":
    raise SystemExit(main())
