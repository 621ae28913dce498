"""Rules of the pipeline config's values: the allowed choices, typed reading of a mapping into a dataclass,
and the range checks of each section.

Everything here is generic over the sections' attributes (it imports nothing of ``llm.config``, which
holds the dataclasses and calls these checks from ``validate``). ``from_dict`` rejects unknown keys and
values of the wrong type; the ``check_*`` functions reject values outside their range. Every error is a
``ConfigError`` (a ``ValueError``) naming the key, the value, the allowed range and the fix.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any

ALGOS = ("grpo", "frpo", "none")
DOWNSTREAM_KINDS = ("sft", "csft", "csft_pa", "rlvr")
REWARDS = ("safety", "math")
DTYPES = ("auto", "bfloat16", "float16", "float32")
VLLM_MODES = ("colocate", "server")
BENCHMARKS = ("math500", "mbpp_plus")
PLAIN_NAME = "a plain name: letters, digits, '.', '_' and '-', starting with a letter or digit (not '.' or '..')"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_plain_name(name: str) -> bool:
    """A name usable as one directory level: no separators, no '.'/'..', no spaces or shell-odd characters."""
    return isinstance(name, str) and _PLAIN.fullmatch(name) is not None and name not in (".", "..")


class ConfigError(ValueError):
    """A bad configuration value: the message names the key, the value, the allowed range and the fix."""


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass with strict validation
# ---------------------------------------------------------------------------------------------
def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}; e.g. {key}=[a,b]")
        return [_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}. Fix: write {key}=true or {key}=false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}. Fix: write a whole number, e.g. {key}=4")
        return value
    if tp is float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity", ".inf"):
            return math.inf
        if isinstance(value, str):  # PyYAML reads 5e-6 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number (or inf), got {value!r}. Fix: write e.g. {key}=0.5 or {key}=inf")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with the list of valid ones."""
    types = _field_types(cls)
    unknown = sorted(set(data) - set(types))
    if unknown:
        where = f" in section '{prefix}'" if prefix else ""
        raise ConfigError(f"unknown config key(s) {unknown}{where}; valid keys: {', '.join(types)}. "
                          "Fix: use one of the valid keys (dump_config() shows the resolved config)")
    kwargs = {k: _coerce(v, types[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    """Plain YAML-serializable mapping (inf written as the string "inf")."""

    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, float) and math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x

    return conv(cfg)


# ---------------------------------------------------------------------------------------------
# range checks, one function per section (called in this order by llm.config.validate)
# ---------------------------------------------------------------------------------------------
def _check(cond: bool, key: str, value: Any, allowed: str, fix: str = "") -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}." + (f" {fix}" if fix else "")
                          + f" Fix: set {key} to an allowed value (in the YAML or as the override {key}=...).")


def _check_spec_list(key: str, specs: list[str]) -> None:
    for i, s in enumerate(specs):
        _check(bool(s.strip()), f"{key}.{i}", s, "a non-empty reward spec", "e.g. keyword_safety or math")


def check_downstream(d, key: str) -> None:
    """Range checks of a downstream section (or one dataset's resolved settings) reported under ``key``."""
    bad = [k for k in d.kinds if k not in DOWNSTREAM_KINDS]
    _check(not bad and len(d.kinds) >= 1, f"{key}.kinds", d.kinds,
           "a non-empty list of " + ", ".join(DOWNSTREAM_KINDS))
    for k in ("batch_size", "probe_prompts", "probe_samples", "gradient_accumulation_steps", "max_length"):
        _check(getattr(d, k) >= 1, f"{key}.{k}", getattr(d, k), ">= 1")
    _check(d.track_every >= 0, f"{key}.track_every", d.track_every, ">= 0 (0 = no tracking callback)")
    _check(d.kl_estimator in ("rb", "mc"), f"{key}.kl_estimator", d.kl_estimator, "rb | mc")
    _check(math.isfinite(d.stop_kl) and d.stop_kl >= 0, f"{key}.stop_kl", d.stop_kl, "a finite number >= 0 (0 = off)")
    _check(d.stop_kl == 0 or d.track_every > 0, f"{key}.stop_kl", d.stop_kl, "0 when track_every = 0",
           "the KL is measured by the tracker: set track_every > 0")
    _check(all(math.isfinite(k) and k > 0 for k in d.kl_grid) and list(d.kl_grid) == sorted(set(d.kl_grid)),
           f"{key}.kl_grid", d.kl_grid, "increasing positive finite KL values (nats), or [] for automatic")
    _check(d.steps >= 0, f"{key}.steps", d.steps, ">= 0 (0 = train for `epochs` epochs)")
    _check(d.epochs > 0, f"{key}.epochs", d.epochs, "> 0")
    _check(d.max_rows >= 0, f"{key}.max_rows", d.max_rows, ">= 0 (0 = all rows)")
    _check(d.learning_rate > 0, f"{key}.learning_rate", d.learning_rate, "> 0")
    _check(0 <= d.warmup_ratio < 1, f"{key}.warmup_ratio", d.warmup_ratio, "[0, 1)")
    _check(d.lora_r >= 0, f"{key}.lora_r", d.lora_r, ">= 0 (0 = full fine-tuning)")
    _check(d.lora_alpha >= 0, f"{key}.lora_alpha", d.lora_alpha, ">= 0 (0 = 2·r)")
    _check(0 <= d.lora_dropout < 1, f"{key}.lora_dropout", d.lora_dropout, "[0, 1)")
    _check(d.beta >= 0, f"{key}.beta", d.beta, ">= 0")
    _check(d.num_generations == 0 or d.num_generations >= 2, f"{key}.num_generations", d.num_generations,
           "0 (align.num_generations) or >= 2")
    _check(d.max_completion_length >= 0, f"{key}.max_completion_length", d.max_completion_length,
           ">= 0 (0 = align.max_completion_length)")
    _check_spec_list(f"{key}.reward_funcs", d.reward_funcs)


def check_top_level(cfg) -> None:
    """Range checks of the top-level keys (and eval.benchmarks, checked with them)."""
    _check(len(cfg.seeds) >= 1, "seeds", cfg.seeds, "a non-empty list of integers", "e.g. seeds=[0,1]")
    _check(len(set(cfg.seeds)) == len(cfg.seeds), "seeds", cfg.seeds, "distinct seeds")
    _check(cfg.device in ("auto", "cpu", "cuda"), "device", cfg.device, "auto | cpu | cuda")
    _check(cfg.report_to in ("none", "tensorboard", "wandb"), "report_to", cfg.report_to, "none | tensorboard | wandb")
    _check(is_plain_name(cfg.run_name), "run_name", cfg.run_name, PLAIN_NAME,
           "the run directory is output_dir/run_name; e.g. run_name=qwen_safety_v2")
    _check(cfg.ddp_timeout >= 1, "ddp_timeout", cfg.ddp_timeout, ">= 1 second (e.g. 1800)")
    _check(cfg.judge_template in ("official", "paraphrase") or Path(cfg.judge_template).expanduser().is_file(),
           "judge_template", cfg.judge_template, "official | paraphrase | an existing text file")
    for i, spec in enumerate(cfg.eval.benchmarks):
        _check(spec.partition(":")[0] in BENCHMARKS and (":" not in spec or bool(spec.partition(":")[2].strip())),
               f"eval.benchmarks.{i}", spec, " | ".join(f"{b}[:<local file>]" for b in BENCHMARKS))
    _check(cfg.vllm_mode in VLLM_MODES, "vllm_mode", cfg.vllm_mode, " | ".join(VLLM_MODES))
    _check(0 < cfg.vllm_gpu_memory_utilization <= 1, "vllm_gpu_memory_utilization",
           cfg.vllm_gpu_memory_utilization, "(0, 1]")


def check_base(b) -> None:
    """Range checks of the base section."""
    _check(bool(b.model.strip()), "base.model", b.model, "'tiny-world', a hub id or a local path")
    _check(b.dtype in DTYPES, "base.dtype", b.dtype, " | ".join(DTYPES))
    _check(b.seed is None or b.seed >= 0, "base.seed", b.seed, "null or an integer >= 0")
    for k in ("pretrain_steps", "batch_size", "hidden_size", "num_layers"):
        _check(getattr(b, k) >= 1, f"base.{k}", getattr(b, k), ">= 1")
    _check(b.learning_rate > 0, "base.learning_rate", b.learning_rate, "> 0")
    _check(b.model != "tiny-world" or not b.sft_dataset, "base.sft_dataset", b.sft_dataset, "'' with the tiny world",
           "the tiny world pretrains its own guardrails (base.pretrain_steps)")
    for k in ("sft_steps", "sft_batch_size"):
        _check(getattr(b, k) >= 1, f"base.{k}", getattr(b, k), ">= 1")
    _check(b.sft_learning_rate > 0, "base.sft_learning_rate", b.sft_learning_rate, "> 0")
    _check(b.sft_lora_r >= 0, "base.sft_lora_r", b.sft_lora_r, ">= 0 (0 = full fine-tuning)")


def check_align(a) -> None:
    """Range checks of the align section and its arms."""
    _check(a.reward in REWARDS, "align.reward", a.reward, " | ".join(REWARDS))
    _check_spec_list("align.reward_funcs", a.reward_funcs)
    _check(a.helpfulness in ("", "keyword") or a.helpfulness.startswith("reward_model:"), "align.helpfulness",
           a.helpfulness, "'', 'keyword' or 'reward_model:<path>'")
    _check(not a.reward_weights or len(a.reward_weights) == len(a.reward_funcs), "align.reward_weights",
           a.reward_weights, f"empty or one weight per align.reward_funcs entry ({len(a.reward_funcs)})")
    _check(a.steps >= 0, "align.steps", a.steps, ">= 0 (0 = train for `epochs` epochs)")
    _check(a.epochs > 0, "align.epochs", a.epochs, "> 0")
    _check(a.learning_rate > 0, "align.learning_rate", a.learning_rate, "> 0")
    _check(0 <= a.warmup_ratio < 1, "align.warmup_ratio", a.warmup_ratio, "[0, 1)")
    _check(a.num_generations >= 2, "align.num_generations", a.num_generations, ">= 2",
           "group-relative methods need at least 2 completions per prompt")
    _check(a.prompts_per_step >= 1, "align.prompts_per_step", a.prompts_per_step, ">= 1")
    _check(a.gradient_accumulation_steps >= 1, "align.gradient_accumulation_steps", a.gradient_accumulation_steps,
           ">= 1")
    _check(a.max_completion_length >= 1, "align.max_completion_length", a.max_completion_length, ">= 1")
    _check(a.temperature > 0, "align.temperature", a.temperature, "> 0")
    _check(a.lora_r >= 0 and a.lora_alpha >= 0, "align.lora_r", a.lora_r, ">= 0 (0 = full fine-tuning)")
    _check(0 <= a.lora_dropout < 1, "align.lora_dropout", a.lora_dropout, "[0, 1)")
    _check(len(a.arms) >= 1, "align.arms", a.arms, "at least one arm")
    _check(a.match_every >= 1, "align.match_every", a.match_every, ">= 1")
    _check(a.match_max_steps >= 0, "align.match_max_steps", a.match_max_steps, ">= 0 (0 = 3 × align.steps)")
    _check(not a.match_kl or a.steps > 0, "align.match_kl", a.match_kl, "false when align.steps = 0",
           "calibration counts steps: give align.steps")
    names = [arm.name for arm in a.arms]
    _check(len(set(names)) == len(names), "align.arms[].name", names, "unique names")
    for i, arm in enumerate(a.arms):
        key = f"align.arms.{i}"
        _check(is_plain_name(arm.name), f"{key}.name", arm.name, PLAIN_NAME, "arm names become directories")
        _check(arm.algo in ALGOS, f"{key}.algo", arm.algo, " | ".join(ALGOS))
        _check(not math.isnan(arm.lam) and arm.lam > 0, f"{key}.lam", arm.lam, "(0, inf]",
               "λ is FRPO's temperature: small = robust, inf = GRPO")
        _check(arm.beta >= 0, f"{key}.beta", arm.beta, ">= 0")
        _check(arm.lam_scale in ("lambda", "one", "max1"), f"{key}.lam_scale", arm.lam_scale, "lambda | one | max1")
        _check(arm.learning_rate is None or arm.learning_rate > 0, f"{key}.learning_rate", arm.learning_rate, "> 0")


def check_eval(e) -> None:
    """Range checks of the eval section."""
    for k in ("n_samples", "max_prompts", "max_new_tokens", "batch_size"):
        _check(getattr(e, k) >= 1, f"eval.{k}", getattr(e, k), ">= 1")
    _check(e.temperature >= 0, "eval.temperature", e.temperature, ">= 0 (0 = greedy)")
    _check(e.samples >= 0, "eval.samples", e.samples, ">= 0 (0 = no samples in the report)")
    for k in ("harmful_dataset", "benign_dataset", "math_dataset"):
        _check(bool(getattr(e, k).strip()), f"eval.{k}", getattr(e, k), "a dataset spec, 'auto' or 'none'")
    for name, spec in e.variants.items():
        _check(isinstance(name, str) and name.isidentifier(), "eval.variants", name,
               "names of letters, digits and '_' (they become metric names eval/refusal_rate_<name>)")
        _check(isinstance(spec, str) and bool(spec.strip()), f"eval.variants.{name}", spec, "a dataset spec")
    _check(bool(e.judge.strip()), "eval.judge", e.judge, "a reward spec", "e.g. keyword_safety or strongreject:<path>")
