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
# *Source of this notebook: `notebooks/02_bandit_landscape.py`, a jupytext percent script paired with `02_bandit_landscape.ipynb`.
# Edit either (the `.py` in any editor, the `.ipynb` in Jupyter), then run
# `jupytext --sync notebooks/02_bandit_landscape.py`; `notebooks/README.md` says how to run and test it.*

# %% [markdown]
# # 02 · FRPO vs GRPO on a toy bandit: the reward-vs-KL landscape
#
# `toy/bandit.py` trains a linear-softmax policy on a contextual bandit whose rewards have a *sharp* optimum
# (one arm with reward 1 next to catastrophic arms with reward 0) and a *flat* one (a plateau of slightly lower
# reward). GRPO (λ = ∞) and FRPO at several λ are trained with the same losses the LLM trainers use
# (`theory.losses`); then every trained policy π is pushed away by (a) SFT toward a conflicting target,
# (b) GRPO on a conflicting reward, and (c) the exact worst case in the KL ball (`theory.risk.kl_dro_dual`),
# and the original reward is tracked against KL(Q ‖ π): FRPO Fig. 2. Ablations: no baseline (App. D, Fig. 9),
# no jackknife (App. E, Fig. 10), and the KL budget through β (App. B.3, Fig. 8). The module docstring of
# `toy/bandit.py` documents the environment, every option and every saved key.
#
# This notebook contains no training logic: it either loads a finished run or calls `toy.bandit.main` at the
# budget of the parameter cell, then reads `summary.json` and `metrics.npz` and plots them. For the full
# study run `python -m toy.bandit --preset paper --out results/bandit` and set
# `FRTK_BANDIT_RESULTS=results/bandit` (or `RESULTS_DIR` below). With the default `smoke` budget (2 seeds,
# few steps) the plots show the plumbing, not a conclusion: read the confidence intervals.

# %% tags=["parameters"]
# Parameters (papermill "parameters" cell; tests/test_notebooks.py sets the environment variables)
import os

BUDGET = os.environ.get("FRTK_NB_BUDGET", "smoke")   # toy.bandit preset run when RESULTS_DIR is not given
RESULTS_DIR = os.environ.get("FRTK_BANDIT_RESULTS")   # finished `python -m toy.bandit --out DIR` run to load
FIG_DIR = os.environ.get("FRTK_NB_FIG_DIR", "results/02_bandit_landscape")

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


# %%
import warnings

import toy.bandit
from toy._common import load_or_run

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto, imported by the toy even without bars

run_dir, message = load_or_run(toy.bandit, RESULTS_DIR, BUDGET)  # saved results, or a fresh run at BUDGET
print(message)
# %matplotlib inline
# (a fresh run switches matplotlib to Agg to write the toy's PNGs; the magic restores inline display)

summary = json.loads((run_dir / "summary.json").read_text())
m = dict(np.load(run_dir / "metrics.npz"))
configs = [dict(c, lam=float(c["lam"])) for c in summary["configs"]]   # lam "inf" = GRPO
col = {c["name"]: v for v, c in enumerate(configs)}
main_cfgs = [c for c in configs if c["group"] == "main"]
finite = sorted(c["lam"] for c in main_cfgs if math.isfinite(c["lam"]))
kl_levels = summary["kl_levels"]
seeds = summary["args"]["seeds"]


def label(lam):
    return "GRPO (λ=∞)" if math.isinf(lam) else f"FRPO λ={lam:g}"


def color(lam):
    return "black" if math.isinf(lam) else plt.get_cmap("viridis")(finite.index(lam) / max(1, len(finite) - 1))


def ci(d):
    """(mean, 95% half-width) of a summary "ci" entry: mean NaN when no seed has a value (e.g. a KL level
    never reached), half-width 0 when undefined (n < 2)."""
    return (math.nan if d["mean"] is None else d["mean"]), (0.0 if d["ci95"] is None else d["ci95"])


def fmt(d):
    """A summary "ci" entry as text: "mean ± half-width (n)", "n/a" when no seed has a value."""
    if d["mean"] is None:
        return "n/a"
    return f"{d['mean']:.3f}" + ("" if d["ci95"] is None else f" ± {d['ci95']:.3f}") + f" (n={d['n']})"


print(f"preset={summary['preset']}, {seeds} seeds, configs: {[c['name'] for c in configs]}")

# %% [markdown]
# ## Training: reward, KL to π_ref and entropy
#
# Mean over seeds of the exact E_π r, KL(π ‖ π_ref) and normalized entropy during training (gray: π_ref).
# How to read it: GRPO maximizes the mean reward and heads for the sharp optimum; FRPO with small λ weighs
# the worst samples of each group more and may settle on the flat plateau, with a lower mean reward.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, key, yl in zip(axes, ("train_reward", "train_kl_ref", "train_entropy"),
                       ("E_π r", "KL(π ‖ π_ref)", "H(π) / log K")):
    for c in main_cfgs:
        ax.plot(m["steps_train"], m[key][:, col[c["name"]]].mean(0), color=color(c["lam"]), label=label(c["lam"]))
    ax.set(xlabel="training step", ylabel=yl)
axes[0].axhline(summary["reference"]["reward"]["mean"], color="gray", ls=":", label="π_ref")
axes[2].axhline(summary["reference"]["entropy"]["mean"], color="gray", ls=":")
axes[0].legend(fontsize=8)
fig.suptitle(f"training, mean over {seeds} seeds")
save(fig, "training_curves")

# %% [markdown]
# ## The landscape (FRPO Fig. 2)
#
# Each curve starts at the trained policy (KL = 0, its training reward) and follows the original reward
# E_Q r as the downstream stage pushes Q away from π (x: KL(Q ‖ π), mean over contexts, symmetric-log
# scale). Dotted: the exact worst case at budget ρ = KL (computed at the ρ points marked in (c)), a lower
# envelope that no downstream stage can go below at the same KL.
# How to read it: a *robust* policy is one whose curve stays high and flat as KL grows; FRPO's claim is that
# its curves fall more slowly than GRPO's, i.e. it trades some reward at KL = 0 for reward kept under
# fine-tuning. Where curves cross, the ordering at large KL is what matters for robustness.

# %%
rhos = m["rhos"]
fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), sharey=True)
titles = ("(a) SFT toward a conflicting target", "(b) GRPO on a conflicting reward",
          "(c) exact worst case in the KL ball")
for ax, stage, title in zip(axes, ("sft", "pg", None), titles):
    for c in main_cfgs:
        v = col[c["name"]]
        if stage:
            ax.plot(m[f"{stage}_kl"][:, v].mean(0), m[f"{stage}_reward"][:, v].mean(0), color=color(c["lam"]),
                    label=label(c["lam"]))
            ax.plot(rhos, m["worst_value"][:, v].mean(0), color=color(c["lam"]), ls=":", lw=1)
        else:
            ax.plot(rhos, m["worst_value"][:, v].mean(0), "o-", ms=3, color=color(c["lam"]), label=label(c["lam"]))
    ax.set_xscale("symlog", linthresh=rhos[rhos > 0].min())
    ax.set(xlabel="KL(Q ‖ π_trained)", title=title)
axes[0].set_ylabel("original reward E_Q r")
axes[0].legend(fontsize=8)
fig.suptitle(f"reward-vs-KL landscape, mean over {seeds} seeds; dotted = exact worst case at ρ = KL")
save(fig, "landscape")

# %% [markdown]
# ## Reward at matched KL, paired against GRPO
#
# The landscape's curves compared at the same KL(Q ‖ π) = κ (`summary["vs_grpo"]`): FRPO − GRPO on the same
# seed (same environment and downstream data), mean ± 95% t-interval over seeds. How to read it: a bar above
# 0 whose interval excludes 0 means FRPO kept more of the original reward than GRPO at that KL; the first
# group of bars ("train") is the price paid before any fine-tuning. A missing bar means no seed's
# downstream run reached that KL (n = 0 in the table); a bar without an interval rests on one seed.

# %%
keys = ["train/reward"] + [f"{st}/reward@kl={k:g}" for k in kl_levels for st in ("sft", "pg", "worst")]
vs = summary.get("vs_grpo", {})
if not vs:
    print("no GRPO config in this run (lams without inf): nothing to pair against")
else:
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(keys)), 4))
    names = list(vs)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        lam = configs[col[name]]["lam"]
        mu, h = zip(*(ci(vs[name][k]) for k in keys))
        ax.bar(np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width, mu, width, yerr=h, capsize=3,
               color=color(lam), label=label(lam) + " − GRPO")
    ax.axhline(0, color="gray", lw=1)
    ax.set_xticks(range(len(keys)), [k.replace("/reward", "") for k in keys], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="Δ original reward (paired)", title="FRPO − GRPO at matched downstream KL (95% CI over seeds)")
    ax.legend(fontsize=8)
    save(fig, "matched_kl_vs_grpo")
    md_table(["config"] + keys, [[name] + [fmt(vs[name][k]) for k in keys] for name in names])

# %% [markdown]
# ## Ablation: no baseline (App. D, Fig. 9)
#
# Without the baseline term λ·mean(c) every FRPO advantage is negative, so training pushes probability off
# every sampled arm. How to read it: solid = without the baseline, dashed = with it, dotted gray = π_ref; the
# paper's failure mode is entropy rising above π_ref's while the reward falls below it (collapse towards
# uniform); `collapsed_frac` in the table counts the seeds where that happened.

# %%
nob = [c for c in configs if c["group"] == "no_baseline"]
if not nob:
    print("this run has no no-baseline configs (--no-ablations or --no-baseline)")
else:
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, key, ref, yl in zip(axes, ("train_reward", "train_entropy"), ("reward", "entropy"),
                                ("E_π r", "H(π) / log K")):
        for c in nob:
            with_base = next(d for d in main_cfgs if d["lam"] == c["lam"])
            ax.plot(m["steps_train"], m[key][:, col[c["name"]]].mean(0), color=color(c["lam"]),
                    label=f"λ={c['lam']:g} no baseline")
            ax.plot(m["steps_train"], m[key][:, col[with_base["name"]]].mean(0), color=color(c["lam"]), ls="--", lw=1)
        ax.axhline(summary["reference"][ref]["mean"], color="gray", ls=":")
        ax.set(xlabel="training step", ylabel=yl)
    axes[0].legend(fontsize=8)
    fig.suptitle("FRPO without the baseline (solid) vs with it (dashed); dotted = π_ref")
    save(fig, "ablation_baseline")
    ab = summary["ablations"]["no_baseline"]
    md_table(["config", "train reward", "train entropy", "collapsed_frac", "Δ reward vs with baseline"],
             [[n, fmt(d["train/reward"]), fmt(d["train/entropy"]), f"{d['collapsed_frac']:.2f}",
               fmt(d["minus_with_baseline"]["train/reward"])]
              for n, d in ab.items()])

# %% [markdown]
# ## Ablation: jackknife (App. E, Fig. 10)
#
# Jackknife minus plain log Ẑ at the same λ and seed (`summary["ablations"]["jackknife"]`), for the training
# reward and the reward kept at matched downstream KL. How to read it: the jackknife removes the O(1/G) bias of
# log Ẑ (notebook 01, section 3), which matters most at small λ where the weights e^{−A/λ} are most
# uneven; an interval that covers 0 means the group size already made the bias negligible here.

# %%
jk = summary["ablations"].get("jackknife", {})
if not jk:
    print("this run has no no-jackknife configs")
else:
    keys = ["train/reward"] + [f"{st}/reward@kl={k:g}" for k in kl_levels for st in ("sft", "pg", "worst")]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(keys)), 4))
    width = 0.8 / len(jk)
    for i, (lam, d) in enumerate(jk.items()):
        mu, h = zip(*(ci(d[k]) for k in keys))
        ax.bar(np.arange(len(keys)) + (i - (len(jk) - 1) / 2) * width, mu, width, yerr=h, capsize=3,
               color=color(float(lam)), label=f"λ={float(lam):g}")
    ax.axhline(0, color="gray", lw=1)
    ax.set_xticks(range(len(keys)), [k.replace("/reward", "") for k in keys], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="Δ reward (paired)", title="jackknife − no jackknife (95% CI over seeds)")
    ax.legend(fontsize=8)
    save(fig, "ablation_jackknife")

# %% [markdown]
# ## Ablation: KL budget through β (App. B.3, Fig. 8)
#
# FRPO at one λ and GRPO trained with several KL coefficients β: x = how far training moved from π_ref,
# y = original reward kept at a matched downstream KL. How to read it: larger β keeps π closer to π_ref (left);
# the question is whether FRPO's advantage is more than a smaller KL budget, i.e. whether at equal training KL
# FRPO's points lie above GRPO's.

# %%
kb = summary["ablations"].get("kl_budget", {})
if not kb:
    print("this run has no KL-budget configs")
else:
    k = kl_levels[len(kl_levels) // 2]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, stage in zip(axes, ("sft", "pg", "worst")):
        for lam in sorted({float(d["lam"]) for d in kb.values()}):
            pts = sorted((d for d in kb.values() if float(d["lam"]) == lam), key=lambda d: d["beta"])
            x = [d["train/kl_ref"]["mean"] for d in pts]
            y, h = zip(*(ci(d[f"{stage}/reward@kl={k:g}"]) for d in pts))
            ax.errorbar(x, y, yerr=h, marker="o", capsize=3, color="black" if math.isinf(lam) else "C0",
                        label=label(lam))
            for xi, yi, d in zip(x, y, pts):
                ax.annotate(f"β={d['beta']:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="training KL(π ‖ π_ref)", title=f"{stage}: reward at downstream KL = {k:g}")
    axes[0].set_ylabel("original reward")
    axes[0].legend(fontsize=8)
    save(fig, "ablation_kl_budget")
