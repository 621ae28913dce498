"""Shared test configuration: the hypothesis profile (tests/profiles.py) and one thread per test.

The tolerance table lives in ``tests/tolerances.py``: tests import ``TOL`` from there (pytest advises against
importing from conftest.py).
"""
from __future__ import annotations

import numpy as np
import pytest

import tests.profiles  # noqa: F401  (registers and loads the HYPOTHESIS_PROFILE)


# Tiny models on a shared 2-core machine: intra-op threading costs far more than it gains
# (measured 10-50x slower per test under load). Tests that need threads can set them locally.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng():
    return np.random.default_rng(0)
