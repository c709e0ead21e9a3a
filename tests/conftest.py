"""Shared pytest setup: the repo root on sys.path, hypothesis profiles.

Profiles (pick with the HYPOTHESIS_PROFILE environment variable):

* ``dev`` (default): 25 examples per property, no deadline (CPU model builds vary in time).
* ``ci``: 100 examples per property, no deadline, derandomized: a clean clone draws the same
  examples every run, so a CI verdict can be reproduced (and a red CI is the code's, not the
  seed's). The random search for new disagreements runs in the ``dev`` profile (a fresh seed
  each run) and at scale in ``python -m tests.differential --n N --seed S``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# `from tests.hf_truth import ...` and `import perceiver_calc` work without installing the
# package (pytest's rootdir conftest import alone does not put the repo root on sys.path).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
