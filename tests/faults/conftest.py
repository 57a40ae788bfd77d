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


import pytest  # noqa: E402
from faultlib import SCALE  # noqa: E402


@pytest.fixture(params=[pytest.param(1, id="reduced"), pytest.param(10, id="large", marks=pytest.mark.slow)])
def scale(request) -> int:
    """Size factor: 1 in the default run, 10 with ``-m slow``; times CITYOPS_FAULT_SCALE."""
    return request.param * SCALE
