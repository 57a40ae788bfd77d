"""Online backups of the hub's state: the SQLite store and the files it names (snapshots,
event clips, release packages, the labelled dataset's images).

Serves the person who runs the hub (``cityops-hub backup``, e.g. from a nightly timer).
The hub keeps running while it is backed up:

* the database is copied with SQLite's online backup API, which yields a consistent
  snapshot of a WAL database even while the writer commits (a plain ``cp`` of
  ``hub.sqlite`` without its ``-wal`` file is not a backup);
* snapshot files are content-addressed and never change once written, so they are copied
  incrementally into one ``snapshots/`` tree shared by every backup in the target folder:
  a file already there with the same size is skipped; the same holds for event clips
  (``clips/``), release packages (``releases/``) and the dataset's images (``dataset/``);
* the copy is checked (``PRAGMA integrity_check``) and a ``manifest.json`` records what was
  copied, the schema version and the row counts, so a restore can be verified.

Files are copied *after* the database, so every file the copied database names is in the
backup (a newer file may be too; harmless).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from protocol.errors import CityopsError

__all__ = ["BackupError", "BackupReport", "backup_hub"]

_COUNTED = ("messages", "cases", "snapshots", "dead_letters")


class BackupError(CityopsError):
    """The backup could not be made or failed its check."""


@dataclass(frozen=True)
class BackupReport:
    folder: str
    database: str
    database_bytes: int
    schema_version: int
    counts: dict[str, int]
    snapshots_copied: int
    snapshots_skipped: int
    snapshot_bytes_copied: int
    integrity: str
    taken_at: str
    files: dict[str, dict[str, int]]  # per file tree (snapshots, clips, releases, dataset): copied, skipped, bytes


def _copy_database(src: Path, dst: Path) -> None:
    if not src.exists():
        raise BackupError(f"no hub database at {src}; check `database:` in the hub config")
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target, pages=4096)  # in steps, so the hub's writer is never held up long
    except sqlite3.Error as exc:
        raise BackupError(f"copying {src} failed: {exc}") from exc
    finally:
        target.close()
        source.close()


def _inspect(db: Path) -> tuple[str, int, dict[str, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                  for t in _COUNTED if t in tables}
        if "_sqlite_migrations" in tables:
            version = con.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    finally:
        con.close()
    return integrity, int(version), counts


def _copy_files(src: Path, dst: Path) -> tuple[int, int, int]:
    """Every finished file under ``src`` into ``dst`` (same relative path), skipping those
    already there with the same size; files being written (``.part``, ``.tmp``) are left."""
    copied = skipped = nbytes = 0
    if not src.is_dir():
        return 0, 0, 0
    for path in src.rglob("*"):
        if not path.is_file() or path.suffix in (".part", ".tmp"):
            continue
        target = dst / path.relative_to(src)
        size = path.stat().st_size
        if target.exists() and target.stat().st_size == size:
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
        copied += 1
        nbytes += size
    return copied, skipped, nbytes


def backup_hub(database: Path, snapshots_dir: Path, target: Path, now: datetime,
               trees: dict[str, Path | None] | None = None) -> BackupReport:
    """Back up ``database`` and ``snapshots_dir`` into ``target`` (created if missing):
    ``target/hub-<UTC time>/hub.sqlite`` + ``manifest.json`` and ``target/snapshots/``; and
    each of ``trees`` (name → folder, e.g. ``{"clips": ...}``) into ``target/<name>/``."""
    folder = target / f"hub-{now:%Y%m%dT%H%M%SZ}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise BackupError(f"{folder} exists already; wait a second or choose another --to") from exc
    except OSError as exc:
        raise BackupError(f"cannot create {folder}: {exc.strerror}") from exc
    db_copy = folder / "hub.sqlite"
    _copy_database(database, db_copy)
    integrity, version, counts = _inspect(db_copy)
    if integrity != "ok":
        raise BackupError(f"the copy {db_copy} failed its integrity check: {integrity}")
    files: dict[str, dict[str, int]] = {}
    for name, src in {"snapshots": snapshots_dir, **(trees or {})}.items():
        if src is None:
            continue
        try:
            c, k, b = _copy_files(src, target / name)
        except OSError as exc:
            raise BackupError(f"copying {src} into {target / name} failed: {exc}") from exc
        files[name] = {"copied": c, "skipped": k, "bytes": b}
    snaps = files["snapshots"]
    report = BackupReport(folder=str(folder), database=str(db_copy), database_bytes=db_copy.stat().st_size,
                          schema_version=version, counts=counts, snapshots_copied=snaps["copied"],
                          snapshots_skipped=snaps["skipped"], snapshot_bytes_copied=snaps["bytes"],
                          integrity=integrity, taken_at=now.isoformat(), files=files)
    (folder / "manifest.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
