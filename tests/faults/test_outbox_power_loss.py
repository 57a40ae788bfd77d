"""Power loss under the agent's outbox (SQLite WAL, synchronous=full). A child process
takes events as fast as it can and says so (seq, WAL size) after each ``emit`` returns;
at random moments it is frozen (SIGSTOP) and its database and WAL are copied: the disk
as a kill -9 would leave it. From each copy, a power loss is simulated by cutting the
WAL at a random point past the last taken event (the unsynced tail of the transaction
in progress is lost) or by overwriting that tail with garbage (a torn write). Reopening
every copy must not crash, must keep every event taken, and must never reuse a seq."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge_agent.outbox import Outbox
from protocol.codec import decode_events

CHILD = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path
from edge_agent.emit import EventDraft
from edge_agent.outbox import Outbox
from protocol.messages import EventKind, Evidence, Location, Reading

path = Path(sys.argv[1])
box = Outbox(path, "agent-1", synchronous="full")
wal = Path(str(path) + "-wal")
i = 0
while True:
    kind = (EventKind.NEW, EventKind.UPDATE, EventKind.END)[i % 3]
    seq = box.emit(EventDraft(
        event_id=f"m-{i // 3}", kind=kind, category="elderly_care",
        subcategory="elderly_care.water_no_use", source=f"m{i // 3}",
        observed_at=datetime.now(UTC), location=Location(lat=31.2, lon=121.4),
        evidence=Evidence(reading=Reading(name="volume", value=float(i))),
        attributes={"pad": "x" * (i % 200)}))
    print(seq, wal.stat().st_size, flush=True)
    i += 1
"""


def reopen(db: Path, taken: int) -> None:
    box = Outbox(db, "agent-1")
    try:
        rows = box.rows()
        seqs = [r["seq"] for r in rows]
        assert seqs == sorted(set(seqs))
        assert set(range(1, taken + 1)) <= set(seqs), f"lost taken events: {taken} taken, {len(seqs)} kept"
        for row in box.take_backlog(100_000, 1 << 30):
            decode_events(row.payload, agent_id="agent-1")  # intact, not just present
        assert box.next_seq > max(seqs, default=0), "a seq would be reused"
    finally:
        box.close()


def test_power_loss_at_random_points_keeps_every_taken_event(tmp_path, scale):
    rng = random.Random(int(os.environ.get("CITYOPS_FAULT_SEED", "0")) or None)
    db = tmp_path / "outbox.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                            text=True, cwd=str(Path(__file__).resolve().parents[2]))
    taken: list[tuple[int, int]] = []
    lock = threading.Lock()

    def read() -> None:
        for line in proc.stdout:
            parts = line.split()
            if len(parts) != 2:
                return  # the child was killed in the middle of a line, at the end of the test
            seq, wal = parts
            with lock:
                taken.append((int(seq), int(wal)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    snapshots = []
    try:
        deadline = time.monotonic() + 20
        while not taken:
            assert time.monotonic() < deadline and proc.poll() is None, "the writer did not start"
            time.sleep(0.01)
        for k in range(12 * scale):
            time.sleep(rng.uniform(0.005, 0.08))
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(0.03)  # the reader drains what the frozen child already printed
            with lock:
                last_seq, last_wal = taken[-1]
            snap = tmp_path / f"snap-{k}"
            snap.mkdir()
            shutil.copy(db, snap / db.name)
            wal = Path(str(db) + "-wal")
            if wal.exists():
                shutil.copy(wal, snap / wal.name)
            os.kill(proc.pid, signal.SIGCONT)
            snapshots.append((snap, last_seq, last_wal))
    finally:
        proc.kill()
        proc.wait(10)
    assert snapshots[-1][1] > 20, "too few events were taken to say anything"
    for snap, last_seq, last_wal in snapshots:
        crash = snap / "outbox.sqlite"
        wal = snap / "outbox.sqlite-wal"
        variants = [("kill -9", None)]
        if wal.exists() and wal.stat().st_size > last_wal:
            variants += [("cut", rng.randint(last_wal, wal.stat().st_size)),
                         ("torn", rng.randint(last_wal, wal.stat().st_size))]
        for name, offset in variants:
            case = snap / name.replace(" ", "")
            case.mkdir()
            shutil.copy(crash, case / crash.name)
            if wal.exists():
                shutil.copy(wal, case / wal.name)
            if name == "cut":
                os.truncate(case / wal.name, offset)
            elif name == "torn":
                size = (case / wal.name).stat().st_size
                with open(case / wal.name, "r+b") as f:
                    f.seek(offset)
                    f.write(rng.randbytes(size - offset))
            reopen(case / crash.name, last_seq)
