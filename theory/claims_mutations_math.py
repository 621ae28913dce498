"""Deliberately broken versions of the functions the claims ledger checks: theory.dro, theory.risk,
theory.jackknife, theory.csft and theory.rlvr (the theory.losses ones are in ``theory.claims_mutations``,
which explains the mechanism).
"""
from __future__ import annotations

import math

import numpy as np

from theory.claims_mutations import _wrap
from theory.ledger import mutation

D, RK, J, C, RL = "theory.dro.", "theory.risk.", "theory.jackknife.", "theory.csft.", "theory.rlvr."


# ---------------------------------------------------------------------------------------------
# theory.dro, theory.risk
# ---------------------------------------------------------------------------------------------
def _mean_result(rewards, pi):
    from theory.dro import DROResult

    r, p = np.atleast_2d(rewards), np.atleast_2d(pi)
    return DROResult(float(np.mean(np.sum(p * r, -1))), math.inf, np.asarray(pi, dtype=float), None)


@mutation("kl_dro_dual.mean", D + "kl_dro_dual", "returns the ρ = 0 answer (E r, λ* = ∞, Q* = π) for every ρ")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, px=None: _mean_result(rewards, pi))


@mutation("kl_dro_dual.value_half_budget", D + "kl_dro_dual", "the value of the ρ/2 ball (a dropped factor 2)")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, px=None: orig(rewards, pi, rho / 2, px))


@mutation("kl_dro_dual.q_is_pi", D + "kl_dro_dual", "Q* reported as π (the tilt dropped)")
def _(orig):
    def f(rewards, pi, rho, px=None):
        res = orig(rewards, pi, rho, px)
        return type(res)(res.value, res.lam, np.asarray(pi, dtype=float), res.eta)
    return _wrap(orig, f)


@mutation("kl_dro_dual.lam_scaled", D + "kl_dro_dual", "λ* reported 5% too large")
def _(orig):
    def f(rewards, pi, rho, px=None):
        res = orig(rewards, pi, rho, px)
        return type(res)(res.value, res.lam * 1.05, res.q, res.eta)
    return _wrap(orig, f)


@mutation("kl_dro_dual.small_rho_is_mean", D + "kl_dro_dual", "ρ < 1e-3 treated as ρ = 0 (the edge branch)")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, px=None: _mean_result(rewards, pi) if rho < 1e-3
                 else orig(rewards, pi, rho, px))


@mutation("fdiv_dro_dual.mean", D + "fdiv_dro_dual", "returns E r for every ρ")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, f, px=None: _mean_result(rewards, pi))


@mutation("fdiv_dro_dual.chi2_as_kl", D + "fdiv_dro_dual", "f = chi2 solved as KL")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, f, px=None: orig(rewards, pi, rho, "kl" if f == "chi2" else f, px))


@mutation("fdiv_dro_dual.tv_budget_doubled", D + "fdiv_dro_dual", "TV without its ½ (the budget doubled)")
def _(orig):
    return _wrap(orig, lambda rewards, pi, rho, f, px=None: orig(rewards, pi, 2 * rho if f == "tv" else rho, f, px))


@mutation("variance_penalty_value.no_factor_2", D + "variance_penalty_value", "E r − √(ρ Var) instead of √(2ρ Var)")
def _(orig):
    def f(rewards, pi, rho, px=None):
        r, p = np.atleast_2d(rewards), np.atleast_2d(pi)
        mean = float(np.mean(np.sum(p * r, -1))) if px is None else float(np.asarray(px) @ np.sum(p * r, -1))
        return mean - (mean - orig(rewards, pi, rho, px)) / math.sqrt(2)
    return _wrap(orig, f)


@mutation("entropic_risk.mean_at_finite_lam", RK + "entropic_risk", "E r at every λ > 0 (only λ = 0 gives min r)")
def _(orig):
    return _wrap(orig, lambda values, lam, probs=None: orig(values, math.inf if lam > 0 else 0.0, probs))


@mutation("entropic_risk.lam_doubled", RK + "entropic_risk", "evaluated at 2λ")
def _(orig):
    return _wrap(orig, lambda values, lam, probs=None: orig(values, 2 * lam, probs))


@mutation("entropic_risk.nonmonotone", RK + "entropic_risk",
          "evaluated at λ(1 + 0.9 sin(5 log λ)): still in [min r, E r], no longer monotone")
def _(orig):
    def f(values, lam, probs=None):
        if lam == 0 or math.isinf(lam):
            return orig(values, lam, probs)
        return orig(values, lam * (1 + 0.9 * math.sin(5 * math.log(lam))), probs)
    return _wrap(orig, f)


# ---------------------------------------------------------------------------------------------
# theory.jackknife
# ---------------------------------------------------------------------------------------------
@mutation("exact_bias.jackknife_ignored", J + "exact_bias", "jackknife=True returns the plain bias")
def _(orig):
    return _wrap(orig, lambda kind, support, probs, G, jackknife: orig(kind, support, probs, G, False))


@mutation("_estimates.weight_off_by_one", J + "_estimates",
          "jackknife G·ĝ − (G−2)/(G−1)·Σ_j ĝ₋ⱼ instead of (G−1)/G")
def _(orig):
    def f(kind, x, counts, G, jack):
        if not jack:
            return orig(kind, x, counts, G, False)
        plain = orig(kind, x, counts, G, False)
        loo_sum = (G * plain - orig(kind, x, counts, G, True)) * G / (G - 1)  # Σ_j ĝ₋ⱼ
        return G * plain - (G - 2) / (G - 1) * loo_sum
    return _wrap(orig, f)


# ---------------------------------------------------------------------------------------------
# theory.csft
# ---------------------------------------------------------------------------------------------
@mutation("theorem42_counterexample.mu_equals_L", C + "theorem42_counterexample",
          "the counterexample built with H = diag(L, L) (μ = L)")
def _(orig):
    def f(L, mu, eps, G):
        ce = orig(L, mu, eps, G)
        h = np.diag([float(L), float(L)])
        theta = np.linalg.solve(h, -float(eps) * ce.g)
        return ce._replace(hessian=h, theta_eps=theta, displacement=float(np.linalg.norm(theta)),
                           corrected_bound=float(eps) * float(G) / float(L))
    return _wrap(orig, f)


@mutation("theorem42_counterexample.theta_sign", C + "theorem42_counterexample", "θ^ε with the wrong sign")
def _(orig):
    return _wrap(orig, lambda *a, **k: (lambda ce: ce._replace(theta_eps=-ce.theta_eps))(orig(*a, **k)))


@mutation("check_corrected_bound.scaled", C + "check_corrected_bound", "ratio against εG/(2μ)")
def _(orig):
    return _wrap(orig, lambda rng, dim, n_trials: 2.0 * orig(rng, dim, n_trials))


@mutation("check_corrected_bound.const", C + "check_corrected_bound", "returns the constant 0.5")
def _(orig):
    return _wrap(orig, lambda rng, dim, n_trials: 0.5)


# ---------------------------------------------------------------------------------------------
# theory.rlvr
# ---------------------------------------------------------------------------------------------
@mutation("gibbs_tilt.beta_doubled", RL + "gibbs_tilt", "tilt at 2β")
def _(orig):
    return _wrap(orig, lambda pi_ref, reward, beta: orig(pi_ref, reward, 2 * beta))


@mutation("gibbs_value.no_beta", RL + "gibbs_value", "log Z without the factor β")
def _(orig):
    return _wrap(orig, lambda pi_ref, reward, beta: orig(pi_ref, reward, beta) / beta)


@mutation("exact_drift.sign", RL + "exact_drift", "drift negated")
def _(orig):
    return _wrap(orig, lambda *a: -orig(*a))


@mutation("exact_drift.zero", RL + "exact_drift", "returns 0")
def _(orig):
    return _wrap(orig, lambda *a: 0.0 * orig(*a))


@mutation("exact_drift.unnormalised", RL + "exact_drift", "Cov(s, e^{(g − max g)/β}) without the 1/Z")
def _(orig):
    def f(pi_ref, reward, safety, beta):
        w = np.exp((reward - np.max(reward)) / beta)
        return float(np.sum(pi_ref * safety * w) - np.sum(pi_ref * safety) * np.sum(pi_ref * w))
    return _wrap(orig, f)


@mutation("chi2_drift_bound.zero", RL + "chi2_drift_bound", "returns 0")
def _(orig):
    return _wrap(orig, lambda *a: 0.0 * orig(*a))


@mutation("chi2_drift_bound.no_sqrt", RL + "chi2_drift_bound", "Var·χ² without the square root")
def _(orig):
    return _wrap(orig, lambda *a: orig(*a) ** 2)


@mutation("chi2_drift_bound.doubled", RL + "chi2_drift_bound", "2√(Var·χ²)")
def _(orig):
    return _wrap(orig, lambda *a: 2.0 * orig(*a))


@mutation("chi2_drift_bound_unit.quarter", RL + "chi2_drift_bound_unit", "¼√χ² instead of ½√χ²")
def _(orig):
    return _wrap(orig, lambda *a: 0.5 * orig(*a))


@mutation("invariance_covariance.uses_g", RL + "invariance_covariance", "Cov(s, g) instead of Cov(s, e^{g/β})")
def _(orig):
    def f(pi_ref, reward, safety, beta):
        return float(np.sum(pi_ref * safety * reward) - np.sum(pi_ref * safety) * np.sum(pi_ref * reward))
    return _wrap(orig, f)


@mutation("zero_correlation_counterexample.correlated", RL + "zero_correlation_counterexample",
          "safety (.75, .25, .25): correlated with g")
def _(orig):
    return _wrap(orig, lambda: orig()._replace(safety=np.array([0.75, 0.25, 0.25])))


@mutation("tv_bound_tanh.half_beta", RL + "tv_bound_tanh", "tanh(1/(2β)) instead of tanh(1/(4β))")
def _(orig):
    return _wrap(orig, lambda beta: orig(np.asarray(beta) / 2))


@mutation("tv_distance.no_half", RL + "tv_distance", "Σ|p − q| without the ½")
def _(orig):
    return _wrap(orig, lambda p, q: 2.0 * orig(p, q))


@mutation("pinsker_bound.no_half", RL + "pinsker_bound", "√KL instead of √(KL/2)")
def _(orig):
    return _wrap(orig, lambda kl: orig(2.0 * np.asarray(kl)))


@mutation("pinsker_bound.eighth", RL + "pinsker_bound", "√(KL/8) instead of √(KL/2)")
def _(orig):
    return _wrap(orig, lambda kl: orig(np.asarray(kl) / 4))


@mutation("safety_rate_derivative.sign", RL + "safety_rate_derivative", "dS/d(1/β) negated")
def _(orig):
    return _wrap(orig, lambda *a: -orig(*a))


@mutation("success_rate_derivative.under_ref", RL + "success_rate_derivative", "Var under π_ref, not under π_β")
def _(orig):
    def f(pi_ref, reward, beta):
        m = np.sum(pi_ref * reward)
        return float(np.sum(pi_ref * (reward - m) ** 2))
    return _wrap(orig, f)


@mutation("reverse_kl_optimum.is_tilt", RL + "reverse_kl_optimum", "returns the Gibbs tilt")
def _(orig):
    def f(pi_ref, reward, beta):
        from theory import rlvr

        return rlvr.gibbs_tilt(pi_ref, reward, beta)
    return _wrap(orig, f)
