"""The pipeline's stages: base → align (GRPO/FRPO arms) → downstream (SFT, CSFT, CSFT+PA, RLVR).

Each trainer stage maps the run config into a TRL config (GRPOConfig, FRPOConfig, SFTConfig,
CSFTConfig, LoRA), passes the model to the trainer by path (TRL loads it with ``model_init_kwargs``,
which is what DeepSpeed ZeRO-3 and FSDP need), checkpoints every ``save_every`` steps under
``<stage_dir>/ckpt``, resumes from the last checkpoint when run again, and saves the trained model
with ``trainer.save_model`` (every process calls it; it gathers sharded weights and writes on the main
process). A LoRA adapter (kept in ``<stage_dir>/adapter``) is merged into its base on the main process,
so every stage hands a full model to the next one in ``<stage_dir>/model`` (written to ``model.tmp``,
then renamed: a half-saved model is never at ``model``). Evaluation lives in :mod:`llm.evaluation`.

The plumbing the trainer stages share (loading, saving and merging, checkpoints, ``trainer_args``, LoRA)
lives in :mod:`llm.trainkit`, which :mod:`llm.warmstart` uses too; the downstream kinds are one builder
each in ``DOWNSTREAM_TRAINERS``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from llm.config import ArmConfig, ConfigError, RunConfig, downstream_for
from llm.data import dataset_rows
from llm.memfix import attach_tracker_reference, release_vllm
from llm.runtime import Runtime
from llm.trainkit import (_lora, _resume_point, _to_dataset, _vllm_args, free_memory, load_model, load_tokenizer,
                          save_model_atomic, save_trained, trainer_args)


# ---------------------------------------------------------------------------------------------
# data and rewards
# ---------------------------------------------------------------------------------------------
def align_rows(cfg: RunConfig, world) -> list[dict]:
    """Prompts of the alignment stage: the tiny world's splits for the reward, or align.dataset."""
    a = cfg.align
    if a.dataset == "tiny-world":
        if world is None:
            raise ConfigError("align.dataset='tiny-world' needs base.model='tiny-world'; give a dataset spec")
        rows = world.harmful_train + world.benign_lookalike if a.reward == "safety" else world.math_train
        if a.system_prompt:
            from llm.data import normalize_record

            return [normalize_record(r, a.system_prompt) for r in rows]
        return [dict(r) for r in rows]
    need = ("prompt", "kind") if a.reward == "safety" else ("prompt", "answer")
    return dataset_rows(a.dataset, world, system_prompt=a.system_prompt, need=need, key="align.dataset")


_JUDGE_CACHE: dict[tuple, Callable] = {}


def get_reward_cached(spec: str, cfg: RunConfig, rt: Runtime, helpfulness: str = "") -> Callable:
    """``llm.rewards.get_reward(spec)``; judges load once per process, on its device and in the run's dtype.

    ``helpfulness`` (align.helpfulness) applies to the strongreject: / harmbench: safety specs only.
    """
    from llm.rewards import REWARDS, get_reward

    if spec in REWARDS:
        return get_reward(spec)
    device = rt.device
    helper = helpfulness if spec.partition(":")[0] in ("strongreject", "harmbench") and helpfulness else None
    key = (spec, helper, str(device), rt.dtype)
    if key not in _JUDGE_CACHE:
        _JUDGE_CACHE[key] = get_reward(spec, helpfulness=helper, device=device,
                                       dtype=rt.torch_dtype, template=cfg.judge_template)
    return _JUDGE_CACHE[key]


def reward_functions(cfg: RunConfig, specs: list[str], family: str, rt: Runtime,
                     helpfulness: str = "") -> list[Callable]:
    """Reward functions of ``specs``; empty = the tiny world's own reward for ``family`` on the tiny world,
    else "keyword_safety" (safety) / "math" (math). ``helpfulness``: see :func:`get_reward_cached`."""
    if not specs:
        if cfg.base.model == "tiny-world":
            from llm import world_eval as W

            return [W.safety_reward] if family == "safety" else [W.final_number_reward]
        specs = ["keyword_safety"] if family == "safety" else ["math"]
    return [get_reward_cached(s, cfg, rt, helpfulness) for s in specs]


def preflight_data(cfg: RunConfig, world) -> None:
    """Load and column-map align.dataset and every downstream dataset once (main process, at launch): a bad
    spec or an unmappable dataset fails before hours of alignment, and the hub cache is warm for all ranks."""
    if any(arm.algo != "none" for arm in cfg.align.arms):
        align_rows(cfg, world)
    for i, ds in enumerate(cfg.downstream.datasets):
        d = downstream_for(cfg, ds)
        need = ("prompt",) if d.kinds == ["rlvr"] else ("prompt", "completion")
        dataset_rows(ds, world, max_rows=d.max_rows, need=need, key=f"downstream.datasets.{i}")


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------
def stage_base(cfg: RunConfig, world, seed: int, out: Path, dist, rt: Runtime) -> str:
    """The base model's path: the tiny world's, built + pretrained on the main process and saved at ``out``;
    a hub id / local path is used in place, a model asset name (llm.assets) resolves to its cached folder
    (fetched once); with ``base.sft_dataset`` that model is first warm-started (llm.warmstart) into ``out``."""
    if cfg.base.model != "tiny-world":
        from llm.assets import resolve_model

        with dist.main_first():  # the main process fetches / builds an uncached asset, the others wait
            path = resolve_model(cfg.base.model)
        if not cfg.base.sft_dataset:
            return path
        from llm.warmstart import safety_warmstart

        return safety_warmstart(cfg, path, seed, out, dist, rt)
    if dist.is_main:
        from llm.world_train import pretrain_base

        torch.manual_seed(seed)
        b = cfg.base
        model, tok = pretrain_base(world, seed=seed, steps=b.pretrain_steps, lr=b.learning_rate,
                                   batch_size=b.batch_size, hidden_size=b.hidden_size, num_layers=b.num_layers)
        save_model_atomic(model, tok, out)
    dist.barrier()
    return str(out)


def stage_align(cfg: RunConfig, world, arm: ArmConfig, seed: int, base_path: str, stage_dir: Path,
                save_every: Optional[int], dist, rt: Runtime,
                tracker_factory: Optional[Callable[[Any], Any]] = None, steps: Optional[int] = None) -> str:
    """Train one arm (GRPO or FRPO) from the base with align.reward_funcs; returns the aligned model's path.
    ``algo: none`` returns ``base_path`` (the base is the aligned model). ``tracker_factory(tokenizer)``: a
    tracking callback (KL to the base; with ``stop_kl`` it ends the stage at a KL dose, align.match_kl);
    ``steps`` overrides align.steps (the cap of a calibrated arm); ``rt``: the run's device and precision."""
    if arm.algo == "none":
        return base_path
    from trl import GRPOConfig, GRPOTrainer

    from llm.frpo import FRPOConfig, FRPOTrainer

    a = cfg.align
    common = trainer_args(cfg, rt, stage_dir, seed, steps=a.steps if steps is None else steps, epochs=a.epochs,
                          learning_rate=arm.learning_rate or a.learning_rate, warmup_ratio=a.warmup_ratio,
                          grad_accum=a.gradient_accumulation_steps, grad_ckpt=a.gradient_checkpointing,
                          save_every=save_every)
    common.update(per_device_train_batch_size=a.prompts_per_step * a.num_generations,
                  num_generations=a.num_generations, max_completion_length=a.max_completion_length,
                  temperature=a.temperature, beta=arm.beta, reward_weights=list(a.reward_weights) or None,
                  **_vllm_args(cfg, rt))
    if arm.algo == "grpo":
        args = GRPOConfig(loss_type="grpo", scale_rewards="none", **common)
        cls = GRPOTrainer
    else:
        args = FRPOConfig(lam=arm.lam, jackknife=arm.jackknife, lam_scale=arm.lam_scale, **common)
        cls = FRPOTrainer
    tok = load_tokenizer(base_path)
    rows = align_rows(cfg, world)
    rewards = reward_functions(cfg, a.reward_funcs, a.reward, rt, a.helpfulness)
    peft_cfg = _lora(a.lora_r, a.lora_alpha, a.lora_target_modules, a.lora_dropout)
    callbacks = [tracker_factory(tok)] if tracker_factory is not None else []
    trainer = cls(model=base_path, reward_funcs=rewards, args=args,
                  train_dataset=_to_dataset(rows, ("prompt", "kind", "topic", "answer")), processing_class=tok,
                  peft_config=peft_cfg, callbacks=callbacks)
    resume = _resume_point(stage_dir / "ckpt")
    # the tracker's reference is the base: the trainer's frozen one, else loaded from disk (right on resume
    # too, when the policy's weights are a checkpoint's); with LoRA the adapter-disabled base
    attach_tracker_reference(trainer, callbacks[0] if callbacks else None, base_path, rt.device,
                             rt.dtype, lora=peft_cfg is not None)
    trainer.train(resume_from_checkpoint=resume)
    release_vllm(trainer)
    out = save_trained(trainer, tok, stage_dir / "model", base_path, rt, dist)
    del trainer
    free_memory()
    return str(out)


def _rlvr_trainer(cfg: RunConfig, d, kind: str, rows: list[dict], tok, common: dict, peft_cfg, callbacks: list,
                  aligned_path: str, rt: Runtime):
    """rlvr: TRL's GRPOTrainer on the dataset's prompts with downstream.reward_funcs (family "math")."""
    from trl import GRPOConfig, GRPOTrainer

    a = cfg.align
    g = d.num_generations or a.num_generations
    args = GRPOConfig(loss_type="grpo", scale_rewards="none",
                      per_device_train_batch_size=g * max(1, d.batch_size // g), num_generations=g,
                      max_completion_length=d.max_completion_length or a.max_completion_length,
                      beta=d.beta, **_vllm_args(cfg, rt), **common)
    return GRPOTrainer(model=aligned_path, reward_funcs=reward_functions(cfg, d.reward_funcs, "math", rt),
                       args=args, train_dataset=_to_dataset(rows, ("prompt", "kind", "topic", "answer")),
                       processing_class=tok, peft_config=peft_cfg, callbacks=callbacks)


def _sft_trainer(cfg: RunConfig, d, kind: str, rows: list[dict], tok, common: dict, peft_cfg, callbacks: list,
                 aligned_path: str, rt: Runtime):
    """sft: TRL's SFTTrainer on (prompt, completion) rows."""
    from trl import SFTConfig, SFTTrainer

    data = _to_dataset(rows, ("prompt", "completion"))
    args = SFTConfig(per_device_train_batch_size=d.batch_size, max_length=d.max_length, **common)
    return SFTTrainer(model=aligned_path, args=args, train_dataset=data, processing_class=tok,
                      peft_config=peft_cfg, callbacks=callbacks)


def _csft_trainer(cfg: RunConfig, d, kind: str, rows: list[dict], tok, common: dict, peft_cfg, callbacks: list,
                  aligned_path: str, rt: Runtime):
    """csft / csft_pa: llm.csft's CSFTTrainer without / with the PA term (``pa = kind == "csft_pa"``)."""
    from llm.csft import CSFTConfig, CSFTTrainer

    data = _to_dataset(rows, ("prompt", "completion"))
    args = CSFTConfig(per_device_train_batch_size=d.batch_size, max_length=d.max_length,
                      pa=(kind == "csft_pa"), **common)
    # the reference is the aligned model: CSFTTrainer freezes a copy (or disables the LoRA adapter).
    # CSFTTrainer takes a model instance (is_peft_model fails on a path), loaded on the CPU in the
    # run's dtype; the Trainer moves it to this process's device.
    policy, _ = load_model(aligned_path, "cpu", rt.dtype)
    trainer = CSFTTrainer(model=policy.train(), args=args, train_dataset=data, processing_class=tok,
                          peft_config=peft_cfg, callbacks=callbacks)
    del policy
    return trainer


DOWNSTREAM_TRAINERS: dict[str, Callable[..., Any]] = {
    "sft": _sft_trainer, "csft": _csft_trainer, "csft_pa": _csft_trainer, "rlvr": _rlvr_trainer,
}
"""downstream kind → ``build(cfg, d, kind, rows, tok, common, peft_cfg, callbacks, aligned_path, rt) -> trainer``
(``d``: the dataset's downstream settings, ``common``: :func:`trainer_args`); a new kind is one entry here
plus its name in llm.config_check.DOWNSTREAM_KINDS."""


def stage_downstream(cfg: RunConfig, world, kind: str, dataset: str, seed: int, aligned_path: str,
                     stage_dir: Path, save_every: Optional[int], tracker_factory: Optional[Callable[[Any], Any]],
                     dist, rt: Runtime) -> str:
    """Fine-tune an aligned model downstream (SFT / CSFT / CSFT+PA / RLVR) with the tracking callback
    (``tracker_factory(tokenizer)``; None or downstream.track_every = 0: no tracking). The trainer of each
    kind is built by :data:`DOWNSTREAM_TRAINERS`."""
    build = DOWNSTREAM_TRAINERS.get(kind)
    if build is None:
        raise ConfigError(f"downstream kind {kind!r} is not one of {', '.join(DOWNSTREAM_TRAINERS)}; "
                          "set downstream.kinds to those")
    d = downstream_for(cfg, dataset)
    key = f"downstream.datasets.{cfg.downstream.datasets.index(dataset)}"
    need = ("prompt",) if kind == "rlvr" else ("prompt", "completion")
    rows = dataset_rows(dataset, world, max_rows=d.max_rows, need=need, key=key)
    tok = load_tokenizer(aligned_path)
    common = trainer_args(cfg, rt, stage_dir, seed, steps=d.steps, epochs=d.epochs, learning_rate=d.learning_rate,
                          warmup_ratio=d.warmup_ratio, grad_accum=d.gradient_accumulation_steps,
                          grad_ckpt=d.gradient_checkpointing, save_every=save_every)
    peft_cfg = _lora(d.lora_r, d.lora_alpha, d.lora_target_modules, d.lora_dropout)
    callbacks = [tracker_factory(tok)] if tracker_factory is not None and d.track_every > 0 else []
    trainer = build(cfg, d, kind, rows, tok, common, peft_cfg, callbacks, aligned_path, rt)
    resume = _resume_point(stage_dir / "ckpt")
    # the tracker's reference: the trainer's own frozen one, else the aligned model from disk (not a deep copy
    # of a possibly partitioned policy; right on resume too); with LoRA the adapter-disabled base
    attach_tracker_reference(trainer, callbacks[0] if callbacks else None, aligned_path, rt.device,
                             rt.dtype, lora=peft_cfg is not None)
    trainer.train(resume_from_checkpoint=resume)
    release_vllm(trainer)
    out = save_trained(trainer, tok, stage_dir / "model", aligned_path, rt, dist)
    del trainer
    free_memory()
    return str(out)


def nan_free(metrics: dict[str, Any]) -> dict[str, float]:
    """Float metrics without None / NaN entries (what DONE.json stores)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
