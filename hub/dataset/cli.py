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
        report = export_dataset(all_examples(repo, since=since, camera=args.camera), images,
                                args.out_dir, val_fraction=args.val_fraction,
                                exported_at=SystemClock().now())
    finally:
        repo.close()
    for line in report.missing:
        print(f"cityops-hub: warning: left out {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(vars(report)))
    else:
        print(f"cityops-hub: {report.images} image(s) in {report.out_dir} ({report.positives} "
              f"labelled, {report.negatives} negative, {report.val} held out as val; "
              f"{report.copied} copied now)")
    return 0
