"""Security tests reuse the web tests' fixtures (a running hub with users, a signed-in
client, a test agent) and the hub tests' helpers, rather than copies of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for sub in ("hub", "web"):
    if str(TESTS / sub) not in sys.path:
        sys.path.insert(0, str(TESTS / sub))

_spec = importlib.util.spec_from_file_location("web_fixtures", TESTS / "web" / "conftest.py")
_web = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_web)

clock, hub, client, agent = _web.clock, _web.hub, _web.client, _web.agent
