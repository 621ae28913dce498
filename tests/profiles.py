"""Hypothesis profiles, and the one way a property asks for fewer examples than the profile.

Profiles (select with ``HYPOTHESIS_PROFILE=<name>``; ``tests/conftest.py`` loads the choice):
  ``default``  deterministic (derandomized), 50 examples, no deadline -- what CI runs;
  ``explore``  random seeds, 1000 examples -- for hunting counterexamples locally;
  ``quick``    deterministic, 10 examples -- for a fast local loop.

The profile decides every property's example count. A property whose every example calls an
external solver (cvxpy/CLARABEL) or a high-precision mpmath reference is decorated with
``@solver_bound`` (``SOLVER_FRACTION`` of the profile's count, 12 of 50 by default and 250 of 1000
under ``explore``); no property hard-codes ``max_examples``.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = {"default": dict(derandomize=True, max_examples=50),
            "explore": dict(derandomize=False, max_examples=1000),
            "quick": dict(derandomize=True, max_examples=10)}
for _name, _kw in PROFILES.items():
    settings.register_profile(_name, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                              **_kw)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)

# fraction of the profile's examples for a property that runs a cvxpy solve or an mpmath reference
# per example (each costs 10-500 ms, against ~1 ms for the closed forms)
SOLVER_FRACTION = 0.25


def scaled(fraction: float) -> settings:
    """A settings decorator with ``fraction`` of the active profile's ``max_examples`` (at least 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]; the profile sets the full count")
    return settings(max_examples=max(1, round(settings.default.max_examples * fraction)))


solver_bound = scaled(SOLVER_FRACTION)
