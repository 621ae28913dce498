"""The PNGs of ``python -m toy.bandit``: the reward-vs-KL landscape (FRPO Fig. 2) and the ablations
(Figs. 8–10); rlvr.png comes from ``toy.rlvr_paths.plot_rlvr``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from toy._common import mean_ci_axis
from toy.bandit_report import lam_name
from toy.rlvr_paths import plot_rlvr


def make_plots(out: Path, m: dict, configs: Sequence, summary: dict, a) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [(v, c) for v, c in enumerate(configs) if c.group == "main"]
    finite = sorted(c.lam for _, c in main if math.isfinite(c.lam))
    cmap = plt.get_cmap("viridis")
    color = lambda lam: "black" if math.isinf(lam) else cmap(finite.index(lam) / max(1, len(finite) - 1)) if lam in finite else "gray"  # noqa: E731
    label = lambda c: "GRPO" if math.isinf(c.lam) else f"FRPO λ={c.lam:g}"  # noqa: E731
    rhos = m["rhos"]

    # Fig. 2: reward vs KL(Q‖π) under the three downstream stages, worst case overlaid
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    for ax, stage, title in zip(axes, ("sft", "pg", None), ("(a) SFT toward a conflicting target",
                                                            "(b) GRPO on a conflicting reward",
                                                            "(c) exact worst case in the KL ball")):
        for v, c in main:
            wc = m["worst_value"][:, v].mean(0)
            if stage:
                ax.plot(m[f"{stage}_kl"][:, v].mean(0), m[f"{stage}_reward"][:, v].mean(0), color=color(c.lam), label=label(c))
                ax.plot(rhos, wc, color=color(c.lam), ls=":", lw=1)
            else:
                mu, h, _ = mean_ci_axis(m["worst_value"][:, v])
                ax.plot(rhos, mu, color=color(c.lam), marker="o", ms=3, label=label(c))
                ax.fill_between(rhos, mu - np.nan_to_num(h), mu + np.nan_to_num(h), color=color(c.lam), alpha=0.15)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("KL(Q ‖ π_trained)  (mean over contexts)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("original reward E_Q r")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Reward-vs-KL landscape (FRPO Fig. 2), mean over {a.seeds} seeds; dotted = exact worst case")
    fig.tight_layout()
    fig.savefig(out / "landscape.png", dpi=120)
    plt.close(fig)

    steps = m["steps_train"]
    idx = {c.name: v for v, c in enumerate(configs)}
    # Fig. 9: no baseline
    nob = [(v, c) for v, c in enumerate(configs) if c.group == "no_baseline"]
    if nob:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for v, c in nob:
            w = idx[lam_name(c.lam)]
            for ax, key in zip(axes, ("train_reward", "train_entropy")):
                ax.plot(steps, m[key][:, v].mean(0), color=color(c.lam), label=f"λ={c.lam:g} no baseline")
                ax.plot(steps, m[key][:, w].mean(0), color=color(c.lam), ls="--", lw=1)
        for ax, yl in zip(axes, ("E_π r", "H(π) / log K")):
            ax.set_xlabel("training step")
            ax.set_ylabel(yl)
            ax.axhline(summary["reference"]["reward" if yl == "E_π r" else "entropy"]["mean"], color="gray", ls=":")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("FRPO without the baseline (App. D, Fig. 9); dashed = with baseline, dotted = π_ref")
        fig.tight_layout()
        fig.savefig(out / "ablation_baseline.png", dpi=120)
        plt.close(fig)

    # Fig. 10: jackknife
    nojk = [(v, c) for v, c in enumerate(configs) if c.group == "no_jackknife"]
    if nojk:
        k = a.kl_levels[len(a.kl_levels) // 2]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
        for v, c in nojk:
            w = idx[lam_name(c.lam)]
            axes[0].plot(steps, m["train_reward"][:, w].mean(0), color=color(c.lam), label=f"λ={c.lam:g}")
            axes[0].plot(steps, m["train_reward"][:, v].mean(0), color=color(c.lam), ls="--", lw=1)
            axes[1].plot(m["sft_kl"][:, w].mean(0), m["sft_reward"][:, w].mean(0), color=color(c.lam), label=f"λ={c.lam:g}")
            axes[1].plot(m["sft_kl"][:, v].mean(0), m["sft_reward"][:, v].mean(0), color=color(c.lam), ls="--", lw=1)
        jk = summary["ablations"]["jackknife"]
        lams = [float(x) for x in jk]
        for off, stage in zip((-0.1, 0.0, 0.1), ("sft", "pg", "worst")):
            d = [jk[x][f"{stage}/reward@kl={k:g}"] for x in jk]
            axes[2].errorbar(np.arange(len(lams)) + off, [x["mean"] for x in d],
                             yerr=[np.nan_to_num(x["ci95"]) for x in d], fmt="o", capsize=3, label=stage)
        axes[2].set_xticks(range(len(lams)), [f"{x:g}" for x in lams])
        axes[2].axhline(0, color="gray", lw=1)
        axes[0].set(xlabel="training step", ylabel="E_π r", title="training (solid: jackknife, dashed: none)")
        axes[1].set(xlabel="KL(Q ‖ π)", ylabel="E_Q r", title="downstream SFT", xscale="symlog")
        axes[2].set(xlabel="λ", ylabel=f"Δ reward @ KL={k:g}", title="jackknife − no jackknife (paired, 95% CI)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("Jackknife ablation (App. E, Fig. 10)")
        fig.tight_layout()
        fig.savefig(out / "ablation_jackknife.png", dpi=120)
        plt.close(fig)

    # Fig. 8: KL budget through β
    kb = summary["ablations"]["kl_budget"]
    if kb:
        k = a.kl_levels[len(a.kl_levels) // 2]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
        for ax, stage in zip(axes, ("sft", "pg", "worst")):
            for lam, col, lab in ((a.ablation_lam, "tab:blue", f"FRPO λ={a.ablation_lam:g}"), (math.inf, "black", "GRPO")):
                pts = [d for d in kb.values() if d["lam"] == lam]
                ax.errorbar([d["train/kl_ref"]["mean"] for d in pts], [d[f"{stage}/reward@kl={k:g}"]["mean"] for d in pts],
                            yerr=[np.nan_to_num(d[f"{stage}/reward@kl={k:g}"]["ci95"]) for d in pts], color=col,
                            marker="o", capsize=3, label=lab)
                for d in pts:
                    ax.annotate(f"β={d['beta']:g}", (d["train/kl_ref"]["mean"], d[f"{stage}/reward@kl={k:g}"]["mean"]), fontsize=7)
            ax.set(xlabel="training KL(π ‖ π_ref)", title=f"{stage}: reward at downstream KL={k:g}")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("original reward")
        axes[0].legend(fontsize=8)
        fig.suptitle("KL budget through β (FRPO Fig. 8)")
        fig.tight_layout()
        fig.savefig(out / "ablation_kl_budget.png", dpi=120)
        plt.close(fig)

    if "rlvr_tv_exact" in m:
        plot_rlvr(out, m, summary)
