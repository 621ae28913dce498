"""The README's tiny-world results, produced from runs of the final code — never typed by hand.

    make results                               # = python -m llm.results all: run, collect, update README
    python -m llm.results run --presets default lambda_sweep --jobs 2
    python -m llm.results collect              # runs/results/<preset> → results/tiny_world/<preset>/
    python -m llm.results update-readme        # rewrite the README block between the markers
    python -m llm.results check                # the README block equals the stored results and the code
                                               # fingerprints equal the code that produced them

``collect`` stores, per preset, the run's ``metrics.jsonl`` (eval rows, and tracker rows without the
per-prompt lists except at step 0), ``config.yaml`` and ``provenance.json`` (command, commit, versions,
a fingerprint of every project module the run imported; :mod:`llm.provenance`). The block in README.md
between ``<!-- results:tiny-world:begin -->`` and ``<!-- results:tiny-world:end -->`` is
:func:`render` of those files; ``tests/llm/test_results.py`` fails when the two differ or when a module
that produced them has changed since (then run ``make results``).
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
RUNS = REPO / "runs" / "results"
README = REPO / "README.md"
BEGIN, END = "<!-- results:tiny-world:begin -->", "<!-- results:tiny-world:end -->"
PRESETS = ("default", "power", "lambda_sweep", "rlvr_vs_sft", "math", "csft_attacks", "all_downstream")
QUESTIONS = {
    "default": "After benign affirmative SFT, does FRPO (λ=0.2) keep more refusal than GRPO at the same KL?",
    "power": "The default's question on two seed lists (32 seeds): does the answer move between seed lists?",
    "lambda_sweep": "How does the retained refusal at matched KL depend on FRPO's λ?",
    "csft_attacks": "Do CSFT and CSFT+PA keep refusal under the three fine-tuning attacks (fixed 60 steps)?",
    "all_downstream": "Which downstream methods erode refusal, and does FRPO keep more under each?",
    "rlvr_vs_sft": "Does RL with a verifiable reward downstream keep refusal where SFT on the same prompts does not?",
    "math": "After instruction SFT, does FRPO (λ=2) keep more arithmetic than GRPO at the same KL?",
}


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
        dst = RESULTS / p
        dst.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(dst / "metrics.jsonl", rows)
        shutil.copyfile(src / "config.yaml", dst / "config.yaml")
        shutil.copyfile(src / "provenance.json", dst / "provenance.json")
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
    headline = R.HEADLINE[cfg.align.reward]
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


def render(presets: Optional[list[str]] = None) -> str:
    """The whole README block (every stored preset, in PRESETS order)."""
    names = [p for p in (presets or PRESETS) if (RESULTS / p / "provenance.json").exists()]
    body = "\n\n".join(render_preset(p) for p in names)
    head = ("*Generated by `make results` (`python -m llm.results`) from the stored runs in `results/tiny_world/`; "
            "do not edit by hand — `tests/llm/test_results.py` checks this block against them.*")
    return f"{BEGIN}\n{head}\n\n{body}\n{END}"


def readme_block(text: str) -> str:
    """The block between the markers in ``text`` (markers included)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no results block; add the two lines {BEGIN} and {END} where it belongs")
    return text[text.index(BEGIN): text.index(END) + len(END)]


def update_readme(path: Path = README) -> None:
    text = path.read_text()
    atomic_write_text(path, text.replace(readme_block(text), render()))
    print(f"[llm.results] README block updated from {RESULTS}")


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
    if readme_block(README.read_text()) != render():
        problems.append("the README's results block differs from `python -m llm.results render`; run "
                        "`python -m llm.results update-readme`")
    for d in sorted(RESULTS.glob("*/provenance.json")):
        stale = stale_modules(metric_modules(recorded_code(json.loads(d.read_text()))))
        if stale:
            problems.append(f"{d.parent.name}: produced by other code than today's ({', '.join(sorted(stale))} "
                            "changed); rerun `make results`")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm.results", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("all", "run", "collect", "render", "update-readme", "check"))
    p.add_argument("--presets", nargs="*", default=list(PRESETS), choices=PRESETS)
    p.add_argument("--jobs", type=int, default=2, help="presets run at a time (one CPU thread each)")
    args = p.parse_args(argv)
    if args.action in ("all", "run"):
        run_presets(args.presets, args.jobs)
    if args.action in ("all", "collect"):
        collect(args.presets)
    if args.action in ("all", "update-readme"):
        update_readme()
    if args.action == "render":
        print(render())
    if args.action == "check":
        problems = check()
        for msg in problems:
            print(f"stale: {msg}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
