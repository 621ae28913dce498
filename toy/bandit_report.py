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
    """results, vs_grpo, reference, ablations and (with KL-matched arms) vs_grpo_matched and matching.

    A matched arm's seeds whose calibrated KL misses GRPO's by more than --match-rtol are NaN in every
    one of its statistics (left out of n)."""
    per = {k: np.array(v, dtype=np.float64) for k, v in per_seed_metrics(m, a).items()}  # copies: masked below
    idx = {c.name: v for v, c in enumerate(configs)}
    matched = [v for v, c in enumerate(configs) if c.group == "matched"]
    if matched:
        ok = m["match_rel_err"] <= a.match_rtol  # (S, L)
        for x in per.values():
            x[:, matched] = np.where(ok, x[:, matched], np.nan)
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
    if matched:
        s["vs_grpo_matched"] = {configs[v].name: diff(v, idx["grpo"]) for v in matched}
        s["matching"] = matching_summary(m, [configs[v] for v in matched], a)
    return s


def matching_summary(m: dict, matched: Sequence, a) -> dict:
    """The calibration of the KL-matched arms: tolerance, search range, and per arm n and the spread of β and KL."""
    ok = m["match_rel_err"] <= a.match_rtol
    arms = {}
    for j, c in enumerate(matched):
        sel = ok[:, j]
        beta = m["match_beta"][sel, j]
        arms[c.name] = {"lam": c.lam, "n_matched": int(sel.sum()), "n_bracketed": int(m["match_bracketed"][:, j].sum()),
                        "rel_err_max": float(m["match_rel_err"][sel, j].max()) if sel.any() else math.nan,
                        "beta_median": float(np.median(beta)) if sel.any() else math.nan,
                        "beta_min": float(beta.min()) if sel.any() else math.nan,
                        "beta_max": float(beta.max()) if sel.any() else math.nan,
                        "kl_ref": ci_dict(np.where(sel, m["match_kl"][:, j], np.nan))}
    return {"rtol": a.match_rtol, "beta_range": list(a.match_beta_range), "max_iter": a.match_iters,
            "evals": int(m["match_evals"]), "seeds": int(ok.shape[0]), "target_kl_ref": ci_dict(m["match_target"]),
            "arms": arms}


def print_table(summary: dict, configs: Sequence, a) -> None:
    """Tables on stdout: main sweep, paired differences vs GRPO at every κ, ablations, RLVR."""
    k = a.kl_levels[len(a.kl_levels) // 2]
    cell = lambda d: fmt_ci(d["mean"], d["ci95"])  # noqa: E731
    at = lambda stage, kk: f"{stage}/reward@kl={kk:g}"  # noqa: E731
    cols = ["train/reward", "train/kl_ref", "train/entropy"] + [at(st, k) for st in ("sft", "pg", "worst")]
    res = summary["results"]
    print(f"\nFRPO toy bandit: mean ± 95% t-interval over {a.seeds} seeds (downstream columns at KL(Q‖π) = {k:g})")
    print(format_table(["config"] + cols, [[c.name] + [cell(res[c.name][x]) for x in cols]
                                           for c in configs if c.group == "main"]))
    all_at = [at(st, kk) for st in ("sft", "pg", "worst") for kk in a.kl_levels]
    if "vs_grpo" in summary:
        print("\npaired difference config − GRPO (same seed), original reward at matched KL(Q‖π)")
        print(format_table(["config"] + all_at, [[n] + [cell(d[x]) for x in all_at] for n, d in summary["vs_grpo"].items()]))
    if "matching" in summary:
        mt = summary["matching"]
        print(f"\nKL-matched arms: β per seed (bisection on log β in [{mt['beta_range'][0]:g}, {mt['beta_range'][1]:g}], "
              f"{mt['evals']} trainings) so that KL(π‖π_ref) = GRPO's {cell(mt['target_kl_ref'])} within "
              f"{mt['rtol']:.0%}; n = seeds matched of {mt['seeds']}")
        print(format_table(["config", "n", "max |KL/KL_grpo − 1|", "β median [min, max]", "train/kl_ref", "train/reward"],
                           [[n, str(d["n_matched"]), f"{d['rel_err_max']:.4f}",
                             f"{d['beta_median']:.3g} [{d['beta_min']:.3g}, {d['beta_max']:.3g}]", cell(d["kl_ref"]),
                             cell(res[n]["train/reward"])] for n, d in mt["arms"].items()]))
        print("\npaired difference KL-matched config − GRPO (same seed), original reward at matched KL(Q‖π)")
        print(format_table(["config"] + all_at, [[n] + [cell(d[x]) for x in all_at]
                                                 for n, d in summary["vs_grpo_matched"].items()]))
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


def _md_cell(d: dict) -> str:
    """'+m ± h' with ' n.s.' when the 95% interval contains 0; 'n/a' when no seed has a value."""
    m, h = d["mean"], d["ci95"]
    if m is None or not math.isfinite(m):
        return "n/a"
    if h is None or not math.isfinite(h):
        return f"{m:+.3f} (one seed)".replace("-", "−")
    return f"{m:+.3f} ± {h:.3f}".replace("-", "−") + (" n.s." if abs(m) <= h else "")


def _n_range(ds: Sequence[dict]) -> str:
    ns = [d["n"] for d in ds]
    return f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}–{max(ns)}"


def markdown_tables(summary: dict, a, lam: float) -> str:
    """The README block (tables.md): training of GRPO and FRPO λ=``lam`` at the same β and KL-matched, then
    FRPO − GRPO at every κ, paired by seed, for SFT, PG and the worst case, unmatched beside matched; and
    one row per λ at the middle κ. Cells: mean ± 95% t-interval; n.s. = the interval contains 0."""
    res, kl = summary["results"], a.kl_levels
    name, mname = lam_name(lam), lam_name(lam) + "_matched"
    if "grpo" not in res or name not in res or math.isinf(lam):
        return "No comparison: the run needs GRPO (inf in --lams) and a finite λ.\n"
    mt = summary.get("matching")
    have_m = mt is not None and mname in mt["arms"]
    k_mid = kl[len(kl) // 2]
    cell = lambda d: fmt_ci(d["mean"], d["ci95"])  # noqa: E731
    out = [f"Training (exact, end of training), mean ± 95% CI over seeds; β = {a.beta:g} unless calibrated:", "",
           "| arm | β | KL(π‖π_ref) | E_π r | n |", "|---|---|---|---|---|"]
    rows = [("GRPO", f"{a.beta:g}", "grpo"), (f"FRPO λ={lam:g}, same β", f"{a.beta:g}", name)]
    if have_m:
        arm = mt["arms"][mname]
        rows.append((f"FRPO λ={lam:g}, KL-matched", f"{arm['beta_median']:.3g} (median; {arm['beta_min']:.3g}–"
                     f"{arm['beta_max']:.3g})", mname))
    for label, beta, key in rows:
        r = res[key]
        out.append(f"| {label} | {beta} | {cell(r['train/kl_ref'])} | {cell(r['train/reward'])} | {r['train/reward']['n']} |")
    if have_m:
        out += ["", f"KL-matched: β per seed by bisection on log β so that |KL/KL_GRPO − 1| ≤ {mt['rtol']:g}; "
                f"{arm['n_matched']} of {mt['seeds']} seeds matched (largest miss {arm['rel_err_max']:.3f}), "
                f"{mt['evals']} training runs of every matched arm."]
    out += ["", f"FRPO λ={lam:g} − GRPO, original reward at matched downstream KL(Q‖π), paired by seed:", "",
            "| downstream | FRPO arm | " + " | ".join(f"KL {k:g}" for k in kl) + " | n |",
            "|---|---|" + "---|" * (len(kl) + 1)]
    stages = (("sft", "SFT toward a conflicting target"), ("pg", "policy gradient on a conflicting reward"),
              ("worst", "exact worst case in the KL ball"))
    for st, label in stages:
        for arm_label, table, key in (("same β", "vs_grpo", name), ("KL-matched", "vs_grpo_matched", mname)):
            if key not in summary.get(table, {}):
                continue
            ds = [summary[table][key][f"{st}/reward@kl={k:g}"] for k in kl]
            out.append(f"| {label} | {arm_label} | " + " | ".join(map(_md_cell, ds)) + f" | {_n_range(ds)} |")
    if "vs_grpo_matched" in summary:
        out += ["", f"Every λ at downstream KL {k_mid:g}, FRPO − GRPO paired by seed (same β | KL-matched):", "",
                "| λ | KL(π‖π_ref) matched | SFT same β | SFT matched | PG same β | PG matched | worst same β | worst matched |",
                "|---|---|---|---|---|---|---|---|"]
        for mn, arm in mt["arms"].items():
            un, vm = summary["vs_grpo"][lam_name(arm["lam"])], summary["vs_grpo_matched"][mn]
            cells = [_md_cell(d[f"{st}/reward@kl={k_mid:g}"]) for st in ("sft", "pg", "worst") for d in (un, vm)]
            out.append(f"| {arm['lam']:g} | {cell(arm['kl_ref'])} (n={arm['n_matched']}) | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
