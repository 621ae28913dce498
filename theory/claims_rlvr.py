"""Claims of the RLVR safety-drift paper (statements reconstructed from its summary, docs/theory.md),
checked numerically (registered into theory.ledger). Run them with ``python -m theory.claims``.

Functions under test are called through their module (``rlvr.exact_drift``), so the mutation check can
swap a broken version in.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theory import losses, rlvr
from theory.ledger import RLVR, REFUTED, Outcome, _rng, _softmax_rows, _t, claim, least_of, worst_of

R = "theory.rlvr."


def _instances(n: int, seed: int, paths=(2, 6)):
    """Random RLVR path models: π_ref, g ∈ [0, 1], s ∈ [0, 1], β."""
    rng = _rng(seed)
    for _ in range(n):
        k = int(rng.integers(paths[0], paths[1] + 1))
        yield (_softmax_rows(rng.normal(size=k)), rng.uniform(0, 1, k), rng.uniform(0, 1, k),
               float(np.exp(rng.uniform(np.log(0.05), np.log(5.0)))))


@claim("rlvr.thm1_gibbs", RLVR, "Theorem 1",
       "argmax E_π g − β KL(π‖π_ref) is the Gibbs tilt π_ref e^{g/β}/Z with value β log Z", origin="paper",
       checks=(R + "gibbs_tilt", R + "gibbs_value"), mutants=("gibbs_tilt.beta_doubled", "gibbs_value.no_beta"))
def _check_thm1() -> Outcome:
    worst_p = worst_v = 0.0
    for pi, g, _, beta in _instances(20, 0):
        sol = rlvr.solve_kl_regularized(g, pi, beta)
        worst_p = worst_of(worst_p, float(np.abs(sol.policy - rlvr.gibbs_tilt(pi, g, beta)).max()))
        worst_v = worst_of(worst_v, abs(sol.value - float(rlvr.gibbs_value(pi, g, beta))))
    return Outcome(worst_p < 1e-3 and worst_v < 1e-5,
                   f"vs cvxpy over 20 instances: max |Δπ| = {worst_p:.1e}, max |Δvalue| = {worst_v:.1e}", worst_v)


@claim("rlvr.drift_of_optimum", RLVR, "Corollary 1 (reconstructed)",
       "the safety drift of the KL-regularized optimum is Cov_{π_ref}(s, π*/π_ref) (exact_drift vs the cvxpy optimum)",
       origin="paper", checks=(R + "exact_drift",), mutants=("exact_drift.unnormalised", "exact_drift.sign"))
def _check_drift_of_optimum() -> Outcome:
    worst = 0.0
    for pi, g, s, beta in _instances(20, 1):
        cvx = rlvr.solve_kl_regularized(g, pi, beta).policy  # independent of the closed form
        worst = worst_of(worst, abs(float(rlvr.exact_drift(pi, g, s, beta)) - float(np.sum((cvx - pi) * s))))
    return Outcome(worst < 1e-4, f"max |exact_drift − (S(π_cvxpy) − S(π_ref))| over 20 instances = {worst:.1e} "
                                 "(cvxpy policy accuracy ~1e-5)", worst)


@claim("rlvr.chi2_bound", RLVR, "Theorem 2 (χ² bound, reconstructed)",
       "|ΔS| ≤ √(Var_ref(s)·χ²(π*‖π_ref)) ≤ ½√χ²", origin="paper",
       checks=(R + "chi2_drift_bound", R + "chi2_drift_bound_unit"),
       mutants=("chi2_drift_bound.zero", "chi2_drift_bound.no_sqrt", "chi2_drift_bound_unit.quarter"))
def _check_chi2_bound() -> Outcome:
    worst = worst_unit = -math.inf
    for pi, g, s, beta in _instances(500, 2):
        d = abs(float(rlvr.exact_drift(pi, g, s, beta)))
        b = float(rlvr.chi2_drift_bound(pi, g, s, beta))
        bu = float(rlvr.chi2_drift_bound_unit(pi, g, beta))
        worst = worst_of(worst, d - b * (1 + 1e-10) - 1e-300)  # no instance skipped: a zero bound must fail
        worst_unit = worst_of(worst_unit, b - bu * (1 + 1e-12))
    return Outcome(worst <= 0 and worst_unit <= 0,
                   f"max |ΔS| − bound over 500 instances = {worst:.1e} ≤ 0; "
                   f"max √(Var·χ²) − ½√χ² = {worst_unit:.1e} ≤ 0",
                   max(0.0, worst))


@claim("rlvr.chi2_tight", RLVR, "Theorem 2 (χ² bound, reconstructed)",
       "the χ² bound is attained when s is affine in w (always with two paths)", origin="toolkit",
       checks=(R + "chi2_drift_bound",), mutants=("chi2_drift_bound.zero", "chi2_drift_bound.doubled"))
def _check_chi2_tight() -> Outcome:
    worst = 0.0
    for pi, g, s, beta in _instances(100, 3, paths=(2, 2)):
        d = abs(float(rlvr.exact_drift(pi, g, s, beta)))
        b = float(rlvr.chi2_drift_bound(pi, g, s, beta))
        worst = worst_of(worst, abs(d - b) / max(b, d, 1e-300))  # no instance skipped
    return Outcome(worst < 1e-8, f"two paths, 100 instances: max relative gap = {worst:.1e}", worst)


@claim("rlvr.invariance", RLVR, "Proposition 1 (reconstructed)",
       "ΔS = Cov_ref(s, e^{g/β})/Z, so ΔS = 0 iff that covariance is 0; s independent of g gives ΔS = 0 for every β",
       origin="paper", checks=(R + "exact_drift", R + "invariance_covariance"),
       mutants=("exact_drift.zero", "invariance_covariance.uses_g"))
def _check_invariance() -> Outcome:
    rng = _rng(4)
    indep = 0.0
    for _ in range(50):
        # product structure: paths = (g-level i) × (s-level j), π_ref(i, j) = a_i b_j
        a, b = _softmax_rows(rng.normal(size=3)), _softmax_rows(rng.normal(size=2))
        gl, sl = rng.uniform(0, 1, 3), rng.uniform(0, 1, 2)
        pi, g, s = np.outer(a, b).ravel(), np.repeat(gl, 2), np.tile(sl, 3)
        for beta in (0.05, 0.3, 2.0):
            indep = worst_of(indep, abs(float(rlvr.exact_drift(pi, g, s, beta))))
    rel, smallest = 0.0, math.inf  # dependent instances: the covariance identity and ΔS ≠ 0
    for pi, g, s, beta in _instances(100, 8):
        d = float(rlvr.exact_drift(pi, g, s, beta))
        log_z = float(np.log(np.sum(pi * np.exp((g - g.max()) / beta))))  # Z·e^{−max g/β}, in log
        pred = float(rlvr.invariance_covariance(pi, g, s, beta)) / math.exp(log_z)
        rel = worst_of(rel, abs(d - pred) / max(abs(pred), 1e-300))
        smallest = least_of(smallest, abs(d))
    return Outcome(indep < 1e-12 and rel < 1e-9 and smallest > 0,
                   f"independent s, g: max |ΔS| over 50 instances × 3 β = {indep:.1e}; dependent: ΔS = "
                   f"Cov(s, e^{{g/β}})/Z to {rel:.0e} (relative), min |ΔS| = {smallest:.1e} > 0", indep)


@claim("rlvr.zero_correlation_not_enough", RLVR, "Proposition 1 (reconstructed)",
       "zero correlation of s and g is enough for ΔS = 0", origin="toolkit", expect=REFUTED,
       checks=(R + "exact_drift", R + "zero_correlation_counterexample"),
       mutants=("exact_drift.zero", "exact_drift.sign", "zero_correlation_counterexample.correlated"),
       note="a natural misreading of Proposition 1 (the exact condition is Cov(s, e^{g/β}) = 0), not the paper's claim")
def _check_zero_corr() -> Outcome:
    ce = rlvr.zero_correlation_counterexample()
    pi, g, s, beta = ce.pi_ref, ce.reward, ce.safety, ce.beta
    cov = float(np.sum(pi * s * g) - np.sum(pi * s) * np.sum(pi * g))
    d = float(rlvr.exact_drift(pi, g, s, beta))
    w = [math.exp(x / beta) for x in g]  # by hand, three paths
    by_hand = sum(p * si * wi for p, si, wi in zip(pi, s, w)) / sum(p * wi for p, wi in zip(pi, w)) - float(pi @ s)
    return Outcome(abs(d) < 1e-9, f"π_ref uniform on 3 paths, g=(0,.5,1), s=(.75,.25,.75): Cov(s,g) = {cov:.1e} "
                                  f"but ΔS = {d:+.4f} at β=0.2 (by hand {by_hand:+.4f})", abs(d),
                   consistent=abs(cov) < 1e-12 and abs(d - by_hand) < 1e-12)


@claim("rlvr.tv_tanh", RLVR, "Proposition 2 (reconstructed)",
       "|ΔS| ≤ TV(π*, π_ref) ≤ tanh(1/(4β)) for g, s ∈ [0, 1], and the tanh bound is sharp", origin="paper",
       checks=(R + "tv_distance", R + "tv_bound_tanh"), mutants=("tv_bound_tanh.half_beta", "tv_distance.no_half"))
def _check_tv_tanh() -> Outcome:
    worst = -np.inf
    for pi, g, s, beta in _instances(500, 5):
        tv = float(rlvr.tv_distance(rlvr.gibbs_tilt(pi, g, beta), pi))
        d = abs(float(rlvr.exact_drift(pi, g, s, beta)))
        worst = worst_of(worst, d - tv, tv - float(rlvr.tv_bound_tanh(beta)))
    # sharpness: two paths g = (0, 1), π_ref(1) = 1/(1+e^{1/(2β)}) attains tanh(1/(4β))
    beta = 0.3
    p1 = 1.0 / (1.0 + np.exp(1.0 / (2 * beta)))
    pi = np.array([1 - p1, p1])
    gap = abs(float(rlvr.tv_distance(rlvr.gibbs_tilt(pi, np.array([0.0, 1.0]), beta), pi))
              - float(rlvr.tv_bound_tanh(beta)))
    return Outcome(worst <= 1e-12 and gap < 1e-12,
                   f"max violation over 500 instances = {worst:.1e} (≤ 0); two-path extremal gap = {gap:.1e}", gap)


@claim("rlvr.pinsker", RLVR, "Proposition 2 (reconstructed)",
       "for any policy in a KL ball, |ΔS| ≤ √(KL/2) (Pinsker), sharp for small two-point perturbations",
       origin="paper", checks=(R + "pinsker_bound",), mutants=("pinsker_bound.no_half", "pinsker_bound.eighth"))
def _check_pinsker() -> Outcome:
    rng = _rng(6)
    worst = 0.0
    for _ in range(500):
        k = int(rng.integers(2, 8))
        pi_ref, pi = _softmax_rows(rng.normal(size=k)), _softmax_rows(rng.normal(size=k) * 2)
        s = rng.uniform(0, 1, k)
        ratio = abs(float(rlvr.safety_drift(pi, pi_ref, s))) / float(rlvr.pinsker_bound(rlvr.kl_divergence(pi, pi_ref)))
        worst = worst_of(worst, ratio)
    e = 1e-4  # π_ref = (½, ½), π = (½ + e, ½ − e), s = (1, 0): ΔS = e, KL = 2e² + O(e⁴)
    sharp = e / float(rlvr.pinsker_bound(rlvr.kl_divergence(np.array([0.5 + e, 0.5 - e]), np.array([0.5, 0.5]))))
    return Outcome(worst <= 1.0 and sharp > 0.999, f"max |ΔS|/√(KL/2) over 500 random policies = {worst:.3f}; "
                                                   f"{sharp:.6f} for a 1e-4 two-point perturbation", None)


@claim("rlvr.derivatives", RLVR, "Proposition 2 (reconstructed)",
       "dS/d(1/β) = Cov_{π_β}(s, g) and dG/d(1/β) = Var_{π_β}(g) ≥ 0", origin="paper",
       checks=(R + "safety_rate_derivative", R + "success_rate_derivative"),
       mutants=("safety_rate_derivative.sign", "success_rate_derivative.under_ref"))
def _check_derivatives() -> Outcome:
    worst = 0.0
    for pi, g, s, beta in _instances(50, 7):
        h = 1e-5 * (1 / beta)
        lo, hi = 1.0 / (1 / beta - h), 1.0 / (1 / beta + h)
        fd_s = (np.sum(rlvr.gibbs_tilt(pi, g, hi) * s) - np.sum(rlvr.gibbs_tilt(pi, g, lo) * s)) / (2 * h)
        fd_g = (np.sum(rlvr.gibbs_tilt(pi, g, hi) * g) - np.sum(rlvr.gibbs_tilt(pi, g, lo) * g)) / (2 * h)
        dg = float(rlvr.success_rate_derivative(pi, g, beta))
        worst = worst_of(worst, abs(fd_s - float(rlvr.safety_rate_derivative(pi, g, s, beta))), abs(fd_g - dg))
        if dg < 0:
            return Outcome(False, f"dG/d(1/β) = {dg} < 0", dg)
    return Outcome(worst < 1e-7, f"max |closed form − central difference| over 50 instances = {worst:.1e}", worst)


@claim("rlvr.thm1_under_grpo_k3", RLVR, "Theorem 1 with GRPO's KL estimator",
       "training with GRPO's on-policy k3 KL penalty converges to the Gibbs tilt of Theorem 1", origin="toolkit",
       expect=REFUTED, checks=("theory.losses.kl_k3", R + "reverse_kl_optimum"),
       mutants=("kl_k3.sign", "kl_k3.k1", "reverse_kl_optimum.is_tilt"),
       note="found by the bandit toy; the expected gradient is −π⊙(g − E_π g) + β(π − π_ref), the gradient of the "
            "reverse KL(π_ref‖π)")
def _check_k3_fixed_point() -> Outcome:
    pi_ref, g, beta = np.array([0.4, 0.3, 0.2, 0.1]), np.array([0.0, 0.3, 0.6, 1.0]), 0.2

    def expected_grad(pi):
        """Exact on-policy gradient of −E_π g + β E_{y~π}[k3(y)] w.r.t. softmax logits (sampling detached)."""
        z = torch.tensor(np.log(pi), dtype=torch.float64, requires_grad=True)
        logp = torch.log_softmax(z, -1)
        w = logp.exp().detach()
        loss = -(w * _t(g) * logp).sum() + beta * (w * losses.kl_k3(logp, _t(np.log(pi_ref)))).sum()
        return torch.autograd.grad(loss, z)[0].numpy()

    def closed_form(pi):
        return -pi * (g - pi @ g) + beta * (pi - pi_ref)

    rev, tilt = rlvr.reverse_kl_optimum(pi_ref, g, beta), rlvr.gibbs_tilt(pi_ref, g, beta)
    probes = [rev, tilt, pi_ref, _softmax_rows(_rng(9).normal(size=4))]
    gap = worst_of(*(float(np.abs(expected_grad(p) - closed_form(p)).max()) for p in probes))
    g_rev, g_tilt = (float(np.abs(expected_grad(p)).max()) for p in (rev, tilt))
    tv = float(rlvr.tv_distance(rev, tilt))
    return Outcome(g_tilt < 1e-10, f"expected k3-GRPO gradient = −π(g − E g) + β(π − π_ref) to {gap:.0e}; "
                                   f"{g_rev:.1e} at π_ref·β/(μ−g) (its fixed point), {g_tilt:.2e} at the Gibbs tilt; "
                                   f"TV between them = {tv:.3f} at β = 0.2", tv,
                   consistent=gap < 1e-12 and g_rev < 1e-10)
