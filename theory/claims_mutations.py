"""Deliberately broken versions of the functions the claims ledger checks (its self-test): theory.losses.

The mutants of theory.dro, theory.risk, theory.jackknife, theory.csft and theory.rlvr are in
``theory.claims_mutations_math``.

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

import torch

from theory import losses
from theory.ledger import mutation

L = "theory.losses."


def _wrap(orig, fn):
    """``fn`` dressed as ``orig`` (name, docstring), so a traceback still names the function it replaces."""
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
