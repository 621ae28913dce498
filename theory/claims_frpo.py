"""Claims of the FRPO paper (Robust Policy Optimization), checked numerically (registered into theory.ledger).

Run them with ``python -m theory.claims``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from theory.ledger import FRPO, NOT_CHECKABLE, REFUTED, Outcome, _rng, _softmax_rows, _t, claim


# ---------------------------------------------------------------------------------------------
# FRPO: the surrogate and its closed form (theory.losses)
# ---------------------------------------------------------------------------------------------
def _exact_expected_gradient(probs: np.ndarray, rewards: np.ndarray, g: int, adv_fn) -> np.ndarray:
    """E over all G-tuples of arms of (1/G) Σ_i Â_i ∇_z log softmax(z)[a_i], by exact enumeration."""
    k = len(probs)
    grad = np.zeros(k)
    for tup in itertools.product(range(k), repeat=g):
        p_tuple = float(np.prod(probs[list(tup)]))
        adv = adv_fn(rewards[list(tup)])
        for a, ai in zip(tup, adv):
            score = -probs.copy()
            score[a] += 1.0  # ∇_z log softmax(z)_a = e_a − p
            grad += p_tuple * ai * score / g
    return grad


@claim("frpo.baseline_unbiased", FRPO, "§4 Baseline, App. D",
       "the baseline term λ·mean(c) does not change the expected gradient")
def _check_baseline_unbiased() -> Outcome:
    from theory.losses import frpo_advantages

    probs = np.array([0.5, 0.3, 0.2])
    rewards = np.array([1.0, 0.2, -0.7])
    worst = 0.0
    for jk, lam in itertools.product((False, True), (0.3, 2.0)):
        f = lambda b: (lambda r: frpo_advantages(_t(r), len(r), lam, jackknife=jk, baseline=b,  # noqa: E731
                                                  scale="lambda").numpy())
        with_b = _exact_expected_gradient(probs, rewards, 3, f(True))
        without = _exact_expected_gradient(probs, rewards, 3, f(False))
        worst = max(worst, float(np.abs(with_b - without).max()))
    return Outcome(worst < 1e-12, f"max |E∇(with) − E∇(without)| = {worst:.1e} (exact enumeration, K=3, G=3)",
                   worst)


@claim("frpo.shift_invariance", FRPO, "App. D (Eq. D.1)",
       "adding a constant to all rewards of a group changes nothing")
def _check_shift() -> Outcome:
    from theory.losses import frpo_advantages

    r = _t(_rng(1).normal(size=64))
    worst = 0.0
    for jk, c in itertools.product((False, True), (-50.0, 3.0, 1e3)):
        d = (frpo_advantages(r, 8, 0.5, jackknife=jk) - frpo_advantages(r + c, 8, 0.5, jackknife=jk)).abs().max()
        worst = max(worst, float(d))
    return Outcome(worst < 1e-9, f"max |Â(r) − Â(r+c)| = {worst:.1e}, c up to 1e3", worst)


@claim("frpo.lambda_inf_limit", FRPO, "Remark 3.2, App. D",
       "λ→∞ recovers GRPO without std scaling (×G/(G−1) with the jackknife)")
def _check_lambda_inf() -> Outcome:
    from theory.losses import frpo_advantages

    r = _t(_rng(2).normal(size=32))
    a = (r.view(4, 8) - r.view(4, 8).mean(-1, keepdim=True)).reshape(-1)
    errs = []
    for lam in (1e2, 1e3, 1e4):
        errs.append(float((frpo_advantages(r, 8, lam, jackknife=False, scale="lambda") - a).abs().max()))
        errs.append(float((frpo_advantages(r, 8, lam, jackknife=True, scale="lambda") - a * 8 / 7).abs().max()))
    slope = float(np.polyfit(np.log([1e2, 1e3, 1e4]), np.log(errs[1::2]), 1)[0])
    return Outcome(errs[-1] < 1e-3 and slope < -0.9,
                   f"|Â − A·G/(G−1)| = {errs[1]:.1e}, {errs[3]:.1e}, {errs[5]:.1e} at λ = 1e2, 1e3, 1e4 "
                   f"(slope {slope:.2f}: O(1/λ))", errs[-1])


@claim("frpo.no_baseline_sign_plain", FRPO, "App. D",
       "without the baseline every advantage coefficient is negative (plain estimator)")
def _check_no_baseline_plain() -> Outcome:
    from theory.losses import frpo_advantages

    rng = _rng(3)
    worst = -math.inf
    for _ in range(200):
        g = int(rng.integers(2, 12))
        adv = frpo_advantages(_t(rng.normal(size=g) * 3), g, float(rng.uniform(0.05, 10)),
                              jackknife=False, baseline=False)
        worst = max(worst, float(adv.max()))
    return Outcome(worst < 0, f"max coefficient over 200 random groups = {worst:.3g} < 0", None)


@claim("frpo.no_baseline_sign_jackknife", FRPO, "App. D with App. E",
       "without the baseline every coefficient is negative, also with the jackknife", expect=REFUTED)
def _check_no_baseline_jk() -> Outcome:
    from theory.losses import frpo_advantages

    adv = frpo_advantages(_t([0.0, 2.0]), 2, 1.0, jackknife=True, baseline=False, scale="lambda")
    return Outcome(bool((adv < 0).all()),
                   f"G=2, r=(0, 2), λ=1: Â = ({adv[0]:.3f}, {adv[1]:.3f}); the sum is still −λG = −2",
                   None)


@claim("frpo.onpolicy_closed_form", FRPO, "Eq. 4.1–4.3 (docs/theory.md §1)",
       "at ratio 1, ∇ of the literal surrogate = GRPO gradient with the closed-form Â")
def _check_onpolicy() -> Outcome:
    from theory.losses import frpo_advantages, frpo_loss, grpo_loss

    gen = torch.Generator().manual_seed(0)
    b, t, g = 24, 6, 6
    logp = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 2
    mask = (torch.rand(b, t, generator=gen) > 0.2).double()
    mask[:, 0] = 1
    rewards = torch.randn(b, generator=gen, dtype=torch.float64)
    gid = torch.arange(b // g).repeat_interleave(g)
    perm = torch.randperm(b, generator=gen)
    worst = 0.0
    for jk, lam in itertools.product((False, True), (0.1, 1.0, 5.0)):
        x = logp.clone().requires_grad_(True)
        l1, _ = frpo_loss(x[perm], x[perm].detach(), mask[perm], rewards[perm], gid[perm], lam, jackknife=jk)
        (g1,) = torch.autograd.grad(l1, x)
        y = logp.clone().requires_grad_(True)
        l2, _ = grpo_loss(y, y.detach(), mask, frpo_advantages(rewards, g, lam, jackknife=jk))
        (g2,) = torch.autograd.grad(l2, y)
        worst = max(worst, float((g1 - g2).abs().max()))
    return Outcome(worst < 1e-10, f"max |∇ surrogate − ∇ closed form| = {worst:.1e} (shuffled rows)", worst)



@claim("frpo.table2_math", FRPO, "Table 2",
       "Qwen2.5-Math-7B after code SFT: FRPO λ=2 keeps 64.5 vs GRPO 42.3 on MATH500", expect=NOT_CHECKABLE)
def _check_table2() -> Outcome:
    return Outcome(None, "7B GPU result; the tiny-world pipeline (`python -m llm.run`) measures the same "
                         "retention question at small scale, see README results")


@claim("frpo.jackknife_order_logmean", FRPO, "App. E",
       "the jackknife lowers the bias of log of a sample mean from O(1/G) to O(1/G²)")
def _check_jk_logmean() -> Outcome:
    from theory.jackknife import bias_slope

    gs = [4, 8, 16, 32, 64]
    sup, p = np.array([0.5, 1.0, 2.0]), np.array([0.3, 0.4, 0.3])
    plain = bias_slope("log_mean", sup, p, gs, False)
    jk = bias_slope("log_mean", sup, p, gs, True)
    return Outcome(-1.15 < plain < -0.9 and jk < -1.7,
                   f"log-log slope of |bias| vs G (exact enumeration, G=4…64): plain {plain:.2f}, jackknife {jk:.2f}",
                   None)


@claim("frpo.jackknife_order_snis", FRPO, "App. E",
       "the same orders for the self-normalized gradient ratio Σwφ/Σw")
def _check_jk_snis() -> Outcome:
    from theory.jackknife import bias_slope

    gs = [4, 8, 16, 32, 64]
    sup, p = np.array([[0.5, 1.0], [2.0, -1.0]]), np.array([0.5, 0.5])
    plain = bias_slope("snis", sup, p, gs, False)
    jk = bias_slope("snis", sup, p, gs, True)
    return Outcome(-1.2 < plain < -0.9 and jk < -1.7,
                   f"slopes: plain {plain:.2f}, jackknife {jk:.2f} (on other distributions the plain slope over "
                   "G=4…64 can be far from −1, e.g. −0.19, while the bias changes sign: asymptotic only)", None)


def _dro_instances(n: int, seed: int):
    rng = _rng(seed)
    for _ in range(n):
        m, k = int(rng.integers(1, 4)), int(rng.integers(2, 7))
        yield rng.normal(size=(m, k)), _softmax_rows(rng.normal(size=(m, k))), float(rng.choice([0.01, 0.1, 0.5]))


def _lemma31(f: str) -> Outcome:
    from theory.risk import fdiv_dro_dual, fdiv_dro_primal

    worst = 0.0
    for r, pi, rho in _dro_instances(12, {"kl": 0, "chi2": 1, "tv": 2}[f]):
        worst = max(worst, abs(fdiv_dro_dual(r, pi, rho, f).value - fdiv_dro_primal(r, pi, rho, f).value))
    return Outcome(worst < 1e-5, f"max |dual − cvxpy primal| over 12 random instances = {worst:.1e}", worst)


@claim("frpo.lemma31_kl", FRPO, "Lemma 3.1 (f = t log t)",
       "inf over the average-KL ball = sup_λ −λ E_x log E_π e^{−r/λ} − λρ")
def _check_lemma31_kl() -> Outcome:
    return _lemma31("kl")


@claim("frpo.lemma31_chi2", FRPO, "Lemma 3.1 (f = (t−1)²)", "the general-f dual holds for χ²")
def _check_lemma31_chi2() -> Outcome:
    return _lemma31("chi2")


@claim("frpo.lemma31_tv", FRPO, "Lemma 3.1 (f = |t−1|/2)", "the general-f dual holds for total variation")
def _check_lemma31_tv() -> Outcome:
    return _lemma31("tv")


@claim("frpo.worst_case_tilt", FRPO, "Lemma 3.1 / Remark 3.2",
       "the worst case is Q* ∝ π e^{−r/λ*} with one λ* for all prompts; ρ = 0 gives λ* = ∞ and the mean")
def _check_tilt() -> Outcome:
    from theory.risk import kl_dro_dual

    worst = 0.0
    for r, pi, rho in _dro_instances(30, 3):
        res = kl_dro_dual(r, pi, rho)
        if 0 < res.lam < math.inf:
            tilt = pi * np.exp(-(r - r.min(-1, keepdims=True)) / res.lam)
            tilt /= tilt.sum(-1, keepdims=True)
            kl = float(np.mean(np.sum(res.q * np.log(res.q / pi), -1)))
            worst = max(worst, float(np.abs(tilt - res.q).max()), abs(kl - rho),
                        abs(float(np.mean(np.sum(res.q * r, -1))) - res.value))
    r, pi, _ = next(_dro_instances(1, 4))
    zero = kl_dro_dual(r, pi, 0.0)
    mean = float(np.mean(np.sum(pi * r, -1)))
    ok0 = math.isinf(zero.lam) and abs(zero.value - mean) < 1e-12
    return Outcome(worst < 1e-7 and ok0, f"max |Q* − tilt|, |E KL(Q*‖π) − ρ|, |E_Q* r − value| = {worst:.1e}; "
                                         f"ρ=0: λ* = {zero.lam}, value = mean to {abs(zero.value - mean):.0e}", worst)


@claim("frpo.remark33_variance", FRPO, "Remark 3.3",
       "for small ρ the robust value is E r − √(2ρ Var) up to O(ρ)")
def _check_remark33() -> Outcome:
    from theory.risk import kl_dro_dual, variance_penalty_value

    rng = _rng(5)
    r = rng.normal(size=(1, 8))
    pi = _softmax_rows(rng.normal(size=(1, 8)))
    rhos = np.array([1e-4, 1e-3, 1e-2])
    gaps = np.array([abs(kl_dro_dual(r, pi, rho).value - variance_penalty_value(r, pi, rho)) for rho in rhos])
    slope = float(np.polyfit(np.log(rhos), np.log(gaps), 1)[0])
    return Outcome(0.8 < slope < 1.2, "|exact − (E r − √(2ρVar))| = " + ", ".join(f"{g:.1e}" for g in gaps)
                   + f" at ρ = 1e-4, 1e-3, 1e-2: slope {slope:.2f} (O(ρ))", float(gaps[-1]))


@claim("frpo.entropic_risk_limits", FRPO, "Remark 3.3 (entropic risk)",
       "min r ≤ ER_λ ≤ E r, nondecreasing in λ, → E r as λ→∞ and → min r as λ→0")
def _check_er() -> Outcome:
    from theory.risk import entropic_risk

    rng = _rng(6)
    worst = -math.inf
    for _ in range(100):
        v = rng.normal(size=int(rng.integers(2, 10))) * 5
        lams = np.logspace(-4, 6, 30)
        er = np.array([entropic_risk(v, lam) for lam in lams])
        worst = max(worst, float(np.max(np.diff(er)) * -1), float(v.min() - er.min()), float(er.max() - v.mean()))
        worst = max(worst, abs(entropic_risk(v, math.inf) - v.mean()) - 1e-12, abs(entropic_risk(v, 0.0) - v.min()) - 1e-12)
    return Outcome(worst <= 1e-9, f"max violation over 100 random reward sets × 30 λ in [1e-4, 1e6] = {worst:.1e}",
                   max(worst, 0.0))
