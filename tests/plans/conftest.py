from __future__ import annotations

import sys
from pathlib import Path

# The web tests' client (tests/web/webtest.py) and its helpers (tests/hub/hubtest.py).
for folder in ("hub", "web"):
    path = str(Path(__file__).resolve().parents[1] / folder)
    if path not in sys.path:
        sys.path.insert(0, path)
