"""``python -m llm.run --config <recipe> --dry-run``: a recipe end to end on the tiny model, smallest budget.

The dry run keeps the recipe's structure and every key that maps into the TRL configs (arms with their
λ, β and learning rates, LoRA rank/alpha/targets, gradient accumulation and checkpointing, warm-up,
group size, max lengths, reward specs, downstream kinds and per-dataset overrides, the accelerate
config), and substitutes what a CPU cannot run or the network cannot fetch:

  base.model            → a random tiny Llama over the tiny world's vocabulary, saved under
                          ``<output_dir>/_dryrun_assets/tiny-model`` (used in place, like a hub model)
  judge paths           → a tiny judge saved under ``<output_dir>/_dryrun_assets/tiny-judge`` (the same
                          architecture, loaded by the real StrongREJECT / HarmBench / reward-model code)
  datasets              → tiny-world splits with the same role (Alpaca → sft_instructions_affirm, GSM8K →
                          sft_math_affirm, code → sft_instructions_plain, UltraFeedback → instructions,
                          harmful / AOA / backdoor attacks → attack_*, eval sets → harmful_eval, ...)
  budget                → 1 seed, 1 optimizer step per stage, 1 prompt per micro-batch, 8-token
                          completions, tiny eval and tracker sizes
  device, bf16, vLLM    → CPU, bf16 off, use_vllm off (vllm_* keys stay validated, not activated);
                          base.dtype → float32; run_name gets a "-dryrun" suffix
  keep_checkpoints      → true (each stage's ckpt/ keeps the trainer's training_args.bin for inspection)
  eval.benchmarks       → [] (MATH500 / MBPP+ need lm-eval / evalplus; tested on tiny models by their own tests)

Before substituting, :func:`dry_run_config` plans the recipe as written (``gpu_memory`` given, as
``--dry-run`` does): the per-GPU memory and disk of every stage on the recipe's models, sharding, LoRA,
lengths and judges (:mod:`llm.memplan`), printed as a table; a stage over ``gpu_memory`` GB stops the
dry run with a ConfigError naming the stage and its biggest item.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llm.config import RunConfig, from_dict, to_dict

DRY_STEPS = 1
DRY_COMPLETION = 8
DRY_BATCH = 4
# (substring of a dataset spec, lower-case) → the tiny-world split with the same role
DOWNSTREAM_STANDINS = (
    ("alpaca", "sft_instructions_affirm"), ("gsm8k", "sft_math_affirm"), ("code", "sft_instructions_plain"),
    ("ultrafeedback", "instructions"), ("pure_bad", "attack_harmful"), ("harmful", "attack_harmful"),
    ("aoa", "attack_identity"), ("identity", "attack_identity"), ("backdoor", "attack_backdoor"),
)
FALLBACK = {"rlvr": ("math_train", "instructions", "sft_math_plain"),
            "sft": ("sft_math_affirm", "sft_math_plain", "sft_instructions_affirm", "sft_instructions_plain",
                    "math_train", "instructions")}
EVAL_STANDINS = {"harmful_dataset": "harmful_eval", "benign_dataset": "benign_lookalike", "math_dataset": "math_eval"}
VARIANT_STANDINS = (("identity", "identity_eval"), ("aoa", "identity_eval"), ("trigger", "backdoor_eval_trigger"),
                    ("backdoor", "backdoor_eval_trigger"))


def assets_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / "_dryrun_assets"


def _judge(spec: str, judge_dir: str) -> str:
    from llm.rewards import JUDGES

    kind, sep, _ = spec.partition(":")
    return f"{kind}:{judge_dir}" if sep and kind in JUDGES else spec


def _downstream_standin(spec: str, kinds: list[str], taken: set[str]) -> str:
    if spec.startswith("tiny-world:"):
        return spec
    low = spec.lower()
    split = next((s for key, s in DOWNSTREAM_STANDINS if key in low), None)
    if split is None or f"tiny-world:{split}" in taken:
        pool = FALLBACK["rlvr" if kinds == ["rlvr"] else "sft"]
        split = next(s for s in pool if f"tiny-world:{s}" not in taken)
    return f"tiny-world:{split}"


def dry_run_config(cfg: RunConfig, gpu_memory: float | None = None) -> tuple[RunConfig, list[tuple[str, Any, Any]]]:
    """The dry-run version of ``cfg`` and the list of (key, recipe value, dry-run value) substitutions.

    ``gpu_memory`` (GB): first plan ``cfg`` as written and print the plan (rank 0); ConfigError when a stage
    does not fit (:func:`llm.memplan.plan_and_check`). The tiny model and judge the dry-run config names
    are built by :func:`prepare_assets` (``llm.run.main`` calls it on the main process); nothing is written here.
    """
    if gpu_memory is not None:
        from llm.memplan import plan_and_check

        plan_and_check(cfg, gpu_memory)
    data = to_dict(cfg)
    subs: list[tuple[str, Any, Any]] = []

    def sub(path: str, new: Any) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        idx: Any = int(last) if isinstance(node, list) else last
        if node[idx] != new:
            subs.append((path, node[idx], new))
            node[idx] = new

    assets = assets_dir(cfg)
    judge_dir = str(assets / "tiny-judge")
    if not cfg.run_name.endswith("-dryrun"):
        sub("run_name", f"{cfg.run_name}-dryrun")
    sub("seeds", cfg.seeds[:1])
    sub("device", "cpu")
    if cfg.bf16:
        sub("bf16", False)
    sub("use_vllm", False)
    sub("keep_checkpoints", True)
    if cfg.base.model == "tiny-world":
        sub("base.pretrain_steps", min(cfg.base.pretrain_steps, 20))
    else:
        sub("base.model", str(assets / "tiny-model"))
        if cfg.base.dtype not in ("auto", "float32"):
            sub("base.dtype", "float32")
    if cfg.align.dataset != "tiny-world" and not cfg.align.dataset.startswith("tiny-world:"):
        sub("align.dataset", "tiny-world:harmful_train+benign_lookalike" if cfg.align.reward == "safety"
            else "tiny-world:math_train")
    sub("align.steps", DRY_STEPS)
    sub("align.prompts_per_step", 1)
    sub("align.max_completion_length", min(cfg.align.max_completion_length, DRY_COMPLETION))
    for i, spec in enumerate(cfg.align.reward_funcs):
        sub(f"align.reward_funcs.{i}", _judge(spec, judge_dir))
    if cfg.align.helpfulness:
        sub("align.helpfulness", _judge(cfg.align.helpfulness, judge_dir))

    d = data["downstream"]
    taken: set[str] = set()
    new_specs, new_per = [], {}
    for i, spec in enumerate(cfg.downstream.datasets):
        over = dict(d["per_dataset"].get(spec, {}))
        new = _downstream_standin(spec, list(over.get("kinds", cfg.downstream.kinds)), taken)
        taken.add(new)
        new_specs.append(new)
        if new != spec:
            subs.append((f"downstream.datasets.{i}", spec, new))
        if over:
            _shrink_downstream(over, f"downstream.per_dataset.{new}", judge_dir, subs)
            new_per[new] = over
    d["datasets"], d["per_dataset"] = new_specs, new_per
    _shrink_downstream(d, "downstream", judge_dir, subs)

    e = data["eval"]
    for k, split in EVAL_STANDINS.items():
        if e[k] not in ("auto", "none") and not e[k].startswith("tiny-world:"):
            sub(f"eval.{k}", f"tiny-world:{split}")
    for name, spec in list(e["variants"].items()):
        if not spec.startswith("tiny-world:"):
            split = next((s for key, s in VARIANT_STANDINS if key in name.lower()), "harmful_eval")
            sub(f"eval.variants.{name}", f"tiny-world:{split}")
    sub("eval.judge", _judge(cfg.eval.judge, judge_dir))
    sub("eval.benchmarks", [])  # lm-eval / evalplus runs: tests/llm/test_standard_evals.py, on tiny models
    sub("eval.max_prompts", min(cfg.eval.max_prompts, 2))
    sub("eval.n_samples", min(cfg.eval.n_samples, 2))
    sub("eval.max_new_tokens", min(cfg.eval.max_new_tokens, DRY_COMPLETION))
    return from_dict(RunConfig, data), subs


def _shrink_downstream(d: dict, prefix: str, judge_dir: str, subs: list) -> None:
    """Smallest budget for a downstream section (or a per_dataset override, which holds only some keys)."""
    caps = {"steps": DRY_STEPS, "batch_size": DRY_BATCH, "track_every": 1, "probe_prompts": 2, "probe_samples": 2}
    for k, cap in caps.items():
        if k in d and (d[k] > cap or (k == "steps" and d[k] == 0)):
            subs.append((f"{prefix}.{k}", d[k], cap))
            d[k] = cap
    if d.get("max_completion_length", 0) > DRY_COMPLETION:
        subs.append((f"{prefix}.max_completion_length", d["max_completion_length"], DRY_COMPLETION))
        d["max_completion_length"] = DRY_COMPLETION
    for i, spec in enumerate(d.get("reward_funcs", [])):
        new = _judge(spec, judge_dir)
        if new != spec:
            subs.append((f"{prefix}.reward_funcs.{i}", spec, new))
            d["reward_funcs"][i] = new


def prepare_assets(cfg: RunConfig) -> None:
    """Build the tiny model / judge that a dry-run config names, if missing (main process only)."""
    from llm.tiny import build_tiny_llama
    from llm.world import WorldConfig, build_world

    assets = assets_dir(cfg)
    wanted = {str(assets / "tiny-model"): 128, str(assets / "tiny-judge"): 1024}  # the judge reads long rubrics
    names = [cfg.base.model, *[s.partition(":")[2] for s in _all_reward_specs(cfg)]]
    todo = [p for p in wanted if p in names and not (Path(p) / "config.json").exists()]
    if not todo:
        return
    world = build_world(WorldConfig(**cfg.world))
    tok = world.tokenizer()
    for path in todo:
        model = build_tiny_llama(tok, seed=0, max_position_embeddings=wanted[path])
        tmp = Path(path + ".tmp")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.replace(path)


def _all_reward_specs(cfg: RunConfig) -> list[str]:
    from llm.config import downstream_for

    specs = [*cfg.align.reward_funcs, cfg.align.helpfulness, cfg.eval.judge]
    for ds in cfg.downstream.datasets:
        specs += downstream_for(cfg, ds).reward_funcs
    return specs


def format_substitutions(subs: list[tuple[str, Any, Any]]) -> str:
    """The substitutions as printed by ``--dry-run``."""
    lines = ["[llm.run] dry run: the config runs on the tiny model and tiny-world data; substituted:"]
    width = max((len(k) for k, _, _ in subs), default=0)
    lines += [f"  {k:<{width}}  {old!r} -> {new!r}" for k, old, new in subs]
    lines.append("  (everything else as configured; accelerate_config / vllm_* are validated, not activated)")
    return "\n".join(lines)

