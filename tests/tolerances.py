"""The one tolerance table of the test suite, with the reason for each entry.

Tests import it as ``from tests.tolerances import TOL`` and cite the key (pytest advises against
importing from ``conftest.py``, which is where it used to live).
"""
from __future__ import annotations

TOL = {
    # closed forms evaluated in float64 against each other or against exact enumeration
    "float64": 1e-10,
    # float64 quantities that pass through an iterative 1-D optimizer (brentq/minimize_scalar)
    "dual_1d": 1e-7,
    # cvxpy/CLARABEL interior-point solutions: default tolerances are ~1e-8 on the objective,
    # primal variables are looser near the boundary of the simplex
    "cvxpy_value": 1e-5,
    "cvxpy_primal": 1e-3,
    # float32 torch kernels vs float64 references
    "float32": 1e-5,
    # bf16 matmuls
    "bf16": 1e-2,
    # Monte Carlo estimates with n samples: tests state their own multiple of 1/sqrt(n)
    # float64 central differences (f(x+h) - f(x-h)) / 2h, h = 1e-5, on smooth O(1) functions:
    # truncation h^2 |f'''| / 6 ~ 1e-11 plus round-off eps |f| / h ~ 1e-11, with a 1e4 margin
    "central_diff": 1e-7,
    # a value quoted to 3 decimals in docs/theory.md or a paper (e.g. ΔS = +0.129): half a unit in
    # the last quoted place
    "quoted_3dp": 5e-4,
}
