"""Configuration of the forgetting pipeline (``python -m llm.run``): YAML in the TRL style, validated.

A run config is a YAML mapping with the sections below; any key can be overridden on the command
line with ``section.key=value`` (values parsed as YAML: ``seeds=[0,1,2]``, ``align.steps=40``,
``align.arms.1.lam=0.5``). Every key is validated: an unknown key is an error that lists the valid
ones, a value of the wrong type or outside its range is an error that names it, the allowed range and
the fix. Local paths (models, datasets, judges) are checked when a run starts (llm.preflight), so
that a recipe's placeholders parse but do not run.

    run_name, output_dir, seeds, device, bf16, report_to     top level
    accelerate_config, use_vllm, vllm_mode, vllm_gpu_...     multi-GPU launch and vLLM generation
    world:      the embedded tiny world (llm.world.WorldConfig fields)
    base:       the starting model: "tiny-world" (build + pretrain) or a hub id / local path (used in place)
    align:      GRPO / FRPO arms, their reward specs, data, LoRA and trainer settings
    downstream: the later fine-tunings (SFT, CSFT, CSFT+PA, RLVR) on benign data or attack sets,
                with per-dataset overrides
    eval:       held-out eval sets (tiny-world splits or dataset specs), judge and sizes

Bundled configs: ``llm/configs/<name>.yaml`` (tiny-world presets) and ``llm/configs/recipes/<name>.yaml``
(the papers' 7B setups, docs/recipes.md); ``--config <name>`` finds both.

Where things are: this module holds the schema — the dataclasses below, whose defaults are the default
study — and ``validate``, which runs the checks across sections; ``llm.config_check`` holds the allowed
values, the typed reading of a mapping into a dataclass (``from_dict``) and each section's range checks;
``llm.config_io`` the YAML side (bundled configs, file reading and merging, overrides, YAML text).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from llm.config_check import (ConfigError, _check, check_align, check_base, check_downstream, check_eval,
                              check_top_level, from_dict, to_dict)
from llm.config_io import apply_overrides, dump_yaml, merge, read_config_file

# downstream keys that per_dataset may not override
_NOT_PER_DATASET = ("datasets", "per_dataset")


@dataclass
class ArmConfig:
    """One alignment arm: an algorithm and its hyperparameters."""

    name: str = "grpo"
    """Label of the arm in the report (unique within a run)."""
    algo: str = "grpo"
    """"grpo" (TRL GRPO, no std scaling), "frpo" (FRPOTrainer), or "none" (no alignment: the base model
    is the aligned model, e.g. Llama-2-7B-Chat in the CSFT attack experiments)."""
    lam: float = math.inf
    """FRPO λ (Eq. 3.5): smaller = more robust; inf = GRPO without std scaling."""
    beta: float = 0.0
    """KL coefficient to the starting model (Eq. 3.1's −β KL; k3 estimator)."""
    jackknife: bool = True
    """FRPO: jackknife the log-partition estimate (App. E)."""
    lam_scale: str = "max1"
    """FRPO objective scale: "lambda" | "one" | "max1" (theory.losses.frpo_scale)."""
    learning_rate: Optional[float] = None
    """Per-arm learning rate (default: align.learning_rate)."""


@dataclass
class BaseSection:
    """The starting model."""

    model: str = "tiny-world"
    """"tiny-world" builds the embedded tokenizer + tiny Llama and pretrains it; otherwise a hub id or a
    local path loaded with from_pretrained and used in place (no pretraining; nothing reaches the
    network unless this is a hub id)."""
    dtype: str = "auto"
    """Weights dtype of hub/local models (training, merging, evaluation): "auto" (bfloat16 when bf16 is
    on, else float32), "bfloat16", "float16" or "float32"."""
    seed: Optional[int] = 0
    """Tiny world only: pretrain ONE base with this seed and share it across all `seeds` (the seeds then vary
    alignment and downstream only, and the base's cost is paid once); null: every seed pretrains its own."""
    pretrain_steps: int = 1500
    """Tiny world only: next-token pretraining steps of the base policy."""
    learning_rate: float = 3e-3
    """Tiny world only: AdamW learning rate of pretraining."""
    batch_size: int = 64
    """Tiny world only: pretraining batch size."""
    hidden_size: int = 64
    """Tiny world only: Llama hidden size."""
    num_layers: int = 2
    """Tiny world only: Llama layers."""
    sft_dataset: str = ""
    """Hub/local/asset models: a short safety SFT warm start of the model on this dataset spec before alignment
    (llm.warmstart; e.g. "refusals+lookalikes:train": refusal demonstrations on the HarmBench train behaviours
    and answered benign look-alikes), giving weak guardrails where GRPO has a signal; empty: the model as is."""
    sft_steps: int = 30
    """Warm start (sft_dataset): optimizer steps."""
    sft_learning_rate: float = 1e-4
    """Warm start: AdamW learning rate (constant)."""
    sft_batch_size: int = 8
    """Warm start: sequences per step."""
    sft_lora_r: int = 16
    """Warm start: LoRA rank on all linear layers, merged into the saved base (0 = full fine-tuning)."""


@dataclass
class AlignSection:
    """The alignment stage: every arm trains from the same base with the same reward and data."""

    reward: str = "safety"
    """Task family: "safety" (refuse harmful, answer benign) or "math" (verifiable final answer). It picks
    the default rewards, the tracker's probe set and the report's headline metric."""
    reward_funcs: list[str] = field(default_factory=list)
    """Reward specs of llm.rewards.get_reward: "keyword_safety", "math", "math_correct", "boxed_format",
    "strongreject:<path>", "harmbench:<path>", "reward_model:<path>" (<path> a local directory or hub
    id). Empty: the tiny world's own reward for `reward` on the tiny world, else "keyword_safety" /
    "math"."""
    reward_weights: list[float] = field(default_factory=list)
    """TRL reward_weights, one per reward_funcs entry (empty: all 1)."""
    helpfulness: str = ""
    """Scorer of the benign rows for strongreject:/harmbench: reward specs: "" or "keyword" (1 unless a refusal),
    or "reward_model:<path>" (σ(RM logit); FRPO App. B.1 uses Llama-3.1-8B-Instruct-RM-RB2)."""
    dataset: str = "tiny-world"
    """"tiny-world" (the world's splits for the reward) or a dataset spec (llm.data: "tiny-world:<split>",
    a local .jsonl/.json/.parquet/.csv, or <hub id>[:<config>][@<split>]). Safety rewards need a
    "kind" column (harmful | benign), math rewards an "answer" column."""
    system_prompt: str = ""
    """System message prepended to every alignment prompt (e.g. the Qwen-Math "Please reason step by
    step, and put your final answer within \\boxed{}."); empty: none."""
    steps: int = 10
    """Optimizer steps per arm; 0 = train for `epochs` epochs instead."""
    epochs: float = 1.0
    """Epochs over align.dataset per arm when steps = 0."""
    learning_rate: float = 1e-3
    """AdamW learning rate (an arm may override it)."""
    warmup_ratio: float = 0.0
    """Linear warm-up as a fraction of the stage (0: constant learning rate, else constant after warm-up)."""
    num_generations: int = 8
    """Group size G (completions per prompt)."""
    prompts_per_step: int = 16
    """Prompts per device and micro-batch (micro-batch = prompts_per_step × num_generations completions);
    an optimizer step sees prompts_per_step × gradient_accumulation_steps × processes prompts."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step (TRL: also the generation batch, steps_per_generation)."""
    max_completion_length: int = 8
    """Maximum new tokens per completion."""
    temperature: float = 1.0
    """Sampling temperature during alignment."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass (TRL's default: on)."""
    lora_r: int = 0
    """LoRA rank (0 = full fine-tuning). The adapter is merged into the saved aligned model."""
    lora_alpha: int = 0
    """LoRA alpha (0 = 2·r)."""
    lora_target_modules: list[str] = field(default_factory=list)
    """Module names LoRA adapts, e.g. [q_proj, k_proj, v_proj, o_proj] (empty: "all-linear")."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    match_kl: bool = False
    """Calibrate the alignment dose: every arm after the first trains until its KL to the base (tracked every
    `match_every` steps on the probe prompts, as downstream) reaches the first arm's final tracked KL, for at
    most `match_max_steps` steps — the FRPO paper tunes each arm to a comparable distance from the base. The
    report says whether the arms' KL to the base agree within 20%."""
    match_every: int = 2
    """match_kl: tracking period (steps) of the calibrated arms (the first arm is tracked at its end)."""
    match_max_steps: int = 0
    """match_kl: step cap of a calibrated arm (0: 3 × `steps`)."""
    arms: list[ArmConfig] = field(default_factory=lambda: [
        ArmConfig(name="grpo", algo="grpo", beta=0.0),
        ArmConfig(name="frpo", algo="frpo", lam=0.2, beta=0.0),
    ])
    """The arms (see ArmConfig)."""


@dataclass
class DownstreamSection:
    """The later fine-tuning applied to every aligned model, with the tracking callback."""

    kinds: list[str] = field(default_factory=lambda: ["sft"])
    """Methods, any of: sft (TRL SFTTrainer), csft, csft_pa (CSFTTrainer without / with the PA term),
    rlvr (GRPO on the dataset's prompts with downstream.reward_funcs)."""
    datasets: list[str] = field(default_factory=lambda: ["tiny-world:sft_math_affirm"])
    """Data of each downstream run (every kind runs on every dataset, unless per_dataset says otherwise):
    "tiny-world:<split>" — e.g. sft_math_affirm (benign, with the affirmative opening), sft_math_plain
    (its control), attack_harmful, attack_identity, attack_backdoor — or a local file / hub id
    (llm.data; SFT kinds need prompt and completion after column mapping)."""
    per_dataset: dict = field(default_factory=dict)
    """Overrides of the keys below for one dataset: {<dataset spec>: {kinds: [rlvr], learning_rate: 6e-6,
    ...}}; every spec must be in `datasets`, every inner key a downstream key other than datasets and
    per_dataset."""
    steps: int = 200
    """Optimizer steps per downstream run; 0 = train for `epochs` epochs instead."""
    epochs: float = 1.0
    """Epochs over the dataset when steps = 0."""
    max_rows: int = 0
    """Use a fixed-seed subset of this many rows of the dataset (0: all)."""
    learning_rate: float = 1e-3
    """AdamW learning rate of the downstream fine-tuning."""
    warmup_ratio: float = 0.0
    """Linear warm-up as a fraction of the stage (0: constant learning rate, else constant after warm-up)."""
    batch_size: int = 80
    """Per-device batch size (sequences for SFT kinds; completions for rlvr, rounded to whole groups)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass (TRL's default: on)."""
    max_length: int = 1024
    """SFT kinds: maximum tokens of prompt + completion (longer rows are truncated)."""
    lora_r: int = 0
    """LoRA rank for the downstream run (0 = full fine-tuning)."""
    lora_alpha: int = 0
    """LoRA alpha (0 = 2·r)."""
    lora_target_modules: list[str] = field(default_factory=list)
    """Module names LoRA adapts (empty: "all-linear")."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    reward_funcs: list[str] = field(default_factory=list)
    """rlvr: reward specs (llm.rewards.get_reward), e.g. ["reward_model:/models/rm"]. Empty: the tiny world's
    math reward on the tiny world, else "math"."""
    beta: float = 0.0
    """rlvr: KL coefficient to the aligned model."""
    num_generations: int = 0
    """rlvr: group size (0: align.num_generations)."""
    max_completion_length: int = 0
    """rlvr: maximum new tokens per completion (0: align.max_completion_length)."""
    track_every: int = 3
    """Tracking callback period (steps): KL to the aligned model, retained reward, task metric (0: off)."""
    probe_prompts: int = 20
    """Held-out probe prompts used by the tracker (harmful prompts for safety, math problems for math)."""
    probe_samples: int = 4
    """Completions sampled per probe prompt by the tracker."""
    kl_estimator: str = "rb"
    """KL(π‖π_aligned) estimator of the tracker and the evaluation: "rb" (exact per-token KL of the two
    next-token distributions summed along sampled responses; never negative, low variance) or "mc" (the
    sampled log-ratio)."""
    stop_kl: float = 16.0
    """Stop the downstream run at the first tracking step whose KL to the aligned model reaches this many nats
    (the dose in KL, not steps; `steps` is then the cap); 0 = run all steps. Needs track_every > 0."""
    kl_grid: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 12.0, 16.0])
    """KL values (nats) at which the report compares arms (matched-KL table): each tracked (KL, metric)
    trajectory is interpolated there, a seed that never reaches a point is missing for it. Empty: 5 points
    evenly spaced up to the largest KL that every trajectory of the run reaches."""


@dataclass
class EvalSection:
    """Held-out evaluation after every stage (sharded over processes under accelerate)."""

    n_samples: int = 8
    """Sampled completions per prompt for refusal rate and KL."""
    max_prompts: int = 64
    """Cap on prompts per eval split (a fixed-seed subset for dataset specs; the first ones on the tiny world)."""
    harmful_dataset: str = "auto"
    """Harmful prompts (refusal rate, harmfulness, KL): a dataset spec; "auto" = the tiny world's
    harmful_eval on the tiny world and none otherwise; "none" = skip."""
    benign_dataset: str = "auto"
    """Harmless look-alikes (over-refusal): a dataset spec, "auto" (tiny world's benign_lookalike) or "none"."""
    math_dataset: str = "auto"
    """Problems with an "answer" (accuracy, greedy): a dataset spec, "auto" (tiny world's math_eval) or "none"."""
    variants: dict = field(default_factory=dict)
    """Extra harmful sets {name: dataset spec}, each giving eval/refusal_rate_<name> (e.g. identity: a file
    of HEx-PHI prompts with the AOA persona, trigger: with the backdoor trigger). Empty on the tiny world:
    identity_eval / backdoor_eval_trigger after the identity / backdoor attack datasets."""
    judge: str = "keyword_safety"
    """Harmfulness judge (llm.rewards.get_reward spec): "keyword_safety" (GCG keywords), "strongreject:<path>",
    "harmbench:<path>" or "reward_model:<path>". Refusal and over-refusal rates always use the keyword judge."""
    system_prompt: str = ""
    """System message prepended to every eval prompt of a dataset spec (empty: none)."""
    max_new_tokens: int = 8
    """Generation length of evaluation completions (dataset specs; the tiny world's evaluators use 8)."""
    temperature: float = 1.0
    """Sampling temperature of evaluation completions (0: greedy, one completion per prompt); math is greedy."""
    batch_size: int = 16
    """Prompts per generate call (dataset specs)."""
    samples: int = 0
    """Sample completions kept per stage (dataset specs; 0 = none): the first N prompts of the harmful and of the
    benign set, each with its first sampled completion and the judges' verdicts, stored in the stage's DONE.json
    and listed in the report's "Samples" section. Taken from the metrics' own completions (no extra generation)."""
    benchmarks: list[str] = field(default_factory=list)
    """The papers' standard evaluations of each trained model (llm.standard_evals): "math500" (lm-eval-harness
    minerva_math500, chat template + boxed system prompt) and "mbpp_plus" (evalplus, code run in its
    sandbox), each optionally ":<local data file>" for an offline machine, e.g. [math500:/data/math500.jsonl]."""


@dataclass
class RunConfig:
    """A whole pipeline run."""

    run_name: str = "default"
    """Name of the run directory under output_dir."""
    output_dir: str = "runs"
    """Parent directory of run directories."""
    seeds: list[int] = field(default_factory=lambda: list(range(16)))
    """Seeds: each seed trains its own base, arms and downstream models (CIs are over seeds)."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    bf16: Optional[bool] = None
    """bf16 mixed precision of the trainers: null = on a bf16-capable GPU only; true needs a GPU (TRL would
    autocast on the CPU); false = off."""
    report_to: str = "none"
    """TRL/transformers report_to: "none", "tensorboard" or "wandb"."""
    accelerate_config: str = ""
    """The accelerate config the run is meant for ("zero2", "zero3", "fsdp" = llm/configs/accelerate/<name>.yaml,
    or a path; empty: none). Validated when the run starts; a launch under another distributed type logs a
    warning. The launch command, not this key, activates it."""
    use_vllm: bool = False
    """Generate GRPO/FRPO completions with vLLM (align and rlvr; needs a GPU and `pip install -e .[vllm]`)."""
    vllm_mode: str = "colocate"
    """"colocate" (vLLM shares the training GPUs) or "server" (a separate `trl vllm-serve`)."""
    vllm_gpu_memory_utilization: float = 0.3
    """colocate: fraction of each GPU's memory vLLM may take."""
    ddp_timeout: int = 1800
    """Seconds a collective (barrier, broadcast, NCCL op) may wait before the process group fails; the process
    group is created with it (llm.dist.Dist), so main-process-only work (dataset subsetting, LoRA merge,
    saving) has this long while the other ranks wait."""
    keep_checkpoints: bool = False
    """Keep <stage>/ckpt (weights + optimizer states, ~85 GB for a 7B full fine-tune) after a stage is DONE;
    false: removed then (a DONE stage is never resumed from its checkpoints)."""
    judge_template: str = "official"
    """Rubric of the StrongREJECT / HarmBench judges (align rewards and eval): "official" (the judges' published
    prompts), "paraphrase", or a text file with {prompt} and {response}."""
    world: dict = field(default_factory=dict)
    """Overrides of llm.world.WorldConfig fields (tiny world only)."""
    base: BaseSection = field(default_factory=BaseSection)
    align: AlignSection = field(default_factory=AlignSection)
    downstream: DownstreamSection = field(default_factory=DownstreamSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self):
        validate(self)


def downstream_for(cfg: "RunConfig", dataset: str) -> "DownstreamSection":
    """The downstream settings of one dataset: the section with ``per_dataset[dataset]`` applied."""
    d = cfg.downstream
    base = {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name not in _NOT_PER_DATASET}
    return from_dict(DownstreamSection, {**base, **d.per_dataset.get(dataset, {})},
                     prefix=f"downstream.per_dataset.{dataset}")


def downstream_jobs(cfg: "RunConfig") -> list[tuple[str, str, str]]:
    """(kind, dataset, label) of every downstream run, in config order; the label names its directory."""
    datasets = cfg.downstream.datasets
    return [(k, ds, downstream_label(k, ds, len(datasets))) for ds in datasets
            for k in downstream_for(cfg, ds).kinds]


def downstream_label(kind: str, dataset: str, n_datasets: int) -> str:
    """``kind`` for one dataset, else ``kind@<short name>`` (tiny-world split, file stem or hub name)."""
    if n_datasets == 1:
        return kind
    if dataset.startswith("tiny-world:"):
        short = dataset[len("tiny-world:"):]
    else:
        short = Path(dataset.split("@")[0]).name
        for suffix in (".jsonl", ".json", ".parquet", ".csv"):
            short = short[: -len(suffix)] if short.endswith(suffix) else short
        short = short.replace(":", "-")
    return f"{kind}@{short}"


def validate(cfg: RunConfig) -> None:
    """Range checks across sections; raises ConfigError naming the key, value, range and fix."""
    check_top_level(cfg)
    check_base(cfg.base)
    check_align(cfg.align)
    d = cfg.downstream
    _check(len(d.datasets) >= 1, "downstream.datasets", d.datasets, "a non-empty list of dataset specs")
    _check(len(set(d.datasets)) == len(d.datasets), "downstream.datasets", d.datasets, "distinct dataset specs")
    check_downstream(d, "downstream")
    valid_inner = [f.name for f in dataclasses.fields(DownstreamSection) if f.name not in _NOT_PER_DATASET]
    for ds, over in d.per_dataset.items():
        _check(ds in d.datasets, "downstream.per_dataset", ds, "a spec listed in downstream.datasets",
               f"datasets: {d.datasets}")
        _check(isinstance(over, dict), f"downstream.per_dataset.{ds}", over, "a mapping of downstream keys")
        unknown = sorted(set(over) - set(valid_inner))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown} in section 'downstream.per_dataset.{ds}'; "
                              f"valid keys: {', '.join(valid_inner)}")
        check_downstream(downstream_for(cfg, ds), f"downstream.per_dataset.{ds}")
    labels = [lab for _, _, lab in downstream_jobs(cfg)]
    _check(len(set(labels)) == len(labels), "downstream.datasets", d.datasets,
           "datasets with distinct short names (the run directories are named kind@<short name>)")
    check_eval(cfg.eval)


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> RunConfig:
    """Load a run config: defaults ← YAML file (``path``) ← ``key=value`` overrides, then validate.

    ``path`` may be a file or the name of a bundled config in ``llm/configs/`` or ``llm/configs/recipes/``
    (without ``.yaml``).
    """
    data = to_dict(RunConfig())
    if path is not None:
        data = merge(data, read_config_file(path))
    apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what the run directory stores as ``config.yaml``)."""
    return dump_yaml(to_dict(cfg))


def shared_base_seed(cfg: RunConfig) -> Optional[int]:
    """base.seed when one base serves every seed (the tiny world's pretrained model or a real model's warm
    start; its stage directory is ``<run>/base``), else None (a base per seed, ``<run>/seed<k>/base``)."""
    return cfg.base.seed if (cfg.base.model == "tiny-world" or cfg.base.sft_dataset) else None
