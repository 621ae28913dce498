"""theory/risk.py, entropic risk: docs/theory.md §1 facts as properties, and an mpmath reference.

ER_λ(r) = -λ log E_p e^{-r/λ} (FRPO Remark 3.3). The mpmath reference evaluates the
definition literally at 60 digits (no shift, no log1p), so it shares nothing with the code it checks.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize_scalar

from tests.tolerances import TOL
from theory.risk import entropic_risk, kl_dro_dual, variance_penalty_value

mpmath.mp.dps = 60


# ---------------------------------------------------------------------------------------------
# strategies and references
# ---------------------------------------------------------------------------------------------
@st.composite
def dist(draw, n_min=1, n_max=8, scale=10.0, zeros=False, tiny=True):
    """(values (n,), probs (n,)): bounded rewards (ties on an integer grid), probabilities bounded
    away from 0 (or exactly 0 with ``zeros``), with ``tiny`` some entries down to 1e-300."""
    n = draw(st.integers(n_min, n_max))
    grid = st.integers(-3, 3).map(float) if scale >= 3 else st.sampled_from([-1.0, 0.0, 1.0])
    v = draw(arrays(np.float64, n, elements=st.one_of(st.floats(-scale, scale), grid)))
    low = 0.0 if zeros else 0.02
    element = st.floats(low, 1.0)
    if tiny:
        element = st.one_of(element, st.floats(-300.0, -2.0).map(lambda e: 10.0 ** e))
    wts = draw(arrays(np.float64, n, elements=element))
    wts[0] = max(wts[0], 0.05)
    return v, wts / wts.sum()


log_lam = st.floats(-3.0, 3.0)          # λ = 10**x, relative to rewards of scale <= 10
wide_log_lam = st.one_of(log_lam, st.floats(-8.0, 12.0), st.sampled_from([-8.0, 12.0]))


def mp_probs(p):
    """p as 60-digit numbers summing to exactly 1 (float rounding of Σp would otherwise be
    amplified by λ³ in the cumulant check)."""
    p = [mpmath.mpf(x) for x in p]
    total = mpmath.fsum(p)
    return [x / total for x in p]


def mp_entropic_risk(v, p, lam):
    """-λ log Σ p e^{-v/λ} at 60 digits, literally."""
    lam = mpmath.mpf(lam)
    z = mpmath.fsum(pi * mpmath.exp(-mpmath.mpf(vi) / lam) for vi, pi in zip(v, mp_probs(p)))
    return -lam * mpmath.log(z)


def mp_cumulants(v, p):
    """First four cumulants of the finite distribution (v, p), at 60 digits."""
    v = [mpmath.mpf(x) for x in v]
    p = mp_probs(p)
    mu = mpmath.fsum(pi * vi for vi, pi in zip(v, p))
    c = [mpmath.fsum(pi * (vi - mu) ** k for vi, pi in zip(v, p)) for k in (2, 3, 4)]
    return mu, c[0], c[1], c[2] - 3 * c[0] ** 2


def tol(v, c=0.0):
    return TOL["float64"] * (1.0 + float(np.max(np.abs(v))) + abs(c))


# ---------------------------------------------------------------------------------------------
# bounds, monotonicity, limits, invariances
# ---------------------------------------------------------------------------------------------
@given(dist(), wide_log_lam)
def test_between_min_and_mean(vp, x):
    v, p = vp
    er = entropic_risk(v, 10.0 ** x, p)
    assert v.min() - tol(v) <= er <= p @ v + tol(v)


@given(dist(), log_lam)
def test_hoeffding_lower_bound(vp, x):
    """log E e^{-(r - E r)/λ} <= s²/(8λ²) (Hoeffding's lemma) gives ER >= E r - s²/(8λ), s = max - min."""
    v, p = vp
    lam = 10.0 ** x
    s = v.max() - v.min()
    assert entropic_risk(v, lam, p) >= p @ v - s * s / (8.0 * lam) - tol(v)


@given(dist(), wide_log_lam, st.floats(0.0, 3.0))
def test_nondecreasing_in_lam(vp, x, dx):
    v, p = vp
    assert entropic_risk(v, 10.0 ** x, p) <= entropic_risk(v, 10.0 ** (x + dx), p) + tol(v)


@given(dist())
def test_lam_inf_is_mean_and_large_lam_converges(vp):
    v, p = vp
    assert entropic_risk(v, math.inf, p) == pytest.approx(p @ v, abs=tol(v))
    var = p @ (v - p @ v) ** 2
    for lam in (1e4, 1e6):
        # first-order term: ER = E r - Var/(2λ) + O(λ^-2)
        assert abs(entropic_risk(v, lam, p) - (p @ v - var / (2 * lam))) <= 100.0 / lam**2 + tol(v)


@given(dist(zeros=True))
def test_lam_zero_is_min_over_support(vp):
    v, p = vp
    sup = p > 0
    v = v.copy()
    v[~sup] = -1e3                        # zero-probability responses must not count
    assert entropic_risk(v, 0.0, p) == v[sup].min()


@given(dist(zeros=True), st.floats(-6.0, 0.0))
def test_small_lam_converges_to_min(vp, x):
    """ER_λ = min r - λ log Z with Z >= π(argmin), so 0 <= ER - min <= λ log(1/π(argmin))."""
    v, p = vp
    sup = p > 0
    lam = 10.0 ** x
    vmin = v[sup].min()
    p_a = p[sup & (v == vmin)].sum()
    gap = entropic_risk(v, lam, p) - vmin
    assert -tol(v) <= gap <= -lam * math.log(p_a) + tol(v)


@given(dist(zeros=True), wide_log_lam)
def test_zero_probability_entries_are_ignored(vp, x):
    v, p = vp
    sup = p > 0
    assert entropic_risk(v, 10.0 ** x, p) == pytest.approx(
        entropic_risk(v[sup], 10.0 ** x, p[sup]), abs=tol(v))


@given(dist(), log_lam, st.floats(-100.0, 100.0))
def test_translation(vp, x, c):
    v, p = vp
    lam = 10.0 ** x
    assert entropic_risk(v + c, lam, p) == pytest.approx(entropic_risk(v, lam, p) + c, abs=tol(v, c))


@given(dist(), wide_log_lam, st.floats(-2.0, 2.0))
def test_positive_homogeneity(vp, x, loga):
    a = 10.0 ** loga
    v, p = vp
    lam = 10.0 ** x
    assert entropic_risk(a * v, a * lam, p) == pytest.approx(a * entropic_risk(v, lam, p),
                                                            abs=a * tol(v))


def test_uniform_default():
    v = np.array([0.3, -1.2, 2.0, 0.1])
    assert entropic_risk(v, 0.7) == entropic_risk(v, 0.7, np.full(4, 0.25))


# ---------------------------------------------------------------------------------------------
# against mpmath: accuracy and the cumulant expansion
# ---------------------------------------------------------------------------------------------
@given(dist(n_min=2, scale=1.0), st.one_of(st.floats(-2.0, 6.0), st.floats(-8.0, 12.0)))
def test_matches_mpmath(vp, x):
    """A few ulps at every λ (measured <= 7e-16 over 400 random cases, λ = 1e-2 .. 1e6).

    Regression: a plain log Z (no log1p) loses ~eps·λ, i.e. 1e-10 at λ = 1e6.
    """
    v, p = vp
    lam = 10.0 ** x
    ref = float(mp_entropic_risk(v, p, lam))
    assert abs(entropic_risk(v, lam, p) - ref) <= 4e-15


@given(dist(n_min=2, scale=1.0, tiny=False))
def test_cumulant_expansion(vp):
    """(ER - κ1 + κ2/(2λ)) λ² -> κ3/6, and the next term is -κ4/(24λ) (docs/theory.md §1)."""
    v, p = vp
    k1, k2, k3, k4 = mp_cumulants(v, p)
    assume(k2 > 1e-3)
    lam = mpmath.mpf(10) ** 4
    t = (mp_entropic_risk(v, p, lam) - k1 + k2 / (2 * lam)) * lam**2
    # 60-digit reference: the remainder after the κ4 term is O(λ^-2) with |κ_n| <= 2^n for |r| <= 1
    assert abs(t - k3 / 6 + k4 / (24 * lam)) <= 1e-6
    # the float64 implementation resolves the same limit at λ = 100 (error ~ eps λ² + |κ4|/(24λ))
    lam = 100.0
    tf = (entropic_risk(v, lam, p) - float(k1) + float(k2) / (2 * lam)) * lam**2
    assert abs(tf - float(k3) / 6) <= abs(float(k4)) / (24 * lam) + 1.0 / lam**2 + 1e-9


def test_finite_at_extreme_lam_and_rewards():
    """Regression: naive -λ log mean e^{-r/λ} overflows (e^{1e8}) at λ = 1e-4, |r| = 1e4."""
    v = np.array([-1e4, 1e4, 3.0, -9999.0])
    p = np.array([0.1, 0.4, 0.3, 0.2])
    for lam in (1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6):
        er = entropic_risk(v, lam, p)
        assert math.isfinite(er) and v.min() - 1e-9 <= er <= p @ v + 1e-9
        ref = float(mp_entropic_risk(v, p, lam))
        assert abs(er - ref) <= 1e-12 * 1e4
    # λ = 1e-4: only the minimum survives; ER = min - λ log p(argmin)
    assert entropic_risk(v, 1e-4, p) == pytest.approx(-1e4 - 1e-4 * math.log(0.1), abs=1e-9)


@given(arrays(np.float64, st.integers(2, 6), elements=st.floats(-1e4, 1e4)),
       st.sampled_from([1e-4, 1e6]))
def test_finite_for_bounded_inputs(v, lam):
    er = entropic_risk(v, lam)
    assert math.isfinite(er) and v.min() - 1e-9 <= er <= v.mean() + 1e-9


# ---------------------------------------------------------------------------------------------
# Remark 3.3: mean-variance approximation
# ---------------------------------------------------------------------------------------------
@given(dist(n_min=2, scale=1.0), st.floats(-6.0, 0.0))
def test_variance_penalty_is_the_max_over_lam(vp, x):
    """max_λ {E r - Var/(2λ) - λρ} = E r - sqrt(2ρ Var), found here by a bounded 1-D search."""
    v, p = vp
    rho = 10.0 ** x
    var = p @ (v - p @ v) ** 2
    assume(var > 1e-6)
    res = minimize_scalar(lambda t: -(p @ v - var / (2 * math.exp(t)) - math.exp(t) * rho),
                          bounds=(-20, 20), method="bounded", options={"xatol": 1e-10})
    assert variance_penalty_value(v, p, rho) == pytest.approx(-res.fun, abs=TOL["dual_1d"])


@given(dist(n_min=2, scale=1.0))
def test_remark_3_3_gap_is_order_rho(vp):
    """Exact KL dual - (E r - sqrt(2ρ Var)) = κ3/(3κ2) ρ + O(ρ^{3/2}) for one prompt.

    Remark 3.3 only says the approximation keeps O(1/λ); with λ* ~ sqrt(Var/(2ρ)) the κ3/(6λ²) term
    of the cumulant expansion is the O(ρ) gap, with this coefficient.
    """
    v, p = vp
    s = v.max() - v.min()
    assume(s > 0.1)
    v = (v - v.min()) / s                  # spread 1, so the O(ρ^{3/2}) constant is bounded
    _, k2, k3, _ = (float(c) for c in mp_cumulants(v, p))
    assume(k2 > 0.02)
    for rho in (1e-4, 1e-6, 1e-8):
        gap = kl_dro_dual(v, p, rho).value - variance_penalty_value(v, p, rho)
        assert abs(gap / rho - k3 / (3 * k2)) <= 100.0 * math.sqrt(rho) + 1e-6


def test_variance_penalty_uses_conditional_variance():
    """Two prompts with constant but different rewards: E_x Var(r|x) = 0, so no penalty.

    The total variance (the paper's Var(r(x, y)) read literally) would be 0.25 here.
    """
    r = np.array([[0.0, 0.0], [1.0, 1.0]])
    pi = np.full((2, 2), 0.5)
    assert variance_penalty_value(r, pi, 0.1) == 0.5
    assert kl_dro_dual(r, pi, 0.1).value == 0.5


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, lam, probs, match", [
    ([0.0, float("nan")], 1.0, None, r"values must be finite.*nan"),
    ([[0.0, 1.0]], 1.0, None, r"values must have ndim in \(1,\)"),
    ([], 1.0, None, r"values must not be empty"),
    ([0.0, 1.0], -0.5, None, r"lam must be in \[0.0, inf\]; got -0.5.*Fix"),
    ([0.0, 1.0], float("nan"), None, r"lam must be a number.*got nan"),
    ([0.0, 1.0], "big", None, r"lam must be a real number; got 'big'"),
    ([0.0, 1.0], 1.0, [0.5, 0.3, 0.2], r"probs must have the same shape as values"),
    ([0.0, 1.0], 1.0, [1.2, -0.2], r"probs must have entries >= 0.*-0.2"),
    ([0.0, 1.0], 1.0, [0.5, float("nan")], r"probs must be finite"),
    ([0.0, 1.0], 1.0, [0.5, 0.4], r"probs must sum to 1.*tolerance 1e-08.*0.9.*Fix: normalize"),
])
def test_bad_input(values, lam, probs, match):
    with pytest.raises(ValueError, match=match):
        entropic_risk(values, lam, probs)


def test_prob_sum_tolerance_is_1e_8():
    v = np.array([0.0, 1.0])
    entropic_risk(v, 1.0, np.array([0.5, 0.5 + 5e-9]))     # within tolerance: renormalized
    with pytest.raises(ValueError, match="tolerance 1e-08"):
        entropic_risk(v, 1.0, np.array([0.5, 0.5 + 2e-8]))
