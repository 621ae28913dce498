"""The README's results, produced from runs of the final code — never typed by hand.

    make results                               # = python -m llm.results all: run, collect, update README
    make results-real                          # the same for the real-model preset (smollm2_safety, ~1 h)
    python -m llm.results run --presets default lambda_sweep --jobs 2
    python -m llm.results collect              # runs/results/<preset> → results/<group>/<preset>/
    python -m llm.results update-readme        # rewrite the README blocks between the markers
    python -m llm.results check                # the README block equals the stored results and the code
                                               # fingerprints equal the code that produced them

Two groups of presets, each with its own stored folder and README block: the tiny-world studies
(``results/tiny_world/``, block ``results:tiny-world``) and the real-model run (``results/real_model/``,
block ``results:real-model``; SmolLM2-135M-Instruct, see :func:`render_real`).
``collect`` stores, per preset, the run's ``metrics.jsonl`` (eval rows, and tracker rows without the
per-prompt lists except at step 0), ``config.yaml`` and ``provenance.json`` (command, commit, versions,
a fingerprint of every project module the run imported; :mod:`llm.provenance`) and ``seconds.json`` (each
stage's train and eval seconds from its DONE.json). The block in README.md between
``<!-- results:<group>:begin -->`` and ``<!-- results:<group>:end -->`` is :func:`render` of those files;
``tests/llm/test_results.py`` fails when the two differ or when a module that produced them has changed
since (then rerun the group: ``make results`` / ``make results-real``).

Longer than ~400 lines because it renders two kinds of study (the tiny world's matched-KL presets and the
real-model run's per-seed table with its rate intervals) from the same stored files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from llm.io import atomic_write_jsonl, atomic_write_text, read_jsonl

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "tiny_world"
REAL_RESULTS = REPO / "results" / "real_model"
RUNS = REPO / "runs" / "results"
README = REPO / "README.md"
PRESETS = ("default", "power", "lambda_sweep", "rlvr_vs_sft", "math", "csft_attacks", "all_downstream")
REAL_PRESETS = ("smollm2_safety",)
GROUPS = ("tiny-world", "real-model")
QUESTIONS = {
    "default": "After benign affirmative SFT, does FRPO (λ=0.2) keep more refusal than GRPO at the same KL?",
    "power": "The default's question on two seed lists (32 seeds): does the answer move between seed lists?",
    "lambda_sweep": "How does the retained refusal at matched KL depend on FRPO's λ?",
    "csft_attacks": "Do CSFT and CSFT+PA keep refusal under the three fine-tuning attacks (fixed 60 steps)?",
    "all_downstream": "Which downstream methods erode refusal, and does FRPO keep more under each?",
    "rlvr_vs_sft": "Does RL with a verifiable reward downstream keep refusal where SFT on the same prompts does not?",
    "math": "After instruction SFT, does FRPO (λ=2) keep more arithmetic than GRPO at the same KL?",
    "smollm2_safety": "On a real model, does FRPO keep more refusal than GRPO after a benign SFT?",
}


def group_of(preset: str) -> str:
    return "real-model" if preset in REAL_PRESETS else "tiny-world"


def stored_dir(preset: str) -> Path:
    """Where a preset's collected results live."""
    return (REAL_RESULTS if preset in REAL_PRESETS else RESULTS) / preset


def markers(group: str) -> tuple[str, str]:
    return f"<!-- results:{group}:begin -->", f"<!-- results:{group}:end -->"


def run_presets(presets: list[str], jobs: int = 2) -> None:
    """Run each preset into runs/results/<preset> (one thread each, ``jobs`` at a time), resuming finished stages."""
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def one(p: str) -> tuple[str, int, float]:
        t0 = time.perf_counter()
        log = RUNS / f"{p}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            rc = subprocess.run([sys.executable, "-m", "llm.run", "--preset", p, f"output_dir={RUNS}"], cwd=REPO,
                                env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        return p, rc, time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for p, rc, sec in pool.map(one, presets):
            print(f"[llm.results] {p}: exit {rc} after {sec / 60:.1f} min (log {RUNS / (p + '.log')})", flush=True)
            if rc != 0:
                raise SystemExit(f"preset {p} failed; see {RUNS / (p + '.log')}")


def collect(presets: list[str]) -> None:
    """Copy each finished run's metrics (trimmed), config and provenance into results/tiny_world/<preset>/."""
    for p in presets:
        src = RUNS / p
        if not (src / "provenance.json").exists():
            raise SystemExit(f"no finished run at {src}; run `python -m llm.results run --presets {p}` first")
        rows = []
        for r in read_jsonl(src / "metrics.jsonl"):
            if r.get("type") == "track" and r.get("step") != 0:
                r = {k: v for k, v in r.items() if not isinstance(v, list)}
            rows.append(r)
        dst = stored_dir(p)
        dst.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(dst / "metrics.jsonl", rows)
        shutil.copyfile(src / "config.yaml", dst / "config.yaml")
        shutil.copyfile(src / "provenance.json", dst / "provenance.json")
        seconds = {str(d.parent.relative_to(src)): json.loads(d.read_text()).get("seconds", {})
                   for d in sorted(src.rglob("DONE.json"))}
        atomic_write_text(dst / "seconds.json", json.dumps(seconds, indent=1, sort_keys=True) + "\n")
        print(f"[llm.results] collected {p} ({len(rows)} rows) → {dst}")


def _dose_summary(track_rows: list[dict], eval_rows: list[dict], arms: list[str], key: str) -> str:
    """The default's design checks: end-of-run KL spread and the worst arm's end value per seed."""
    ends: dict[tuple, tuple] = {}
    for r in track_rows:
        k = (r["seed"], r["arm"], r["kind"])
        if k not in ends or r["step"] > ends[k][0]:
            ends[k] = (r["step"], r["kl"], r.get(key))
    if not ends:
        return ""
    kls = [e[1] for e in ends.values()]
    seeds = sorted({s for s, _, _ in ends})
    worst = [min(ends[(s, a, kind)][2] for (s2, a, kind) in ends if s2 == s) for s in seeds]
    inside = sum(0.1 <= w <= 0.7 for w in worst)
    return (f"Dose: end-of-run KL to the aligned model {min(kls):.1f}–{max(kls):.1f} nats over all seeds and arms "
            f"(ratio {max(kls) / max(min(kls), 1e-12):.2f}); the worst arm's end value lies in [0.1, 0.7] in "
            f"{inside}/{len(seeds)} seeds.")


def _seed_list_spread(reading: dict, arms: list[str], block: int = 16) -> str:
    """The middle-grid paired difference (second arm − first) on disjoint seed lists of ``block`` seeds: how much
    a `make run`-sized study moves between seed lists (each list is what a separate run with those seeds gives:
    the runs are deterministic per seed and share the base)."""
    from theory.stats import mean_ci

    if len(arms) < 2:
        return ""
    out = []
    for kind, r in reading.items():
        seeds = sorted(set(r["values"][arms[0]]) & set(r["values"][arms[1]]))
        if len(seeds) < 2 * block or not r["grid"]:
            continue
        j = len(r["grid"]) // 2
        cells = []
        for b in range(len(seeds) // block):
            chunk = seeds[b * block:(b + 1) * block]
            diffs = [r["values"][arms[1]][s][j] - r["values"][arms[0]][s][j] for s in chunk
                     if r["values"][arms[1]][s][j] is not None and r["values"][arms[0]][s][j] is not None]
            cells.append(f"seeds {chunk[0]}–{chunk[-1]}: {mean_ci(diffs)} (n={len(diffs)})")
        out.append(f"Spread over seed lists ({kind}, {arms[1]} − {arms[0]} at KL {r['grid'][j]:.3g}): " + "; ".join(cells) + ".")
    return "\n".join(out)


def _answer(reading: dict, arms: list[str]) -> str:
    """The question answered in one sentence per kind and arm, from the middle grid point's paired interval."""
    from theory.stats import mean_ci

    out = []
    for kind, r in reading.items():
        if not r["grid"] or len(arms) < 2:
            continue
        j = len(r["grid"]) // 2
        ref = arms[0]
        for a in arms[1:]:
            common = sorted(set(r["values"][a]) & set(r["values"][ref]))
            d = [r["values"][a][s][j] - r["values"][ref][s][j] for s in common
                 if r["values"][a][s][j] is not None and r["values"][ref][s][j] is not None]
            ci = mean_ci(d)
            if ci.n < 2:
                continue
            lo, hi = ci.mean - ci.half_width, ci.mean + ci.half_width
            verdict = (f"{a} keeps more than {ref}" if lo > 0 else f"{a} keeps less than {ref}" if hi < 0
                       else f"no difference resolved (the interval includes 0; half-width {ci.half_width:.3f})")
            out.append(f"**Answer ({kind}, {a} − {ref} at KL {r['grid'][j]:.3g}, the middle grid point): "
                       f"{ci.mean:+.3f} ± {ci.half_width:.3f} over {ci.n} seeds — {verdict}.**")
    return "\n\n".join(out)


def render_preset(name: str) -> str:
    """The README block of one stored preset: question, command, provenance, matched-KL and end-of-run tables."""
    from llm import report as R
    from llm.config import load_config

    d = RESULTS / name
    prov = json.loads((d / "provenance.json").read_text())
    rows = read_jsonl(d / "metrics.jsonl")
    cfg = load_config(str(d / "config.yaml"))
    eval_rows = [r for r in rows if r.get("type") == "eval"]
    track_rows = [r for r in rows if r.get("type") == "track"]
    arms = [a.name for a in cfg.align.arms]
    from llm.config import downstream_jobs

    kinds = [lab for _, _, lab in downstream_jobs(cfg)]
    key, _ = R.track_key_for(cfg.align.reward, track_rows)
    label = R.TRACK_LABELS.get(key, key)
    reading = R.matched_kl(track_rows, arms, kinds, key, list(cfg.downstream.kl_grid))
    align_table, matched = R.alignment_match_table(eval_rows, arms)
    headline = R.headline_metric(cfg.align.reward, eval_rows)
    seeds = sorted({r["seed"] for r in eval_rows if r.get("stage") == "aligned"})
    parts = [
        f"#### `{name}` — {QUESTIONS.get(name, '')}",
        "",
        f"`{prov['command']}` · commit `{prov['commit'][:12]}` · {len(seeds)} seeds · "
        f"{prov['wall_s'] / 60:.1f} min of stage time, {prov.get('wall_s_this_invocation', prov['wall_s']) / 60:.1f} min "
        f"wall on the 2-core CPU machine (torch {prov['versions'].get('torch')}, "
        f"trl {prov['versions'].get('trl')})",
        "",
        R.matched_kl_table(reading, arms, label),
        "",
    ]
    answer = _answer(reading, arms)
    if answer:
        parts += [answer, ""]
    dose = _dose_summary(track_rows, eval_rows, arms, key)
    if dose:
        parts += [dose, ""]
    spread = _seed_list_spread(reading, arms, block=16)
    if spread:
        parts += [spread, ""]
    parts += ["Alignment dose (KL to the base): " + ("matched within 20%." if matched else "**not matched** (> 20%)."),
              "", align_table, "", "End of run:", "", R.retention_table(eval_rows, arms, kinds, headline), ""]
    paired = R.paired_differences(eval_rows, arms, kinds, headline)
    if paired:
        parts += [paired, ""]
    return "\n".join(parts).rstrip()


def _wilson_half_width(p: float, n: int, z: float = 1.959963984540054) -> float:
    """Half-width of the 95% Wilson score interval of a rate p measured on n prompts."""
    denom = 1 + z * z / n
    return z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of the rate k/n (always inside [0, 1])."""
    p, z2 = k / n, 1.959963984540054 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    h = _wilson_half_width(p, n)
    return (0.0 if k == 0 else max(0.0, centre - h)), (1.0 if k == n else min(1.0, centre + h))  # exact at the edges


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 − p2 of two independent rates k1/n1, k2/n2 with Newcombe's hybrid score interval (Newcombe 1998,
    method 10: from the two Wilson intervals); returns (difference, low, high), inside [−1, 1]."""
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    d = p1 - p2
    return d, d - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5, d + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5


REAL_COLUMNS = (("eval/refusal_rate", "{harmful} refusal"), ("eval/refusal_rate_donotanswer", "Do-Not-Answer refusal"),
                ("eval/over_refusal", "over-refusal ({benign})"), ("eval/math_accuracy", "arithmetic accuracy"))


def _real_design(cfg) -> str:
    """The run's design in one paragraph, read from its stored config."""
    b, a, ds = cfg.base, cfg.align, cfg.downstream
    arms = ", ".join(f"{x.name} ({x.algo}" + (f", λ = {x.lam:g})" if x.algo == "frpo" else ")") for x in a.arms)
    warm = (f"the base is warm-started with {b.sft_steps} LoRA (r {b.sft_lora_r}) SFT steps of {b.sft_batch_size} "
            f"rows of `{b.sft_dataset}`; " if b.sft_dataset else "")
    lora = f"LoRA r {a.lora_r}" if a.lora_r else "full"
    dlora = f"LoRA r {ds.lora_r}" if ds.lora_r else "full"
    return (f"Design: `{b.model}`; {warm}arms {arms}, each {a.steps} {lora} steps of {a.prompts_per_step} prompts × "
            f"{a.num_generations} completions (≤ {a.max_completion_length} tokens, temperature {a.temperature}) on "
            f"`{a.dataset}` with reward `{'+'.join(a.reward_funcs)}`; then per downstream job ({', '.join(ds.kinds)} on "
            f"{', '.join(f'`{x}`' for x in ds.datasets)}) {ds.steps} {dlora} steps of {ds.batch_size} rows.")


def render_real(name: str) -> str:
    """The README block of a real-model run: per-seed rates of every model of the pipeline (base, aligned,
    after each downstream job), the paired second − first arm differences in refusal, and the run's cost."""
    from llm.config import downstream_jobs, load_config
    from theory.stats import mean_ci

    d = stored_dir(name)
    prov = json.loads((d / "provenance.json").read_text())
    cfg = load_config(str(d / "config.yaml"))
    rows = [r for r in read_jsonl(d / "metrics.jsonl") if r.get("type") == "eval"]
    seconds = json.loads((d / "seconds.json").read_text())
    arms = [a.name for a in cfg.align.arms]
    seeds = sorted({r["seed"] for r in rows if r["stage"] == "aligned"})
    labels = [lab for _, _, lab in downstream_jobs(cfg)]
    by = {(r["arm"], r["stage"], r["seed"]): r for r in rows}
    base_rows = [r for r in rows if r["stage"] == "base"]
    e = cfg.eval
    cols = [(k, t.format(harmful=e.harmful_dataset, benign=e.benign_dataset)) for k, t in REAL_COLUMNS]
    n_eval = e.max_prompts * e.n_samples

    def cells(arm: str, stage: str, kl_key: str) -> list[str]:
        got = [by.get((arm, stage, s)) for s in seeds]
        out = [" / ".join("—" if g is None or k not in g else f"{g[k]:.3f}" for g in got) for k, _ in cols]
        kls = [g.get(kl_key) if g else None for g in got]
        out.append(" / ".join("—" if v is None else f"{v:.2f}" for v in kls) + (" to base" if kl_key == "eval/kl_to_base"
                                                                                 else " to aligned"))
        return out

    def stage_name(label: str) -> str:
        return "downstream/" + label

    header = "| model | " + " | ".join(t for _, t in cols) + " | KL (nats) |"
    lines = [header, "|" + "---|" * (len(cols) + 2)]
    if base_rows:
        b = base_rows[0]
        shared = " (shared by every seed)" if b.get("shared") else ""
        lines.append(f"| base{shared} | " + " | ".join("—" if k not in b else f"{b[k]:.3f}" for k, _ in cols)
                     + " | — |")
    for a in arms:
        lines.append(f"| {a} aligned | " + " | ".join(cells(a, "aligned", "eval/kl_to_base")) + " |")
    for lab in labels:
        for a in arms:
            lines.append(f"| {a} → {lab} | " + " | ".join(cells(a, stage_name(lab), "eval/kl_to_aligned")) + " |")
    tr = sum(v.get("train", 0.0) for v in seconds.values())
    ev = sum(v.get("eval", 0.0) for v in seconds.values())

    def kind_seconds(pred) -> float:
        return sum(v.get("train", 0.0) for k, v in seconds.items() if pred(k))

    base_s = kind_seconds(lambda k: k.endswith("base"))
    align_s = kind_seconds(lambda k: k.endswith("/align"))
    down_s = kind_seconds(lambda k: "/downstream/" in k)
    parts = [
        f"#### `{name}` — {QUESTIONS.get(name, '')}",
        "",
        f"`{prov['command']}` · commit `{prov['commit'][:12]}` · {len(seeds)} seeds ({', '.join(map(str, seeds))}) · "
        f"{prov['wall_s'] / 60:.1f} min of stage time (base {base_s:.0f} s, align {align_s:.0f} s, downstream "
        f"{down_s:.0f} s, evaluations {ev:.0f} s; training {tr:.0f} s), "
        f"{prov.get('wall_s_this_invocation', prov['wall_s']) / 60:.1f} min wall on the 2-core CPU machine "
        f"(torch {prov['versions'].get('torch')}, trl {prov['versions'].get('trl')})",
        "",
        _real_design(cfg),
        "",
        f"Judge: `{e.judge}`; every rate is over {n_eval} prompts ({e.max_prompts} × {e.n_samples} sample, temperature "
        f"{e.temperature}, {e.max_new_tokens} new tokens) per seed: one rate's 95% Wilson interval is up to "
        f"±{_wilson_half_width(0.5, n_eval):.2f} wide. Cells are seed {' / seed '.join(map(str, seeds))}.",
        "",
        "\n".join(lines),
        "",
    ]
    if len(arms) >= 2:
        ref, other = arms[0], arms[1]
        key = "eval/refusal_rate"
        out = []
        for stage, title in [("aligned", "aligned")] + [(stage_name(lab), f"after {lab}") for lab in labels]:
            pairs = [(by[(other, stage, s)][key], by[(ref, stage, s)][key]) for s in seeds
                     if (other, stage, s) in by and (ref, stage, s) in by]
            if not pairs:
                continue
            n = n_eval * len(pairs)
            k_other = sum(round(a * n_eval) for a, _ in pairs)
            k_ref = sum(round(b * n_eval) for _, b in pairs)
            d, lo, hi = newcombe(k_other, n, k_ref, n)
            each = ", ".join(f"{a - b:+.3f}" for a, b in pairs)
            verdict = (f"resolved: {other} refuses {'more' if lo > 0 else 'less'}" if lo > 0 or hi < 0
                       else "no difference resolved")
            out.append(f"- {title}: {d:+.3f}, 95% interval [{lo:+.3f}, {hi:+.3f}] over {n} prompt samples per arm "
                       f"(seeds {each}) — {verdict}")
        parts += [f"{other} − {ref} in {e.harmful_dataset} refusal, per stage, over the seeds' samples pooled "
                  "(Newcombe's score interval for a difference of two rates; the arms' samples taken as "
                  f"independent; {len(seeds)} seeds are too few for a seed-level interval):", "", *out, ""]
    return "\n".join(parts).rstrip()


def render(presets: Optional[list[str]] = None, group: str = "tiny-world") -> str:
    """One README block: every stored preset of ``group``, in PRESETS / REAL_PRESETS order."""
    if group not in GROUPS:
        raise ValueError(f"group={group!r} is not one of {GROUPS}")
    order = REAL_PRESETS if group == "real-model" else PRESETS
    names = [p for p in (presets or order) if p in order and (stored_dir(p) / "provenance.json").exists()]
    draw = render_real if group == "real-model" else render_preset
    body = "\n\n".join(draw(p) for p in names)
    where = "results/real_model/" if group == "real-model" else "results/tiny_world/"
    cmd = "make results-real" if group == "real-model" else "make results"
    head = (f"*Generated by `{cmd}` (`python -m llm.results`) from the stored runs in `{where}`; "
            "do not edit by hand — `tests/llm/test_results.py` checks this block against them.*")
    begin, end = markers(group)
    return f"{begin}\n{head}\n\n{body}\n{end}"


def readme_block(text: str, group: str = "tiny-world") -> str:
    """The block of ``group`` between its markers in ``text`` (markers included)."""
    begin, end = markers(group)
    if begin not in text or end not in text:
        raise ValueError(f"README.md has no {group} results block; add the two lines {begin} and {end} where it "
                         "belongs")
    return text[text.index(begin): text.index(end) + len(end)]


def update_readme(path: Path = README, groups: tuple[str, ...] = GROUPS) -> None:
    text = path.read_text()
    for g in groups:
        text = text.replace(readme_block(text, g), render(group=g))
    atomic_write_text(path, text)
    print(f"[llm.results] README blocks updated: {', '.join(groups)}")


# Modules a run imports that cannot change its stored metrics: they render the report, its plot and this
# block. The README block is re-rendered from the stored metrics by today's code (and compared), so a change in
# them is caught there; theory.dro is called only by llm.matched for the plot's certified worst case.
RENDER_ONLY = ("llm.report", "llm.matched", "llm.provenance", "llm.results", "theory.dro")


def metric_modules(code: dict[str, str]) -> dict[str, str]:
    """The recorded fingerprints of the modules that can change a run's stored metrics."""
    return {m: f for m, f in code.items() if m not in RENDER_ONLY}


def recorded_code(prov: dict) -> dict[str, str]:
    """``prov["code"]`` with the entry point ``llm.run``: runs recorded before the entry point was fingerprinted
    (it runs as ``__main__``) get it from their commit (clean at run time: "+dirty" came from other files)."""
    from llm.provenance import fingerprint_source, source_at

    code = dict(prov["code"])
    if "llm.run" not in code:
        code["llm.run"] = fingerprint_source(source_at(prov["commit"], "llm.run"))
    return code


def check() -> list[str]:
    """Problems that make the README's numbers untrustworthy (empty = none)."""
    from llm.provenance import stale_modules

    problems = []
    text = README.read_text()
    for g in GROUPS:
        if readme_block(text, g) != render(group=g):
            problems.append(f"the README's {g} results block differs from `python -m llm.results render`; run "
                            "`python -m llm.results update-readme`")
    for d in stored_provenances():
        stale = stale_modules(metric_modules(recorded_code(json.loads(d.read_text()))))
        if stale:
            cmd = "make results-real" if d.parent.name in REAL_PRESETS else "make results"
            problems.append(f"{d.parent.name}: produced by other code than today's ({', '.join(sorted(stale))} "
                            f"changed); rerun `{cmd}`")
    return problems


def stored_provenances() -> list[Path]:
    """The provenance file of every stored preset, both groups."""
    return sorted(RESULTS.glob("*/provenance.json")) + sorted(REAL_RESULTS.glob("*/provenance.json"))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm.results", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("all", "run", "collect", "render", "update-readme", "check"))
    p.add_argument("--presets", nargs="*", default=list(PRESETS), choices=PRESETS + REAL_PRESETS,
                   help=f"default: the tiny-world presets; the real-model one: {' '.join(REAL_PRESETS)}")
    p.add_argument("--jobs", type=int, default=2, help="presets run at a time (one CPU thread each)")
    args = p.parse_args(argv)
    if args.action in ("all", "run"):
        run_presets(args.presets, args.jobs)
    if args.action in ("all", "collect"):
        collect(args.presets)
    if args.action == "all":
        update_readme(groups=tuple(sorted({group_of(p) for p in args.presets})))
    if args.action == "update-readme":
        update_readme()
    if args.action == "render":
        for g in GROUPS:
            print(render(group=g))
    if args.action == "check":
        problems = check()
        for msg in problems:
            print(f"stale: {msg}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
