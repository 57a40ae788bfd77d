"""The hub's side of the dataset: a verdict copies the snapshot into the dataset's folder
and stores its row; a ``false_alarm`` closure adds its negatives; the retention sweep
deletes old examples and the images no example names any more.

The image is written (fsynced, renamed) before the row that names it is committed, as
snapshots are; a crash between the two leaves at most an unnamed file, never a row
without its image.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..store.files import SnapshotFiles
from ..store.repo import LifecycleRow, Repository, SnapshotRow
from ..store.sqlite_dataset import ExampleRow, NewExample
from .config import dataset_dir
from .rules import (
    Box,
    DatasetError,
    bbox_problem,
    detected_label,
    event_model,
    example_label,
    is_camera_event,
)

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["DatasetService", "LabelTarget", "label_targets"]

log = logging.getLogger(__name__)

PRUNE_BATCH = 1000


@dataclass(frozen=True)
class LabelTarget:
    """A camera snapshot of a case that an operator can give a verdict on."""

    snapshot: SnapshotRow
    event: LifecycleRow

    @property
    def detected(self) -> str | None:
        return detected_label(self.event)


def label_targets(events: list[LifecycleRow], snapshots: list[SnapshotRow]) -> list[LabelTarget]:
    """The snapshots of a case's camera events, in arrival order."""
    by_key = {(e.agent_id, e.event_id): e for e in events}
    out = []
    for s in snapshots:
        event = by_key.get((s.agent_id, s.event_id))
        if event is not None and is_camera_event(event):
            out.append(LabelTarget(s, event))
    return out


def _example(target: LabelTarget, case_id: int, verdict: str, label: str | None, bbox: Box | None,
             source: str, by: str, at: datetime) -> NewExample:
    e, s = target.event, target.snapshot
    return NewExample(case_id=case_id, agent_id=e.agent_id, event_id=e.event_id, camera=e.source,
                      model=event_model(e), detected=detected_label(e), image_sha256=s.sha256,
                      width=s.width, height=s.height, verdict=verdict, label=label, bbox=bbox,
                      source=source, by=by, at=at)


def _event_box(event: LifecycleRow) -> Box | None:
    b = event.bbox
    if b is None or len(b) != 4:
        return None
    box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
    return box if bbox_problem(box) is None else None


class DatasetService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        cfg = hub.config
        self.images = SnapshotFiles(dataset_dir(cfg.dataset.dir, cfg.snapshots_dir))

    async def _targets(self, case_id: int) -> list[LabelTarget]:
        def load(repo: Repository) -> list[LabelTarget]:
            return label_targets(repo.lifecycles_for_case(case_id), repo.snapshots_for_case(case_id))

        return await self.hub.read(load)

    async def _copy(self, sha256: str) -> bool:
        """Copy a snapshot file into the dataset's folder (idempotent); False when the
        snapshot file is gone."""
        if await asyncio.to_thread(self.images.exists, sha256):
            return True
        jpeg = await asyncio.to_thread(self.hub.files.get, sha256)
        if jpeg is None:
            return False
        await asyncio.to_thread(self.images.put, jpeg)
        return True

    async def record(self, case_id: int, snapshot_id: int, verdict: str, *, label: str | None,
                     bbox: Box | None, by: str) -> ExampleRow:
        """An operator's verdict on one snapshot of the case. ``bbox`` None keeps the
        event's box. Raises :class:`DatasetError` naming the field at fault."""
        target = next((t for t in await self._targets(case_id) if t.snapshot.id == snapshot_id), None)
        if target is None:
            raise DatasetError("snapshot", "unknown", f"snapshot {snapshot_id} is not a camera "
                                                      f"snapshot of case {case_id}")
        stored_label = example_label(verdict, label, target.detected)
        if bbox is not None and (why := bbox_problem(bbox)) is not None:
            raise DatasetError("bbox", why, "x1, y1, x2, y2 must be within 0..1 with x1 < x2 and y1 < y2")
        box = bbox if bbox is not None else _event_box(target.event)
        if not await self._copy(target.snapshot.sha256):
            raise DatasetError("snapshot", "gone", f"the file of snapshot {snapshot_id} is no longer on "
                                                   "the hub (removed by retention)")
        example = _example(target, case_id, verdict, stored_label, box, "operator", by, self.hub.clock.now())
        example_id = await self.hub.write(lambda repo: repo.add_example(example))
        log.info("dataset: %s marked snapshot %s of case %s %s%s", by, snapshot_id, case_id, verdict,
                 f" ({stored_label})" if stored_label else "")
        return ExampleRow(**vars(example), id=example_id)

    async def closure_negatives(self, case_id: int, by: str) -> int:
        """A ``false_alarm`` closure: one negative per camera snapshot of the case (each
        added once, however often the case is closed); returns how many were added."""
        added = 0
        now = self.hub.clock.now()
        examples = []
        for target in await self._targets(case_id):
            if not await self._copy(target.snapshot.sha256):
                log.warning("dataset: snapshot %s of case %s is gone; no negative for it",
                            target.snapshot.sha256[:12], case_id)
                continue
            examples.append(_example(target, case_id, "false_alarm", None, _event_box(target.event),
                                     "closure", by, now))
        if examples:
            added = await self.hub.write(lambda repo: sum(bool(repo.add_example(e)) for e in examples))
        if added:
            log.info("dataset: case %s closed as a false alarm: %d negative(s) added", case_id, added)
        return added

    async def prune(self, now: datetime) -> int:
        """Delete examples older than ``dataset.retention_days`` and the images no example
        names any more; returns the examples deleted."""
        before = now - timedelta(days=self.hub.config.dataset.retention_days)
        total = 0
        while True:
            removed, shas = await self.hub.write(lambda repo: repo.purge_examples(before, PRUNE_BATCH))
            for sha in shas:
                await asyncio.to_thread(self.images.delete, sha)
            total += removed
            if removed < PRUNE_BATCH:
                return total
