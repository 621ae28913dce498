"""Reports of the LSTM pre-experiments (``toy.lstm``): the summary.json entry, the printed table, the plots.

Keys of the summary and the files written are documented in the module docstring of ``toy.lstm``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toy._common import ci_dict, fmt_ci, format_table
from toy.lstm_models import HIGHER_IS_BETTER, METRICS
from toy.lstm_train import GROUP_LABELS

if TYPE_CHECKING:
    from toy.lstm import Args

# The paper's numbers (CSFT+PA paper §5.1 Table 2) and claims (§5.2 Figs. 2–4: CSFT+PA better on these metrics).
PAPER = {
    "exp1": {"values": {"ce": {"kl": 1.4575, "prob_diff": 0.0169}, "ce_pa": {"kl": 0.2562, "prob_diff": 0.0051}},
             "rel_change_pct": {"kl": -82.4, "prob_diff": -69.8}, "pa_better_on": ["kl", "prob_diff"]},
    "exp2": {"values": {}, "rel_change_pct": {},
             "pa_better_on": ["cosine", "pearson", "overlap", "kl_similarity", "kl"]},
}


# ----------------------------------------------------------------------------------------------
# summary, table, plots
# ----------------------------------------------------------------------------------------------
ARCH = {"exp1": ("1-layer LSTM + 1 FC", "1-layer LSTM + {blocks} residual FC blocks"),
        "exp2": ("2-layer LSTM + width-preserving FC", "3-layer LSTM + dimension-expanding FC")}


def summarize(exp: str, res: dict) -> dict:
    """The summary.json entry of one pre-experiment (keys documented in the module docstring)."""
    base, pa = res["groups"]
    final = {g: {k: res["curves"][k][gi, :, -1] for k in METRICS} for gi, g in enumerate(res["groups"])}
    out = {"groups": list(res["groups"]), "param_counts": res["param_counts"],
           "reference": {"entropy_nats": ci_dict(res["ref_entropy"]), "context_mi_nats": ci_dict(res["ref_context_mi"]),
                         "logit_scale": res["ref_logit_scale"].tolist()},
           "results": {g: {f"eval/{k}": ci_dict(v) for k, v in final[g].items()} for g in res["groups"]},
           "train/final_loss": {g: float(res["train_loss"][g][-1]) for g in res["groups"]},
           "pa_minus_base": {}, "rel_change_pct": {}, "pa_better": {}, "vs_paper": {}}
    for k in METRICS:
        d = final[pa][k] - final[base][k]
        better = d > 0 if HIGHER_IS_BETTER[k] else d < 0
        ci = ci_dict(d)
        lo, hi = ci["mean"] - ci["ci95"], ci["mean"] + ci["ci95"]
        significant = lo > 0 or hi < 0
        out["pa_minus_base"][f"eval/{k}"] = {**ci, "frac_seeds_pa_better": float(better.mean())}
        mb = float(final[base][k].mean())
        out["rel_change_pct"][f"eval/{k}"] = 100 * (float(final[pa][k].mean()) - mb) / abs(mb) if mb != 0 else None
        pa_better_sig = significant and ((ci["mean"] > 0) == HIGHER_IS_BETTER[k])
        out["pa_better"][f"eval/{k}"] = "yes" if pa_better_sig else ("no, worse" if significant else "no difference")
        if k in PAPER[exp]["pa_better_on"]:
            out["vs_paper"][f"eval/{k}"] = ("agrees" if pa_better_sig else
                                            "opposite" if significant else "not reproduced (n.s.)")
    kl = out["pa_minus_base"]["eval/kl"]
    out["pa_reduces_kl"] = bool(kl["mean"] + kl["ci95"] < 0)
    r_base, r_pa = out["results"][base]["eval/kl"], out["results"][pa]["eval/kl"]
    verb = "reduces" if out["pa_reduces_kl"] else ("increases" if kl["mean"] - kl["ci95"] > 0 else "does not change")
    out["verdict"] = (f"{GROUP_LABELS[pa]} {verb} held-out KL(π_θ‖π_ref) relative to {GROUP_LABELS[base]}: "
                      f"{r_base['mean']:.4f} → {r_pa['mean']:.4f} ({out['rel_change_pct']['eval/kl']:+.1f}%; "
                      f"paired difference {fmt_ci(kl['mean'], kl['ci95'], 4)}, PA lower in "
                      f"{round(kl['frac_seeds_pa_better'] * kl['n'])}/{kl['n']} seeds)")
    return out


def print_table(exp: str, s: dict, args: Args) -> None:
    """Our mean ± 95% CI beside the paper's numbers (exp 1) or claimed direction (exp 2)."""
    base, pa = s["groups"]
    pc = s["param_counts"]
    arch_p, arch_r = (a.format(blocks=args.ref_blocks) for a in ARCH[exp])
    title = {"exp1": "Pre-experiment 1", "exp2": "Pre-experiment 2"}[exp]
    print(f"\n{title}: {GROUP_LABELS[base]} vs {GROUP_LABELS[pa]}; policy {arch_p} ({pc['policy']:,} params), "
          f"reference {arch_r} ({pc['reference']:,} params, {pc['ratio']:.2f}×); {args.seeds} seeds, "
          f"mean ± 95% CI; reference entropy {s['reference']['entropy_nats']['mean']:.3f} nats, "
          f"context MI {s['reference']['context_mi_nats']['mean']:.3f} nats")
    paper = PAPER[exp]
    rows = []
    for k in METRICS:
        key = f"eval/{k}"
        r = s["results"]
        d = s["pa_minus_base"][key]
        rel = s["rel_change_pct"][key]
        pv = paper["values"]
        row = [k + (" ↑" if HIGHER_IS_BETTER[k] else " ↓"), fmt_ci(r[base][key]["mean"], r[base][key]["ci95"], 4),
               fmt_ci(r[pa][key]["mean"], r[pa][key]["ci95"], 4), fmt_ci(d["mean"], d["ci95"], 4),
               "n/a" if rel is None else f"{rel:+.1f}%", s["pa_better"][key]]
        if exp == "exp1":
            row += [f"{pv[base][k]:.4f}" if k in pv.get(base, {}) else "—",
                    f"{pv[pa][k]:.4f}" if k in pv.get(pa, {}) else "—",
                    f"{paper['rel_change_pct'][k]:+.1f}%" if k in paper["rel_change_pct"] else "—"]
        else:
            row += ["PA better" if k in paper["pa_better_on"] else "—"]
        row += [s["vs_paper"].get(key, "—")]
        rows.append(row)
    headers = ["metric", GROUP_LABELS[base], GROUP_LABELS[pa], f"{GROUP_LABELS[pa]} − {GROUP_LABELS[base]} (paired)",
               "rel. change", "PA better?"]
    headers += ([f"paper {GROUP_LABELS[base]}", f"paper {GROUP_LABELS[pa]}", "paper rel."] if exp == "exp1"
                else ["paper (Figs. 2–4)"]) + ["vs paper"]
    print(format_table(headers, rows))
    print(s["verdict"])


def make_plots(out: Path, results: dict, args: Args) -> None:
    """kl_curves.png (held-out KL per epoch, mean ± 95% CI band) and metrics_bar.png (final metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toy._common import mean_ci_axis

    exps = list(results)
    fig, axes = plt.subplots(2, len(exps), figsize=(6 * len(exps), 7), squeeze=False)
    for col, exp in enumerate(exps):
        res = results[exp]
        kl = res["curves"]["kl"]  # (G, S, epochs + 1)
        x = np.arange(kl.shape[-1])
        ax = axes[0, col]
        for gi, g in enumerate(res["groups"]):
            m, h, _ = mean_ci_axis(kl[gi], axis=0)
            ax.plot(x, m, label=GROUP_LABELS[g])
            ax.fill_between(x, m - h, m + h, alpha=0.25)
        ax.set(yscale="log", xlabel="epoch", ylabel="held-out KL(π_θ‖π_ref) (nats)",
               title=f"{exp}: {args.seeds} seeds, mean ± 95% CI")
        ax.legend()
        ax = axes[1, col]  # the paired difference: seeds share reference, data and initialisation
        m, h, _ = mean_ci_axis(kl[1] - kl[0], axis=0)
        base, pa = (GROUP_LABELS[g] for g in res["groups"])
        ax.plot(x, m, color="C2")
        ax.fill_between(x, m - h, m + h, alpha=0.25, color="C2")
        ax.axhline(0, color="gray", lw=1)
        ax.set(xlabel="epoch", ylabel=f"KL({pa}) − KL({base}) (nats)", title=f"{exp}: paired difference, mean ± 95% CI")
        for a in axes[:, col]:
            a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "kl_curves.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(exps), len(METRICS), figsize=(2.4 * len(METRICS), 3 * len(exps)), squeeze=False)
    for row, exp in zip(axes, exps):
        res = results[exp]
        for ax, k in zip(row, METRICS):
            for gi, g in enumerate(res["groups"]):
                m, h, _ = mean_ci_axis(res["curves"][k][gi, :, -1])
                ax.bar(gi, m, yerr=h, capsize=4, color=f"C{gi}")
            ax.set_xticks(range(len(res["groups"])), [GROUP_LABELS[g] for g in res["groups"]], fontsize=8)
            ax.set_title(f"{exp}: {k} {'↑' if HIGHER_IS_BETTER[k] else '↓'}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "metrics_bar.png", dpi=120)
    plt.close(fig)
