"""The SQLite queries behind the labelled-examples dataset (``dataset_examples``; see
hub/dataset/): a mixin of :class:`hub.store.sqlite.SqliteRepository`. Writes run inside
the writer's transaction like every other write.

One row is one verdict on one snapshot: an operator's (``source='operator'``, any number
per snapshot, the latest counts) or a ``false_alarm`` closure's negative
(``source='closure'``, at most one per event and image: the partial unique index makes a
second closure of the same case add nothing). The image is a copy of the snapshot in the
dataset's own folder, named by its sha256, so the snapshots' retention never takes it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from .rows import from_db_time, to_db_time

__all__ = ["DatasetQueries", "ExampleRow", "NewExample"]


@dataclass(frozen=True)
class NewExample:
    """What a verdict stores (the id and nothing else is added by the store)."""

    case_id: int
    agent_id: str
    event_id: str
    camera: str  # the event's source
    model: str | None  # the event's attributes["model"] when it named one
    detected: str | None  # the class the detector reported (attributes["label"])
    image_sha256: str
    width: int
    height: int
    verdict: str  # true_alarm | false_alarm | wrong_class
    label: str | None  # the class it is (None for a false alarm)
    bbox: tuple[float, float, float, float] | None  # normalised x1, y1, x2, y2
    source: str  # operator | closure
    by: str  # the account (or "auto")
    at: datetime


@dataclass(frozen=True)
class ExampleRow(NewExample):
    id: int = 0


_COLUMNS = ("case_id", "agent_id", "event_id", "camera", "model", "detected", "image_sha256",
            "width", "height", "verdict", "label", "bbox", "source", "by_account", "at")


def _example(row: sqlite3.Row) -> ExampleRow:
    bbox = json.loads(row["bbox"]) if row["bbox"] else None
    return ExampleRow(
        id=row["id"], case_id=row["case_id"], agent_id=row["agent_id"], event_id=row["event_id"],
        camera=row["camera"], model=row["model"], detected=row["detected"],
        image_sha256=row["image_sha256"], width=row["width"], height=row["height"],
        verdict=row["verdict"], label=row["label"], bbox=None if bbox is None else tuple(bbox),
        source=row["source"], by=row["by_account"], at=from_db_time(row["at"]))  # type: ignore[arg-type]


def _values(e: NewExample) -> tuple:
    return (e.case_id, e.agent_id, e.event_id, e.camera, e.model, e.detected, e.image_sha256,
            e.width, e.height, e.verdict, e.label,
            None if e.bbox is None else json.dumps([round(v, 5) for v in e.bbox]),
            e.source, e.by, to_db_time(e.at))


_INSERT = (f"INSERT INTO dataset_examples ({', '.join(_COLUMNS)}) "  # noqa: S608
           f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


class DatasetQueries:
    conn: sqlite3.Connection

    def add_example(self, example: NewExample) -> int:
        """Store one verdict; returns its id, or 0 for a closure negative already stored."""
        sql = _INSERT
        if example.source == "closure":
            sql += " ON CONFLICT (agent_id, event_id, image_sha256) WHERE source = 'closure' DO NOTHING"
        cur = self.conn.execute(sql, _values(example))
        return int(cur.lastrowid or 0) if cur.rowcount == 1 else 0

    def examples_for_case(self, case_id: int) -> list[ExampleRow]:
        """The examples given on this case, and those on the snapshots its events have now
        (a case merged into this one brings its events, and their verdicts show here)."""
        rows = self.conn.execute(
            "SELECT * FROM dataset_examples WHERE case_id = ? OR image_sha256 IN ("
            " SELECT s.sha256 FROM snapshots s JOIN events e ON e.agent_id = s.agent_id"
            " AND e.event_id = s.event_id WHERE e.case_id = ?) ORDER BY id", (case_id, case_id))
        return [_example(r) for r in rows]

    def list_examples(self, *, since: datetime | None = None, camera: str | None = None,
                      after_id: int = 0, limit: int = 1000) -> list[ExampleRow]:
        """Examples in id order (page with ``after_id``), from ``since`` on, of one camera
        (``agent_id/source`` or just the source name) when given."""
        where, params = ["id > ?"], [after_id]
        if since is not None:
            where.append("at >= ?")
            params.append(to_db_time(since))
        if camera is not None:
            where.append("(camera = ? OR agent_id || '/' || camera = ?)")
            params += [camera, camera]
        sql = (f"SELECT * FROM dataset_examples WHERE {' AND '.join(where)}"  # noqa: S608
               " ORDER BY id LIMIT ?")
        return [_example(r) for r in self.conn.execute(sql, [*params, limit])]

    def example_counts(self) -> list[tuple[str, str, str | None, str, str, int]]:
        """(agent_id, camera, model, verdict, source, count) over the whole dataset."""
        rows = self.conn.execute(
            "SELECT agent_id, camera, model, verdict, source, count(*) FROM dataset_examples"
            " GROUP BY agent_id, camera, model, verdict, source"
            " ORDER BY agent_id, camera, model, verdict, source")
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def purge_examples(self, before: datetime, limit: int) -> tuple[int, list[str]]:
        """Delete examples recorded before ``before``; return how many, and the sha256s of
        images no example names any more (their files can go)."""
        rows = self.conn.execute("SELECT id, image_sha256 FROM dataset_examples WHERE at < ?"
                                 " ORDER BY id LIMIT ?", (to_db_time(before), limit)).fetchall()
        if not rows:
            return 0, []
        self.conn.executemany("DELETE FROM dataset_examples WHERE id = ?", [(r[0],) for r in rows])
        shas = sorted({r[1] for r in rows})
        return len(rows), [s for s in shas if self.conn.execute(
            "SELECT 1 FROM dataset_examples WHERE image_sha256 = ? LIMIT 1", (s,)).fetchone() is None]
