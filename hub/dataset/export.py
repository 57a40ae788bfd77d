"""``cityops-hub dataset export`` and ``stats``: the labelled examples as a folder a
retrain reads like ``../shared/realworld`` (``manifest.json`` version 2 and the images;
training/real.py ``read_manifest``), and their counts.

One manifest entry per snapshot: its latest operator verdict, else its closure's negative.

* ``true_alarm`` / ``wrong_class`` → ``classes: [label]``, with ``boxes: [{label, box}]`` and
  ``annotated: [label]`` when the example has a box (the operator's or the detector's);
  a ``wrong_class`` also lists the class the detector reported under ``annotated`` with no
  box: checked, and absent.
* ``false_alarm`` → a negative: ``classes: []``, ``boxes: []``, ``annotated`` the class the
  detector reported (checked, absent).

``source`` is ``hub-verdicts`` (pass it to the trainer's sources); ``group`` is the event
(its snapshots are near-duplicates), and ``split`` is drawn per group from a hash, so a
camera's held-out verdicts never share an event with its training ones. Extra keys (``camera``,
``agent_id``, ``model``, ``verdict``, ``case_id``, ``example_id``, ``by``, ``at``) say where
each came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..store.files import SnapshotFiles
from ..store.repo import Repository
from ..store.sqlite_dataset import ExampleRow
from .rules import LABELS

__all__ = ["MANIFEST_VERSION", "SOURCE", "ExportReport", "all_examples", "chosen_examples",
           "export_dataset", "manifest_entry", "split_of", "stats"]

MANIFEST_VERSION = 2
SOURCE = "hub-verdicts"
SPLIT_SEED = "cityops-verdicts"


def all_examples(repo: Repository, *, since: datetime | None = None, camera: str | None = None,
                 page: int = 1000) -> Iterator[ExampleRow]:
    after = 0
    while True:
        rows = repo.list_examples(since=since, camera=camera, after_id=after, limit=page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].id


def chosen_examples(examples: Iterable[ExampleRow]) -> list[ExampleRow]:
    """One example per snapshot (event and image): the latest operator verdict, else the
    closure's negative; in the order the snapshots were first labelled."""
    best: dict[tuple[str, str, str], ExampleRow] = {}
    for e in examples:
        key = (e.agent_id, e.event_id, e.image_sha256)
        held = best.get(key)
        if held is None or (e.source == "operator") >= (held.source == "operator"):
            best[key] = e  # ids grow: a later one of the same rank wins
    return list(best.values())


def split_of(group: str, val_fraction: float) -> str:
    h = hashlib.sha256(f"{SPLIT_SEED}/{group}".encode()).digest()
    return "val" if int.from_bytes(h[:4], "big") / 2**32 < val_fraction else "train"


def manifest_entry(e: ExampleRow, val_fraction: float) -> dict[str, Any]:
    """The manifest entry of one example (pure)."""
    group = f"{e.agent_id}/{e.camera}:{e.event_id}"
    classes: list[str] = []
    boxes: list[dict[str, Any]] = []
    annotated: list[str] = []
    if e.verdict != "false_alarm" and e.label is not None:
        classes = [e.label]
        if e.bbox is not None:
            boxes = [{"label": e.label, "box": [round(v, 5) for v in e.bbox]}]
            annotated.append(e.label)
    if e.detected in LABELS and e.detected not in classes:
        annotated.append(e.detected)  # what the detector said, checked by a person: not there
    note = f"{e.source} verdict {e.verdict} by {e.by} on case {e.case_id}"
    if e.verdict == "wrong_class" and e.detected:
        note += f" (the detector said {e.detected})"
    return {"file": f"images/{e.image_sha256}.jpg", "source": SOURCE, "classes": classes,
            "boxes": boxes, "annotated": annotated, "split": split_of(group, val_fraction),
            "group": group, "note": note, "camera": e.camera, "agent_id": e.agent_id,
            "event_id": e.event_id, "model": e.model, "verdict": e.verdict, "detected": e.detected,
            "case_id": e.case_id, "example_id": e.id, "by": e.by, "at": e.at.isoformat(),
            "width": e.width, "height": e.height}


@dataclass
class ExportReport:
    out_dir: str
    images: int = 0
    positives: int = 0
    negatives: int = 0
    val: int = 0
    copied: int = 0
    missing: list[str] = field(default_factory=list)  # examples whose image file is gone


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export_dataset(examples: Iterable[ExampleRow], images: SnapshotFiles, out_dir: Path, *,
                   val_fraction: float = 0.2, exported_at: datetime | None = None) -> ExportReport:
    """Write ``out_dir/images/{sha256}.jpg`` and ``out_dir/manifest.json`` for these
    examples. An example whose image file is missing is left out and named in the report."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    report = ExportReport(str(out_dir))
    entries = []
    for e in chosen_examples(examples):
        src = images.path_for(e.image_sha256)
        dst = out_dir / "images" / f"{e.image_sha256}.jpg"
        if not src.is_file():
            report.missing.append(f"example {e.id} (case {e.case_id}): {src} is gone")
            continue
        if not dst.is_file():
            shutil.copyfile(src, dst)
            report.copied += 1
        entry = manifest_entry(e, val_fraction)
        entries.append(entry)
        report.images += 1
        report.positives += bool(entry["classes"])
        report.negatives += not entry["classes"]
        report.val += entry["split"] == "val"
    manifest = {"version": MANIFEST_VERSION, "classes": list(LABELS), "images": entries,
                "source": SOURCE}
    if exported_at is not None:
        manifest["exported_at"] = exported_at.isoformat()
    _write_json(out_dir / "manifest.json", manifest)
    return report


def stats(rows: Iterable[tuple[str, str, str | None, str, str, int]]) -> dict[str, Any]:
    """Counts per camera, per model and per verdict (and the total), from
    ``repo.example_counts()``."""
    cameras: dict[str, Counter] = {}
    models: dict[str, Counter] = {}
    verdicts: Counter = Counter()
    sources: Counter = Counter()
    total = 0
    for agent_id, camera, model, verdict, source, n in rows:
        cameras.setdefault(f"{agent_id}/{camera}", Counter())[verdict] += n
        models.setdefault(model or "(unknown)", Counter())[verdict] += n
        verdicts[verdict] += n
        sources[source] += n
        total += n
    return {"total": total, "by_verdict": dict(verdicts), "by_source": dict(sources),
            "by_camera": {k: dict(v) for k, v in sorted(cameras.items())},
            "by_model": {k: dict(v) for k, v in sorted(models.items())}}
