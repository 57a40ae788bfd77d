"""``cityops-hub dataset export OUT_DIR`` and ``cityops-hub dataset stats`` (the parsers
and the commands; hub/cli.py registers them)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, time
from pathlib import Path

from protocol.clock import SystemClock
from protocol.errors import CityopsError

from ..config import load_setup
from ..store.files import SnapshotFiles
from .config import dataset_dir
from .export import all_examples, export_dataset, stats

__all__ = ["add_dataset_parser", "run_dataset"]


def add_dataset_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dataset", help="the labelled examples operators' verdicts made: export, stats")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    ex = dsub.add_parser("export", help="write the examples' images and a manifest.json in the "
                         "real-photo format (../shared/realworld) for a retrain")
    ex.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    ex.add_argument("--config", required=True, type=Path)
    ex.add_argument("--since", help="only examples recorded from this date (YYYY-MM-DD, the hub's "
                    "timezone) or time (ISO 8601 with an offset)")
    ex.add_argument("--camera", help="only this camera: AGENT/SOURCE, or the source name")
    ex.add_argument("--val-fraction", type=float, default=0.2,
                    help="share of events held out as split 'val' (default 0.2)")
    ex.add_argument("--json", action="store_true", help="print the report as JSON")
    rt = dsub.add_parser("retrain", help="verdicts -> a candidate model -> the gate -> a release "
                         "(only if the gate passed; needs the train extra)")
    rt.add_argument("--config", required=True, type=Path)
    rt.add_argument("--base", required=True, type=Path,
                    help="the model folder of the release to improve, e.g. vision/models/real")
    rt.add_argument("--name", default="detector", help="the release family the candidate joins")
    rt.add_argument("--out", type=Path, default=None,
                    help="work folder (default: retrain-<UTC time> beside releases.dir)")
    rt.add_argument("--camera", help="only this camera's verdicts: AGENT/SOURCE, or the source name")
    rt.add_argument("--since", help="only verdicts recorded from this date or time")
    rt.add_argument("--real", type=Path, default=None,
                    help="the base training photos and the gate's val photos (default: the trainer's)")
    rt.add_argument("--epochs", type=int, default=4)
    rt.add_argument("--max-minutes", type=float, default=None)
    rt.add_argument("--quick", action="store_true", help="a reduced run that proves the path (tests)")
    st = dsub.add_parser("stats", help="examples per camera, model and verdict")
    st.add_argument("--config", required=True, type=Path)
    st.add_argument("--json", action="store_true")


def parse_since(text: str | None, zone) -> datetime | None:  # noqa: ANN001 - a tzinfo
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(), zone)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CityopsError(f"--since {text!r}: give a date YYYY-MM-DD or an ISO 8601 time such "
                           "as 2026-12-01T08:00+08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when


def run_dataset(args: argparse.Namespace) -> int:
    from ..store.sqlite import SqliteRepository

    setup = load_setup(args.config)
    cfg = setup.config
    if args.dataset_command == "export" and not 0.0 <= args.val_fraction < 1.0:
        raise CityopsError(f"--val-fraction {args.val_fraction}: give a share from 0 (none held "
                           "out) up to, not including, 1")
    repo = SqliteRepository(cfg.database, writer=False)
    try:
        if args.dataset_command == "stats":
            figures = stats(repo.example_counts())
            if args.json:
                print(json.dumps(figures, ensure_ascii=False))
                return 0
            print(f"{figures['total']} example(s): " + ", ".join(
                f"{k} {v}" for k, v in sorted(figures["by_verdict"].items())))
            for title, key in (("camera", "by_camera"), ("model", "by_model")):
                for name, counts in figures[key].items():
                    print(f"  {title} {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            return 0
        since = parse_since(args.since, setup.zone)
        images = SnapshotFiles(dataset_dir(cfg.dataset.dir, cfg.snapshots_dir))
        if args.dataset_command == "retrain":
            now = SystemClock().now()
            work = args.out or cfg.releases.dir.with_name(f"retrain-{now:%Y%m%dT%H%M%SZ}")
            report = export_dataset(all_examples(repo, since=since, camera=args.camera), images,
                                    work / "verdicts", val_fraction=0.0, exported_at=now)
        else:
            report = export_dataset(all_examples(repo, since=since, camera=args.camera), images,
                                    args.out_dir, val_fraction=args.val_fraction,
                                    exported_at=SystemClock().now())
    finally:
        repo.close()
    if args.dataset_command == "retrain":
        return _retrain(args, work, report.images)
    for line in report.missing:
        print(f"cityops-hub: warning: left out {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(vars(report)))
    else:
        print(f"cityops-hub: {report.images} image(s) in {report.out_dir} ({report.positives} "
              f"labelled, {report.negatives} negative, {report.val} held out as val; "
              f"{report.copied} copied now)")
    return 0


def _retrain(args: argparse.Namespace, work: Path, exported: int) -> int:
    from ..cli import main as hub_main
    from .retrain import run_trainer, trainer_command

    if exported == 0:
        raise CityopsError("no verdicts to train on (mark snapshots on the case pages first, or widen "
                           "--camera/--since)")
    print(f"cityops-hub: {exported} verdict image(s) exported to {work / 'verdicts'}; retraining {args.base}",
          file=sys.stderr)
    candidate = work / "candidate"
    outcome = run_trainer(trainer_command(work / "verdicts", args.base, candidate, real=args.real,
                                          epochs=args.epochs, max_minutes=args.max_minutes, quick=args.quick),
                          candidate)
    if not outcome.passed:
        print("cityops-hub: the gate refused the candidate; no release was stored:", file=sys.stderr)
        for reason in outcome.reasons:
            print(f"  - {reason}", file=sys.stderr)
        print(f"  figures: {outcome.gate_file}", file=sys.stderr)
        return 3
    return hub_main(["release", "add", "--config", str(args.config), "--name", args.name,
                     "--notes", f"retrained on {exported} verdict image(s)", "--gate", str(outcome.gate_file),
                     str(candidate)])
