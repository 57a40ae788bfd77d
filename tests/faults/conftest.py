"""Fault injection: kill -9, power loss, full disks, lost brokers. Reduced sizes by
default; ``CITYOPS_FAULT_SCALE=10 ./dev test tests/faults`` (or ``-m slow``) runs larger."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for sub in ("hub", "edge_agent"):
    path = str(HERE.parent / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
