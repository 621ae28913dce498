"""The regimes study of the LSTM toy: in which data regime, if any, does the PA term pull π_θ toward π_ref?

Run it as ``python -m toy.lstm --preset regimes`` (``--preset regimes_smoke`` for a seconds-long check;
every option of ``python -m toy.lstm --help`` applies, ``--study regimes`` selects this study). The setup
(references, data, models, metrics) is ``toy.lstm``'s; this module adds three dimensions to it:

  regime     "rich":  --n-train sequences for --epochs epochs (CE's held-out KL has levelled off);
             "small": --small-n-train sequences for --small-epochs epochs (CE overfits: its training
                      NLL keeps falling while held-out KL(π_θ‖π_ref) rises).
  stopping   "final": the model after the last epoch;
             "early": the model at the epoch of minimum validation NLL (epoch 0 = initialisation
                      included), on round(--val-frac · n_train) validation sequences per seed: fresh samples
                      of π_ref drawn beside the training set (stream "val"), so both stopping rules train on
                      the same data. This is early stopping that restores the best checkpoint, with unlimited
                      patience (``early_stopping_epoch(curve, patience=None)``). Every arm stops on its own
                      validation NLL (the quantity a practitioner holds out), not on its training objective.
  arm        <base>            CE (exp 1) or CSFT (exp 2);
             <base>_pa         base + δ_epoch·PA, μ_t detached (the toy's default);
             <base>_pa_mugrad  base + δ_epoch·PA, μ_t differentiated (the CSFT+PA paper's App. A.2.4 reading);
             <base>_kl<c>      base + c·KL(π_θ‖π_ref), the KL exact over the vocabulary at every teacher-forced
                               response position (``toy.lstm_models.kl_control_loss``): the explicit pull
                               toward π_ref that PA is meant to approximate; c from --kl-coefs.

All arms × seeds of one (experiment, regime) are one stacked model sharing the reference, the data, the
minibatch order and the initialisation of each seed, so every arm − base difference is paired per seed;
it is reported as mean ± 95% Student-t CI over seeds (``theory.stats`` via ``toy._common.ci_dict``), also
as a percentage of the base arm's mean KL. "resolves 10%" is true when that CI's half-width is below 10%
of the base mean (the study can see a 10% change).

Presets (``toy.lstm.PRESETS``) and run time (one torch thread, measured):
  regimes        exp 1 only, 6 seeds, batch 32, 200 held-out sequences; rich 3000 sequences × 12 epochs,
                 small 128 × 60. 25 min wall on the shared 2-core machine at load average 6–8; 415 s user +
                 85 s system CPU (≈ 8–9 min on an otherwise idle core); the rich regime is 81% of it. Cost is
                 linear in seeds × arms × (n_train × epochs). Exp 2 (CSFT base): add --experiments 1,2
                 (about twice the cost again; not measured).
  regimes_smoke  3 seeds, tiny models and data (8 sequences × 80 epochs in the small regime, which still
                 overfits): ≈ 10 s CPU; the plumbing and the overfitting regime, not a result.

Outputs in --out (summary.json, metrics.npz, regimes_curves.png) and a table on stdout:
  summary.json  args, preset, study ("regimes"), runtime_s ({exp/regime: s, total}), torch_version, and
                regimes[exp][regime]: n_train, epochs, n_val, groups, labels,
                  dynamics   the base arm's curves (ci over seeds): train_nll_first/_last (first and last
                             epoch), heldout_kl_min, heldout_kl_min_epoch, heldout_kl_last, early_epoch,
                             kl_last_minus_early (held-out KL after the last epoch minus at the early-stopped
                             one), late_change_pct (100·(KL_last − KL at 80% of the epochs)/KL_last: near 0 once
                             CE has levelled off), rise_pct (100·(KL_last / min KL − 1)), train_change (train
                             NLL of the last epoch minus that of the epoch of minimum held-out KL) and
                             overfits (``overfitting``: rise CI above 5% and train_change CI below 0)
                  stopping[final|early]: epoch {group: ci}, results {group: {eval/<metric>: ci}},
                             minus_base {group: {eval/<metric>: {mean, ci95, n, rel_pct, rel_ci95_pct,
                             frac_seeds_lower, resolves_10pct, verdict}}}
  metrics.npz   <exp>/<regime>/<group>/curve/<metric> (seeds, epochs + 1), …/val_nll (seeds, epochs + 1),
                …/train_nll (seeds, epochs), …/early_epoch (seeds,)
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from toy._common import ci_dict, fmt_ci, format_table, write_json
from toy.lstm_models import HIGHER_IS_BETTER, METRICS
from toy.lstm_train import GROUPS, group_label, run_experiment

REGIMES = ("rich", "small")
STOPPING = ("final", "early")
REPORTED = ("kl", "kl_ref_policy", "argmax_agree")  # in the summary's minus_base; the npz holds every metric


def regime_groups(exp: str, kl_coefs) -> tuple[str, ...]:
    """The arms of the regimes study for one experiment: base, base+PA (μ detached / differentiated), base+c·KL."""
    base = GROUPS[exp][0]
    return (base, f"{base}_pa", f"{base}_pa_mugrad", *(f"{base}_kl{c:g}" for c in kl_coefs))


def early_stopping_epoch(val_curve, patience: Optional[int] = None) -> np.ndarray:
    """Epoch index early stopping keeps for each curve (last axis = epochs): the first minimum of the validation loss.

    With ``patience`` = p, training stops once p epochs in a row bring no strict improvement, and the best
    epoch seen until then is kept (a later, lower minimum is never reached); ``None`` = unlimited patience,
    i.e. the argmin over the whole curve. A NaN never counts as an improvement.
    """
    v = np.asarray(val_curve, dtype=np.float64)
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(f"val_curve has shape {v.shape}; pass an array whose last axis holds >= 1 epochs")
    if patience is not None and (isinstance(patience, bool) or int(patience) != patience or patience < 1):
        raise ValueError(f"patience={patience!r} must be a positive integer or None (unlimited)")
    out = np.zeros(v.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(*v.shape[:-1]):
        best, best_i, since = np.inf, 0, 0
        for i, x in enumerate(v[idx]):
            if x < best:
                best, best_i, since = x, i, 0
            else:
                since += 1
                if patience is not None and since >= patience:
                    break
        out[idx] = best_i
    return out


def _at(curve: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """curve (..., E) at per-row epoch indices (...,)."""
    return np.take_along_axis(curve, epoch[..., None], -1)[..., 0]


def _paired(arm: np.ndarray, base: np.ndarray, lower_is_better: bool) -> dict:
    """Paired per-seed comparison arm − base: the difference's mean ± 95% CI and the per-seed relative change.

    rel_pct / rel_ci95_pct: mean ± CI of 100·(arm_s/base_s − 1); resolves_10pct: that half-width < 10;
    verdict ("lower", "higher", "no difference") from the CI of the absolute difference.
    """
    d = arm - base
    ci = ci_dict(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = ci_dict(100 * (arm / base - 1))
    lo, hi = ci["mean"] - ci["ci95"], ci["mean"] + ci["ci95"]
    better = d < 0 if lower_is_better else d > 0
    return {**ci, "rel_pct": rel["mean"], "rel_ci95_pct": rel["ci95"], "frac_seeds_lower": float((d < 0).mean()),
            "frac_seeds_better": float(better.mean()), "resolves_10pct": bool(rel["ci95"] < 10),
            "verdict": "lower" if hi < 0 else "higher" if lo > 0 else "no difference"}


OVERFIT_RISE_PCT = 5.0  # held-out KL must rise more than this (CI lower bound) from its minimum to count as overfitting


def overfitting(kl: np.ndarray, train_nll: np.ndarray) -> dict:
    """How the base arm's curves move after its best held-out epoch: kl (S, E + 1), train_nll (S, E).

    rise_pct: 100·(KL_last / min_e KL_e − 1) per seed; train_change: train NLL of the last epoch minus
    that of the epoch of minimum held-out KL (epoch 1 when the minimum is the initialisation).
    overfits: the rise's 95% CI lies above ``OVERFIT_RISE_PCT`` and the train change's below 0
    (training loss falls while held-out KL rises).
    """
    e_min = kl.argmin(1)
    tr = np.concatenate([train_nll[:, :1], train_nll], 1)  # column e = train NLL of epoch e (epoch 0 → epoch 1)
    rise, fall = ci_dict(100 * (kl[:, -1] / kl.min(1) - 1)), ci_dict(tr[:, -1] - _at(tr, e_min))
    return {"heldout_kl_min_epoch": ci_dict(e_min), "rise_pct": rise, "train_change": fall,
            "overfits": bool(rise["mean"] - rise["ci95"] > OVERFIT_RISE_PCT and fall["mean"] + fall["ci95"] < 0)}


def summarize_regime(res: dict, n_train: int, n_val: int) -> dict:
    """summary.json entry of one (experiment, regime); keys in the module docstring."""
    groups = list(res["groups"])
    curves, val, train = res["curves"], res["val_nll"], res["train_nll"]
    epochs = train.shape[-1]
    stop = {"final": np.full(val.shape[:-1], epochs), "early": early_stopping_epoch(val)}
    out = {"n_train": n_train, "epochs": epochs, "n_val": n_val, "groups": groups,
           "labels": {g: group_label(g) for g in groups}, "stopping": {}}
    for rule, ep in stop.items():
        final = {k: _at(curves[k], ep) for k in METRICS}  # (G, S)
        s = {"epoch": {g: ci_dict(ep[gi]) for gi, g in enumerate(groups)},
             "results": {g: {f"eval/{k}": ci_dict(final[k][gi]) for k in METRICS} for gi, g in enumerate(groups)},
             "minus_base": {}}
        for gi, g in enumerate(groups[1:], 1):
            s["minus_base"][g] = {f"eval/{k}": _paired(final[k][gi], final[k][0], not HIGHER_IS_BETTER[k])
                                  for k in REPORTED}
        out["stopping"][rule] = s
    kl, e_early = curves["kl"][0], stop["early"][0]  # base arm: (S, E + 1), (S,)
    late = max(1, round(0.8 * epochs))
    out["dynamics"] = {"train_nll_first": ci_dict(train[0, :, 0]), "train_nll_last": ci_dict(train[0, :, -1]),
                       "heldout_kl_min": ci_dict(kl.min(1)), "heldout_kl_last": ci_dict(kl[:, -1]),
                       "early_epoch": ci_dict(e_early), "kl_last_minus_early": ci_dict(kl[:, -1] - _at(kl, e_early)),
                       "late_change_pct": ci_dict(100 * (kl[:, -1] - kl[:, late]) / kl[:, -1]),
                       **overfitting(kl, train[0])}
    return out


def print_tables(summary: dict) -> None:
    """One table per experiment: every regime × stopping rule × arm, KL and the paired difference to base."""
    for exp, regs in summary["regimes"].items():
        rows = []
        for regime, r in regs.items():
            base = r["groups"][0]
            for rule in STOPPING:
                s = r["stopping"][rule]
                for g in r["groups"]:
                    kl = s["results"][g]["eval/kl"]
                    ep = s["epoch"][g]
                    row = [regime, rule, r["labels"][g], f"{ep['mean']:.1f}", fmt_ci(kl["mean"], kl["ci95"], 4)]
                    if g == base:
                        row += ["—", "—", "—", "—", "—"]
                    else:
                        d, a = s["minus_base"][g]["eval/kl"], s["minus_base"][g]["eval/argmax_agree"]
                        row += [fmt_ci(d["mean"], d["ci95"], 4), f"{d['rel_pct']:+.1f} ± {d['rel_ci95_pct']:.1f}%",
                                f"{round(d['frac_seeds_lower'] * d['n'])}/{d['n']}", d["verdict"],
                                fmt_ci(100 * a["mean"], 100 * a["ci95"], 2)]
                    rows.append(row)
        args = summary["args"]
        print(f"\nRegimes study, {exp} ({args['seeds']} seeds; mean ± 95% CI; Δ = arm − "
              f"{group_label(GROUPS[exp][0])}, paired per seed; held-out KL(π_θ‖π_ref))")
        print(format_table(["regime", "stopping", "arm", "epoch", "KL", "Δ KL (paired)", "Δ % (per seed)",
                            "seeds lower", "KL vs base", "Δ argmax agree (pp)"], rows))
        for regime, r in regs.items():
            dy = r["dynamics"]
            print(f"{regime} ({r['n_train']} seqs × {r['epochs']} epochs, {r['n_val']} validation): base train NLL "
                  f"{dy['train_nll_first']['mean']:.3f} → {dy['train_nll_last']['mean']:.3f}; held-out KL min "
                  f"{dy['heldout_kl_min']['mean']:.4f} (epoch {dy['heldout_kl_min_epoch']['mean']:.1f}) → last "
                  f"{dy['heldout_kl_last']['mean']:.4f} (rise "
                  f"{fmt_ci(dy['rise_pct']['mean'], dy['rise_pct']['ci95'], 1)}%"
                  f", train NLL change {fmt_ci(dy['train_change']['mean'], dy['train_change']['ci95'], 3)}) → "
                  f"overfits: {'yes' if dy['overfits'] else 'no'}; last − early-stopped KL "
                  f"{fmt_ci(dy['kl_last_minus_early']['mean'], dy['kl_last_minus_early']['ci95'], 4)}; "
                  "KL change over the last 20% of epochs "
                  f"{fmt_ci(dy['late_change_pct']['mean'], dy['late_change_pct']['ci95'], 1)}%")


def make_plot(out: Path, results: dict) -> None:
    """regimes_curves.png: per (experiment, regime) the held-out KL of every arm (top) and the base arm's
    train and validation NLL (bottom), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [(exp, regime) for exp, regs in results.items() for regime in regs]
    fig, axes = plt.subplots(2, len(cols), figsize=(5.5 * len(cols), 7), squeeze=False)
    for c, (exp, regime) in enumerate(cols):
        res = results[exp][regime]
        ax = axes[0, c]
        for gi, g in enumerate(res["groups"]):
            kl = res["curves"]["kl"][gi].mean(0)
            ax.plot(np.arange(len(kl)), kl, label=group_label(g), color=f"C{gi}")
        ax.set(yscale="log", xlabel="epoch", ylabel="held-out KL(π_θ‖π_ref) (nats)", title=f"{exp}, {regime} data")
        ax.legend(fontsize=7)
        ax = axes[1, c]
        tr, va = res["train_nll"][0].mean(0), res["val_nll"][0].mean(0)
        ax.plot(np.arange(1, len(tr) + 1), tr, label="train NLL (epoch mean)")
        ax.plot(np.arange(len(va)), va, label="validation NLL")
        ax.axhline(float(res["ref_entropy"].mean()), color="gray", lw=1, ls="--", label="π_ref entropy")
        ax.set(xlabel="epoch", ylabel="NLL (nats/token)", title=f"{group_label(res['groups'][0])}: train vs validation")
        if len(tr) > 1:  # epoch 0's NLL (≈ log V) would squash the rest of the curves
            ax.set_ylim(top=float(max(va[1:].max(), tr[1:].max())) + 0.2)
        ax.legend(fontsize=7)
        for a in axes[:, c]:
            a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "regimes_curves.png", dpi=120)
    plt.close(fig)


def run(args, preset: Optional[str], device, out: Path) -> dict:
    """Run the regimes study for ``args`` (a ``toy.lstm.Args`` with study="regimes"); write and print it."""
    t0 = time.perf_counter()
    results, runtime, summary_regs = {}, {}, {}
    sizes = {"rich": (args.n_train, args.epochs), "small": (args.small_n_train, args.small_epochs)}
    for e in sorted(set(args.experiments)):
        exp = f"exp{e}"
        groups = regime_groups(exp, args.kl_coefs)
        results[exp], summary_regs[exp] = {}, {}
        for regime in REGIMES:
            n, epochs = sizes[regime]
            n_val = max(1, round(args.val_frac * n))
            t = time.perf_counter()
            res = run_experiment(exp, replace(args, n_train=n, epochs=epochs), device, groups=groups, n_val=n_val)
            runtime[f"{exp}/{regime}"] = time.perf_counter() - t
            results[exp][regime] = res
            summary_regs[exp][regime] = summarize_regime(res, n, n_val)
    runtime["total"] = time.perf_counter() - t0
    summary = {"args": asdict(args), "preset": preset, "study": "regimes", "runtime_s": runtime,
               "torch_version": torch.__version__, "regimes": summary_regs}
    arrays = {}
    for exp, regs in results.items():
        for regime, res in regs.items():
            early = early_stopping_epoch(res["val_nll"])
            for gi, g in enumerate(res["groups"]):
                key = f"{exp}/{regime}/{g}"
                for k in METRICS:
                    arrays[f"{key}/curve/{k}"] = res["curves"][k][gi]
                arrays[f"{key}/val_nll"], arrays[f"{key}/train_nll"] = res["val_nll"][gi], res["train_nll"][gi]
                arrays[f"{key}/early_epoch"] = early[gi]
    np.savez_compressed(out / "metrics.npz", **arrays)
    write_json(out / "summary.json", summary)
    make_plot(out, results)
    print_tables(summary)
    print(f"\nwrote {out}/summary.json, metrics.npz, regimes_curves.png in {runtime['total']:.1f} s")
    return summary
