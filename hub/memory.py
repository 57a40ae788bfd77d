"""Where the hub process's memory is: resident set size and SQLite's own allocations.

``/metrics`` publishes both (``cityops_hub_memory_bytes``) so a long-running hub can be
watched for growth, and the soak benchmark samples them to tell a bounded cache filling up
(SQLite's page caches, one per connection) from a leak. SQLite's figure comes from
``sqlite3_memory_used()`` of the library Python's ``sqlite3`` module is linked against;
where that library is linked in statically it cannot be reached and is left out.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sqlite3
from functools import cache

__all__ = ["rss_bytes", "sqlite_bytes"]


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of a process (Linux ``/proc``), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@cache
def _sqlite_library() -> ctypes.CDLL | None:
    sqlite3.sqlite_version  # noqa: B018 - the module (and its library) is loaded by the import
    path = None
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            name = line.rstrip().rsplit(" ", 1)[-1]
            if "/libsqlite3" in name:
                path = name
                break
    if path is None:  # not a shared library here (or not Linux)
        return None
    try:
        lib = ctypes.CDLL(path)  # the copy already loaded: dlopen hands back the same one
    except OSError:
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_used.argtypes = []
    return lib


def sqlite_bytes() -> int | None:
    """Bytes SQLite has allocated in this process (page caches, schemas, statements)."""
    lib = _sqlite_library()
    return None if lib is None else int(lib.sqlite3_memory_used())
