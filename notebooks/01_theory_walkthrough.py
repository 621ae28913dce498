# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# *Source of this notebook: `notebooks/01_theory_walkthrough.py`, a jupytext percent script paired with `01_theory_walkthrough.ipynb`.
# Edit either (the `.py` in any editor, the `.ipynb` in Jupyter), then run
# `jupytext --sync notebooks/01_theory_walkthrough.py`; `notebooks/README.md` says how to run and test it.*

# %% [markdown]
# # 01 · Theory walkthrough
#
# Five results the package implements, each computed by `theory/` in float64 and plotted here:
#
# 1. the KL-robust value by its one-dimensional dual vs the cvxpy primal (FRPO Lemma 3.1, Eq. 3.3);
# 2. the entropic risk ER_λ as a function of λ (FRPO Remark 3.3);
# 3. the bias orders of log Ẑ and of the self-normalized gradient weight, plain vs jackknife (FRPO App. E);
# 4. the RLVR safety drift of the Gibbs tilt vs its χ² and worst-case bounds (RLVR Theorems 1–2, Prop. 2);
# 5. the zero-correlation counterexample to safety invariance (RLVR Prop. 1).
#
# The same statements are tested in `tests/theory/` and listed with their numbers by
# `python -m theory.claims`; docs/theory.md gives the formulas and marks what is reconstructed.
# Figures are written to `FIG_DIR` as PNG.

# %% tags=["parameters"]
# Parameters (papermill "parameters" cell; tests/test_notebooks.py sets the environment variables)
import os

BUDGET = os.environ.get("FRTK_NB_BUDGET", "smoke")  # "smoke": coarse grids, seconds; "full": finer grids
FIG_DIR = os.environ.get("FRTK_NB_FIG_DIR", "results/01_theory_walkthrough")

# %%
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

FIG_DIR = Path(FIG_DIR)
FIG_DIR.mkdir(parents=True, exist_ok=True)
plt.rcParams["figure.dpi"] = 90


def save(fig, name):
    """Save ``fig`` as FIG_DIR/<name>.png, show it inline and close it."""
    for ax in fig.axes:
        ax.grid(True, alpha=0.3)
    fig.set_layout_engine("constrained")
    fig.savefig(FIG_DIR / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()
    plt.close(fig)


def md_table(headers, rows):
    """Show a Markdown table (one list of cells per row)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    display(Markdown("\n".join(lines)))


if BUDGET not in ("smoke", "full"):
    raise ValueError(f"BUDGET={BUDGET!r} must be 'smoke' or 'full' for this notebook")
FULL = BUDGET == "full"

# %% [markdown]
# ## 1 · KL-robust value: Lemma 3.1's dual vs the cvxpy primal
#
# The inner problem of FRPO's objective (Eq. 3.1) is the worst expected reward over policies Q in an
# *average* KL ball around π, one budget ρ shared by all prompts:
# V(ρ) = inf { E_x E_{y~Q} r : E_x KL(Q(·|x) ‖ π(·|x)) ≤ ρ }.
# `kl_dro_dual` solves Lemma 3.1's dual, Eq. (3.3), sup_{λ≥0} E_x ER_λ(r(x,·)) − λρ (one λ for all prompts);
# `kl_dro_primal` solves the primal directly with cvxpy (exponential cone) and shares no code with it.
# The table lists both on a random instance (3 prompts × 6 responses) and the multiplier λ* each returns.
#
# How to read the figure. Left: V(ρ) falls from E r at ρ = 0 to E_x min_y r once ρ reaches
# E_x[−log π_x(argmin)] (λ* = 0 there); the primal points sit on the dual curve; dashed is Remark 3.3's
# mean–variance value E r − √(2ρ·E_x Var(r|x)), accurate only for small ρ. Right: the worst-case policy
# Q* ∝ π e^{−r/λ*} of one prompt, responses sorted by reward: the ratio Q*/π = e^{−r/λ*}/Z falls with the
# reward, so Q* moves π's mass from the high-reward responses onto the low-reward ones, more as ρ grows
# (λ* shrinks); dual bars and primal dots coincide.

# %%
from theory.risk import kl_dro_dual, kl_dro_primal, fdiv_dro_dual, fdiv_dro_primal, variance_penalty_value

rng = np.random.default_rng(0)
rewards = rng.uniform(0.0, 1.0, size=(3, 6))          # r(x, y): 3 prompts x 6 responses
pi = rng.dirichlet(np.ones(6), size=3)                 # π(y|x), rows sum to 1
rho_edge = float(np.mean(-np.log(pi[np.arange(3), rewards.argmin(axis=1)])))  # E_x[-log π_x(argmin r)]
rhos = np.concatenate([[0.0], np.geomspace(1e-3, 1.5 * rho_edge, 12 if FULL else 6)])   # table and primal points
rho_curve = np.concatenate([[0.0], np.geomspace(1e-4, 1.5 * rho_edge, 200)])            # dual curve (cheap)

dual = [kl_dro_dual(rewards, pi, rho) for rho in rhos]
primal = [kl_dro_primal(rewards, pi, rho) for rho in rhos]
approx = [variance_penalty_value(rewards, pi, rho) for rho in rhos]
gap = max(abs(d.value - p.value) for d, p in zip(dual, primal))
md_table(["ρ", "dual V(ρ)", "cvxpy primal V(ρ)", "abs. difference", "λ* (dual)", "λ (primal budget multiplier)",
          "Remark 3.3 approx."],
         [[f"{rho:.4g}", f"{d.value:.8f}", f"{p.value:.8f}", f"{abs(d.value - p.value):.1e}", f"{d.lam:.5g}",
           f"{p.lam:.5g}", f"{a:.6f}"] for rho, d, p, a in zip(rhos, dual, primal, approx)])
print(f"E r = {dual[0].value:.6f}, E_x min r = {rewards.min(axis=1).mean():.6f}, "
      f"argmin budget E_x[-log π(argmin)] = {rho_edge:.4f}; max |dual - primal| = {gap:.1e}")
assert gap < 1e-5, f"dual and primal disagree by {gap:.2e}"  # cvxpy tolerance (the tests' TOL["cvxpy_value"], tests/tolerances.py)

# %% [markdown]
# The same check for the other generators of Lemma 3.1 (Eq. 3.2, general f): χ² and total variation,
# where the dual's inner problem in η(x) is solved in closed form.

# %%
rows = []
for f in ("kl", "chi2", "tv"):
    for rho in (0.05, 0.3):
        d, p = fdiv_dro_dual(rewards, pi, rho, f), fdiv_dro_primal(rewards, pi, rho, f)
        rows.append([f, rho, f"{d.value:.8f}", f"{p.value:.8f}", f"{abs(d.value - p.value):.1e}", f"{d.lam:.5g}"])
md_table(["f", "ρ", "dual", "cvxpy primal", "abs. difference", "λ* (dual)"], rows)

# %%
fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
ax.plot(rho_curve, [kl_dro_dual(rewards, pi, rho).value for rho in rho_curve], "-", color="C0",
        label="dual (kl_dro_dual)")
ax.plot(rhos, [p.value for p in primal], "o", color="C1", ms=6, mfc="none", mew=1.5,
        label="primal (kl_dro_primal, cvxpy)")
ax.plot(rho_curve, [variance_penalty_value(rewards, pi, rho) for rho in rho_curve], "--", color="C2",
        label="Remark 3.3: E r − √(2ρ E_x Var)")
ax.axhline(dual[0].value, color="gray", ls=":", lw=1)
ax.axhline(rewards.min(axis=1).mean(), color="gray", ls=":", lw=1)
ax.axvline(rho_edge, color="gray", ls="-.", lw=1, label="ρ = E_x[−log π(argmin)]")
ax.text(rho_curve[1], dual[0].value, " E r", va="bottom", fontsize=8)
ax.text(rho_curve[1], rewards.min(axis=1).mean(), " E_x min r", va="bottom", fontsize=8)
ax.set(xlabel="KL budget ρ", ylabel="worst-case value V(ρ)", title="KL-robust value (Lemma 3.1): dual vs primal")
ax.set_xscale("symlog", linthresh=rho_curve[1])
ax.set_xlim(0, rho_curve[-1])
ax.set_ylim(rewards.min(axis=1).mean() - 0.05, dual[0].value + 0.05)
ax.legend(fontsize=8)

x0 = 0                                                   # prompt shown on the right
order = np.argsort(rewards[x0])
show = [0.05, 0.3]
width = 0.8 / (len(show) + 1)
pos = np.arange(6)
bx.bar(pos - width, pi[x0, order], width, color="gray", label="π")
for i, rho in enumerate(show):
    d, p = kl_dro_dual(rewards, pi, rho), kl_dro_primal(rewards, pi, rho)
    bx.bar(pos + i * width, d.q[x0, order], width, color=f"C{i}", label=f"Q* (dual), ρ={rho:g}, λ*={d.lam:.3g}")
    bx.plot(pos + i * width, p.q[x0, order], "o", color="k", ms=3)
bx.plot([], [], "o", color="k", ms=3, label="Q* (cvxpy primal)")
bx.set_xticks(pos, [f"{r:.2f}" for r in rewards[x0, order]])
bx.set(xlabel=f"response, labelled by its reward r (prompt {x0}, ascending)", ylabel="probability",
       title="worst-case tilt Q* ∝ π·exp(−r/λ*) vs π")
bx.legend(fontsize=8)
save(fig, "kl_dro_dual_vs_primal")

# %% [markdown]
# ## 2 · Entropic risk ER_λ as a function of λ
#
# ER_λ(r) = −λ log E e^{−r/λ} (FRPO Remark 3.3; the per-prompt term of the dual, Eq. 3.3; `entropic_risk`). Three reward
# distributions with the same mean 0.7: a sharp one (reward 1 or 0), a flat one (0.6, 0.7, 0.8) and one
# with a rare bad outcome (0.25 with probability 0.1).
#
# How to read it: every curve rises monotonically from the minimum of its support (λ → 0, dashed) to the
# mean (λ → ∞, dotted gray), so small λ ranks distributions by their worst case and large λ by their mean.
# Thin dotted curves are the second-order expansion E r − Var/(2λ) of Remark 3.3, exact only as λ → ∞.

# %%
from theory.risk import entropic_risk

dists = {
    "sharp: {0: .3, 1: .7}": (np.array([0.0, 1.0]), np.array([0.3, 0.7])),
    "flat: {.6, .7, .8} uniform": (np.array([0.6, 0.7, 0.8]), np.full(3, 1 / 3)),
    "rare bad: {.25: .1, .75: .9}": (np.array([0.25, 0.75]), np.array([0.1, 0.9])),
}
lams = np.geomspace(1e-3, 1e3, 121 if FULL else 61)
fig, ax = plt.subplots(figsize=(7.5, 4.2))
for i, (name, (r, p)) in enumerate(dists.items()):
    er = np.array([entropic_risk(r, lam, p) for lam in lams])
    mean, var = p @ r, p @ (r - p @ r) ** 2
    assert np.all(np.diff(er) >= -1e-12) and r.min() - 1e-12 <= er.min() and er.max() <= mean + 1e-12
    ax.plot(lams, er, color=f"C{i}", label=name)
    ax.plot(lams, mean - var / (2 * lams), color=f"C{i}", ls=":", lw=1)
    ax.axhline(r.min(), color=f"C{i}", ls="--", lw=1)
ax.axhline(0.7, color="gray", ls=":", lw=1.5, label="mean (all three) = 0.7")
ax.set(xscale="log", ylim=(-0.05, 0.8), xlabel="λ", ylabel="ER_λ(r)",
       title="entropic risk: min r (λ→0) ≤ ER_λ ≤ E r (λ→∞); dotted: E r − Var/(2λ)")
ax.legend(fontsize=8, loc="lower right")
save(fig, "entropic_risk_vs_lambda")

# %% [markdown]
# ## 3 · Jackknife: bias O(1/G) → O(1/G²)
#
# FRPO estimates log Z = log E e^{−r/λ} from a group of G samples by log Ẑ, the log of the group mean, and
# weights gradients by the self-normalized ratio Σ w φ / Σ w (App. E, Eq. E.1–E.2). Both are biased by
# c/G + O(1/G²); the jackknife G ĝ − (G−1)/G Σ_j ĝ_{−j} (Eq. 4.3) removes the 1/G term. `exact_bias`
# computes the expected bias exactly by enumerating every multinomial count vector of a 4-point reward law
# (no Monte Carlo noise): rewards r ∈ {0, .4, .8, 1} with probabilities (.1, .2, .3, .4), weights w = e^{−r/λ}
# at λ = 1, and φ = r for the ratio (the tilted mean reward).
#
# How to read it: on log-log axes a bias c/G^k is a line of slope −k; the legend gives the least-squares
# slope from `bias_slope`. Plain estimators follow slope ≈ −1 and the jackknife ≈ −2 (gray guides). Caveat:
# the slope of the jackknife is asymptotic; for sharper laws (smaller λ) its bias changes sign at small G
# and the fitted slope over small G is shallower.

# %%
from theory.jackknife import bias_slope, exact_bias

r = np.array([0.0, 0.4, 0.8, 1.0]); p = np.array([0.1, 0.2, 0.3, 0.4]); w = np.exp(-r / 1.0)
laws = {"log_mean": ("log Ẑ = log mean(w)", w), "snis": ("Σwφ / Σw, φ = r", np.stack([w, r], axis=1))}
Gs = [4, 8, 16, 32, 64, 128] if FULL else [4, 8, 16, 32, 64]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
rows = []
for ax, (kind, (title, support)) in zip(axes, laws.items()):
    for jk, style, k in ((False, "o-", 1), (True, "s-", 2)):
        bias = np.array([exact_bias(kind, support, p, G, jackknife=jk) for G in Gs])
        slope = bias_slope(kind, support, p, Gs, jackknife=jk)
        name = "jackknife" if jk else "plain"
        ax.loglog(Gs, np.abs(bias), style, label=f"{name}: fitted slope {slope:.2f}")
        ax.loglog(Gs, abs(bias[0]) * (Gs[0] / np.array(Gs)) ** k, color="gray", ls=":", lw=1.5,
                  label=f"slope −{k} guide")
        rows.append([title, name] + [f"{b:.2e}" for b in bias] + [f"{slope:.3f}"])
    ax.set_xticks(Gs, [str(G) for G in Gs])
    ax.minorticks_off()
    ax.set(xlabel="group size G", ylabel="|E ĝ − g| (exact)", title=f"{kind}: {title}")
    ax.legend(fontsize=8)
md_table(["estimator", "version"] + [f"bias G={G}" for G in Gs] + ["log-log slope"], rows)
save(fig, "jackknife_bias_slopes")

# %% [markdown]
# ## 4 · RLVR: exact safety drift vs the χ² bound as β varies
#
# KL-regularized RLVR, max_π E_π g − β KL(π ‖ π_ref), is solved by the Gibbs tilt π* ∝ π_ref e^{g/β}
# (Theorem 1, `gibbs_tilt`). Its safety drift is exactly ΔS = Cov_{π_ref}(s, π*/π_ref) (`exact_drift`) and is
# bounded (Theorem 2, reconstructed in docs/theory.md, RLVR section) by √(Var_{π_ref}(s)·χ²(π*‖π_ref)) (`chi2_drift_bound`),
# by ½√χ² for s ∈ [0, 1] (`chi2_drift_bound_unit`), and by TV(π*, π_ref) ≤ tanh(1/(4β)) (Prop. 2,
# `tv_bound_tanh`). Instance: 8 paths with random π_ref, success g and safety s in [0, 1].
#
# How to read it. Left: every bound lies above |ΔS| at every β; as β → ∞ the tilt vanishes and all of them
# go to 0 like 1/β (slope −1). As β → 0 the tilt concentrates on the best path, χ² rises to
# 1/π_ref(best path) − 1 and the χ² bounds exceed 1 (vacuous for s ∈ [0, 1]) while the TV bounds saturate
# at 1, so for strong tilts the TV bound is the informative one. Right: the ratio |ΔS| / χ² bound is ≤ 1
# (here it drops below 0.1 at small β), and equals 1 exactly in a 2-path instance, where s is always affine
# in π*/π_ref (Cauchy–Schwarz equality).

# %%
from theory.rlvr import (chi2_drift_bound, chi2_drift_bound_unit, exact_drift, gibbs_tilt, tv_bound_tanh,
                         tv_distance)

rng = np.random.default_rng(1)
pi_ref = rng.dirichlet(np.ones(8)); g = rng.uniform(0, 1, 8); s = rng.uniform(0, 1, 8)
betas = np.geomspace(1e-2, 1e1, 121 if FULL else 41)
drift = np.array([exact_drift(pi_ref, g, s, b) for b in betas])
bound = np.array([chi2_drift_bound(pi_ref, g, s, b) for b in betas])
unit = np.array([chi2_drift_bound_unit(pi_ref, g, b) for b in betas])
tv = np.array([tv_distance(gibbs_tilt(pi_ref, g, b), pi_ref) for b in betas])
two = (np.array([0.6, 0.4]), np.array([0.2, 0.9]), np.array([0.9, 0.3]))       # π_ref, g, s on 2 paths
ratio2 = np.array([abs(exact_drift(*two, b)) / chi2_drift_bound(*two, b) for b in betas])
assert np.all(np.abs(drift) <= bound * (1 + 1e-9)) and np.allclose(ratio2, 1.0, rtol=1e-8)

fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
ax.loglog(betas, np.abs(drift), "k", lw=2, label="|ΔS| exact (Cov_ref(s, π*/π_ref))")
ax.loglog(betas, bound, label="√(Var_ref s · χ²)  (Thm 2)")
ax.loglog(betas, unit, label="½√χ²  (Thm 2, s ∈ [0,1])")
ax.loglog(betas, tv, label="TV(π*, π_ref)  (Prop. 2)")
ax.loglog(betas, tv_bound_tanh(betas), label="tanh(1/(4β))  (Prop. 2)")
ax.set(xlabel="β (KL coefficient)", ylabel="safety drift / bound", ylim=(1e-3, 10),
       title="8-path instance: exact drift and its bounds")
ax.legend(fontsize=8)
bx.semilogx(betas, np.abs(drift) / bound, label="8 paths")
bx.semilogx(betas, ratio2, "--", label="2 paths (equality)")
bx.set(xlabel="β", ylabel="|ΔS| / √(Var_ref s · χ²)", ylim=(0, 1.1), title="tightness of the χ² bound")
bx.legend(fontsize=8)
save(fig, "rlvr_drift_vs_chi2_bound")

# %% [markdown]
# ## 5 · Zero correlation is not invariance
#
# ΔS = 0 for every β iff Cov_{π_ref}(s, e^{g/β}) = 0 (Prop. 1, `invariance_covariance`), which holds when s and g
# are independent. Zero *correlation* of s and g is not enough once g takes three or more values:
# `zero_correlation_counterexample()` is π_ref uniform on 3 paths, g = (0, ½, 1), s = (¾, ¼, ¾), with
# Cov(s, g) = 0 but ΔS ≈ +0.129 at β = 0.2 (docs/theory.md, RLVR section; the instance is ours, not the paper's).
#
# How to read it: the solid curve is the exact drift of the counterexample, positive at every β: it
# vanishes as β → ∞ (no tilt) and grows as β shrinks, to 1/6 as β → 0 (the tilt then picks the g = 1 path,
# safety ¾, against the reference's 7/12); the band is ± its χ² bound. The flat line is an instance where s is
# independent of g (4 paths, g ∈ {0, 1} × s ∈ {¼, ¾}): ΔS = 0 for every β.

# %%
from theory.rlvr import invariance_covariance, zero_correlation_counterexample

ce = zero_correlation_counterexample()
cov_sg = float(np.sum(ce.pi_ref * (ce.safety - ce.pi_ref @ ce.safety) * (ce.reward - ce.pi_ref @ ce.reward)))
ds = np.array([exact_drift(ce.pi_ref, ce.reward, ce.safety, b) for b in betas])
ds_bound = np.array([chi2_drift_bound(ce.pi_ref, ce.reward, ce.safety, b) for b in betas])
indep = (np.full(4, 0.25), np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.25, 0.75, 0.25, 0.75]))
ds_indep = np.array([exact_drift(*indep, b) for b in betas])
at = exact_drift(ce.pi_ref, ce.reward, ce.safety, ce.beta)
print(f"Cov_ref(s, g) = {cov_sg:.1e};  Cov_ref(s, e^(g/β)) (scaled) at β={ce.beta} = "
      f"{invariance_covariance(ce.pi_ref, ce.reward, ce.safety, ce.beta):+.4f};  ΔS = {at:+.4f}")
print(f"independent instance: max |ΔS| over β = {np.abs(ds_indep).max():.1e}")

fig, ax = plt.subplots(figsize=(7.5, 4.2))
ax.fill_between(betas, -ds_bound, ds_bound, color="C0", alpha=0.15, label="± χ² bound (counterexample)")
ax.semilogx(betas, ds, "C0", lw=2, label="ΔS, counterexample: Cov(s, g) = 0")
ax.semilogx(betas, ds_indep, "C2", lw=2, ls="--", label="ΔS, s independent of g")
ax.plot([ce.beta], [at], "o", color="C3", label=f"β = {ce.beta:g}: ΔS = {at:+.3f}")
ax.axhline(0, color="gray", lw=1)
ax.set(xlabel="β", ylabel="safety drift ΔS of the Gibbs tilt", ylim=(-0.35, 0.35),
       title="zero correlation ≠ invariance (RLVR Prop. 1)")
ax.legend(fontsize=8)
save(fig, "zero_correlation_counterexample")

# %% [markdown]
# ## Next
#
# * `python -m theory.claims` prints every checked claim with its measured number.
# * `02_bandit_landscape.ipynb` trains GRPO and FRPO on a toy bandit and plots the reward-vs-KL landscape;
#   `03_lstm_study.ipynb` runs the CSFT+PA pre-experiments.
