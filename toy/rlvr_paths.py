"""The RLVR path model of the bandit toy: KL-regularized policy gradient on path distributions.

Setting (docs/theory.md, RLVR safety drift; ``theory.rlvr``): per prompt a finite set of paths with
reference probability π_ref, success g and safety s. :func:`train_paths` runs the exact expected
KL-regularized natural policy gradient on tabular path logits two ways at once (the exact KL, whose
fixed point is ``theory.rlvr.gibbs_tilt``, and GRPO's on-policy k3 gradient, whose fixed point is
``theory.rlvr.reverse_kl_optimum``); :func:`rlvr_study` measures convergence to the tilt, the safety
drift along training against the χ² bound, and the zero-correlation counterexample;
:func:`plot_rlvr` draws rlvr.png. Part (4) of ``python -m toy.bandit`` (it re-exports these names).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from theory import rlvr
from theory.losses import kl_k3

Tensor = torch.Tensor
DT = torch.float64
RLVR_BETAS = (0.05, 0.1, 0.2, 0.5, 1.0)


def train_paths(pi_ref: Tensor, g: Tensor, betas: Tensor, steps: int, log_every: int, eta: float = 0.1):
    """Exact expected KL-regularized policy gradient on tabular path logits (init log π_ref), two ways at once.

    Objective per prompt: E_π g − β Σ_a ω(a) k3(a), k3 = ``kl_k3``(log π, log π_ref). Mode 0 ("exact"):
    ω = π, then Σ_a π k3 = KL(π‖π_ref) exactly (Σ_a π_ref = 1) and the maximizer is the Gibbs tilt.
    Mode 1 ("grpo_k3"): ω = π.detach(), the expectation of GRPO's on-policy k3 gradient,
    Σ_a (π − π_ref) ∇log π = ∇KL(π_ref‖π) (the reverse KL), whose fixed point is not the tilt.
    Step: natural policy gradient, θ ← θ + η ∇(J/β) / π (the autograd gradient preconditioned by
    the inverse softmax Fisher information; same fixed points as plain gradient ascent, linear rate).
    pi_ref, g (P, n); betas (B,) → trajectories (T, 2, B, P, n) and the logged steps (T,).
    """
    pi_ref, g, betas = (torch.as_tensor(x, dtype=DT) for x in (pi_ref, g, betas))  # float64 throughout
    logref = pi_ref.log().expand(2, len(betas), -1, -1)
    theta = logref.clone().requires_grad_(True)
    b = betas.view(1, -1, 1)
    detach = torch.tensor([False, True]).view(2, 1, 1, 1)
    traj, logged = [], []
    for t in range(steps + 1):
        logp = torch.log_softmax(theta, -1)
        p = logp.exp()
        if t % log_every == 0 or t == steps:
            traj.append(p.detach().numpy())
            logged.append(t)
        if t == steps:
            break
        w = torch.where(detach, p.detach(), p)
        obj = (p * g).sum(-1) / b - (w * kl_k3(logp, logref)).sum(-1)  # (2, B, P): J/β
        (grad,) = torch.autograd.grad(obj.sum(), theta)
        with torch.no_grad():
            theta += eta * grad / p
    return np.stack(traj), np.array(logged)


def rlvr_study(steps: int, gen: torch.Generator) -> tuple[dict, dict]:
    """16 prompts × 6 paths (π_ref ~ Dirichlet(1), g, s ~ U[0, 1]) at β ∈ RLVR_BETAS: convergence to
    the Gibbs tilt, safety drift vs the χ² bound along training, and the zero-correlation counterexample."""
    P, n = 16, 6
    pi_ref = -torch.log(torch.rand(P, n, generator=gen, dtype=DT))
    pi_ref = pi_ref / pi_ref.sum(-1, keepdim=True)  # Dirichlet(1)
    g = torch.rand(P, n, generator=gen, dtype=DT)
    s = torch.rand(P, n, generator=gen, dtype=DT)
    betas = torch.tensor(RLVR_BETAS, dtype=DT)
    every = max(1, steps // 100)
    both, logged = train_paths(pi_ref, g, betas, steps, every)
    exact, k3 = both[:, 0], both[:, 1]  # (T, B, P, n)
    ref_np, g_np, s_np = pi_ref.numpy(), g.numpy(), s.numpy()
    tilt = np.stack([rlvr.gibbs_tilt(ref_np, g_np, b) for b in RLVR_BETAS])  # (B, P, n)
    tv = lambda traj: rlvr.tv_distance(traj.reshape(-1, n), np.broadcast_to(tilt, traj.shape).reshape(-1, n)).reshape(traj.shape[:-1])  # noqa: E731
    tv_exact, tv_k3 = tv(exact), tv(k3)  # (T, B, P)
    flat = exact.reshape(-1, n)
    ref_b = np.broadcast_to(ref_np, exact.shape).reshape(-1, n)
    s_b = np.broadcast_to(s_np, exact.shape).reshape(-1, n)
    drift = rlvr.safety_drift(flat, ref_b, s_b).reshape(exact.shape[:-1])
    bound = rlvr.chi2_drift_bound_policy(flat, ref_b, s_b).reshape(exact.shape[:-1])
    exact_final = np.stack([rlvr.exact_drift(ref_np, g_np, s_np, b) for b in RLVR_BETAS])
    live = bound > 1e-9  # at t = 0 both sides are round-off
    ratio = np.abs(drift[live]) / bound[live]
    violations = int(np.sum(np.abs(drift) > bound * (1 + 1e-9) + 1e-12))
    # zero-correlation counterexample (π_ref uniform on 3 paths, Cov(s, g) = 0, yet ΔS ≠ 0)
    ce = rlvr.zero_correlation_counterexample()
    ce_ref, ce_g, ce_s = (torch.tensor(x, dtype=DT).view(1, -1) for x in (ce.pi_ref, ce.reward, ce.safety))
    ce_pi = train_paths(ce_ref, ce_g, torch.tensor([ce.beta], dtype=DT), steps, steps)[0][-1, 0, 0, 0]
    ce_betas = np.geomspace(0.02, 5.0, 60)
    ce_curve = np.array([rlvr.exact_drift(ce.pi_ref, ce.reward, ce.safety, b) for b in ce_betas])
    summary = {
        "gibbs_tv": {"exact": float(tv_exact[-1].max()), "grpo_k3": float(tv_k3[-1].max()),
                     "betas": list(RLVR_BETAS), "steps": steps,
                     "grpo_k3_per_beta": tv_k3[-1].max(-1).tolist()},
        "drift_over_bound_max": float(ratio.max()) if ratio.size else 0.0,
        "drift_bound_violations": violations,
        "drift_final_abs_err": float(np.abs(drift[-1] - exact_final).max()),
        "counterexample": {"cov_sg": float(rlvr.path_rate(ce.pi_ref, ce.safety * ce.reward)
                                           - rlvr.path_rate(ce.pi_ref, ce.safety) * rlvr.path_rate(ce.pi_ref, ce.reward)),
                           "delta_s_trained": float(rlvr.safety_drift(ce_pi, ce.pi_ref, ce.safety)),
                           "delta_s_exact": float(rlvr.exact_drift(*ce)),
                           "chi2_bound": float(rlvr.chi2_drift_bound(ce.pi_ref, ce.reward, ce.safety, ce.beta)),
                           "beta": ce.beta},
    }
    arrays = {"rlvr_betas": betas.numpy(), "rlvr_steps": logged,
              "rlvr_tv_exact": tv_exact, "rlvr_tv_grpo_k3": tv_k3, "rlvr_drift": drift, "rlvr_bound": bound,
              "rlvr_ce_betas": ce_betas, "rlvr_ce_drift": ce_curve}
    return summary, arrays


def plot_rlvr(out: Path, m: dict, summary: dict) -> None:
    """rlvr.png: convergence to the Gibbs tilt, |ΔS_t| against the χ² bound, the counterexample's drift."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, b in enumerate(m["rlvr_betas"]):
        col = cmap(i / max(1, len(m["rlvr_betas"]) - 1))
        axes[0].plot(m["rlvr_steps"], m["rlvr_tv_exact"][:, i].max(-1), color=col, label=f"β={b:g} exact KL")
        axes[0].plot(m["rlvr_steps"], m["rlvr_tv_grpo_k3"][:, i].max(-1), color=col, ls="--", lw=1)
        axes[1].scatter(m["rlvr_bound"][:, i].ravel(), np.abs(m["rlvr_drift"][:, i]).ravel(), s=2, color=col)
    lim = float(m["rlvr_bound"].max())
    axes[1].plot([0, lim], [0, lim], color="gray", ls=":")
    axes[0].set(yscale="log", xlabel="step", ylabel="max TV(π_t, Gibbs tilt)", title="convergence (dashed: GRPO k3 gradient)")
    axes[1].set(xlabel="√(Var_ref s · χ²(π_t‖π_ref))", ylabel="|ΔS_t|", title="safety drift along training vs χ² bound")
    axes[2].plot(m["rlvr_ce_betas"], m["rlvr_ce_drift"])
    ce = summary["rlvr"]["counterexample"]
    axes[2].plot([ce["beta"]], [ce["delta_s_trained"]], "o", color="tab:red",
                 label=f"trained, β={ce['beta']:g}: ΔS={ce['delta_s_trained']:+.3f}")
    axes[2].legend(fontsize=7)
    axes[2].axhline(0, color="gray", lw=1)
    axes[2].set(xscale="log", xlabel="β", ylabel="ΔS of the Gibbs tilt", title="zero-correlation counterexample")
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "rlvr.png", dpi=120)
    plt.close(fig)
