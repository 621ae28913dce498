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
# *Source of this notebook: `notebooks/03_lstm_study.py`, a jupytext percent script paired with `03_lstm_study.ipynb`.
# Edit either (the `.py` in any editor, the `.ipynb` in Jupyter), then run
# `jupytext --sync notebooks/03_lstm_study.py`; `notebooks/README.md` says how to run and test it.*

# %% [markdown]
# # 03 · CSFT + PA pre-experiments with LSTM policies
#
# `toy/lstm.py` reproduces the two toy pre-experiments of the CSFT+PA paper (§5.1–5.2; docs/theory.md, CSFT+PA
# section): a small LSTM policy is trained on samples of a larger, frozen, randomly drawn LSTM reference (the
# paper's π_aligned), with and without the preference-alignment loss PA (`theory.losses.pa_loss`, weight
# δ_epoch): pre-experiment 1 compares CE with CE+PA, pre-experiment 2 CSFT with CSFT+PA. All groups of a seed
# share the reference, the data and the initialization, so differences are paired. The paper reports, for
# pre-experiment 1, KL 1.4575 → 0.2562 and per-token probability difference 0.0169 → 0.0051, and for
# pre-experiment 2 that CSFT+PA beats CSFT on cosine, Pearson, overlap, KL similarity and KL.
#
# No training logic here: the notebook loads a finished run or calls `toy.lstm.main` at the budget of the
# parameter cell, then plots `metrics.npz` and tabulates `summary.json`. For the full study run
# `python -m toy.lstm --preset paper --out results/lstm` and set `FRTK_LSTM_RESULTS=results/lstm`. With the
# `smoke` budget (3 seeds, 3 epochs, 256 sequences) the numbers show the plumbing, not a result.

# %% tags=["parameters"]
# Parameters (papermill "parameters" cell; tests/test_notebooks.py sets the environment variables)
import os

BUDGET = os.environ.get("FRTK_NB_BUDGET", "smoke")   # toy.lstm preset run when RESULTS_DIR is not given
RESULTS_DIR = os.environ.get("FRTK_LSTM_RESULTS")     # finished `python -m toy.lstm --out DIR` run to load
FIG_DIR = os.environ.get("FRTK_NB_FIG_DIR", "results/03_lstm_study")

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

import toy.lstm
from toy._common import load_or_run

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto, imported by the toy even without bars
from theory.stats import mean_ci

run_dir, message = load_or_run(toy.lstm, RESULTS_DIR, BUDGET)  # saved results, or a fresh run at BUDGET
print(message)
# %matplotlib inline
# (a fresh run switches matplotlib to Agg to write the toy's PNGs; the magic restores inline display)

summary = json.loads((run_dir / "summary.json").read_text())
arrays = dict(np.load(run_dir / "metrics.npz"))
exps = [e for e in ("exp1", "exp2") if e in summary]
paper = summary["paper"]
LABEL = {"ce": "CE", "ce_pa": "CE+PA", "csft": "CSFT", "csft_pa": "CSFT+PA"}
TITLE = {"exp1": "pre-experiment 1: CE vs CE+PA", "exp2": "pre-experiment 2: CSFT vs CSFT+PA"}
print(f"preset={summary['preset']}, {summary['args']['seeds']} seeds, {summary['args']['epochs']} epochs, "
      f"experiments {exps}")


def band(x):
    """Mean and 95% t half-width over seeds (axis 0) of a (seeds, epochs + 1) curve."""
    cis = [mean_ci(c) for c in np.asarray(x).T]
    return np.array([c.mean for c in cis]), np.nan_to_num(np.array([c.half_width for c in cis]))


# %% [markdown]
# ## KL learning curves
#
# Held-out KL(π_θ ‖ π_ref) per epoch (epoch 0 = initialization), mean and 95% CI band over seeds, for both
# groups of each pre-experiment (top), and the reverse direction KL(π_ref ‖ π_θ), which plain NLL on reference
# samples minimizes (bottom); the paper does not say which direction it reports. Crosses at the right edge
# to the right of the last epoch mark the paper's final KL for pre-experiment 1. How to read it: PA "works" in the paper's sense if its
# curve ends below the base group's; the paper's absolute values come from unknown model and data sizes, so
# compare directions and relative changes, not levels.

# %%
fig, axes = plt.subplots(2, len(exps), figsize=(6.5 * len(exps), 7), squeeze=False)
for j, exp in enumerate(exps):
    for i, (metric, yl) in enumerate((("kl", "KL(π_θ ‖ π_ref)"), ("kl_ref_policy", "KL(π_ref ‖ π_θ)"))):
        ax = axes[i, j]
        for gi, g in enumerate(summary[exp]["groups"]):
            mu, h = band(arrays[f"{exp}/{g}/curve/{metric}"])
            ep = np.arange(len(mu))
            ax.plot(ep, mu, color=f"C{gi}", label=LABEL[g])
            ax.fill_between(ep, mu - h, mu + h, color=f"C{gi}", alpha=0.2)
            pv = paper[exp]["values"].get(g, {}).get(metric)
            if pv is not None:
                ax.plot([ep[-1] + 0.1 * len(ep)], [pv], "x", ms=10, mew=2, color=f"C{gi}",
                        label=f"paper {LABEL[g]} (final): {pv}")
        ax.set(yscale="log", xlabel="epoch", ylabel=f"held-out {yl} (nats)", title=TITLE[exp] if i == 0 else None)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.legend(fontsize=8)
save(fig, "kl_curves")


# %% [markdown]
# ## Final metrics beside the paper
#
# For each metric (↑ higher is better, ↓ lower is better): both groups' final held-out value, the paired
# PA − base difference with its 95% CI, the relative change, whether PA is significantly better, the paper's
# numbers or claimed direction, and whether we agree. "not reproduced (n.s.)" means the paired interval
# covers 0 at this budget.

# %%
def fmt(c):
    return f"{c['mean']:.4f} ± {c['ci95']:.4f}" if c["ci95"] is not None else f"{c['mean']:.4f}"


for exp in exps:
    s = summary[exp]
    base, pa = s["groups"]
    rows = []
    for key, d in s["pa_minus_base"].items():
        metric = key.split("/", 1)[1]
        pv, rel = paper[exp]["values"], s["rel_change_pct"][key]
        paper_col = (f"{pv[base][metric]} → {pv[pa][metric]} ({paper[exp]['rel_change_pct'][metric]:+.1f}%)"
                     if metric in pv.get(base, {}) else
                     ("PA better" if metric in paper[exp]["pa_better_on"] else "—"))
        rows.append([metric, fmt(s["results"][base][key]), fmt(s["results"][pa][key]), fmt(d),
                     "n/a" if rel is None else f"{rel:+.1f}%", s["pa_better"][key], paper_col,
                     s["vs_paper"].get(key, "—")])
    display(Markdown(f"**{TITLE[exp]}** ({summary['args']['seeds']} seeds; policy {s['param_counts']['policy']:,} "
                     f"params, reference {s['param_counts']['reference']:,})"))
    md_table(["metric", LABEL[base], LABEL[pa], f"{LABEL[pa]} − {LABEL[base]} (paired)", "rel. change",
              "PA better?", "paper", "vs paper"], rows)
    print(s["verdict"])

# %% [markdown]
# ## Paired differences per metric
#
# PA − base per metric, signed so that **positive = PA better** (↓ metrics are negated), mean and 95% CI over
# seeds, normalized by the base group's mean so that metrics of different scales share one axis. Filled
# markers: metrics the paper says PA improves; blue stars: the paper's own relative change (pre-experiment 1:
# KL −82.4%, probability difference −69.8%, i.e. +82.4 and +69.8 on this "PA better" axis). How to read it:
# the paper's claim holds for a metric when the interval lies entirely above 0.

# %%
fig, axes = plt.subplots(1, len(exps), figsize=(6.5 * len(exps), 4), squeeze=False)
for ax, exp in zip(axes[0], exps):
    s = summary[exp]
    base = s["groups"][0]
    metrics = [k.split("/", 1)[1] for k in s["pa_minus_base"]]
    for i, metric in enumerate(metrics):
        key = f"eval/{metric}"
        d, b = s["pa_minus_base"][key], abs(s["results"][base][key]["mean"])
        sign = 1.0 if toy.lstm.HIGHER_IS_BETTER[metric] else -1.0
        h = 0.0 if d["ci95"] is None else d["ci95"]
        claimed = metric in paper[exp]["pa_better_on"]
        ax.errorbar([i], [100 * sign * d["mean"] / b], yerr=[100 * h / b], fmt="o", capsize=4, color="C3",
                    mfc="C3" if claimed else "white")
        paper_rel = paper[exp]["rel_change_pct"].get(metric)
        if paper_rel is not None:
            ax.plot([i + 0.25], [sign * paper_rel], "*", ms=12, color="C0",
                    label="paper (relative change)" if metric == "kl" else None)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xticks(range(len(metrics)),
                  [m + (" ↑" if toy.lstm.HIGHER_IS_BETTER[m] else " ↓") for m in metrics], rotation=30, ha="right")
    ax.set(ylabel="PA better by (% of base), 95% CI", title=TITLE[exp])
    if paper[exp]["rel_change_pct"]:
        ax.legend(fontsize=8)
fig.suptitle("paired PA − base, signed so that up = PA better; filled = the paper claims PA better")
save(fig, "paired_differences")
