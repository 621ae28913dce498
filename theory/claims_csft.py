"""Claims of the CSFT+PA paper (preference-augmented alignment), checked numerically (registered into
theory.ledger). Run them with ``python -m theory.claims``.

Functions under test are called through their module (``losses.pa_loss``, ``csft.theorem42_counterexample``),
so the mutation check can swap a broken version in.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theory import csft, losses
from theory.ledger import CSFT, NOT_CHECKABLE, REFUTED, Outcome, _rng, claim, least_of, worst_of

CSFT_LOSS, PA_LOSS = "theory.losses.csft_loss", "theory.losses.pa_loss"


# ---------------------------------------------------------------------------------------------
# CSFT (Qi et al. 2024) as the seed writes it
# ---------------------------------------------------------------------------------------------
@claim("csft.gradient_equivalence", CSFT, "Eq. 2 vs Qi et al. 2024",
       "the detached weighted NLL has the gradient of the token-wise constrained objective, −2σ(−βΔ)∇log π",
       origin="paper", checks=(CSFT_LOSS,), mutants=("csft_loss.weighted_nll_half", "csft_loss.half"))
def _check_csft_grad() -> Outcome:
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 9, generator=gen, dtype=torch.float64) * 3
    ref = logp + torch.randn(4, 9, generator=gen, dtype=torch.float64)
    mask = torch.ones(4, 9, dtype=torch.float64)
    betas = losses.csft_betas(mask)
    grads, values = [], []
    for form in ("sigmoid", "weighted_nll"):
        x = logp.clone().requires_grad_(True)
        loss, _ = losses.csft_loss(x, ref, mask, betas, form=form)
        grads.append(torch.autograd.grad(loss, x)[0].numpy())
        values.append(float(loss.detach()))
    # independent reference (token mean): ∂loss/∂log π_t = −2/(1 + e^{βΔ}) / N
    delta, b = (logp - ref).numpy(), betas.numpy()
    ref_grad = -2.0 / (1.0 + np.exp(b * delta)) / mask.sum().item()
    err = float(max(np.abs(grads[0] - grads[1]).max(), np.abs(grads[0] - ref_grad).max()))
    return Outcome(err < 1e-12, f"max |∇ difference| (two forms and the closed form) = {err:.1e}; values differ "
                                f"({values[0]:.3f} vs {values[1]:.3f}), as expected", err)


@claim("csft.small_beta_is_sft", CSFT, "Qi et al. 2024",
       "β→0 recovers plain SFT (weight 2(1−σ(0)) = 1), with a gap linear in β", origin="paper",
       checks=(CSFT_LOSS,), mutants=("csft_loss.half", "csft_loss.betas_ignored"))
def _check_csft_beta0() -> Outcome:
    logp = -torch.rand(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) - 0.1
    mask = torch.ones(3, 5, dtype=torch.float64)
    betas = (1e-2, 1e-4, 1e-6)
    errs = []
    for beta in betas:
        x = logp.clone().requires_grad_(True)
        loss, _ = losses.csft_loss(x, logp + 1.0, mask, torch.full_like(logp, beta))
        (g,) = torch.autograd.grad(loss, x)
        errs.append(float((g + mask / mask.sum()).abs().max() * mask.sum()))
    slope = float(np.polyfit(np.log(betas), np.log(errs), 1)[0])
    return Outcome(errs[-1] < 1e-5 and 0.9 < slope < 1.1, "relative gradient gap to NLL: "
                   + ", ".join(f"{e:.1e}" for e in errs) + f" at β = 1e-2, 1e-4, 1e-6 (slope {slope:.2f})", errs[-1])


# ---------------------------------------------------------------------------------------------
# the PA term (Eq. 3–7)
# ---------------------------------------------------------------------------------------------
def pa_gradient_closed_form(logits: np.ndarray, ref_logits: np.ndarray, detach_mu: bool) -> np.ndarray:
    """∂/∂logits of the token mean of ℓ_t = −log σ(μ_t m_t), logits (T, V), every position scored (numpy).

    m = log q(y_al) − log q(y_θ), μ = KL(q‖q_al):  ∂ℓ/∂z = −σ(−μm) [μ (e_{y_al} − e_{y_θ}) + m ∂μ/∂z],
    ∂μ/∂z = q ⊙ (log q − log q_al − μ) (dropped when μ is detached). Zero where y_al = y_θ (m ≡ 0 there).
    """
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lq, lqr = log_softmax(logits), log_softmax(ref_logits)
    q = np.exp(lq)
    mu = np.sum(q * (lq - lqr), -1)
    t, v = logits.shape
    al, th = ref_logits.argmax(-1), logits.argmax(-1)
    rows = np.arange(t)
    m = lq[rows, al] - lq[rows, th]
    e = np.zeros((t, v))
    e[rows, al] += 1.0
    e[rows, th] -= 1.0
    dmu = 0.0 if detach_mu else m[:, None] * q * (lq - lqr - mu[:, None])
    return -(1.0 / (1.0 + np.exp(mu * m)))[:, None] * (mu[:, None] * e + dmu) / t


def _pa_autograd(logits: np.ndarray, ref_logits: np.ndarray, detach_mu: bool) -> np.ndarray:
    x = torch.tensor(logits[None], dtype=torch.float64, requires_grad=True)
    loss, _ = losses.pa_loss(x, torch.tensor(ref_logits[None], dtype=torch.float64),
                             torch.ones(1, logits.shape[0], dtype=torch.float64), detach_mu=detach_mu)
    return torch.autograd.grad(loss, x)[0][0].numpy()


@claim("csft.pa_gradient", CSFT, "Eq. 5",
       "the PA gradient is −σ(−μm)[μ(e_{y_al} − e_{y_θ}) + m∇μ]: zero where the aligned and current argmaxes agree",
       origin="paper", checks=(PA_LOSS,),
       mutants=("pa_loss.sign", "pa_loss.mu_not_detached", "pa_loss.aligned_is_current"),
       note="the closed form is the toolkit's derivation; the zero where the argmaxes agree is the paper's statement")
def _check_pa_gradient() -> Outcome:
    rng = _rng(2)
    logits, ref = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    ref[0] = logits[0] * 2.0  # same argmax at position 0
    for t in (1, 2):
        if ref[t].argmax() == logits[t].argmax():
            ref[t] = np.roll(ref[t], 1)
    worst, agree, differ = 0.0, 0.0, math.inf
    for detach in (True, False):
        auto = _pa_autograd(logits, ref, detach)
        worst = worst_of(worst, float(np.abs(auto - pa_gradient_closed_form(logits, ref, detach)).max()))
        agree = worst_of(agree, float(np.abs(auto[0]).max()))
        differ = least_of(differ, float(np.abs(auto[1:]).max()))
    return Outcome(worst < 1e-12 and agree == 0.0 and differ > 1e-3,
                   f"max |∇ − closed form| = {worst:.1e} (μ detached and not); |∇| where argmaxes agree = {agree:.0e}, "
                   f"where they differ ≥ {differ:.2e}", worst)


@claim("csft.pa_gradient_lipschitz", CSFT, "Assumption 2 (Thm 4.1), App. A",
       "∇L_PA is Lipschitz (\"the sigmoid in L_PA has inherently Lipschitz gradients\"), as Theorem 4.1 assumes",
       origin="paper", expect=REFUTED, checks=(PA_LOSS,), mutants=("pa_loss.sign", "pa_loss.aligned_is_current"),
       note="the argmax y_θ switches where two logits tie: the gradient jumps by μσ(0)|e_al − e_θ| across the tie, "
            "so Assumption 2 fails on every tie (the loss itself stays continuous)")
def _check_pa_lipschitz() -> Outcome:
    ref = np.array([[3.0, 0.0, 0.0, 0.0]])  # y_al = 0
    tie = np.array([[1.0, 1.0, 0.0, -1.0]])  # tokens 0 and 1 tie for the current argmax
    quotients, gap = [], 0.0
    for delta in (1e-2, 1e-4, 1e-6):
        step = np.array([[0.0, delta, 0.0, 0.0]])
        for detach in (True, False):
            jump = _pa_autograd(tie + step, ref, detach) - _pa_autograd(tie - step, ref, detach)
            pred = pa_gradient_closed_form(tie + step, ref, detach) - pa_gradient_closed_form(tie - step, ref, detach)
            gap = worst_of(gap, float(np.abs(jump - pred).max()))
        quotients.append(float(np.linalg.norm(jump)) / (2 * delta))
    bounded = quotients[-1] <= 10 * max(quotients[0], 1e-300)
    return Outcome(bounded, "‖∇(θ+δe₁) − ∇(θ−δe₁)‖/(2δ) at a tie, δ = 1e-2, 1e-4, 1e-6: "
                   + ", ".join(f"{q:.1e}" for q in quotients) + f" (unbounded); jump = closed form to {gap:.0e}",
                   None, consistent=gap < 1e-12)


@claim("csft.llm_asr", CSFT, "Table (Llama-2-7B-Chat ASR)",
       "CSFT+PA lowers attack success vs CSFT under the three attacks", origin="paper", expect=NOT_CHECKABLE)
def _check_csft_asr() -> Outcome:
    return Outcome(None, "7B GPU result; `python -m llm.run --preset csft_attacks` runs the tiny analogue")


@claim("csft.thm41_convergence", CSFT, "Theorem 4.1",
       "SGD with Σηₖ=∞, Σηₖ²<∞ drives liminf E‖∇L_total‖² to 0", origin="paper", expect=NOT_CHECKABLE)
def _check_thm41() -> Outcome:
    return Outcome(None, "a liminf over an infinite run: no finite computation decides it. Under its assumptions it is "
                         "the standard SGD result (Bottou et al. 2018); on CSFT+PA the Lipschitz assumption fails "
                         "(csft.pa_gradient_lipschitz)")


# ---------------------------------------------------------------------------------------------
# Theorem 4.2 (robustness bound)
# ---------------------------------------------------------------------------------------------
def _premises(ce) -> tuple[float, float, float]:
    """Recompute from the counterexample's data: (L = max eig H, μ = min eig H, stationarity residual)."""
    eig = np.linalg.eigvalsh(ce.hessian)
    eps_g = ce.gradient_perturbation
    resid = worst_of(float(np.abs(ce.hessian @ ce.theta_star).max()),  # ∇L(θ*) = 0
                float(np.abs(ce.hessian @ ce.theta_eps + eps_g * ce.g / np.linalg.norm(ce.g)).max()))  # ∇L^ε(θ^ε) = 0
    return float(eig.max()), float(eig.min()), resid


@claim("csft.thm42_as_stated", CSFT, "Theorem 4.2",
       "‖θ^ε − θ*‖ ≤ εG/L under L-Lipschitz gradients and an εG gradient perturbation", origin="paper",
       expect=REFUTED, checks=("theory.csft.theorem42_counterexample",),
       mutants=("theorem42_counterexample.mu_equals_L", "theorem42_counterexample.theta_sign"))
def _check_thm42() -> Outcome:
    eps, G, L_in = 0.1, 1.0, 10.0
    ce = csft.theorem42_counterexample(L=L_in, mu=1.0, eps=eps, G=G)
    L, mu, resid = _premises(ce)
    disp = float(np.linalg.norm(ce.theta_eps - ce.theta_star))
    consistent = (abs(L - L_in) < 1e-12 and resid < 1e-12 and abs(ce.gradient_perturbation - eps * G) < 1e-12
                  and abs(disp - eps * G / mu) < 1e-12)
    return Outcome(disp <= eps * G / L * (1 + 1e-12),
                   f"L(θ)=½θᵀHθ + ε gᵀθ, eig H = ({L:g}, {mu:g}), ‖εg‖ = {ce.gradient_perturbation:g}: displacement "
                   f"{disp:.3f} vs claimed εG/L = {eps * G / L:.3f} (stationarity residual {resid:.0e})",
                   disp - eps * G / L, consistent)


@claim("csft.thm42_corrected", CSFT, "Theorem 4.2 (corrected, docs/theory.md)",
       "with μ-strong convexity, ‖θ^ε − θ*‖ ≤ εG/μ, with equality when g is a μ-eigenvector", origin="toolkit",
       checks=("theory.csft.check_corrected_bound",),
       mutants=("check_corrected_bound.scaled", "check_corrected_bound.const"))
def _check_thm42_fixed() -> Outcome:
    ce = csft.theorem42_counterexample(L=10.0, mu=1.0, eps=0.1, G=1.0)
    worst = worst_of(*(csft.check_corrected_bound(_rng(d), d, 200) for d in (2, 5, 20)))
    tight = csft.check_corrected_bound(_rng(1), 1, 20)  # dimension 1: every g is a μ-eigenvector
    disp = float(np.linalg.norm(ce.theta_eps - ce.theta_star))
    ok = worst <= 1 + 1e-9 and abs(tight - 1) < 1e-9 and abs(disp - ce.corrected_bound) < 1e-12
    return Outcome(ok, f"max displacement/(εG/μ) over random strongly convex quadratics (d = 2, 5, 20) = {worst:.5f}; "
                       f"{tight:.12f} in d = 1; equality on the counterexample", max(0.0, worst - 1))
