"""Claims of the FRPO paper about its surrogate and advantages, checked numerically (registered into
theory.ledger). The DRO / entropic-risk rows are in ``theory.claims_frpo_dro``, the jackknife rows in
``theory.claims_frpo_jackknife``.

Functions under test are called through their module (``losses.frpo_advantages``), so the mutation
check can swap a broken version in. Run them with ``python -m theory.claims``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from theory import losses
from theory.ledger import FRPO, NOT_CHECKABLE, REFUTED, Outcome, _rng, _t, claim, least_of, worst_of

ADV = "theory.losses.frpo_advantages"


# ---------------------------------------------------------------------------------------------
# the baseline (Eq. 4.2, App. D)
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
       "with one-token responses the baseline term λ·mean(c) does not change the expected gradient",
       origin="paper", checks=(ADV,), mutants=("frpo_advantages.baseline_tilted", "frpo_advantages.baseline_ignored"),
       note="one-token responses (equivalently any sequence-sum aggregation); variable lengths with the token "
            "mean are frpo.baseline_token_mean_lengths")
def _check_baseline_unbiased() -> Outcome:
    probs = np.array([0.5, 0.3, 0.2])
    rewards = np.array([1.0, 0.2, -0.7])
    worst, moved = 0.0, math.inf
    for jk, lam in itertools.product((False, True), (0.3, 2.0)):
        f = lambda b: (lambda r: losses.frpo_advantages(_t(r), len(r), lam, jackknife=jk, baseline=b,  # noqa: E731
                                                         scale="lambda").numpy())
        with_b = _exact_expected_gradient(probs, rewards, 3, f(True))
        without = _exact_expected_gradient(probs, rewards, 3, f(False))
        worst = worst_of(worst, float(np.abs(with_b - without).max()))
        # non-vacuity: the baseline does move every single coefficient (by λ)
        moved = least_of(moved, float(np.abs(f(True)(rewards) - f(False)(rewards)).max()) / lam)
    return Outcome(worst < 1e-12, f"max |E∇(with) − E∇(without)| = {worst:.1e} (exact enumeration, K=3, G=3); "
                                  f"per-sample shift/λ = {moved:.3f}", worst, consistent=moved > 0.5)


# a prefix tree of responses with three lengths: root {a: end, b: n1}; n1 {a: end, b: n2}; n2 {a, b: end}
_TREE_PATHS = ([(0, 0)], [(0, 1), (1, 0)], [(0, 1), (1, 1), (2, 0)], [(0, 1), (1, 1), (2, 1)])  # a, ba, bba, bbb
_TREE_LEN = torch.tensor([1.0, 2.0, 3.0, 3.0], dtype=torch.float64)
_TREE_REWARD = torch.tensor([1.0, 0.2, -0.7, 0.4], dtype=torch.float64)
_TREE_THETA = torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]], dtype=torch.float64)


def _tree_logp(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (4 responses, T = 3) of the tree policy with node logits ``theta`` (3, 2), and the mask."""
    lp = torch.log_softmax(theta, -1)
    zero = torch.zeros((), dtype=theta.dtype)
    rows = [torch.stack([lp[n, a] for n, a in p] + [zero] * (3 - len(p))) for p in _TREE_PATHS]
    mask = torch.tensor([[1.0] * len(p) + [0.0] * (3 - len(p)) for p in _TREE_PATHS], dtype=theta.dtype)
    return torch.stack(rows), mask


def _tree_expected_grad(loss_fn, g: int) -> torch.Tensor:
    """E over all G-tuples of responses of ∇_θ loss(group), by exact enumeration: ∇ Σ_tuples P(tuple)·loss.

    ``loss_fn(logp, mask, rewards, group_ids)`` is called on one group of G rows at a time (so a batch-level
    normaliser such as aggregation="token_mean" sees one group); P(tuple) is detached (the sampling law).
    """
    theta = _TREE_THETA.clone().requires_grad_(True)
    logp, mask = _tree_logp(theta)
    probs = (logp * mask).sum(-1).exp().detach()
    gids = torch.zeros(g, dtype=torch.long)
    total = 0.0
    for tup in itertools.product(range(4), repeat=g):
        i = list(tup)
        total = total + float(probs[i].prod()) * loss_fn(logp[i], mask[i], _TREE_REWARD[i], gids)
    (grad,) = torch.autograd.grad(total, theta)
    return grad


@claim("frpo.baseline_token_mean_lengths", FRPO, "Eq. 4.2, App. D",
       "with responses of different lengths and Eq. 4.2's token mean (1/|y_i|) Σ_t (frpo_loss, the trainers), "
       "the baseline does not change the expected gradient", origin="paper", expect=REFUTED,
       checks=("theory.losses.frpo_loss",), mutants=("frpo_loss.baseline_ignored", "frpo_loss.sign"),
       note="the baseline shifts the expected gradient by −λ∇E[1/|y|]: only a length-independent normaliser keeps it "
            "unbiased — a sequence sum, or sum/constant (aggregation='seq_sum_const', TRL 'dr_grpo'); the per-sequence "
            "token mean ('seq_mean_token_mean', TRL 'grpo', frpo_loss) and the batch token mean ('token_mean', TRL "
            "'dapo') are biased")
def _check_baseline_lengths() -> Outcome:
    g, lam = 3, 0.5

    def frpo(baseline):
        return lambda x, m, r, gid: losses.frpo_loss(x, x.detach(), m, r, gid, lam, jackknife=True,
                                                     baseline=baseline, scale="lambda")[0]

    def grpo(baseline, agg):
        return lambda x, m, r, gid: losses.grpo_loss(x, x.detach(), m, losses.frpo_advantages(
            r, g, lam, jackknife=True, baseline=baseline, scale="lambda"), aggregation=agg)[0]

    with_b, without = _tree_expected_grad(frpo(True), g), _tree_expected_grad(frpo(False), g)
    shift = with_b - without
    # independent prediction: the baseline adds −λ (1/G) Σ_i ∇log π(y_i)/|y_i| to ∇loss; its mean is −λ ∇E[1/|y|]
    theta = _TREE_THETA.clone().requires_grad_(True)
    logp, mask = _tree_logp(theta)
    (d_inv_len,) = torch.autograd.grad(((logp * mask).sum(-1).exp() / _TREE_LEN).sum(), theta)
    pred = -lam * d_inv_len
    size, gap = float(shift.abs().max()), float((shift - pred).abs().max())
    seq_sum = float((_tree_expected_grad(grpo(True, "seq_sum_const"), g)
                     - _tree_expected_grad(grpo(False, "seq_sum_const"), g)).abs().max())
    tok = float((_tree_expected_grad(grpo(True, "token_mean"), g)
                 - _tree_expected_grad(grpo(False, "token_mean"), g)).abs().max())
    holds = size < 1e-12
    consistent = (holds or gap < 1e-12) and seq_sum < 1e-12
    return Outcome(holds, f"lengths 1,2,3,3, G=3, λ=0.5 (exact enumeration): max|shift| = {size:.3f} vs no-baseline "
                          f"E∇ {float(without.abs().max()):.3f}; shift − (−λ∇E[1/|y|]) = {gap:.0e}; "
                          f"seq_sum_const shift {seq_sum:.0e}, token_mean (one group per batch) shift {tok:.3f}",
                   size, consistent)


# ---------------------------------------------------------------------------------------------
# the closed-form advantages
# ---------------------------------------------------------------------------------------------
@claim("frpo.shift_invariance", FRPO, "App. D (Eq. D.1)",
       "adding a constant to all rewards of a group changes nothing (λ = 1e-3, 0.5, ∞)", origin="toolkit",
       checks=(ADV, "theory.losses.group_advantages"),
       mutants=("group_advantages.uncentred", "frpo_advantages.naive_exp"))
def _check_shift() -> Outcome:
    r = _t(_rng(1).normal(size=64))
    worst = 0.0
    for jk, c, lam in itertools.product((False, True), (-50.0, 3.0, 1e3), (1e-3, 0.5, math.inf)):
        d = (losses.frpo_advantages(r, 8, lam, jackknife=jk) - losses.frpo_advantages(r + c, 8, lam, jackknife=jk))
        worst = worst_of(worst, float(d.abs().max()))
    return Outcome(worst < 1e-9, f"max |Â(r) − Â(r+c)| = {worst:.1e}, c up to 1e3", worst)


@claim("frpo.lambda_inf_limit", FRPO, "Remark 3.2, App. D",
       "λ→∞ recovers GRPO without std scaling: Â → A (plain), A·G/(G−1) (jackknife), at rate O(1/λ)",
       origin="paper", checks=(ADV,),
       mutants=("frpo_advantages.plain_g_off_by_one", "frpo_advantages.jackknife_weight_off_by_one",
                "frpo_advantages.inf_branch_factor_dropped"))
def _check_lambda_inf() -> Outcome:
    r = _t(_rng(2).normal(size=32))
    a = (r.view(4, 8) - r.view(4, 8).mean(-1, keepdim=True)).reshape(-1)
    limits = {False: a, True: a * 8 / 7}
    lams = (1e2, 1e3, 1e4)
    errs = {jk: [float((losses.frpo_advantages(r, 8, lam, jackknife=jk, scale="lambda") - limits[jk]).abs().max())
                 for lam in lams] for jk in (False, True)}
    slopes = {jk: float(np.polyfit(np.log(lams), np.log(errs[jk]), 1)[0]) for jk in (False, True)}
    at_inf = worst_of(*(float((losses.frpo_advantages(r, 8, math.inf, jackknife=jk) - limits[jk]).abs().max())
                        for jk in (False, True)))
    ok = all(errs[jk][-1] < 1e-3 and -1.1 < slopes[jk] < -0.9 for jk in (False, True)) and at_inf < 1e-12
    return Outcome(ok, f"|Â − limit| at λ = 1e2, 1e3, 1e4: plain " + ", ".join(f"{e:.1e}" for e in errs[False])
                   + f" (slope {slopes[False]:.2f}), jackknife " + ", ".join(f"{e:.1e}" for e in errs[True])
                   + f" (slope {slopes[True]:.2f}); λ = ∞ branch off the limit by {at_inf:.0e}",
                   max(errs[False][-1], errs[True][-1]))


@claim("frpo.no_baseline_sign_plain", FRPO, "App. D (D.1)",
       "without the baseline every advantage coefficient is negative (plain estimator); they sum to −s(λ)·G",
       origin="paper", checks=(ADV,), mutants=("frpo_advantages.sign",))
def _check_no_baseline_plain() -> Outcome:
    rng = _rng(3)
    worst, sum_gap = -math.inf, 0.0
    for _ in range(200):
        g = int(rng.integers(2, 12))
        lam = float(rng.uniform(0.05, 10))
        adv = losses.frpo_advantages(_t(rng.normal(size=g) * 3), g, lam, jackknife=False, baseline=False)
        worst = worst_of(worst, float(adv.max()))
        sum_gap = worst_of(sum_gap, abs(float(adv.sum()) + losses.frpo_scale(lam) * g) / g)
    return Outcome(worst < 0 and sum_gap < 1e-12,
                   f"max coefficient over 200 random groups = {worst:.3g} < 0; |Σ Â + s(λ)G|/G ≤ {sum_gap:.0e}", None)


@claim("frpo.no_baseline_sign_jackknife", FRPO, "App. D with App. E",
       "without the baseline every coefficient is negative, also with the jackknife", origin="toolkit",
       expect=REFUTED, checks=(ADV,), mutants=("frpo_advantages.sign", "frpo_advantages.jackknife_weight_off_by_one"),
       note="the paper argues the sign only for the plain estimator; extending it to the jackknife is ours, and false")
def _check_no_baseline_jk() -> Outcome:
    lam = 1.0
    adv = losses.frpo_advantages(_t([0.0, 2.0]), 2, lam, jackknife=True, baseline=False, scale="lambda")
    # closed form for G = 2: Â_i = λ(1 − 4 p_i), p = softmax(−A/λ) with A = (−1, 1)
    p = torch.softmax(_t([1.0, -1.0]) / lam, -1)
    gap = float((adv - lam * (1 - 4 * p)).abs().max())
    return Outcome(bool((adv < 0).all()), f"G=2, r=(0, 2), λ=1: Â = ({adv[0]:.3f}, {adv[1]:.3f}) = λ(1 − 4p) to "
                                          f"{gap:.0e}; only the sum, −λG = {float(adv.sum()):.3f}, is negative",
                   None, consistent=gap < 1e-12 and abs(float(adv.sum()) + 2 * lam) < 1e-12)


@claim("frpo.onpolicy_closed_form", FRPO, "Eq. 4.1–4.3 (docs/theory.md §1)",
       "at ratio 1, ∇ of the literal surrogate = GRPO gradient with the closed-form Â", origin="toolkit",
       checks=(ADV, "theory.losses.frpo_loss"),
       mutants=("frpo_advantages.sign", "frpo_advantages.jackknife_weight_off_by_one", "frpo_loss.baseline_ignored"))
def _check_onpolicy() -> Outcome:
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
        l1, _ = losses.frpo_loss(x[perm], x[perm].detach(), mask[perm], rewards[perm], gid[perm], lam, jackknife=jk)
        (g1,) = torch.autograd.grad(l1, x)
        y = logp.clone().requires_grad_(True)
        l2, _ = losses.grpo_loss(y, y.detach(), mask, losses.frpo_advantages(rewards, g, lam, jackknife=jk))
        (g2,) = torch.autograd.grad(l2, y)
        worst = worst_of(worst, float((g1 - g2).abs().max()))
    return Outcome(worst < 1e-10, f"max |∇ surrogate − ∇ closed form| = {worst:.1e} (shuffled rows)", worst)


@claim("frpo.table2_math", FRPO, "Table 2",
       "Qwen2.5-Math-7B after code SFT: FRPO λ=2 keeps 64.5 vs GRPO 42.3 on MATH500", origin="paper",
       expect=NOT_CHECKABLE)
def _check_table2() -> Outcome:
    return Outcome(None, "7B GPU result; the tiny-world pipeline (`python -m llm.run`) measures the same "
                         "retention question at small scale, see README results")
