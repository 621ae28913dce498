"""Deliberately broken versions of the functions the claims ledger checks (its self-test).

Each ``@mutation(name, target, what)`` maps the original function to a broken one: a sign flip, a
dropped term, an off-by-one in G, a constant. ``theory.ledger.mutated(name)`` swaps it in for the
module attribute ``target``; each claim lists the mutants it must catch, and
``python -m theory.claims --mutants`` / ``tests/theory/test_ledger_mutations.py`` check that every one
changes its row's verdict. Nothing here is used by the product: these are the bugs the ledger exists to
catch, written down so that a check which cannot fail shows up as a surviving mutant.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from theory import losses
from theory.ledger import mutation

L, D, RK, J, C, RL = ("theory.losses.", "theory.dro.", "theory.risk.", "theory.jackknife.", "theory.csft.",
                      "theory.rlvr.")


def _wrap(orig, fn):
    return functools.wraps(orig)(fn)


# ---------------------------------------------------------------------------------------------
# theory.losses
# ---------------------------------------------------------------------------------------------
@mutation("frpo_advantages.sign", L + "frpo_advantages", "every advantage negated")
def _(orig):
    return _wrap(orig, lambda *a, **k: -orig(*a, **k))


def _adv_args(rewards, group_size, lam, jackknife=True, scale="max1", baseline=True, valid=None):
    return rewards, group_size, lam, jackknife, scale, baseline, valid


def _tilt_parts(rewards: torch.Tensor, g: int, lam: float, naive: bool = False):
    """p = softmax(−A/λ) per group (n, G) and the leave-one-out softmaxes p⁻ʲ (n, j, i) (0 at i = j).

    ``naive``: w = e^{−r/λ} on the raw rewards, normalised by plain sums (no centring, no logsumexp).
    """
    logw = -rewards.view(-1, g) / lam  # softmax is shift invariant: A or r give the same p
    eye = torch.eye(g, dtype=torch.bool)
    if naive:
        w = torch.exp(logw)
        loo_w = w.unsqueeze(1).expand(-1, g, g).masked_fill(eye, 0.0)
        return w / w.sum(-1, keepdim=True), loo_w / loo_w.sum(-1, keepdim=True)
    p = torch.softmax(logw, -1)
    loo = torch.softmax(logw.unsqueeze(1).expand(-1, g, g).masked_fill(eye, -math.inf), -1)
    return p, loo


def _advantages_from(p, loo, g, lam, scale, baseline, jk, weight):
    """s(λ)(b − G·coef): coef = p (plain) or G p − weight·Σ_{j≠i} p⁻ʲ_i (jackknife; the right weight is (G−1)/G)."""
    coef = g * p - weight * loo.sum(1) if jk else p
    s = losses.frpo_scale(lam, scale)
    return (s * ((1.0 if baseline else 0.0) - g * coef)).reshape(-1)


@mutation("frpo_advantages.baseline_ignored", L + "frpo_advantages", "the baseline flag has no effect (b = 0)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        return orig(r, g, lam, jackknife=jk, scale=scale, baseline=math.isinf(lam), valid=valid)
    return _wrap(orig, f)


@mutation("frpo_advantages.baseline_tilted", L + "frpo_advantages",
          "the baseline weighted by the tilt, s·G·p_i instead of s (it then depends on the sample)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        out = orig(r, g, lam, jackknife=jk, scale=scale, baseline=baseline, valid=valid)
        if not baseline or math.isinf(lam):
            return out
        p, _ = _tilt_parts(r, g, lam)
        s = losses.frpo_scale(lam, scale)
        return out - s + s * g * p.reshape(-1)
    return _wrap(orig, f)


@mutation("frpo_advantages.jackknife_weight_off_by_one", L + "frpo_advantages",
          "jackknife combination G·ĝ − (G−2)/(G−1)·Σ_j ĝ₋ⱼ instead of (G−1)/G (finite λ)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        if not jk or math.isinf(lam) or valid is not None:
            return orig(*a, **k)
        p, loo = _tilt_parts(r, g, lam)
        return _advantages_from(p, loo, g, lam, scale, baseline, True, (g - 2) / (g - 1))
    return _wrap(orig, f)


@mutation("frpo_advantages.naive_exp", L + "frpo_advantages",
          "weights e^{−r/λ} on the raw rewards with plain sums (no centring, no logsumexp): overflows (finite λ)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        if math.isinf(lam) or valid is not None:
            return orig(*a, **k)
        p, loo = _tilt_parts(r, g, lam, naive=True)
        return _advantages_from(p, loo, g, lam, scale, baseline, jk, (g - 1) / g)
    return _wrap(orig, f)


@mutation("frpo_advantages.jackknife_ignored", L + "frpo_advantages", "jackknife=True returns the plain estimator")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        return orig(r, g, lam, jackknife=False, scale=scale, baseline=baseline, valid=valid)
    return _wrap(orig, f)


@mutation("frpo_advantages.plain_g_off_by_one", L + "frpo_advantages",
          "plain estimator λ(b − (G−1)p_i) instead of λ(b − G p_i) (finite λ)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        if jk or math.isinf(lam) or valid is not None:
            return orig(*a, **k)
        p, loo = _tilt_parts(r, g, lam)
        return _advantages_from(p * (g - 1) / g, loo, g, lam, scale, baseline, False, 0.0)
    return _wrap(orig, f)


@mutation("frpo_advantages.inf_branch_factor_dropped", L + "frpo_advantages",
          "λ = ∞ with the jackknife returns A, without the factor G/(G−1)")
def _(orig):
    def f(*a, **k):
        r, g, lam, jk, scale, baseline, valid = _adv_args(*a, **k)
        out = orig(*a, **k)
        return out * (g - 1) / g if (jk and math.isinf(lam)) else out
    return _wrap(orig, f)


@mutation("group_advantages.uncentred", L + "group_advantages", "the group mean is not subtracted (A = r)")
def _(orig):
    def f(rewards, group_size, valid=None):
        v = torch.ones_like(rewards) if valid is None else valid.to(rewards.dtype)
        return rewards * v
    return _wrap(orig, f)


@mutation("frpo_loss.sign", L + "frpo_loss", "the surrogate loss negated")
def _(orig):
    def f(*a, **k):
        loss, metrics = orig(*a, **k)
        return -loss, metrics
    return _wrap(orig, f)


@mutation("frpo_loss.baseline_ignored", L + "frpo_loss", "the baseline term dropped from the surrogate")
def _(orig):
    return _wrap(orig, lambda *a, **k: orig(*a, **{**k, "baseline": False}))


@mutation("kl_k3.sign", L + "kl_k3", "k3 negated")
def _(orig):
    return _wrap(orig, lambda logp, ref_logp: -orig(logp, ref_logp))


@mutation("kl_k3.k1", L + "kl_k3", "the naive k1 estimator log π − log π_ref in place of k3")
def _(orig):
    return _wrap(orig, lambda logp, ref_logp: logp - ref_logp)


def _loss_scaled(orig, factor, only_form=None):
    def f(*a, **k):
        loss, metrics = orig(*a, **k)
        if only_form is not None and k.get("form", "sigmoid") != only_form:
            return loss, metrics
        return factor * loss, metrics
    return _wrap(orig, f)


@mutation("csft_loss.half", L + "csft_loss", "the factor 2 dropped (2/β → 1/β, w = 1 − σ(βΔ)), both forms")
def _(orig):
    return _loss_scaled(orig, 0.5)


@mutation("csft_loss.weighted_nll_half", L + "csft_loss", "weighted-NLL form with w = 1 − σ(βΔ) (factor 2 dropped)")
def _(orig):
    return _loss_scaled(orig, 0.5, only_form="weighted_nll")


@mutation("csft_loss.betas_ignored", L + "csft_loss", "the betas argument ignored (default schedule used)")
def _(orig):
    def f(logp, ref_logp, mask, betas=None, **k):
        return orig(logp, ref_logp, mask, None, **k)
    return _wrap(orig, f)


@mutation("pa_loss.sign", L + "pa_loss", "the PA loss negated")
def _(orig):
    return _loss_scaled(orig, -1.0)


@mutation("pa_loss.mu_not_detached", L + "pa_loss", "detach_mu ignored: μ always differentiated")
def _(orig):
    return _wrap(orig, lambda *a, **k: orig(*a, **{**k, "detach_mu": False}))


@mutation("pa_loss.aligned_is_current", L + "pa_loss", "the aligned model's logits replaced by the current ones")
def _(orig):
    return _wrap(orig, lambda logits, ref_logits, mask, **k: orig(logits, logits.detach(), mask, **k))


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
