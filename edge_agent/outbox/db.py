"""The outbox database: one SQLite file in WAL mode, one writer (the agent's event loop
thread), schema migrations with sqlite-utils.

Besides the outbox rows it holds the rule state, so a rule's state change and the event
it causes commit in one transaction (a restart never re-opens an event that was sent,
nor forgets one that was not).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["connect", "migrations", "transaction"]

migrations = Migrations("cityops-agent-outbox")


@migrations()
def m001_outbox(db: Database) -> None:
    db.execute("""
        CREATE TABLE outbox (
            seq        INTEGER PRIMARY KEY,          -- per-agent sequence, never reused
            event_id   TEXT    NOT NULL,
            kind       TEXT    NOT NULL,             -- new | update | end | snapshot
            channel    TEXT    NOT NULL,             -- events | snapshots
            payload    BLOB    NOT NULL,             -- the encoded message (event JSON, snapshot)
            size       INTEGER NOT NULL,
            state      TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
            created_at REAL    NOT NULL,             -- unix time it was taken
            sent_at    REAL,                         -- unix time of the broker's PUBACK
            attempts   INTEGER NOT NULL DEFAULT 0,
            pair       INTEGER                       -- snapshot <-> its event row
        )""")
    db.execute("CREATE INDEX outbox_state ON outbox(state, seq)")
    db.execute("CREATE INDEX outbox_kind ON outbox(kind, seq)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', 1)")
    db.execute("""
        CREATE TABLE rule_state (
            key        TEXT PRIMARY KEY,             -- device/rule
            value      TEXT NOT NULL,                -- JSON
            updated_at REAL NOT NULL
        )""")


def connect(path: Path, *, synchronous: str = "full") -> sqlite3.Connection:
    """Open (creating when new) the outbox database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    db = Database(conn, execute_plugins=False)
    migrations.apply(db)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error).

    ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``) for
    changes a power cut may undo harmlessly (a PUBACK mark, an ack's deletions: at worst
    a row is sent again and the hub dedupes it). Event writes are always durable.
    """
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
