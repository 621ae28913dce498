"""Jackknife and exact small-sample bias (docs/theory.md §1, FRPO App. E).

Routes: the generic jackknife vs a hand-written leave-one-out loop; exact_bias (multinomial counts)
vs brute-force enumeration of all ordered samples vs Monte Carlo vs the delta-method leading term.
"""
from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.tolerances import TOL
from theory.jackknife import bias_slope, exact_bias, jackknife

GS = [4, 8, 16, 32, 64]
# Distributions used for the slopes (the measured numbers are in the tests below).
LOG_MEAN_SUPPORT, LOG_MEAN_PROBS = np.array([0.5, 1.0, 2.0]), np.array([0.3, 0.4, 0.3])
SNIS_SUPPORT, SNIS_PROBS = np.array([[0.5, 1.0], [2.0, -1.0]]), np.array([0.5, 0.5])


def log_mean(x):
    return np.log(np.mean(x, axis=0))


def snis(x):
    """Σ w φ / Σ w over axis 0 of samples (..., 2) holding (w, φ) pairs."""
    return np.sum(x[..., 0] * x[..., 1], axis=0) / np.sum(x[..., 0], axis=0)


def truth(kind, support, probs):
    if kind == "log_mean":
        return np.log(probs @ support)
    return probs @ (support[:, 0] * support[:, 1]) / (probs @ support[:, 0])


# ------------------------------------------------------------------ generic jackknife
@given(st.lists(st.floats(0.01, 100.0), min_size=2, max_size=12))
def test_generic_jackknife_on_log_mean_equals_direct_leave_one_out(xs):
    x = np.array(xs)
    G = len(x)
    loo = [np.log((x.sum() - x[j]) / (G - 1)) for j in range(G)]
    direct = G * np.log(x.mean()) - (G - 1) / G * sum(loo)
    assert abs(jackknife(log_mean, x) - direct) <= TOL["float64"] * max(1.0, abs(direct))


@given(st.lists(st.floats(-10.0, 10.0), min_size=2, max_size=12))
def test_jackknife_leaves_a_linear_estimator_alone_and_unbiases_the_plugin_variance(xs):
    x = np.array(xs)
    assert abs(jackknife(np.mean, x) - x.mean()) <= TOL["float64"]
    plugin_var = jackknife(lambda v: np.var(v, axis=0), x)  # classic: gives the 1/(G-1) variance
    assert abs(plugin_var - np.var(x, ddof=1)) <= TOL["float64"] * max(1.0, np.var(x, ddof=1))


def test_jackknife_is_vectorized_over_trailing_axes(rng):
    x = rng.uniform(0.1, 3.0, size=(6, 5))  # (G, batch)
    batched = jackknife(log_mean, x)
    per_column = [jackknife(log_mean, x[:, i]) for i in range(5)]
    np.testing.assert_allclose(batched, per_column, rtol=TOL["float64"], atol=0)


# ------------------------------------------------------------------ exact bias: three routes
@pytest.mark.parametrize("kind, support, probs", [
    ("log_mean", np.array([0.3, 1.0, 4.0]), np.array([0.2, 0.5, 0.3])),
    ("snis", np.array([[1.0, 0.0], [3.0, 1.0], [0.5, -2.0]]), np.array([0.3, 0.3, 0.4])),
])
@pytest.mark.parametrize("jack", [False, True])
def test_exact_bias_equals_brute_force_over_all_ordered_samples(kind, support, probs, jack):
    G, K = 5, len(probs)
    seqs = np.array(list(product(range(K), repeat=G))).T  # (G, K**G) ordered samples
    prob = np.prod(probs[seqs], axis=0)  # (K**G,)
    estimator = log_mean if kind == "log_mean" else snis
    samples = support[seqs]  # (G, K**G) or (G, K**G, 2)
    est = jackknife(estimator, samples) if jack else estimator(samples)
    brute = np.sum(prob * est) - truth(kind, support, probs)
    assert abs(exact_bias(kind, support, probs, G, jack) - brute) <= TOL["float64"]


@pytest.mark.parametrize("kind, support, probs", [
    ("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS),
    ("snis", SNIS_SUPPORT, SNIS_PROBS),
])
def test_exact_bias_matches_monte_carlo(kind, support, probs):
    G, M = 8, 200_000
    rng = np.random.default_rng(1)
    samples = support[rng.choice(len(probs), size=(G, M), p=probs)]  # (G, M) or (G, M, 2)
    estimator = log_mean if kind == "log_mean" else snis
    for jack, est in ((False, estimator(samples)), (True, jackknife(estimator, samples))):
        err = est - truth(kind, support, probs)
        se = err.std(ddof=1) / np.sqrt(M)
        # 4 standard errors: a false failure has probability ~6e-5 per comparison
        assert abs(err.mean() - exact_bias(kind, support, probs, G, jack)) <= 4 * se


def test_monte_carlo_resolves_the_plain_bias_but_not_the_jackknife_bias():
    # Guards the previous test against being vacuous: at G = 8 the plain bias is many standard
    # errors away from zero while the jackknife bias is inside a few.
    G, M = 8, 200_000
    rng = np.random.default_rng(2)
    x = LOG_MEAN_SUPPORT[rng.choice(3, size=(G, M), p=LOG_MEAN_PROBS)]
    err_plain = log_mean(x) - truth("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS)
    se = err_plain.std(ddof=1) / np.sqrt(M)
    assert abs(exact_bias("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS, G, False)) > 20 * se
    assert abs(exact_bias("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS, G, True)) < 2 * se


def test_large_group_bias_matches_the_delta_method_leading_term():
    G = 128
    # log of a mean: bias ≈ −Var(X) / (2 G E[X]²)
    x, p = LOG_MEAN_SUPPORT, LOG_MEAN_PROBS
    mean, var = p @ x, p @ x**2 - (p @ x) ** 2
    c_log = -var / (2 * mean**2)
    np.testing.assert_allclose(G * exact_bias("log_mean", x, p, G, False), c_log, rtol=0.02)
    # SNIS ratio: bias ≈ (R Var(w) − Cov(wφ, w)) / (G E[w]²), R = E[wφ]/E[w]
    for sup, pr in ((SNIS_SUPPORT, SNIS_PROBS),
                    (np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 0.5]]), np.array([0.3, 0.4, 0.3]))):
        w, phi = sup[:, 0], sup[:, 1]
        ew, ewphi = pr @ w, pr @ (w * phi)
        c_snis = ((ewphi / ew) * (pr @ w**2 - ew**2) - (pr @ (w * w * phi) - ewphi * ew)) / ew**2
        np.testing.assert_allclose(G * exact_bias("snis", sup, pr, G, False), c_snis, rtol=0.05)


def test_snis_with_constant_weights_is_unbiased():
    sup = np.array([[2.0, -1.0], [2.0, 0.5], [2.0, 3.0]])
    for jack in (False, True):
        assert abs(exact_bias("snis", sup, np.array([0.2, 0.3, 0.5]), 16, jack)) <= 1e-13


def test_zero_probability_support_points_are_ignored():
    two = exact_bias("log_mean", [1.0, 3.0], [0.4, 0.6], 12, True)
    three = exact_bias("log_mean", [1.0, 3.0, 50.0], [0.4, 0.6, 0.0], 12, True)
    assert abs(two - three) <= TOL["float64"]


# ------------------------------------------------------------------ orders: the log-log slopes
# Measured with these distributions over G = 4, 8, 16, 32, 64 (docs/theory.md §1 reports −1.02 / −1.89):
#   log_mean: plain −1.0157, jackknife −1.8924;  snis: plain −1.0930, jackknife −2.1450.
@pytest.mark.parametrize("kind, support, probs, plain, jack", [
    ("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS, -1.0157, -1.8924),
    ("snis", SNIS_SUPPORT, SNIS_PROBS, -1.0930, -2.1450),
])
def test_bias_slopes_are_minus_one_plain_and_about_minus_two_with_jackknife(
        kind, support, probs, plain, jack):
    s_plain = bias_slope(kind, support, probs, GS, False)
    s_jack = bias_slope(kind, support, probs, GS, True)
    assert -1.15 <= s_plain <= -0.9
    assert s_jack <= -1.7
    assert abs(s_plain - plain) <= 1e-3 and abs(s_jack - jack) <= 1e-3  # regression: measured


def test_jackknife_shrinks_the_bias_at_every_group_size():
    for G in GS:
        plain = exact_bias("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS, G, False)
        jack = exact_bias("log_mean", LOG_MEAN_SUPPORT, LOG_MEAN_PROBS, G, True)
        assert abs(jack) < abs(plain) / 10


@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=4, unique=True).flatmap(
    lambda xs: st.tuples(st.just(np.array(xs)),
                         st.lists(st.floats(0.1, 1.0), min_size=len(xs), max_size=len(xs)))))
def test_plain_log_mean_bias_is_negative_by_jensen(args):
    x, raw = args
    p = np.array(raw) / np.sum(raw)
    assert exact_bias("log_mean", x, p, 6, False) < 0


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, pattern", [
    (lambda: exact_bias("mean", [1.0, 2.0], [0.5, 0.5], 4, False),
     r"estimator_kind must be one of \('log_mean', 'snis'\).*Fix"),
    (lambda: exact_bias("log_mean", [1.0, 2.0], [0.5, 0.5], 1, False),
     r"G must be an integer >= 2.*got 1.*use e\.g\. G=4"),
    (lambda: exact_bias("log_mean", [1.0, 2.0], [0.5, 0.5], 2.5, True),
     r"G must be an integer >= 2.*got 2\.5"),
    (lambda: exact_bias("log_mean", [1.0, 2.0], [-0.5, 1.5], 4, False),
     r"probs must have entries >= 0.*Fix"),
    (lambda: exact_bias("log_mean", [1.0, 2.0], [np.nan, 0.5], 4, False),
     r"probs must be finite.*Fix"),
    (lambda: exact_bias("log_mean", [1.0, 2.0], [0.3, 0.3], 4, False),
     r"probs must sum to 1.*Fix"),
    (lambda: exact_bias("log_mean", [1.0, 2.0, 3.0], [0.5, 0.5], 4, False),
     r"support for 'log_mean' must have shape \(2,\).*match len\(probs\)"),
    (lambda: exact_bias("snis", [1.0, 2.0], [0.5, 0.5], 4, False),
     r"support for 'snis' must have shape \(2, 2\)"),
    (lambda: exact_bias("log_mean", [0.0, 2.0], [0.5, 0.5], 4, False),
     r"support values must be > 0 for 'log_mean', got .*the estimator"),
    (lambda: exact_bias("snis", [[-1.0, 0.0], [1.0, 1.0]], [0.5, 0.5], 4, False),
     r"support weights w \(column 0\) must be > 0"),
    (lambda: exact_bias("log_mean", [1.0, 2.0, 3.0, 4.0], [0.25] * 4, 5000, False),
     r"count vectors, more than .*use K <= 4 or a smaller G"),
    (lambda: jackknife(log_mean, np.array([1.0])), r"samples must hold G >= 2.*got G=1"),
    (lambda: jackknife(log_mean, np.float64(1.0)), r"samples must hold G >= 2.*got a scalar"),
    (lambda: bias_slope("log_mean", [1.0, 2.0], [0.5, 0.5], [8, 8], False),
     r"Gs must be .*at least 2 distinct.*Gs=\[4, 8"),
])
def test_bad_input_raises_with_argument_value_range_and_fix(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
