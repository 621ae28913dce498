"""CSFT per-token objective and Theorem 4.2 (docs/theory.md §2, CSFT+PA seed).

Routes: finite differences of the CSFT objective vs the detached-weight (weighted NLL) gradient,
both in Δ and through a softmax policy's logits; Theorem 4.2's minimizers by closed form vs
scipy.optimize.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from tests.tolerances import TOL
from theory.csft import (
    check_corrected_bound,
    csft_beta_schedule,
    csft_token_objective,
    csft_token_weight,
    theorem42_counterexample,
)

deltas = st.floats(-20.0, 20.0, allow_nan=False)
betas = st.floats(0.01, 5.0, allow_nan=False)
H_STEP = 1e-5  # central-difference step; TOL["central_diff"] states the error budget


# ------------------------------------------------------------------ the two CSFT forms
@given(deltas, betas)
def test_objective_derivative_in_delta_is_minus_the_weight(delta, beta):
    fd = (csft_token_objective(delta + H_STEP, beta)
          - csft_token_objective(delta - H_STEP, beta)) / (2 * H_STEP)
    assert abs(fd + csft_token_weight(delta, beta)) <= TOL["central_diff"]


@given(st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4), st.integers(0, 3),
       st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4), betas)
def test_weighted_nll_with_detached_weight_has_the_objective_gradient(logits, y, ref_logits, beta):
    # Policy pi_theta = softmax(theta) over a 4-token vocabulary, target token y.
    theta = np.array(logits)
    log_aligned = log_softmax(np.array(ref_logits))[y]

    def objective(th):
        return csft_token_objective(log_softmax(th)[y] - log_aligned, beta)

    w = csft_token_weight(log_softmax(theta)[y] - log_aligned, beta)  # detached: a constant
    grad_weighted_nll = -w * (np.eye(4)[y] - softmax(theta))  # ∇(−w log π_θ(y))
    fd = np.array([(objective(theta + H_STEP * e) - objective(theta - H_STEP * e)) / (2 * H_STEP)
                   for e in np.eye(4)])
    np.testing.assert_allclose(fd, grad_weighted_nll, rtol=0, atol=TOL["central_diff"])


def test_the_two_forms_differ_in_value():
    # Same gradient, not the same value: −w log π_θ(y) ≠ ℓ_t in general.
    delta, beta, log_pi = 0.3, 2.0, np.log(0.4)
    weighted_nll = -csft_token_weight(delta, beta) * log_pi
    assert abs(weighted_nll - csft_token_objective(delta, beta)) > 0.1


@given(deltas, betas)
def test_small_beta_limit_is_nll(delta, beta):
    # ℓ = 2 log 2/β − Δ + r, 0 ≤ r ≤ βΔ²/4: up to a θ-free constant, ℓ → −log π_θ(y) + log π_al(y);
    # the gradient weight obeys |w − 1| ≤ β|Δ|/2, so dℓ/dΔ → −1 (the NLL's d(−log π)/d log π).
    r = csft_token_objective(delta, beta) - (2 * np.log(2) / beta - delta)
    slack = 1e-12 * (2 * np.log(2) / beta)  # round-off of the subtracted constant
    assert -slack <= r <= beta * delta**2 / 4 + slack
    assert abs(csft_token_weight(delta, beta) - 1.0) <= beta * abs(delta) / 2 + TOL["float64"]


def test_weight_converges_to_one_as_beta_goes_to_zero():
    delta = np.array([-5.0, -0.5, 0.0, 0.5, 5.0])
    errors = [np.max(np.abs(csft_token_weight(delta, b) - 1.0)) for b in (1e-2, 1e-4, 1e-6)]
    assert errors[0] > errors[1] > errors[2] and errors[2] <= 5e-6 * 5.0 / 2


def test_extreme_deltas_stay_finite():
    d = np.array([-1e300, -800.0, 0.0, 800.0, 1e300])
    obj, w = csft_token_objective(d, 1.0), csft_token_weight(d, 1.0)
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w, [2.0, 2.0, 1.0, 0.0, 0.0], rtol=0, atol=TOL["float64"])
    assert obj[1] == pytest.approx(1600.0, rel=TOL["float64"]) and obj[4] == 0.0


def test_objective_at_zero_delta_and_known_values():
    # ℓ(0) = (2/β) log 2, w(0) = 1; ℓ(Δ) = (2/β) log(1 + e^{−βΔ}) checked at one point by hand.
    assert csft_token_objective(0.0, 0.5) == pytest.approx(4 * np.log(2), rel=TOL["float64"])
    assert csft_token_weight(0.0, 0.5) == 1.0
    assert csft_token_objective(1.0, 2.0) == pytest.approx(np.log1p(np.exp(-2.0)),
                                                          rel=TOL["float64"])


def test_schedule_broadcasts_over_a_batch_of_sequences(rng):
    delta = rng.normal(size=(3, 8))  # (B, T)
    beta = csft_beta_schedule(8)
    out = csft_token_objective(delta, beta)
    for t in range(8):
        np.testing.assert_allclose(out[:, t], csft_token_objective(delta[:, t], beta[t]),
                                   rtol=0, atol=0)


# ------------------------------------------------------------------ the β schedule
def test_beta_schedule_values():
    np.testing.assert_array_equal(csft_beta_schedule(8), [0.5, 2, 2, 2, 2, 0.1, 0.1, 0.1])
    np.testing.assert_array_equal(csft_beta_schedule(1), [0.5])
    np.testing.assert_array_equal(csft_beta_schedule(5), [0.5, 2, 2, 2, 2])
    assert csft_beta_schedule(0).shape == (0,)
    np.testing.assert_array_equal(csft_beta_schedule(7, first=1.0, early=3.0, rest=0.2),
                                  [1.0, 3, 3, 3, 3, 0.2, 0.2])
    assert csft_beta_schedule(4).dtype == np.float64


# ------------------------------------------------------------------ Theorem 4.2
@given(st.floats(0.01, 10.0), st.floats(1.01, 100.0), st.floats(1e-3, 1.0), st.floats(0.1, 10.0))
def test_counterexample_moves_eps_g_over_mu_beyond_the_claimed_bound(mu, cond, eps, G):
    L = mu * cond
    ex = theorem42_counterexample(L, mu, eps, G)
    # hypotheses of the theorem: gradient L-Lipschitz, gradient perturbation of size εG
    assert np.max(np.linalg.eigvalsh(ex.hessian)) == pytest.approx(L, rel=TOL["float64"])
    assert ex.gradient_perturbation == pytest.approx(eps * G, rel=TOL["float64"])
    # the minimizer really is the perturbed minimizer: H θ^ε + ε g = 0
    np.testing.assert_allclose(ex.hessian @ ex.theta_eps + eps * ex.g, 0.0, atol=1e-12)
    assert ex.displacement == pytest.approx(eps * G / mu, rel=TOL["float64"])
    assert ex.displacement == pytest.approx(ex.corrected_bound, rel=TOL["float64"])
    assert ex.displacement > ex.claimed_bound * (1 + 1e-3)  # claimed εG/L fails by L/μ
    assert ex.displacement / ex.claimed_bound == pytest.approx(cond, rel=TOL["float64"])


def test_counterexample_minimizer_agrees_with_a_numerical_optimizer():
    ex = theorem42_counterexample(10.0, 1.0, 0.1, 2.0)

    def perturbed(theta):
        return 0.5 * theta @ ex.hessian @ theta + 0.1 * ex.g @ theta

    res = minimize(perturbed, x0=np.ones(2), method="BFGS", options={"gtol": 1e-12})
    np.testing.assert_allclose(res.x, ex.theta_eps, atol=1e-6)
    assert np.linalg.norm(res.x) == pytest.approx(0.2, abs=1e-6)  # εG/μ = 0.1·2/1
    assert ex.claimed_bound == pytest.approx(0.02, rel=TOL["float64"])


# measured max ratios with these seeds: dim 1: 1 + 1e-14, 2: 0.99999999, 5: 0.99931, 20: 0.99903
@pytest.mark.parametrize("dim, floor", [(1, 1 - 1e-12), (2, 0.9999), (5, 0.999), (20, 0.995)])
def test_corrected_bound_holds_on_random_strongly_convex_quadratics(dim, floor):
    ratio = check_corrected_bound(np.random.default_rng(dim), dim, 2000)
    assert ratio <= 1.0 + TOL["float64"]  # equality case (dim 1) is exact up to round-off
    assert ratio >= floor  # and it is approached: the bound is sharp, not vacuous


def test_corrected_bound_is_deterministic_given_the_generator():
    a = check_corrected_bound(np.random.default_rng(7), 3, 100)
    b = check_corrected_bound(np.random.default_rng(7), 3, 100)
    assert a == b


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, pattern", [
    (lambda: csft_token_objective(0.1, 0.0), r"beta must be finite and > 0.*got 0\.0.*schedule"),
    (lambda: csft_token_weight(0.1, -2.0), r"beta must be finite and > 0.*got -2\.0"),
    (lambda: csft_token_weight(0.1, np.nan), r"beta must be finite and > 0.*got nan"),
    (lambda: csft_token_objective(np.nan, 1.0), r"delta must be finite.*got nan.*clamp"),
    (lambda: csft_token_objective(np.zeros((2, 3)), np.ones(4)),
     r"delta and beta must broadcast.*\(2, 3\) and \(4,\).*token axis last"),
    (lambda: csft_beta_schedule(-1), r"T must be an integer >= 0.*got -1.*sequence length"),
    (lambda: csft_beta_schedule(2.5), r"T must be an integer >= 0.*got 2\.5"),
    (lambda: csft_beta_schedule(4, rest=0.0), r"rest must be a finite float > 0.*got 0\.0.*Qi"),
    (lambda: theorem42_counterexample(1.0, 2.0, 0.1, 1.0), r"mu must be < L.*mu=2\.0.*L=10"),
    (lambda: theorem42_counterexample(1.0, 0.5, -0.1, 1.0), r"eps must be a finite float > 0"),
    (lambda: theorem42_counterexample(1.0, 0.0, 0.1, 1.0), r"mu must be a finite float > 0"),
    (lambda: check_corrected_bound(0, 2, 10), r"rng must be a numpy.random.Generator.*default_rng"),
    (lambda: check_corrected_bound(np.random.default_rng(0), 0, 10),
     r"dim must be an integer >= 1"),
    (lambda: check_corrected_bound(np.random.default_rng(0), 2, 0),
     r"n_trials must be an integer >= 1"),
])
def test_bad_input_raises_with_argument_value_range_and_fix(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
