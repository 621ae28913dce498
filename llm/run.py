"""The forgetting pipeline: align → fine-tune downstream → evaluate retention, arms × seeds.

Laptop CPU, the embedded tiny world (no hub, no GPU; what ``make run`` does)::

    python -m llm.run                                   # GRPO vs FRPO → SFT on arithmetic → matched-KL report, 16 seeds
    python -m llm.run --preset lambda_sweep seeds=[0,1,2]
    python -m llm.run --config my.yaml align.steps=40 downstream.kinds=[sft,csft_pa]
    python -m llm.run --config qwen25_7b_safety_frpo --dry-run     # a 7B recipe on the tiny model, 1-2 steps

8 GPUs, a 7B recipe (docs/recipes.md; fill the recipe's placeholder paths first)::

    accelerate launch --config_file llm/configs/accelerate/zero2.yaml -m llm.run --config qwen25_7b_safety_frpo

Stages (each resumable; the same command again skips finished stages and resumes an interrupted
trainer stage from its last checkpoint):
  1. base        build + pretrain the tiny world's base policy, or use ``base.model`` (hub id / path / asset
                 name) as is, or warm-start it (``base.sft_dataset``); a tiny or warm-started base is shared
                 by every seed (``base.seed``)
  2. align       every arm of ``align.arms`` (GRPO / FRPO λ / none) from the base
  3. downstream  every (kind, dataset) of ``downstream`` from every aligned model, with the tracking
                 callback (KL to the aligned model, retained reward)
  4. eval        held-out refusal, harmfulness, over-refusal, math accuracy, KL — after each stage
Run directory ``<output_dir>/<run_name>/``: ``config.yaml`` (resolved), ``seed<k>/...`` stage
directories with ``model/`` and ``DONE.json`` (its metrics, times and, with ``eval.samples``, sample
completions), ``metrics.jsonl`` (metric rows only), ``report.md``, ``*.png``.

Under ``accelerate launch`` every process runs every stage (the trainers need all ranks) and the
evaluation is sharded over processes; only the main process writes ``config.yaml``, ``DONE.json``,
saved models, ``metrics.jsonl`` and the report, with barriers between stages. Whether a stage is
done is decided by the main process and broadcast, so all processes take the same branch.

Longer than ~400 lines because the stage loop keeps its resume, broadcast and timing logic in one place
(``run``); the CLI and launch checks (``main``, ``_check_launch``) stay beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from llm.config import (ConfigError, RunConfig, downstream_for, downstream_jobs, dump_config, load_config,
                        shared_base_seed)
from llm.dist import Dist
from llm.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from llm.preflight import check_specs, load_accelerate_config

if TYPE_CHECKING:
    from llm.runtime import Runtime

PRESETS = ("default", "power", "lambda_sweep", "all_downstream", "csft_attacks", "rlvr_vs_sft", "math", "smollm2_safety")


class Stage:
    """A resumable unit of work with a directory; ``DONE.json`` (written last, atomically) marks it finished."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        self.done_file = directory / "DONE.json"

    @property
    def done(self) -> bool:
        return self.done_file.exists()

    def result(self) -> dict:
        return json.loads(self.done_file.read_text())

    def finish(self, result: dict) -> dict:
        atomic_write_json(self.done_file, result)
        return result


def needs_world(cfg: RunConfig) -> bool:
    """The tiny world is built for the tiny base, or when any dataset spec names one of its splits."""
    specs = [cfg.align.dataset, *cfg.downstream.datasets, cfg.eval.harmful_dataset, cfg.eval.benign_dataset,
             cfg.eval.math_dataset, *cfg.eval.variants.values()]
    return cfg.base.model == "tiny-world" or any(s.startswith("tiny-world:") for s in specs)


def _tracker_factory(cfg: RunConfig, sets, dataset: str, seed: int, jsonl: Path, rt: Runtime):
    """``make(tokenizer) -> DownstreamTracker`` on the family's probe set, or None when there is none.

    The task metric: on the tiny world's safety runs the exact first-token refusal probability per probe;
    on math runs the greedy math accuracy on the math eval set (all of it on the tiny world, the first
    ``probe_prompts`` problems of a dataset spec: a 500-problem benchmark at every tracking step would cost
    more than the fine-tuning).
    """
    from llm.callbacks import DownstreamTracker
    from llm.evaluation import greedy_accuracy, probe_rows
    from llm.stages import reward_functions

    d = downstream_for(cfg, dataset)
    probes = probe_rows(cfg, sets, d.probe_prompts)
    if not probes:
        return None
    family = cfg.align.reward
    funcs = reward_functions(cfg, cfg.align.reward_funcs, family, rt, cfg.align.helpfulness)
    rewards = {family: funcs[0], **{getattr(f, "__name__", type(f).__name__): f for f in funcs[1:]}}
    columns = {c: [r.get(c) for r in probes] for c in ("kind", "answer") if any(c in r for r in probes)}
    # the task metric of a math run (a safety run's arithmetic is evaluated after the stage; tracking it at
    # every step would cost as much as the tracking itself)
    math_rows = [] if family == "safety" else (sets.math.rows if sets.math.tiny
                                               else sets.math.rows[: d.probe_prompts])

    # the tiny world's refusal is decided by the first response token: track its exact probability per probe
    # (no sampling noise; the matched-KL headline and the KL-DRO curve read it)
    refusal_rows = probes if family == "safety" and sets.harmful.tiny else []

    def task_metric(model, tok):
        out: dict = {}
        if refusal_rows:
            from llm.world_eval import first_token_probs

            sorry = tok.convert_tokens_to_ids("sorry")
            per = first_token_probs(model, tok, [r["prompt"] for r in refusal_rows])[:, sorry].tolist()
            out.update(refusal_prob=sum(per) / len(per), refusal_prob_per_prompt=per)
        if not math_rows:
            return out
        if sets.math.tiny and next(model.parameters()).device.type == "cpu":
            from llm.world_eval import math_accuracy

            out["math_accuracy"] = math_accuracy(model, tok, math_rows)
            return out
        out["math_accuracy"] = greedy_accuracy(model, tok, math_rows, sets.math.tiny, cfg.eval.max_new_tokens,
                                               cfg.eval.batch_size)
        return out

    def make(tok):
        return DownstreamTracker([r["prompt"] for r in probes], every=d.track_every, num_samples=d.probe_samples,
                                 max_new_tokens=cfg.align.max_completion_length, reward_funcs=rewards,
                                 probe_columns=columns, task_metric=task_metric, jsonl_path=str(jsonl), seed=seed,
                                 tokenizer=tok, kl_estimator=d.kl_estimator, stop_kl=d.stop_kl, per_prompt=True)

    return make


def _align_tracker_factory(cfg: RunConfig, sets, seed: int, jsonl: Path, *, every: int, stop_kl: float):
    """``make(tokenizer)``: a tracker of the KL to the base during alignment (align.match_kl), or None."""
    from llm.callbacks import DownstreamTracker
    from llm.evaluation import probe_rows

    d = cfg.downstream
    probes = probe_rows(cfg, sets, d.probe_prompts)
    if not probes:
        return None

    def make(tok):
        return DownstreamTracker([r["prompt"] for r in probes], every=every, num_samples=d.probe_samples,
                                 max_new_tokens=cfg.align.max_completion_length, jsonl_path=str(jsonl), seed=seed,
                                 tokenizer=tok, kl_estimator=d.kl_estimator, stop_kl=stop_kl)

    return make


def _last_tracked_kl(jsonl: Path) -> Optional[float]:
    rows = [r for r in read_jsonl(jsonl) if "kl" in r]
    return max(rows, key=lambda r: r["step"])["kl"] if rows else None


def _check_launch(cfg: RunConfig, dist, rt: Runtime, log) -> None:
    """Warn when a GPU run is launched under another distributed type than its accelerate_config says."""
    if not cfg.accelerate_config or rt.use_cpu:
        return
    expected = load_accelerate_config(cfg.accelerate_config)["distributed_type"]
    if dist.distributed_type != expected:
        log(f"warning: accelerate_config={cfg.accelerate_config!r} expects {expected}, but this process runs "
            f"under {dist.distributed_type}; launch with `accelerate launch --config_file "
            f"llm/configs/accelerate/{cfg.accelerate_config}.yaml -m llm.run ...`")


def run(cfg: RunConfig, *, config_source: str = "defaults", overwrite: bool = False,
        save_every: Optional[int] = None, dist: Optional[Dist] = None, command: str = "") -> Path:
    """Run (or resume) every stage of ``cfg`` on every process; returns the run directory."""
    import torch

    from llm.evaluation import eval_sets, evaluate, variants_for
    from llm.memfix import remove_checkpoints
    from llm.judges import release_judges
    from llm.runtime import resolve_runtime
    from llm.stages import get_reward_cached, nan_free, preflight_data, stage_align, stage_base, stage_downstream
    from llm.trainkit import free_memory, load_model
    from llm.world import WorldConfig, build_world

    check_specs(cfg)  # a placeholder path of a recipe fails here, before any training
    # device, bf16 and dtype, decided once (bf16=true on the CPU, device=cuda without a GPU fail here too) and
    # passed to the stages; the Dist is created here when none is given
    rt, dist = resolve_runtime(cfg, dist)

    def log(msg: str) -> None:
        if dist.is_main:
            print(f"[llm.run] {msg}", flush=True)

    _check_launch(cfg, dist, rt, log)
    run_dir = Path(cfg.output_dir) / cfg.run_name
    resolved = dump_config(cfg)
    cfg_file = run_dir / "config.yaml"
    differs = dist.broadcast(cfg_file.exists() and cfg_file.read_text() != resolved)  # the main process decides
    if differs and not overwrite:
        raise ConfigError(f"{run_dir} holds a run with a different config; resume it with the same config, "
                          "choose another run_name=..., or pass --overwrite to redo the stages whose config changed")
    if dist.is_main:
        if differs:  # only the stages whose config changed are removed (llm.overwrite)
            from llm.overwrite import limited_overwrite

            limited_overwrite(run_dir, cfg, log)
        atomic_write_text(cfg_file, resolved)
    dist.barrier()

    world = build_world(WorldConfig(**cfg.world)) if needs_world(cfg) else None
    with dist.main_first():  # the main process fetches hub data first; the others read the cache
        try:
            sets = eval_sets(cfg, world)
            if dist.is_main:
                preflight_data(cfg, world)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(str(exc)) from None
    if not (sets.harmful.rows or sets.benign.rows or sets.math.rows):
        log("warning: no eval set (eval.harmful_dataset / benign_dataset / math_dataset are 'none', or 'auto' "
            "on a model other than the tiny world's): the evaluations will be empty")

    def judge():
        """eval.judge's harmfulness judge, loaded on first use (shared with an align reward of the same spec)."""
        helper = cfg.align.helpfulness if cfg.eval.judge in cfg.align.reward_funcs else ""
        return getattr(get_reward_cached(cfg.eval.judge, cfg, rt, helper), "judge", None)

    tiny_base = cfg.base.model == "tiny-world"
    dev = torch.device("cpu") if tiny_base else rt.device
    dtype = None if tiny_base else rt.dtype
    arms = [a.name for a in cfg.align.arms]
    jobs = downstream_jobs(cfg)
    timings: dict[str, float] = {}
    eval_rows: list[dict] = []
    sample_rows: list[dict] = []  # eval.samples: the stages' sample completions, for the report only
    t_all = time.perf_counter()

    def measure(path: str, seed: int, ref_path: Optional[str] = None, ref_name: str = "aligned",
                dataset: Optional[str] = None) -> tuple[dict, dict]:
        """(metrics, samples) of the model at ``path``; samples: {set: [...]} (eval.samples, else empty)."""
        model, tok = load_model(path, dev, dtype)
        # algo "none": the aligned model is the base, KL to it is 0 by definition and not estimated
        ref = load_model(ref_path, dev, dtype)[0] if ref_path is not None and ref_path != path else None
        spec_sets = [x for x in (sets.harmful, *sets.variants.values()) if x.rows and not x.tiny]
        samples: dict = {}
        out = evaluate(cfg, sets, model, tok, seed=seed, dist=dist, ref_model=ref, ref_name=ref_name,
                       variants=variants_for(sets, dataset), judge=judge() if spec_sets else None,
                       samples_out=samples)
        del model, ref
        free_memory()
        if cfg.eval.benchmarks:  # MATH500 / MBPP+ through lm-eval / evalplus (llm.standard_evals), main process
            from llm.standard_evals import run_benchmarks

            if dist.is_main:
                out.update({f"eval/{k.replace('/', '_')}": v for k, v in run_benchmarks(cfg, path).items()})
            dist.barrier()
        return nan_free(out), samples

    def run_stage(st: Stage, train, evaluate_fn, row: dict) -> None:
        """Train + evaluate ``st`` unless the main process says it is done; main writes DONE.json."""
        kind = row["stage"].split("/")[0] if row["stage"] != "aligned" else "align"
        if dist.broadcast(st.done):  # the main process's view wins (a shared filesystem may lag)
            log(f"skip {st.name} (done)")
        else:
            log(f"run  {st.name}")
            t0 = time.perf_counter()
            path = train()
            t1 = time.perf_counter()
            metrics, samples = evaluate_fn(path)
            seconds = {"train": t1 - t0, "eval": time.perf_counter() - t1}
            if dist.is_main:  # samples (eval.samples > 0) beside the metrics, never in them
                st.finish({"model": path, "metrics": metrics, "seconds": seconds,
                           **({"samples": samples} if samples else {})})
                remove_checkpoints(st.dir, cfg.keep_checkpoints)  # DONE: its ckpt/ is never resumed from
            dist.barrier()
            release_judges()  # the next stage loads the judges it uses
        if dist.is_main:
            result = st.result()
            eval_rows.append({**row, **result["metrics"]})
            sample_rows.extend({**row, "set": name, **x} for name, xs in result.get("samples", {}).items()
                               for x in xs)
            # the stage's own times, stored when it ran: a resumed rerun reports the real cost, not 0
            spent = result.get("seconds", {})
            timings[kind] = timings.get(kind, 0.0) + spent.get("train", 0.0)
            timings["eval"] = timings.get("eval", 0.0) + spent.get("eval", 0.0)

    shared = shared_base_seed(cfg)
    if shared is not None:
        base = Stage(run_dir / "base", "base")
        torch.manual_seed(shared)
        run_stage(base, lambda: stage_base(cfg, world, shared, base.dir / "model", dist, rt),
                  lambda path: measure(path, shared),
                  {"type": "eval", "seed": shared, "arm": "base", "stage": "base", "shared": True})
    for seed in cfg.seeds:
        sdir = run_dir / f"seed{seed}"
        torch.manual_seed(seed)
        if shared is None:
            base = Stage(sdir / "base", f"seed{seed}/base")
            run_stage(base, lambda: stage_base(cfg, world, seed, base.dir / "model", dist, rt),
                      lambda path: measure(path, seed), {"type": "eval", "seed": seed, "arm": "base", "stage": "base"})
        # what the base stage returned: the tiny world's model, a real model's warm start or its resolved folder
        base_path = dist.broadcast(base.result()["model"] if dist.is_main else None)
        match_target: Optional[float] = None
        for i, arm in enumerate(cfg.align.arms):
            st = Stage(sdir / arm.name / "align", f"seed{seed}/{arm.name}/align")
            aligned_path = base_path if arm.algo == "none" else str(st.dir / "model")
            tracker, steps = None, None
            a = cfg.align
            if a.match_kl and arm.algo != "none":
                if i == 0:  # the reference dose: track the first arm's KL to the base at its end
                    tracker = _align_tracker_factory(cfg, sets, seed, st.dir / "track.jsonl", every=a.steps,
                                                     stop_kl=0.0)
                elif match_target is not None:
                    tracker = _align_tracker_factory(cfg, sets, seed, st.dir / "track.jsonl", every=a.match_every,
                                                     stop_kl=match_target)
                    steps = a.match_max_steps or 3 * a.steps
            run_stage(st, lambda: stage_align(cfg, world, arm, seed, base_path, st.dir, save_every, dist, rt,
                                              tracker_factory=tracker, steps=steps),
                      lambda path: measure(path, seed, base_path, "base"),
                      {"type": "eval", "seed": seed, "arm": arm.name, "stage": "aligned"})
            if a.match_kl and i == 0 and dist.is_main:
                match_target = _last_tracked_kl(st.dir / "track.jsonl")
            match_target = dist.broadcast(match_target) if a.match_kl else None
            for kind, ds, label in jobs:
                ds_dir = sdir / arm.name / "downstream" / label.replace("@", "_")
                dst = Stage(ds_dir, f"seed{seed}/{arm.name}/downstream/{label}")
                run_stage(dst, lambda: stage_downstream(
                              cfg, world, kind, ds, seed, aligned_path, ds_dir, save_every,
                              _tracker_factory(cfg, sets, ds, seed, ds_dir / "track.jsonl", rt), dist, rt),
                          lambda path: measure(path, seed, aligned_path, "aligned", ds),
                          {"type": "eval", "seed": seed, "arm": arm.name, "stage": f"downstream/{label}"})
    timings["total (all stages, as run)"] = sum(timings.values())
    timings["wall time of this invocation"] = time.perf_counter() - t_all
    if dist.is_main:
        track_rows = _collect_tracks(run_dir, cfg, jobs)
        atomic_write_jsonl(run_dir / "metrics.jsonl", eval_rows + track_rows)
        from llm.report import write_report

        table = write_report(run_dir, title=f"Forgetting report: {cfg.run_name}", config_text=resolved, arms=arms,
                             kinds=[lab for _, _, lab in jobs], reward=cfg.align.reward, eval_rows=eval_rows,
                             track_rows=track_rows, timings=timings, kl_grid=list(cfg.downstream.kl_grid),
                             kl_estimator=cfg.downstream.kl_estimator, judge=cfg.eval.judge,
                             tiny=sets.harmful.tiny, samples=sample_rows)
        from llm.provenance import provenance

        record = provenance(command or f"python -m llm.run --config {config_source}",
                            timings["total (all stages, as run)"])
        record["wall_s_this_invocation"] = round(timings["wall time of this invocation"], 1)
        atomic_write_json(run_dir / "provenance.json", record)
        print()
        print(table)
        print()
    log(f"config from {config_source}; report: {run_dir / 'report.md'}")
    log(f"run directory: {run_dir}")
    dist.barrier()
    return run_dir


def _collect_tracks(run_dir: Path, cfg: RunConfig, jobs) -> list[dict]:
    """Tracker rows of every downstream stage, de-duplicated by step (a resumed stage re-logs its start)."""
    rows = []
    for seed in cfg.seeds:
        for arm in cfg.align.arms:
            for _, _, label in jobs:
                path = run_dir / f"seed{seed}" / arm.name / "downstream" / label.replace("@", "_") / "track.jsonl"
                by_step = {r["step"]: r for r in read_jsonl(path) if "step" in r}
                for step in sorted(by_step):
                    r = by_step[step]
                    rows.append({"type": "track", "seed": seed, "arm": arm.name, "kind": label, **r})
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The forgetting pipeline: align (GRPO/FRPO) → downstream fine-tuning → eval.",
        epilog="Overrides: section.key=value (YAML values), e.g. seeds=[0,1,2] align.steps=40 "
               "align.arms.1.lam=0.5 downstream.kinds=[sft,csft_pa]. Bundled configs and presets live in "
               "llm/configs/, the paper-scale recipes in llm/configs/recipes/ (docs/recipes.md).")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied after the config file")
    p.add_argument("--config", default=None, help="YAML config file, or the name of a bundled config or recipe")
    p.add_argument("--preset", default=None, choices=PRESETS, help="a bundled study (same as --config <name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="run the config end to end on the tiny model and tiny-world data with the smallest budget "
                        "(1 seed, 1 step per stage; models, datasets and judges substituted, every other key kept); "
                        "prints the substitutions")
    p.add_argument("--overwrite", action="store_true",
                   help="when the run directory holds another config: remove the stages whose config changed "
                        "(and those the new config lacks), keep the others, instead of refusing")
    p.add_argument("--save-every", type=int, default=None,
                   help="checkpoint period (steps) of trainer stages; default: a quarter of the stage")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--gpu-memory", type=float, default=80.0, metavar="GB",
                   help="--dry-run: per-GPU memory the recipe's plan must fit (default 80); the plan of every stage "
                        "is printed and a stage over it stops the dry run")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config and args.preset:
        print("error: give --config or --preset, not both", file=sys.stderr)
        return 2
    source = args.config or args.preset or "default"
    try:
        cfg = load_config(source, args.overrides)
        if args.dry_run:
            from llm.dryrun import dry_run_config, format_substitutions, prepare_assets

            cfg, subs = dry_run_config(cfg, gpu_memory=args.gpu_memory)  # prints the memory plan, refuses misfits
        if args.print_config:
            print(dump_config(cfg), end="")
            return 0
        if args.dry_run:
            import torch

            # tiny models on the CPU: intra-op threads cost far more than they gain (~5x here, loaded 2 cores)
            torch.set_num_threads(1)
            dist = Dist(cpu=True, timeout_s=cfg.ddp_timeout)
            if dist.is_main:
                print(format_substitutions(subs), flush=True)
                prepare_assets(cfg)
            dist.barrier()
        run(cfg, config_source=source + (" (dry run)" if args.dry_run else ""), overwrite=args.overwrite,
            save_every=args.save_every,
            command=" ".join(["python -m llm.run", *(argv if argv is not None else sys.argv[1:])]))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
