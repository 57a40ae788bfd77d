"""Property tests and a malformed-message storm. Reduced by default (a few hundred
examples per property); ``CITYOPS_FUZZ_EXAMPLES=5000 ./dev test tests/fuzz`` runs more."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "hub"))

settings.register_profile(
    "cityops", max_examples=int(os.environ.get("CITYOPS_FUZZ_EXAMPLES", "150")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=os.environ.get("CITYOPS_FUZZ_RANDOM") is None,
)
settings.load_profile("cityops")
