"""RLVR safety drift: the Gibbs tilt of a path distribution and the bounds on how safety moves.

Setting (Cho et al., "Breaking the Safety-Capability Tradeoff", seed
summary only; docs/theory.md §3). For one prompt there is a finite set of reasoning
paths r with reference probability π_ref(r), success probability g(r) and safety probability s(r);
fine-tuning changes only the path distribution, so success and safety rates are linear in it
(Corollary 1). KL-regularized RLVR reweights paths by the Gibbs tilt π* ∝ π_ref e^{g/β} (Theorem 1);
the functions below give the exact safety drift, its χ² bound, the invariance condition and the
worst-case bounds.

Notation → arguments: π_ref → ``pi_ref``, g → ``reward``, s → ``safety``, β → ``beta``,
λ = 1/β (the inverse temperature the derivatives are taken in).

Shapes: every distribution-valued argument is ``(paths,)`` or ``(prompts, paths)``; reductions are
over the last axis, so a batch of prompts is one call. Everything is float64 and computed in log
space (``scipy.special.logsumexp``), so β down to 1e-3 with rewards in [0, 1] stays finite.

Length (~510 lines, past the ~400 guide): every statement of the summary with its closed form,
its log-space/centred evaluation and the cvxpy reference it is checked against stay together.

Deviation (module-wide): only the paper's summary is available; the statements of Theorem 2 and
Propositions 1–2 are reconstructions written down in docs/theory.md §3, not the paper's wording.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import kl_div, logsumexp

from theory._validate import (
    check_finite,
    check_positive,
    check_prob_vector,
    check_same_shape,
    check_shape,
)

__all__ = [
    "gibbs_tilt",
    "gibbs_value",
    "path_rate",
    "safety_drift",
    "chi2_divergence",
    "kl_divergence",
    "tv_distance",
    "tilt_chi2",
    "exact_drift",
    "chi2_drift_bound",
    "chi2_drift_bound_policy",
    "chi2_drift_bound_unit",
    "invariance_covariance",
    "tv_bound_tanh",
    "pinsker_bound",
    "safety_rate_derivative",
    "success_rate_derivative",
    "ZeroCorrelationCounterexample",
    "zero_correlation_counterexample",
    "KLRegularizedSolution",
    "solve_kl_regularized",
]

# ----------------------------------------------------------------------------------------------
# validation (theory._validate: errors name the argument, the value, the allowed range and the fix)
# ----------------------------------------------------------------------------------------------
def _prob(name: str, p) -> np.ndarray:
    """Return ``p`` as a float64 (paths,) or (prompts, paths) probability array, or raise."""
    return check_prob_vector(name, p)


def _values(name: str, v, shape: tuple) -> np.ndarray:
    """Return per-path values ``v`` as finite float64 of exactly ``shape``, or raise."""
    arr = check_finite(name, v)
    check_shape(name, arr, shape, why="one value per path, same shape as the distribution")
    return arr


def _beta(beta) -> float:
    return check_positive(
        "beta", beta, fix="pass the KL coefficient, e.g. beta=0.1 (beta -> 0 is the argmax)"
    )


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)  # log 0 = -inf: a path outside the support stays outside


def _log_tilt(pi_ref: np.ndarray, reward: np.ndarray, beta: float):
    """log π*, log Z for π* = π_ref e^{g/β} / Z (last axis)."""
    logits = _log(pi_ref) + reward / beta  # (..., paths)
    log_z = logsumexp(logits, axis=-1, keepdims=True)  # (..., 1)
    return logits - log_z, log_z[..., 0]


def _mean(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sum(p * v, axis=-1)


def _wmedian(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Weighted median of ``v`` under ``p`` over the last axis, shape (..., 1) (entries with p = 0 skipped)."""
    p, v = np.broadcast_arrays(p, v)
    order = np.argsort(np.where(p > 0, v, np.inf), axis=-1, kind="stable")
    cum = np.cumsum(np.take_along_axis(p, order, axis=-1), axis=-1)
    k = np.minimum((cum < 0.5 * cum[..., -1:]).sum(axis=-1, keepdims=True), v.shape[-1] - 1)
    return np.take_along_axis(v, np.take_along_axis(order, k, axis=-1), axis=-1)


def _cov(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cov_p(a, b) = E_p[(a − E_p a)(b − E_p b)] over the last axis (centered form).

    Both factors are first shifted by their weighted median (exact for the bulk of the mass), so a
    variance carried by entries of probability ~1e-300 is not swamped by the rounding of E_p a.
    """
    a = a - _wmedian(p, a)
    b = b - _wmedian(p, b)
    da = a - _mean(p, a)[..., None]
    db = b - _mean(p, b)[..., None]
    return _mean(p, da * db)


# ----------------------------------------------------------------------------------------------
# Theorem 1 and Corollary 1
# ----------------------------------------------------------------------------------------------
def gibbs_tilt(pi_ref, reward, beta) -> np.ndarray:
    """Optimal KL-regularized RLVR policy: the Gibbs tilt of the reference path distribution.

    π*(r) = π_ref(r) e^{g(r)/β} / Z,  Z = Σ_r π_ref(r) e^{g(r)/β}, the maximizer of
    E_π[g] − β KL(π‖π_ref). Computed as softmax(log π_ref + g/β) in log space.

    Symbols → arguments: π_ref → ``pi_ref`` (paths,) or (prompts, paths); g → ``reward`` (same
    shape, any finite reals; the paper's success probabilities lie in [0, 1]); β → ``beta`` > 0.
    Paper: RLVR safety drift, Theorem 1 (Optimal Policy).
    Deviation: none in the formula; paths with π_ref = 0 get π* = 0 (the KL term forbids them).
    """
    pi_ref = _prob("pi_ref", pi_ref)
    reward = _values("reward", reward, pi_ref.shape)
    log_pi, _ = _log_tilt(pi_ref, reward, _beta(beta))
    return np.exp(log_pi)


def gibbs_value(pi_ref, reward, beta) -> np.ndarray:
    """Optimal value of KL-regularized RLVR: max_π E_π[g] − β KL(π‖π_ref) = β log Z.

    Z = Σ_r π_ref(r) e^{g(r)/β}, evaluated with logsumexp. Symbols → arguments as in
    :func:`gibbs_tilt`. Returns a float for (paths,) input, (prompts,) otherwise.
    Paper: RLVR safety drift, Theorem 1 (value of the optimal policy).
    Deviation: none.
    """
    pi_ref = _prob("pi_ref", pi_ref)
    reward = _values("reward", reward, pi_ref.shape)
    b = _beta(beta)
    _, log_z = _log_tilt(pi_ref, reward, b)
    return b * log_z


def path_rate(pi, values) -> np.ndarray:
    """Expected rate of a per-path property under a path distribution: E_π[v] = Σ_r π(r) v(r).

    Success rate G(π) with v = g, safety rate S(π) with v = s. Symbols → arguments: π → ``pi``,
    v → ``values`` (same shape). Paper: RLVR safety drift, Corollary 1.
    Deviation: none.
    """
    pi = _prob("pi", pi)
    return _mean(pi, _values("values", values, pi.shape))


def safety_drift(pi, pi_ref, safety) -> np.ndarray:
    """Safety drift of a policy: ΔS = E_π[s] − E_{π_ref}[s] (direct difference of two rates).

    Symbols → arguments: π → ``pi``, π_ref → ``pi_ref`` (same shape), s → ``safety``.
    Paper: RLVR safety drift, Corollary 1 (rates linear in the path distribution).
    Deviation: none.
    """
    pi = _prob("pi", pi)
    pi_ref = _prob("pi_ref", pi_ref)
    check_same_shape("pi", pi, "pi_ref", pi_ref)
    s = _values("safety", safety, pi.shape)
    return _mean(pi, s) - _mean(pi_ref, s)


# ----------------------------------------------------------------------------------------------
# divergences
# ----------------------------------------------------------------------------------------------
def _pair(p, q):
    p = _prob("p", p)
    q = _prob("q", q)
    check_same_shape("p", p, "q", q)
    return p, q


def chi2_divergence(p, q) -> np.ndarray:
    """Pearson χ² divergence χ²(p‖q) = Σ_r (p(r) − q(r))² / q(r).

    Terms with q = p = 0 count 0; q = 0 < p gives +inf. Symbols → arguments: p → ``p``, q → ``q``.
    Paper: RLVR safety drift, Theorem 2 (the divergence in the drift bound).
    Deviation: none.
    """
    p, q = _pair(p, q)
    num = (p - q) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, num / np.where(q > 0, q, 1.0), np.where(p > 0, np.inf, 0.0))
    return np.sum(terms, axis=-1)


def kl_divergence(p, q) -> np.ndarray:
    """Kullback–Leibler divergence KL(p‖q) = Σ_r p(r) log(p(r)/q(r)), with 0 log 0 = 0.

    q = 0 < p gives +inf. Symbols → arguments: p → ``p``, q → ``q``.
    Paper: RLVR safety drift, Theorem 1 (the regularizer) and Proposition 2 (Pinsker form).
    Deviation: none.
    """
    p, q = _pair(p, q)
    # Σ (p log(p/q) − p + q): every term >= 0, so rounding cannot make the sum negative
    return np.sum(kl_div(p, q), axis=-1)


def tv_distance(p, q) -> np.ndarray:
    """Total-variation distance TV(p, q) = ½ Σ_r |p(r) − q(r)|.

    Symbols → arguments: p → ``p``, q → ``q``. Paper: RLVR safety drift, Proposition 2.
    Deviation: none.
    """
    p, q = _pair(p, q)
    return 0.5 * np.sum(np.abs(p - q), axis=-1)


# ----------------------------------------------------------------------------------------------
# Theorem 2 and Proposition 1 (reconstructed, docs/theory.md §3)
# ----------------------------------------------------------------------------------------------
def _tilt_inputs(pi_ref, reward, beta, safety=None):
    pi_ref = _prob("pi_ref", pi_ref)
    reward = _values("reward", reward, pi_ref.shape)
    b = _beta(beta)
    if safety is None:
        return pi_ref, reward, b
    return pi_ref, reward, b, _values("safety", safety, pi_ref.shape)


def _ratio_deviation(pi_ref: np.ndarray, reward: np.ndarray, b: float) -> np.ndarray:
    """w − E_ref w for the likelihood ratio w = π*/π_ref, to full relative precision (0 off the support).

    With x = (g − max g)/β ≤ 0 and u = e^x, w = u / E_ref u. About the weighted median a = e^{x_med}
    of u, u − a = ±e^{max(x, x_med)} (−expm1(−|x − x_med|)) has no cancellation; then
    w − E w = ((u − a) − E(u − a)) / E u, where E|u − a| ≤ 2 sd(u) keeps the two-pass mean exact to
    a few ulps of sd(u). Valid from β → 0 (u underflows, a → 0) to β ≫ max |g| (x → 0, where the
    plain e^{g/β − log Z} − 1 keeps only ε/|x| of its digits).
    """
    sup = pi_ref > 0
    gmax = np.max(np.where(sup, reward, -np.inf), axis=-1, keepdims=True)
    x = np.where(sup, (reward - gmax) / b, 0.0)                      # (..., paths), ≤ 0 on the support
    x_med = _wmedian(pi_ref, x)                                      # (..., 1)
    # x − x_med from the raw rewards, (g − g_med)/β: the shift by max g would round away a g that
    # differs from another by less than ε·max|g| (g = 1.6e-181 next to g = 0, say)
    dx = np.where(sup, (reward - _wmedian(pi_ref, reward)) / b, 0.0)
    with np.errstate(under="ignore"):
        du = np.sign(dx) * np.exp(np.maximum(x, x_med)) * -np.expm1(-np.abs(dx))
        du = np.where(sup, du, 0.0)                                  # u − a
        z = _mean(pi_ref, np.where(sup, np.exp(x), 0.0))             # E_ref u ≥ π_ref(argmax) > 0
        return np.where(sup, (du - _mean(pi_ref, du)[..., None]) / z[..., None], 0.0)


def _rms(t: np.ndarray) -> np.ndarray:
    """sqrt(Σ t²) over the last axis, scaled by max |t| so tiny entries do not underflow when squared."""
    m = np.max(np.abs(t), axis=-1, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    return m[..., 0] * np.sqrt(np.sum((t / safe) ** 2, axis=-1))


def tilt_chi2(pi_ref, reward, beta) -> np.ndarray:
    """χ² divergence of the Gibbs tilt from the reference: χ²(π*‖π_ref) = Var_{π_ref}(w), w = π*/π_ref.

    Equals E_ref[e^{2g/β}]/Z² − 1. Computed as Σ π_ref (w − E_ref w)² with w − E w from centred
    exponents (see ``_ratio_deviation``), so it keeps full relative precision when χ² is tiny
    (β ≫ max |g|: χ² ≈ Var_ref(g)/β²) and never overflows when it is huge (β → 0).
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, β → ``beta``.
    Paper: RLVR safety drift, Theorem 2 (Safety Drift Upper Bound).
    Deviation: reconstructed statement (docs/theory.md §3). The former expm1(log m2 − 2 log Z) lost
    every digit as χ² → 0 (bound 0 at β = 1e8 against a drift of 2.5e-9).
    """
    pi_ref, reward, b = _tilt_inputs(pi_ref, reward, beta)
    dev = _ratio_deviation(pi_ref, reward, b)
    t = np.sqrt(pi_ref) * dev                                        # no overflow of dev² for tiny π_ref
    return np.sum(t * t, axis=-1)


def exact_drift(pi_ref, reward, safety, beta) -> np.ndarray:
    """Exact safety drift of the Gibbs tilt as a covariance: ΔS = Cov_{π_ref}(s, w), w = π*/π_ref.

    Σ π_ref (s − E_ref s)(w − E_ref w), centered in both factors (never using E_ref w = 1), with
    w − E_ref w from centred exponents (``_ratio_deviation``: full relative precision for β from
    1e-3 to 1e12, never e^{g/β} alone).
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, s → ``safety``, β → ``beta``.
    Paper: RLVR safety drift, Theorem 2 (proof: the drift identity).
    Deviation: reconstructed statement (docs/theory.md §3); paths with π_ref = 0 are dropped.
    """
    pi_ref, reward, b, s = _tilt_inputs(pi_ref, reward, beta, safety)
    s = s - _wmedian(pi_ref, s)                                      # as in _cov
    ds = s - _mean(pi_ref, s)[..., None]
    return _mean(pi_ref, ds * _ratio_deviation(pi_ref, reward, b))


def chi2_drift_bound(pi_ref, reward, safety, beta) -> np.ndarray:
    """χ² bound on the safety drift: |ΔS| ≤ √(Var_{π_ref}(s) · χ²(π*‖π_ref)).

    Cauchy–Schwarz on Cov_{π_ref}(s, w); equality iff s is affine in w on the support (always
    with two paths). χ² from :func:`tilt_chi2` (centred exponents, full precision as χ² → 0).
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, s → ``safety``, β → ``beta``.
    Paper: RLVR safety drift, Theorem 2 (Safety Drift Upper Bound).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    pi_ref, reward, b, s = _tilt_inputs(pi_ref, reward, beta, safety)
    # sd(s) · sqrt(χ²) as two root-mean-squares scaled by their largest term: neither Var(s) ~ 1e-330
    # nor the product underflows to 0 while |ΔS| ~ 1e-165 does not
    dev = np.sqrt(pi_ref) * _ratio_deviation(pi_ref, reward, b)
    s_c = s - _wmedian(pi_ref, s)
    ds = np.sqrt(pi_ref) * (s_c - _mean(pi_ref, s_c)[..., None])
    return _rms(ds) * _rms(dev)


def chi2_drift_bound_policy(pi, pi_ref, safety) -> np.ndarray:
    """χ² bound on the safety drift of any policy: |S(π) − S(π_ref)| ≤ √(Var_{π_ref}(s) · χ²(π‖π_ref)).

    ΔS = Cov_{π_ref}(s, π/π_ref) and Cauchy–Schwarz, as in :func:`chi2_drift_bound`, but for any π
    (e.g. a policy part-way through training), with χ² from :func:`chi2_divergence` of π itself.
    Symbols → arguments: π → ``pi``, π_ref → ``pi_ref`` (same shape), s → ``safety``.
    Paper: RLVR safety drift, Theorem 2 (the Cauchy–Schwarz step, applied to π instead of π*).
    Deviation: reconstructed statement (docs/theory.md); at π = π* prefer :func:`chi2_drift_bound` (log space).
    """
    pi = _prob("pi", pi)
    pi_ref = _prob("pi_ref", pi_ref)
    check_same_shape("pi", pi, "pi_ref", pi_ref)
    s = _values("safety", safety, pi_ref.shape)
    return np.sqrt(_cov(pi_ref, s, s) * chi2_divergence(pi, pi_ref))


def chi2_drift_bound_unit(pi_ref, reward, beta) -> np.ndarray:
    """Safety-free χ² bound for safety probabilities in [0, 1]: |ΔS| ≤ ½ √χ²(π*‖π_ref).

    Follows from :func:`chi2_drift_bound` with Var(s) ≤ ¼ for s ∈ [0, 1].
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, β → ``beta``.
    Paper: RLVR safety drift, Theorem 2 (second inequality).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    return 0.5 * np.sqrt(tilt_chi2(pi_ref, reward, beta))


def invariance_covariance(pi_ref, reward, safety, beta) -> np.ndarray:
    """Safety-invariance statistic Cov_{π_ref}(s, e^{g/β}), scaled by e^{−max g/β} to stay finite.

    ΔS = Cov_{π_ref}(s, e^{g/β}) / Z, so ΔS = 0 iff this covariance is 0. It is zero for every β
    when s and g are independent under π_ref (or E[s | g] is constant); zero correlation of s and
    g is not enough once g takes ≥ 3 values (see :func:`zero_correlation_counterexample`).
    Returned value: Cov_{π_ref}(s, e^{(g − c)/β}) with c = max g per row, i.e. the covariance times
    the positive constant e^{−c/β}, which keeps the sign and the zero set.
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, s → ``safety``, β → ``beta``.
    Paper: RLVR safety drift, Proposition 1 (Safety invariance).
    Deviation: reconstructed statement (docs/theory.md §3); the e^{−c/β} scaling is ours (overflow).
    """
    pi_ref, reward, b, s = _tilt_inputs(pi_ref, reward, beta, safety)
    c = np.max(reward, axis=-1, keepdims=True)
    return _cov(pi_ref, s, np.exp((reward - c) / b))


# ----------------------------------------------------------------------------------------------
# Proposition 2 and the β-derivatives (reconstructed, docs/theory.md §3)
# ----------------------------------------------------------------------------------------------
def tv_bound_tanh(beta) -> np.ndarray:
    """Worst-case total variation of the Gibbs tilt (rewards in [0, 1]): TV ≤ tanh(1/(4β)).

    Hence |ΔS| ≤ TV ≤ tanh(1/(4β)) for s ∈ [0, 1]. Sharp: two paths with g = (0, 1) and
    π_ref(g=0) = σ(1/(2β)) attain it. Symbols → arguments: β → ``beta`` (float or array, > 0).
    Paper: RLVR safety drift, Proposition 2 (Worst Case Upper Bound).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    b = np.asarray(beta, dtype=np.float64)
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(
            f"beta must be finite and > 0 (the KL coefficient), got {beta}; "
            "pass e.g. beta=0.1"
        )
    return np.tanh(0.25 / b)


def pinsker_bound(kl) -> np.ndarray:
    """Pinsker bound for any policy in a KL ball: |ΔS| ≤ TV(π, π_ref) ≤ √(KL(π‖π_ref)/2).

    Symbols → arguments: KL(π‖π_ref) → ``kl`` (float or array, ≥ 0; +inf allowed).
    Paper: RLVR safety drift, Proposition 2 (KL-ball form).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    k = np.asarray(kl, dtype=np.float64)
    if np.any(np.isnan(k)) or np.any(k < 0):
        raise ValueError(
            f"kl must be >= 0 (a KL divergence), got {kl}; pass kl_divergence(pi, pi_ref)"
        )
    return np.sqrt(0.5 * k)


def safety_rate_derivative(pi_ref, reward, safety, beta) -> np.ndarray:
    """Derivative of the safety rate along the tilt path: dS/dλ = Cov_{π_λ}(s, g), λ = 1/β.

    π_λ ∝ π_ref e^{λ g} is the Gibbs tilt at β = 1/λ; S(λ) = E_{π_λ}[s].
    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, s → ``safety``, β → ``beta``.
    Paper: RLVR safety drift, Proposition 2 (β-dependence of the drift).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    pi_ref, reward, b, s = _tilt_inputs(pi_ref, reward, beta, safety)
    log_pi, _ = _log_tilt(pi_ref, reward, b)
    return _cov(np.exp(log_pi), s, reward)


def success_rate_derivative(pi_ref, reward, beta) -> np.ndarray:
    """Derivative of the success rate along the tilt path: dG/dλ = Var_{π_λ}(g) ≥ 0, λ = 1/β.

    Symbols → arguments: π_ref → ``pi_ref``, g → ``reward``, β → ``beta``.
    Paper: RLVR safety drift, Proposition 2 (success is monotone in 1/β).
    Deviation: reconstructed statement (docs/theory.md §3).
    """
    pi_ref, reward, b = _tilt_inputs(pi_ref, reward, beta)
    log_pi, _ = _log_tilt(pi_ref, reward, b)
    return _cov(np.exp(log_pi), reward, reward)


class ZeroCorrelationCounterexample(NamedTuple):
    """Three-path instance where Cov_{π_ref}(s, g) = 0 but the Gibbs tilt moves safety."""

    pi_ref: np.ndarray
    reward: np.ndarray
    safety: np.ndarray
    beta: float


def zero_correlation_counterexample() -> ZeroCorrelationCounterexample:
    """Data showing zero correlation of s and g does not give invariance when g has ≥ 3 values.

    π_ref uniform on 3 paths, g = (0, ½, 1), s = (¾, ¼, ¾), β = 0.2: Cov_{π_ref}(s, g) = 0 but
    Cov_{π_ref}(s, e^{g/β}) ≠ 0; the drift ΔS = exact_drift(*data) is ≈ +0.129 (docs/theory.md §3).
    Fields → symbols: ``pi_ref`` → π_ref, ``reward`` → g, ``safety`` → s, ``beta`` → β.
    Paper: RLVR safety drift, Proposition 1 (the "iff" condition, not the correlation).
    Deviation: this instance is ours (docs/theory.md §3), not in the paper.
    """
    return ZeroCorrelationCounterexample(
        pi_ref=np.full(3, 1.0 / 3.0),
        reward=np.array([0.0, 0.5, 1.0]),
        safety=np.array([0.75, 0.25, 0.75]),
        beta=0.2,
    )


# ----------------------------------------------------------------------------------------------
# independent reference for Theorem 1: the primal problem in cvxpy
# ----------------------------------------------------------------------------------------------
class KLRegularizedSolution(NamedTuple):
    """Primal solution of max_π E_π[g] − β KL(π‖π_ref)."""

    policy: np.ndarray  # (paths,)
    value: float


def solve_kl_regularized(g, pi_ref, beta) -> KLRegularizedSolution:
    """Solve max_π E_π[g] − β KL(π‖π_ref) over the simplex with cvxpy (CLARABEL, exponential cone).

    The primal is maximize gᵀπ − β Σ_r rel_entr(π(r), π_ref(r)) s.t. π ≥ 0, Σ π = 1, with the
    variable restricted to the support of π_ref (KL = ∞ elsewhere). It is the independent reference
    for Theorem 1: it does not use the closed form.
    Symbols → arguments: g → ``g`` (paths,), π_ref → ``pi_ref`` (paths,), β → ``beta`` > 0.
    Returns ``KLRegularizedSolution(policy, value)``; accuracy is the solver's (~1e-8 on the value,
    looser on tiny entries of the policy).
    Paper: RLVR safety drift, Theorem 1 (Optimal Policy).
    Deviation: none; one prompt per call (loop over rows for a batch).
    """
    import cvxpy as cp  # local: the closed-form functions do not need cvxpy

    pi_ref = _prob("pi_ref", pi_ref)
    if pi_ref.ndim != 1:
        raise ValueError(
            f"pi_ref must have shape (paths,) for the cvxpy reference, got {pi_ref.shape}; "
            "solve one prompt per call"
        )
    g = _values("g", g, pi_ref.shape)
    b = _beta(beta)
    support = pi_ref > 0
    x = cp.Variable(int(support.sum()), nonneg=True)
    objective = g[support] @ x - b * cp.sum(cp.rel_entr(x, pi_ref[support]))
    problem = cp.Problem(cp.Maximize(objective), [cp.sum(x) == 1])
    problem.solve(solver=cp.CLARABEL)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(
            f"CLARABEL returned status {problem.status!r} for beta={b}; rescale g or raise beta"
        )
    policy = np.zeros_like(pi_ref)
    policy[support] = np.clip(x.value, 0.0, None)
    return KLRegularizedSolution(policy=policy, value=float(problem.value))


# ----------------------------------------------------------------------------------------------
# what GRPO's k3 KL penalty actually optimizes (found by the bandit toy)
# ----------------------------------------------------------------------------------------------
def reverse_kl_optimum(pi_ref, reward, beta) -> np.ndarray:
    """argmax_π E_π[g] − β KL(π_ref‖π): π(r) = β π_ref(r) / (μ − g(r)), μ > max g solving Σ π = 1.

    This — not the Gibbs tilt of Theorem 1 — is the fixed point of GRPO-style training with the
    k3 estimator e^{ref−logp} − (ref − logp) − 1 differentiated on-policy: its expected gradient is
    Σ_y (π − π_ref)(y) ∇log π(y) = ∇KL(π_ref‖π), the *reverse* KL.
    Symbols → arguments: π_ref → ``pi_ref`` (paths,), g → ``reward``, β → ``beta`` > 0.
    Deviation: not in the RLVR paper; Theorem 1 assumes the exact KL(π‖π_ref).
    """
    from scipy.optimize import brentq

    pi_ref = _prob("pi_ref", pi_ref)
    g = _values("reward", reward, pi_ref.shape)
    beta = _beta(beta)
    if pi_ref.ndim != 1:
        raise ValueError(f"reverse_kl_optimum takes one prompt: pi_ref of shape (paths,), got {pi_ref.shape}. "
                         "Fix: call it once per row")
    gmax = float(g[pi_ref > 0].max())

    def excess(mu):
        return float(np.sum(beta * pi_ref / (mu - g))) - 1.0

    # Σ π is decreasing in μ on (max g, ∞): +∞ at max g⁺ (where π_ref > 0), → 0 at ∞
    hi = gmax + beta + 1.0
    while excess(hi) > 0:
        hi = gmax + 2 * (hi - gmax)
    mu = brentq(excess, gmax + 1e-15 * max(1.0, abs(gmax)), hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    pi = beta * pi_ref / (mu - g)
    return pi / pi.sum()
