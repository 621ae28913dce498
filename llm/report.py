"""The run report: retention tables (mean ± 95% CI over seeds) and plots, from the pipeline's metric rows.

Inputs are plain dict rows, as stored in ``metrics.jsonl``:
  eval rows   {"type": "eval", "seed", "arm", "stage": "base" | "aligned" | "downstream/<kind>",
               "eval/<metric>": float, ...}
  track rows  {"type": "track", "seed", "arm", "kind", "step", "kl", "kl_se", "reward/<name>", ...}
  sample rows (eval.samples; from the stages' DONE.json, not in metrics.jsonl)
              {"seed", "arm", "stage", "set": "harmful" | "benign", "prompt", "completion", "refused",
               "harmfulness" (model judges only)}
Outputs in the run directory: ``report.md``, ``reward_vs_kl.png``, ``before_after.png``.

Length (~470 lines, past the ~400 guide): the tables, the KL-matched reading, the two plots, the samples
and :func:`write_report`, which assembles them into one report, stay together.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llm import matched as M  # noqa: E402
from llm.io import atomic_write_text  # noqa: E402
from theory.stats import mean_ci  # noqa: E402

# the headline metric of each reward: what "retained" means in the report
HEADLINE = {"safety": "eval/refusal_rate", "math": "eval/math_accuracy"}
MODEL_JUDGE_HEADLINE = "eval/judge_refusal_rate"


def headline_metric(reward: str, eval_rows: list[dict]) -> str:
    """The report's headline: a configured model judge's refusal rate when the run measured one (safety runs),
    else HEADLINE[reward] (the keyword judge's rate, the tiny world's prefix judge, or math accuracy)."""
    if reward == "safety" and any(MODEL_JUDGE_HEADLINE in r for r in eval_rows):
        return MODEL_JUDGE_HEADLINE
    return HEADLINE[reward]


def judge_sentence(reward: str, judge: str, tiny: bool, headline: str) -> str:
    """Which judge the headline rests on, in words (the report always names it)."""
    if reward != "safety":
        return ("Judge: none (the headline is an accuracy: `llm.rewards.math_correct_reward`; the tiny world's "
                "final number).")
    if tiny:
        return ("Judge behind the headline: the tiny world's prefix judge (a completion refuses when its first word "
                "is the refusal word; `llm.world_eval`).")
    if headline == MODEL_JUDGE_HEADLINE:
        return (f"Judge behind the headline: the model judge `{judge}` (a completion refuses when its harmfulness "
                "h < 0.5); beside it, the keyword judge's rate on the same completions (`llm.refusal.is_refusal`).")
    return (f"Judge behind the headline: the keyword judge (`llm.refusal.is_refusal`; eval.judge = `{judge}`).")
METRIC_LABELS = {
    "eval/refusal_rate": "refusal rate (held-out harmful, sampled)",
    "eval/refusal_prob": "refusal prob. (first token)",
    "eval/over_refusal": "over-refusal rate (benign look-alikes, sampled)",
    "eval/over_refusal_prob": "over-refusal prob. (benign look-alikes, first token)",
    "eval/math_accuracy": "arithmetic accuracy",
    "eval/kl_to_aligned": "KL to the aligned model",
    "eval/kl_to_base": "KL to the base model",
    "eval/harmfulness": "harmfulness (held-out)",
    "eval/refusal_rate_identity": "refusal rate with the persona prefix",
    "eval/refusal_rate_trigger": "refusal rate with the backdoor trigger",
    "eval/judge_refusal_rate": "refusal rate (model judge)",
}


def _group(rows, keys):
    out = defaultdict(list)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].append(r)
    return out


def eval_table(eval_rows: list[dict], arms: list[str], stages: list[str], metrics: list[str]) -> str:
    """Markdown table: one row per (arm, stage), one column per metric, mean ± 95% CI over seeds."""
    by = _group(eval_rows, ("arm", "stage"))
    head = "| arm | stage | " + " | ".join(METRIC_LABELS.get(m, m) for m in metrics) + " |"
    lines = [head, "|" + "---|" * (2 + len(metrics))]
    for arm in arms:
        for stage in stages:
            rows = by.get((arm, stage), [])
            if not rows:
                continue
            cells = [str(mean_ci([r.get(m) for r in rows])) for m in metrics]
            lines.append(f"| {arm} | {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retention_table(eval_rows: list[dict], arms: list[str], kinds: list[str], headline: str) -> str:
    """Per arm and downstream kind: headline metric before → after, the retained fraction, and KL."""
    by = _group(eval_rows, ("arm", "stage", "seed"))
    lines = [f"| arm | downstream | {METRIC_LABELS.get(headline, headline)}: aligned | after | retained "
             "(after/aligned) | KL to aligned |", "|---|---|---|---|---|---|"]
    for arm in arms:
        for kind in kinds:
            before, after, frac, kl = [], [], [], []
            seeds = sorted({s for (a, st, s) in by if a == arm and st == f"downstream/{kind}"})
            for s in seeds:
                b = by.get((arm, "aligned", s), [{}])[0].get(headline)
                a_row = by[(arm, f"downstream/{kind}", s)][0]
                a = a_row.get(headline)
                before.append(b)
                after.append(a)
                kl.append(a_row.get("eval/kl_to_aligned"))
                if b is not None and a is not None and b > 0:
                    frac.append(a / b)
            lines.append(f"| {arm} | {kind} | {mean_ci(before)} | {mean_ci(after)} | {mean_ci(frac)} | "
                         f"{mean_ci(kl)} |")
    return "\n".join(lines)


def paired_differences(eval_rows: list[dict], arms: list[str], kinds: list[str], headline: str) -> str:
    """Per-seed differences of the headline metric after downstream, each arm minus the first arm.

    Arms of one seed share the base model and the downstream data order, so the paired difference
    removes the seed-to-seed spread that dominates the unpaired intervals.
    """
    if len(arms) < 2:
        return ""
    by = _group(eval_rows, ("arm", "stage", "seed"))
    ref = arms[0]
    lines = [f"| arm − {ref} | downstream | Δ after (paired, per seed) | per-seed values |", "|---|---|---|---|"]
    for arm in arms[1:]:
        for kind in kinds:
            st = f"downstream/{kind}"
            seeds = sorted({s for (a, k, s) in by if a == arm and k == st} & {s for (a, k, s) in by if a == ref and k == st})
            diffs = [by[(arm, st, s)][0].get(headline) - by[(ref, st, s)][0].get(headline) for s in seeds
                     if by[(arm, st, s)][0].get(headline) is not None and by[(ref, st, s)][0].get(headline) is not None]
            vals = ", ".join(f"{d:+.3f}" for d in diffs)
            lines.append(f"| {arm} | {kind} | {mean_ci(diffs)} | {vals} |")
    return "\n".join(lines)


def _trajectories(track_rows: list[dict], key: str) -> dict[tuple, dict[int, tuple[list, list]]]:
    """(arm, kind) → seed → (KLs, values) in step order, the points where both are present."""
    out: dict[tuple, dict[int, tuple[list, list]]] = defaultdict(dict)
    for (arm, kind, seed), rows in _group(track_rows, ("arm", "kind", "seed")).items():
        pts = sorted((r["step"], r["kl"], r[key]) for r in rows
                     if r.get("kl") is not None and isinstance(r.get(key), (int, float)))
        if pts:
            out[(arm, kind)][seed] = ([max(0.0, k) for _, k, _ in pts], [v for _, _, v in pts])
    return out


def _fmt_band(band) -> str:
    m, lo, hi = band
    return "n/a" if math.isnan(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def matched_kl(track_rows: list[dict], arms: list[str], kinds: list[str], key: str,
               grid: Optional[list[float]] = None) -> dict:
    """The matched-KL reading per downstream kind: grid, per-arm per-seed values, AUCs (see llm.matched)."""
    trajs = _trajectories(track_rows, key)
    out = {}
    for kind in kinds:
        per_arm = {a: trajs.get((a, kind), {}) for a in arms}
        all_kls = [k for seeds in per_arm.values() for k, _ in seeds.values()]
        if not all_kls:
            continue
        g = M.kl_grid(all_kls, grid or [])
        top = M.common_kl(all_kls)
        values = {a: {s: M.first_passage(k, v, g) for s, (k, v) in seeds.items()} for a, seeds in per_arm.items()}
        aucs = {a: {s: M.normalized_auc(k, v, top) for s, (k, v) in seeds.items()} for a, seeds in per_arm.items()}
        ends = {a: {s: k[-1] for s, (k, _) in seeds.items()} for a, seeds in per_arm.items()}
        out[kind] = {"grid": g, "common_kl": top, "values": values, "auc": aucs, "end_kl": ends}
    return out


def matched_kl_table(reading: dict, arms: list[str], label: str) -> str:
    """Markdown: per kind, one row per KL grid point — each arm's mean [95% bootstrap CI] (n seeds) and the
    paired per-seed difference to the first arm (mean ± 95% t-CI, n) — then the normalized AUC row."""
    if not reading:
        return ""
    ref = arms[0]
    lines = []
    for kind, r in reading.items():
        head = "| KL to aligned (nats) | " + " | ".join(f"{a}" for a in arms)
        head += "".join(f" | {a} − {ref} (paired)" for a in arms[1:]) + " |"
        lines += [f"**{kind}** — {label} at matched KL (first passage; mean [95% bootstrap CI] over seeds, "
                  "n = seeds reaching that KL)", "", head, "|" + "---|" * (1 + 2 * len(arms) - 1)]
        for j, g in enumerate(r["grid"]):
            cells = []
            for a in arms:
                vals = [v[j] for v in r["values"][a].values() if v[j] is not None]
                cells.append(f"{_fmt_band(M.bootstrap_band(vals))} (n={len(vals)})")
            for a in arms[1:]:
                common = sorted(set(r["values"][a]) & set(r["values"][ref]))
                diffs = [r["values"][a][s][j] - r["values"][ref][s][j] for s in common
                         if r["values"][a][s][j] is not None and r["values"][ref][s][j] is not None]
                cells.append(f"{mean_ci(diffs)} (n={len(diffs)})")
            mid = " ← middle" if j == len(r["grid"]) // 2 else ""
            lines.append(f"| {g:.3g}{mid} | " + " | ".join(cells) + " |")
        cells = []
        for a in arms:
            vals = [v for v in r["auc"][a].values() if v is not None]
            cells.append(f"{_fmt_band(M.bootstrap_band(vals))} (n={len(vals)})")
        for a in arms[1:]:
            common = sorted(set(r["auc"][a]) & set(r["auc"][ref]))
            diffs = [r["auc"][a][s] - r["auc"][ref][s] for s in common
                     if r["auc"][a][s] is not None and r["auc"][ref][s] is not None]
            cells.append(f"{mean_ci(diffs)} (n={len(diffs)})")
        lines.append(f"| AUC / K, K = {r['common_kl']:.3g} | " + " | ".join(cells) + " |")
        ends = [k for a in arms for k in r["end_kl"][a].values()]
        if ends:
            lines += ["", f"End-of-run KL over all seeds and arms: {min(ends):.3g} – {max(ends):.3g} nats "
                          f"(ratio {max(ends) / max(min(ends), 1e-12):.2f})."]
        lines.append("")
    return "\n".join(lines).rstrip()


def plot_reward_vs_kl(track_rows: list[dict], reward_key: str, path: Path, *, arms: Optional[list[str]] = None,
                      grid: Optional[list[float]] = None, per_prompt_key: Optional[str] = None,
                      ylabel: Optional[str] = None) -> Optional[Path]:
    """Retained metric against KL to the aligned model during downstream, one panel per downstream kind.

    Faint lines: each (seed, arm) trajectory as tracked. Thick line + band: each arm's mean over seeds on the
    matched-KL grid (first passage) with its 95% percentile-bootstrap band (inside [0, 1] for rates).
    Dashed: the certified worst case of the aligned model (KL-DRO lower bound at each radius, mean over
    seeds), from the step-0 per-prompt values ``per_prompt_key`` when the rows carry them.
    """
    trajs = _trajectories(track_rows, reward_key)
    if not trajs:
        return None
    arms = arms or sorted({a for a, _ in trajs})
    kinds = sorted({k for _, k in trajs})
    reading = matched_kl(track_rows, arms, kinds, reward_key, grid)
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(7.5, 5.5 * len(kinds)), 5.2), squeeze=False)
    colors = {a: f"C{i}" for i, a in enumerate(arms)}
    for ax, kind in zip(axes[0], kinds):
        r = reading.get(kind)
        xmax = max((max(k) for a in arms for k, _ in trajs.get((a, kind), {}).values()), default=1.0)
        if r and r["grid"]:
            xmax = min(xmax, 1.15 * r["grid"][-1])
        for a in arms:
            for k, v in trajs.get((a, kind), {}).values():
                ax.plot(k, v, color=colors[a], alpha=0.15, lw=0.8)
            if r and r["grid"]:
                bands = [M.bootstrap_band([v[j] for v in r["values"][a].values() if v[j] is not None])
                         for j in range(len(r["grid"]))]
                xs = [0.0] + r["grid"]
                start = [v[0] for k, v in trajs.get((a, kind), {}).values()]
                b0 = M.bootstrap_band(start)
                mean = [b0[0]] + [b[0] for b in bands]
                ax.plot(xs, mean, color=colors[a], lw=2.2, marker="o", ms=3.5, label=f"{a}: mean over seeds")
                ax.fill_between(xs, [b0[1]] + [b[1] for b in bands], [b0[2]] + [b[2] for b in bands],
                                color=colors[a], alpha=0.18, lw=0, label=f"{a}: 95% bootstrap band")
            if per_prompt_key:
                rows0 = [row for row in track_rows if row.get("arm") == a and row.get("kind") == kind
                         and row.get("step") == 0 and isinstance(row.get(per_prompt_key), list)]
                if rows0:
                    rhos = np.linspace(0.0, xmax, 60)
                    curves = np.array([M.dro_lower_bound(row[per_prompt_key], rhos) for row in rows0])
                    ax.plot(rhos, curves.mean(0), color=colors[a], ls="--", lw=1.4,
                            label=f"{a}: certified worst case (KL-DRO)")
        ax.set_xlim(0.0, xmax)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("sequence KL to the aligned model (nats, mean over probe prompts)")
        ax.set_ylabel(ylabel or f"retained {reward_key.split('/', 1)[-1]}")
        ax.set_title(f"downstream: {kind}", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("Retained metric vs KL during downstream fine-tuning (faint: one line per seed)", fontsize=11)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    _save_fig(fig, path)
    return path


def plot_before_after(eval_rows: list[dict], arms: list[str], kinds: list[str], metric: str,
                      path: Path) -> Optional[Path]:
    """Bars of the headline metric per arm: aligned, then after each downstream kind (mean ± 95% CI)."""
    stages = ["aligned"] + [f"downstream/{k}" for k in kinds]
    by = _group(eval_rows, ("arm", "stage"))
    if not any(by.get((a, s)) for a in arms for s in stages):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(stages)
    x = np.arange(len(arms))
    for i, st in enumerate(stages):
        cis = [mean_ci([r.get(metric) for r in by.get((a, st), [])]) for a in arms]
        means = [c.mean for c in cis]
        errs = [0.0 if math.isnan(c.half_width) else c.half_width for c in cis]
        ax.bar(x + (i - (len(stages) - 1) / 2) * width, means, width, yerr=errs, capsize=3, label=st)
    ax.set_xticks(x, arms)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title("Before and after downstream fine-tuning")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save_fig(fig, path)
    return path


def _save_fig(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


TRACK_LABELS = {
    "task/refusal_prob": "refusal probability (first token, held-out harmful probes)",
    "reward/safety": "safety reward (keyword judge, sampled, probe prompts)",
    "reward/math": "math reward (probe problems)",
    "task/math_accuracy": "arithmetic accuracy (greedy)",
}


def track_key_for(reward: str, track_rows: list[dict]) -> tuple[str, Optional[str]]:
    """(tracked headline key, its per-prompt key) of a run: the exact first-token refusal probability when the
    rows carry it (tiny world), else the sampled safety / math reward."""
    if reward == "safety" and any("task/refusal_prob" in r for r in track_rows):
        return "task/refusal_prob", "task/refusal_prob_per_prompt"
    return (f"reward/{reward}", f"reward_per_prompt/{reward}")


def alignment_match_table(eval_rows: list[dict], arms: list[str], tolerance: float = 0.2) -> tuple[str, bool]:
    """Each arm's KL to the base after alignment (mean ± 95% CI) and its ratio to the first arm, paired per
    seed; the arms count as matched when every arm's mean KL is within ``tolerance`` of the first arm's."""
    by = _group([r for r in eval_rows if r.get("stage") == "aligned"], ("arm", "seed"))
    ref = arms[0]
    lines = ["| arm | KL to the base after alignment (nats) | ratio to " + ref + " (mean of per-seed ratios) |",
             "|---|---|---|"]
    means = {}
    for a in arms:
        kls = [rows[0].get("eval/kl_to_base") for (arm, _), rows in by.items() if arm == a]
        ci = mean_ci(kls)
        means[a] = ci.mean
        ratios = [by[(a, s)][0].get("eval/kl_to_base") / by[(ref, s)][0]["eval/kl_to_base"]
                  for (arm, s) in by if arm == a and (ref, s) in by
                  and by[(a, s)][0].get("eval/kl_to_base") is not None
                  and (by[(ref, s)][0].get("eval/kl_to_base") or 0) > 0]
        lines.append(f"| {a} | {ci} | {mean_ci(ratios)} |")
    valid = [m for m in means.values() if not math.isnan(m)]
    matched = bool(valid) and len(valid) == len(arms) and all(
        abs(means[a] - means[ref]) <= tolerance * means[ref] for a in arms)
    return "\n".join(lines), matched


def _cell(text: str, limit: int) -> str:
    """``text`` on one line of a Markdown table cell, cut to ``limit`` characters (… marks a cut)."""
    one = " ".join(str(text).split()).replace("|", "\\|")
    return one if len(one) <= limit else one[: limit - 1].rstrip() + "…"


def samples_section(samples: list[dict], judge: str) -> list[str]:
    """The report's "Samples" lines: per stage (in run order) a table of set, prompt (shortened), completion
    and verdict (the keyword judge's; with a model judge also its harmfulness h)."""
    if not samples:
        return []
    parts = ["## Samples", "",
             "The first prompts of the held-out harmful set and of the benign look-alikes at every stage, each with "
             "the first completion the evaluation sampled for the metrics above (eval.samples per set; prompts "
             "shortened to 100 characters, completions to 400). *Verdict*: the keyword judge's (refusal or not)"
             + (f"; h: eval.judge's harmfulness ({judge})" if any("harmfulness" in x for x in samples) else "")
             + ".", ""]
    stages: dict[tuple, list[dict]] = {}
    for x in samples:
        stages.setdefault((x["seed"], x["arm"], x["stage"]), []).append(x)
    for (seed, arm, stage), xs in stages.items():
        where = "base" if stage == "base" else f"{arm} {stage}"
        parts += [f"### {where}, seed {seed}", "", "| set | prompt | completion | verdict |", "|---|---|---|---|"]
        for x in xs:
            verdict = "refusal" if x["refused"] else "no refusal"
            if "harmfulness" in x:
                verdict += f"; h = {x['harmfulness']:.2f}"
            parts.append(f"| {x['set']} | {_cell(x['prompt'], 100)} | {_cell(x['completion'], 400) or '(empty)'} "
                         f"| {verdict} |")
        parts.append("")
    return parts


def write_report(run_dir: Path, *, title: str, config_text: str, arms: list[str], kinds: list[str],
                 reward: str, eval_rows: list[dict], track_rows: list[dict], timings: dict,
                 kl_grid: Optional[list[float]] = None, kl_estimator: str = "rb", judge: str = "keyword_safety",
                 tiny: bool = True, samples: Optional[list[dict]] = None) -> str:
    """Write report.md and the PNGs into ``run_dir``; return what `llm.run` prints: the matched-KL table
    first, then the end-of-run retention table. ``judge`` (eval.judge) and ``tiny`` (the tiny world's own
    judge) name the judge behind the headline; with a model judge the headline is its refusal rate and the
    keyword judge's is shown beside it. ``samples``: sample rows (eval.samples), listed under "Samples"
    after the evaluations; none: no such section."""
    run_dir = Path(run_dir)
    headline = headline_metric(reward, eval_rows)
    judge_line = judge_sentence(reward, judge, tiny, headline)
    # the labelled metrics first, then any other eval/ metric a run produced (judges, prompt variants)
    metrics = [m for m in METRIC_LABELS if any(m in r for r in eval_rows)]
    metrics += sorted({k for r in eval_rows for k in r if k.startswith("eval/") and k not in METRIC_LABELS})
    stages = ["base", "aligned"] + [f"downstream/{k}" for k in kinds]
    track_key, per_prompt_key = track_key_for(reward, track_rows)
    label = TRACK_LABELS.get(track_key, track_key)
    plot1 = plot_reward_vs_kl(track_rows, track_key, run_dir / "reward_vs_kl.png", arms=arms, grid=kl_grid,
                              per_prompt_key=per_prompt_key if reward == "safety" else None, ylabel=label)
    plot2 = plot_before_after(eval_rows, arms, kinds, headline, run_dir / "before_after.png")
    reading = matched_kl(track_rows, arms, kinds, track_key, kl_grid)
    matched_table = matched_kl_table(reading, arms, label)
    retention = retention_table(eval_rows, arms, kinds, headline)
    paired = paired_differences(eval_rows, arms, kinds, headline)
    if headline == MODEL_JUDGE_HEADLINE:  # the keyword judge's reading of the same completions, beside it
        retention += "\n\nKeyword judge, same completions:\n\n" + retention_table(eval_rows, arms, kinds,
                                                                                   HEADLINE[reward])
    align_table, aligned_matched = alignment_match_table(eval_rows, arms)
    seeds = sorted({r["seed"] for r in eval_rows if r.get("stage") != "base" or not r.get("shared")})
    shared = [r["seed"] for r in eval_rows if r.get("stage") == "base" and r.get("shared")]
    parts = [
        f"# {title}",
        "",
        f"Seeds: {seeds} (n = {len(seeds)})" + (f"; one base model shared by all seeds (base seed {shared[0]})"
                                                if shared else "; each seed pretrains its own base") + ".",
        "",
        "## Retained safety at matched KL (headline)",
        "",
        f"Each downstream run is tracked every few steps: the sequence KL to the aligned model on the probe "
        f"prompts (estimator: **{'Rao–Blackwellized per-token KL' if kl_estimator == 'rb' else 'sampled log-ratio'}**"
        f", `{kl_estimator}`) and the {label}. Arms are compared at equal KL — the dose of the fine-tuning — "
        "not at equal steps: a run's value at KL g is interpolated where its KL first reaches g; a seed that "
        "never reaches g is missing there (never extrapolated). *AUC / K* is the area under the curve up to the "
        "common KL K (the largest KL every run reaches), divided by K. Paired differences are per seed "
        "(mean ± 95% Student-t CI).",
        "",
        matched_table or "(no tracked downstream runs)",
        "",
        "## Alignment dose",
        "",
        align_table,
        "",
        "The arms' KL to the base after alignment " + ("agree within 20%: **matched**." if aligned_matched
                                                       else "differ by more than 20%: **not matched** — part of a "
                                                            "difference downstream may come from how far "
                                                            "alignment moved each arm."),
        "",
        "## Retention after downstream fine-tuning (end of run)",
        "",
        f"Headline metric: **{METRIC_LABELS.get(headline, headline)}** on held-out prompts, measured on the "
        "aligned model and again after the downstream fine-tuning. *Retained* is after/aligned per seed: "
        "1.0 means nothing was forgotten. These are end-of-run numbers at whatever KL each run ended; the "
        "matched-KL table above is the comparison to read.",
        "",
        judge_line,
        "",
        retention,
        "",
        paired,
        "",
        "## All evaluations",
        "",
        eval_table(eval_rows, ["base"] + arms, stages, metrics),
        "",
        *samples_section(samples or [], judge),
        "## Plots",
        "",
    ]
    if plot1:
        parts += ["`reward_vs_kl.png`: the tracked metric against the KL to the aligned model along the downstream "
                  "run — faint lines per seed, each arm's mean on the KL grid with a 95% bootstrap band, and "
                  "dashed the certified worst case of the aligned model (the KL-DRO lower bound at each radius, "
                  "the quantity FRPO optimizes). A robust arm's curve stays high as KL grows (the FRPO paper's "
                  "Figure 2 reading).", "",
                  "![reward vs KL](reward_vs_kl.png)", ""]
    if plot2:
        parts += ["`before_after.png`: the headline metric per arm before and after each downstream kind.", "",
                  "![before/after](before_after.png)", ""]
    parts += ["## Timings", "", "Seconds per stage kind, summed over seeds and arms as each stage ran (a resumed "
              "rerun keeps the times stored in each stage's DONE.json).", "", "| stage | seconds |", "|---|---|"]
    parts += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    parts += ["", "## Resolved config", "", "```yaml", config_text.rstrip(), "```", ""]
    atomic_write_text(run_dir / "report.md", "\n".join(parts))
    printed = [matched_table, retention, paired]
    return "\n\n".join(p for p in printed if p)
