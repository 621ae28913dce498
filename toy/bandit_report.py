"""Summaries and stdout tables of ``python -m toy.bandit`` (the keys are documented in its docstring).

Per (seed, config) scalars from the logged trajectories (:func:`per_seed_metrics`: the reward where
KL(Q‖π) first reaches κ, by :func:`reward_at_kl`), their mean ± 95% t-interval over seeds and the
paired (same seed) differences against GRPO and within the ablations (:func:`summarize`), and the
tables on stdout (:func:`print_table`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from toy._common import ci_dict, fmt_ci, format_table


def lam_name(lam: float) -> str:
    return "grpo" if math.isinf(lam) else f"frpo_lam{lam:g}"


def reward_at_kl(kl: np.ndarray, reward: np.ndarray, level: float) -> np.ndarray:
    """Reward where a trajectory's KL first reaches ``level`` (linear interpolation); NaN if never."""
    hit = kl >= level
    j = hit.argmax(-1)
    i = np.maximum(j - 1, 0)
    take = lambda x, idx: np.take_along_axis(x, idx[..., None], -1)[..., 0]  # noqa: E731
    k0, k1, r0, r1 = take(kl, i), take(kl, j), take(reward, i), take(reward, j)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(k1 > k0, (level - k0) / (k1 - k0), 1.0)
    return np.where(hit.any(-1), r0 + frac * (r1 - r0), np.nan)


def per_seed_metrics(m: dict, a) -> dict[str, np.ndarray]:
    """The comparable scalars of every (seed, config): key → (S, V)."""
    out = {"train/reward": m["train_reward"][..., -1], "train/kl_ref": m["train_kl_ref"][..., -1],
           "train/entropy": m["train_entropy"][..., -1]}
    for k in a.kl_levels:
        out[f"sft/reward@kl={k:g}"] = reward_at_kl(m["sft_kl"], m["sft_reward"], k)
        out[f"pg/reward@kl={k:g}"] = reward_at_kl(m["pg_kl"], m["pg_reward"], k)
        out[f"worst/reward@kl={k:g}"] = m["worst_value"][..., list(m["rhos"]).index(k)]
    out.update({"sft/kl_final": m["sft_kl"][..., -1], "pg/kl_final": m["pg_kl"][..., -1],
                "sft/task_kl_final": m["sft_task"][..., -1], "pg/task_reward_final": m["pg_task"][..., -1]})
    return out


def summarize(m: dict, configs: Sequence, a) -> dict:
    per = per_seed_metrics(m, a)
    idx = {c.name: v for v, c in enumerate(configs)}
    at_keys = [k for k in per if k.startswith("train/") or "@kl=" in k]
    diff = lambda v, w: {k: ci_dict(per[k][:, v] - per[k][:, w]) for k in at_keys}  # noqa: E731
    s: dict = {"results": {c.name: {k: ci_dict(x[:, v]) for k, x in per.items()} for v, c in enumerate(configs)}}
    if "grpo" in idx:
        s["vs_grpo"] = {c.name: diff(v, idx["grpo"]) for v, c in enumerate(configs) if c.group == "main" and c.name != "grpo"}
    ref_r, ref_h = m["ref_reward"], m["ref_entropy"]
    s["reference"] = {"reward": ci_dict(ref_r), "entropy": ci_dict(ref_h)}
    abl: dict = {"no_baseline": {}, "jackknife": {}, "kl_budget": {}}
    for v, c in enumerate(configs):
        base_name = lam_name(c.lam)
        if c.group == "no_baseline":
            collapsed = (per["train/entropy"][:, v] > ref_h) & (per["train/reward"][:, v] < ref_r)
            abl["no_baseline"][c.name] = {"train/reward": ci_dict(per["train/reward"][:, v]),
                                          "train/entropy": ci_dict(per["train/entropy"][:, v]),
                                          "collapsed_frac": float(collapsed.mean()),
                                          "minus_with_baseline": diff(v, idx[base_name])}
        elif c.group == "no_jackknife":
            abl["jackknife"][f"{c.lam:g}"] = diff(idx[base_name], v)
        elif c.group == "kl_budget":
            abl["kl_budget"][c.name] = {"beta": c.beta, "lam": c.lam,
                                        **{k: ci_dict(per[k][:, v]) for k in at_keys if k != "train/entropy"}}
    s["ablations"] = abl
    return s


def print_table(summary: dict, configs: Sequence, a) -> None:
    """Tables on stdout: main sweep, paired differences vs GRPO at every κ, ablations, RLVR."""
    k = a.kl_levels[len(a.kl_levels) // 2]
    cell = lambda d: fmt_ci(d["mean"], d["ci95"])  # noqa: E731
    at = lambda stage, kk: f"{stage}/reward@kl={kk:g}"  # noqa: E731
    cols = ["train/reward", "train/kl_ref", "train/entropy"] + [at(st, k) for st in ("sft", "pg", "worst")]
    res = summary["results"]
    print(f"\nFRPO toy bandit: mean ± 95% t-interval over {a.seeds} seeds (KL matched at {k:g})")
    print(format_table(["config"] + cols, [[c.name] + [cell(res[c.name][x]) for x in cols]
                                           for c in configs if c.group == "main"]))
    all_at = [at(st, kk) for st in ("sft", "pg", "worst") for kk in a.kl_levels]
    if "vs_grpo" in summary:
        print("\npaired difference config − GRPO (same seed), original reward at matched KL(Q‖π)")
        print(format_table(["config"] + all_at, [[n] + [cell(d[x]) for x in all_at] for n, d in summary["vs_grpo"].items()]))
    abl = summary["ablations"]
    if abl["jackknife"]:
        jcols = ["train/reward"] + all_at
        print("\njackknife − no jackknife (paired, same seed)")
        print(format_table(["lam"] + jcols, [[lam] + [cell(d[x]) for x in jcols] for lam, d in abl["jackknife"].items()]))
    if abl["no_baseline"]:
        ref = summary["reference"]
        print(f"\nno baseline: π_ref has reward {cell(ref['reward'])}, entropy/log K {cell(ref['entropy'])}")
        print(format_table(["config", "train/reward", "train/entropy", "Δreward vs baseline", "collapsed_frac"],
                           [[n, cell(d["train/reward"]), cell(d["train/entropy"]),
                             cell(d["minus_with_baseline"]["train/reward"]), f"{d['collapsed_frac']:.2f}"]
                            for n, d in abl["no_baseline"].items()]))
    if abl["kl_budget"]:
        kc = ["train/reward", "train/kl_ref"] + [at(st, k) for st in ("sft", "pg", "worst")]
        print("\nKL budget through β")
        print(format_table(["config"] + kc, [[n] + [cell(d[x]) for x in kc] for n, d in abl["kl_budget"].items()]))
    if "rlvr" in summary:
        r, ce = summary["rlvr"], summary["rlvr"]["counterexample"]
        print(f"\nRLVR path model: max TV(π_T, Gibbs tilt) exact-KL gradient {r['gibbs_tv']['exact']:.1e}, "
              f"GRPO k3 gradient {r['gibbs_tv']['grpo_k3']:.3f}; max |ΔS_t|/χ² bound {r['drift_over_bound_max']:.3f} "
              f"({r['drift_bound_violations']} violations); counterexample Cov(s,g) = {ce['cov_sg']:.1e}, "
              f"ΔS = {ce['delta_s_trained']:+.4f} at β = {ce['beta']:g} (χ² bound {ce['chi2_bound']:.4f})")
