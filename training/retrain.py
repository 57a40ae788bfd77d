"""Retrain a shipped model on operators' verdicts, behind a gate (issue 22, part 2).

    python -m training.retrain --verdicts EXPORT --base vision/models/real --out /tmp/cand \\
        [--weights W] [--real ../shared/realworld] [--epochs 4] [--max-minutes 60]

``EXPORT`` is what ``cityops-hub dataset export`` writes: the operators' verdicts on
camera snapshots, in the manifest format of ``../shared/realworld``. Each verdict teaches
only what the operator judged (``annotated``: the class the alarm was raised for, and the
class they corrected it to); every other class gets no loss on that image, because
nobody looked for it there.

1. The verdicts are split by group (an event's snapshots stay together) into examples to
   train on and **held-out** examples (``--held-out``, 30 %) the candidate never sees.
2. The base model is fine-tuned (:func:`training.realtrain.train_v4`, from ``--weights``:
   by default the float twin the base folder ships, ``cityops_detector_float.tflite``)
   on the verdicts (repeated ``--repeat`` times an epoch), with the base training data:
   the licensed real photos, their flooded views and renders. The candidate keeps the
   base's operating point (its ``thresholds.json``), so the gate compares like with like.
3. **The gate.** Base and candidate are measured the same way on the real validation
   photos (``--real``, split ``val``), on rendered held-out scenes and on the held-out
   verdicts. :func:`decide_gate` passes the candidate only if it regresses on neither
   the real nor the rendered set, and cuts the false alarms on the held-out verdicts by
   at least ``min_cut`` without missing a true alarm the base caught. ``gate.json`` in
   ``--out`` holds every figure and the reasons; exit 0 when it passed, 3 when refused.
   ``cityops-hub release add --gate OUT/gate.json`` stores them with the release.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision.models import THRESHOLDS_FILE

from .real import RealImage, read_manifest
from .realtrain import RealSample, real_sample, split_calibration

__all__ = ["GateRules", "decide_gate", "judged_weights", "load_verdicts", "main", "measure", "verdict_figures"]

log = logging.getLogger(__name__)

GATE_FILE = "gate.json"
EXIT_REFUSED = 3


@dataclass(frozen=True)
class GateRules:
    map_drop: float = 0.02  # mAP@0.5 (real val, rendered) may fall at most this much
    recall_drop: float = 0.05  # a class's real recall may fall at most this much (classes with >= min_positives)
    min_positives: int = 10
    negatives_rise: float = 0.01  # the share of real negatives on which a problem fires may rise at most this much
    min_cut: float = 0.5  # held-out verdict false alarms must fall by at least this share


def judged_weights(entry: RealImage, labels: Sequence[str]) -> np.ndarray:
    """Loss weights of a verdict: 1 for the classes the operator judged (``annotated``), 0
    for every other class (nobody said whether it is there)."""
    return np.array([1.0 if name in entry.annotated else 0.0 for name in labels], np.float32)


def load_verdicts(root: Path, labels: Sequence[str]) -> list[RealSample]:
    """Every verdict of an export, decoded and shrunk like the real photos."""
    return [real_sample(root, entry, labels, judged_weights(entry, labels)) for entry in read_manifest(root)]


def verdict_figures(found: Sequence[tuple[RealImage, set[str]]]) -> dict[str, int]:
    """Per held-out verdict, what the model did at its operating point (``found``: each
    verdict with the classes that fired on it): a judged class that is not there and
    fired is a false alarm; a class that is there (``classes``) and fired is caught."""
    fa = negatives = caught = positives = 0
    for entry, fired in found:
        for name in entry.annotated:
            if name in entry.classes:
                positives += 1
                caught += name in fired
            else:
                negatives += 1
                fa += name in fired
    return {"false_alarms": fa, "negatives": negatives, "caught": caught, "positives": positives}


def decide_gate(base: dict[str, Any], cand: dict[str, Any], rules: GateRules = GateRules()) -> list[str]:
    """Why the candidate may not become a release (empty: it may). ``base`` and ``cand``
    are :func:`measure` results; a figure missing on either side is not compared."""
    reasons: list[str] = []
    for name in ("real", "rendered"):
        b, c = base.get(name), cand.get(name)
        if b and c and b.get("map50") is not None and c.get("map50") is not None \
                and c["map50"] < b["map50"] - rules.map_drop:
            reasons.append(f"{name} mAP@0.5 fell from {b['map50']:.3f} to {c['map50']:.3f}")
    b, c = base.get("real"), cand.get("real")
    if b and c:
        for label, row in b.get("recall", {}).items():
            crow = c.get("recall", {}).get(label)
            if crow is None or row["images"] < rules.min_positives or row["recall"] is None:
                continue
            if crow["recall"] is not None and crow["recall"] < row["recall"] - rules.recall_drop:
                reasons.append(f"real {label} recall fell from {row['recall']:.0%} to {crow['recall']:.0%}")
        if b.get("negatives_rate") is not None and c.get("negatives_rate") is not None \
                and c["negatives_rate"] > b["negatives_rate"] + rules.negatives_rise:
            reasons.append(f"real negatives firing rose from {b['negatives_rate']:.1%} to {c['negatives_rate']:.1%}")
    bv, cv = base["verdicts"], cand["verdicts"]
    if bv["false_alarms"] == 0:
        reasons.append(f"the base raises no false alarm on the {bv['negatives']} held-out false-alarm verdict(s): "
                       "nothing to cut (collect more verdicts)")
    elif cv["false_alarms"] > (1 - rules.min_cut) * bv["false_alarms"]:
        reasons.append(f"false alarms on held-out verdicts fell only from {bv['false_alarms']} to "
                       f"{cv['false_alarms']} (a cut of at least {rules.min_cut:.0%} is required)")
    if cv["caught"] < bv["caught"]:
        reasons.append(f"true alarms caught on held-out verdicts fell from {bv['caught']} to {cv['caught']} "
                       f"of {bv['positives']}")
    return reasons


def measure(model: Path, held: Sequence[RealSample], *, real: Path | None, rendered_images: int,
            threads: int = 2) -> dict[str, Any]:
    """The gate's figures of one model, at the operating point it ships with."""
    from edge_agent.camera.operating import OperatingPoint
    from vision.labels import read_labels
    from vision.models import live_threshold
    from vision.runtime import Detector

    from .evaluate import evaluate_boxes
    from .real import evaluate_real

    labels = read_labels(model.with_name("labels.txt"))
    det = Detector(model, labels, threads=threads, score_threshold=0.05)
    operating = OperatingPoint.for_model(model, labels)
    live = live_threshold(model)
    figures: dict[str, Any] = {"model": str(model)}
    found = []
    for sample in held:
        fired = {d.label for d in det.detect(sample.image) if d.score >= live and operating.fires(d)}
        found.append((sample.entry, fired))
    figures["verdicts"] = verdict_figures(found)
    if real is not None:
        report = evaluate_real(det, real, "val", operating=operating, live_threshold=live)
        figures["real"] = {"map50": report["map50"], "negatives_rate": report["negatives"]["rate"],
                           "recall": {k: {"images": v["images"], "recall": v["recall"]}
                                      for k, v in report["per_class"].items()}}
    if rendered_images > 0:
        figures["rendered"] = {"map50": evaluate_boxes(det, rendered_images)["map50"], "images": rendered_images}
    return figures


def retrain(out: Path, verdicts: Path, base: Path, *, weights: Path | None, real: Path, held_out: float = 0.3,
            repeat: int = 4, epochs: int = 4, learning_rate: float = 1e-4, rendered_images: int = 300,
            max_minutes: float | None = None, seed: int = 11, quick: bool = False,
            gate_real: Path | None = None, rules: GateRules = GateRules()) -> dict[str, Any]:
    from simulators.scenes import LABELS

    from .realtrain import train_v4

    base_model = base / "cityops_detector_int8.tflite"
    if weights is None and (base / "cityops_detector_float.tflite").is_file():
        weights = base / "cityops_detector_float.tflite"  # the shipped model's own weights (training/warmstart.py)
    if not base_model.is_file():
        raise FileNotFoundError(f"{base_model}: --base takes a model folder (cityops_detector_int8.tflite, "
                                "labels.txt, thresholds.json), e.g. vision/models/real")
    samples = load_verdicts(verdicts, LABELS)
    fit, held = split_calibration(samples, held_out, seed)
    log.info("%d verdict(s): %d to train on, %d held out for the gate", len(samples), len(fit), len(held))
    if not fit or not held:
        raise ValueError(f"{len(samples)} verdict(s) give {len(fit)} to train on and {len(held)} to hold out; "
                         "both need at least one (collect more verdicts)")
    summary = train_v4(out, real, epochs=epochs, learning_rate=learning_rate, seed=seed, max_minutes=max_minutes,
                       quick=quick, init=weights, extra=fit, extra_repeat=repeat, extra_source="operator verdicts")
    if (base / THRESHOLDS_FILE).is_file():  # the base's operating point, so the gate compares like with like
        shutil.copyfile(base / THRESHOLDS_FILE, out / THRESHOLDS_FILE)
    candidate = out / "cityops_detector_int8.tflite"
    gate_real = real if gate_real is None else gate_real
    figures = {name: measure(model, held, real=gate_real, rendered_images=rendered_images)
               for name, model in (("base", base_model), ("candidate", candidate))}
    reasons = decide_gate(figures["base"], figures["candidate"], rules)
    gate = {"passed": not reasons, "reasons": reasons, "rules": asdict(rules), **figures,
            "verdicts": {"total": len(samples), "trained_on": len(fit), "held_out": len(held), "source": str(verdicts)},
            "training": {k: summary[k] for k in ("epochs_run", "losses", "total_seconds") if k in summary}}
    (out / GATE_FILE).write_text(json.dumps(gate, indent=2) + "\n", encoding="utf-8")
    return gate


def main(argv: list[str] | None = None) -> int:
    from .real import DEFAULT_REAL_DIR

    p = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.split("\n")[0])
    p.add_argument("--verdicts", type=Path, required=True, help="a `cityops-hub dataset export` folder")
    p.add_argument("--base", type=Path, required=True, help="the model folder of the release to improve")
    p.add_argument("--weights", type=Path, default=None,
                   help="the base's weights: a .weights.h5, or its float .tflite (default: the one in --base, "
                        "else ImageNet only)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--real", type=Path, default=DEFAULT_REAL_DIR, help="base training data and the gate's val photos")
    p.add_argument("--held-out", type=float, default=0.3)
    p.add_argument("--repeat", type=int, default=4, help="times each verdict is shown an epoch")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--rendered-images", type=int, default=300)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="a few photos, one epoch: proves the path runs")
    args = p.parse_args(argv)
    if not 0.05 <= args.held_out <= 0.8:
        p.error(f"--held-out {args.held_out:g}: a share of the verdicts between 0.05 and 0.8")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        gate = retrain(args.out, args.verdicts, args.base, weights=args.weights, real=args.real,
                       held_out=args.held_out, repeat=args.repeat, epochs=args.epochs,
                       learning_rate=args.learning_rate, rendered_images=args.rendered_images,
                       max_minutes=args.max_minutes, quick=args.quick)
    except (OSError, ValueError) as exc:
        print(f"retrain: {exc}", file=sys.stderr)
        return 2
    verdict = "passed" if gate["passed"] else "refused: " + "; ".join(gate["reasons"])
    print(f"gate {verdict}\nfigures: {args.out / GATE_FILE}")
    return 0 if gate["passed"] else EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
