"""A hostile agent against a real hub while five normal agents publish (issue 17's
proof). ``adversary.py`` is the harness, ``malformed.py`` the seeded generator of
malformed messages. Seeds: ``CITYOPS_ADVERSARIAL_SEED`` (default 17)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "hub")):
    if path not in sys.path:
        sys.path.insert(0, path)
