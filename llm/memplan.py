"""Per-GPU memory and disk plan of a run config, per stage: what ``--dry-run`` prints and what refuses a config.

For every stage of a run (each align arm, each downstream job, the evaluation after them) the plan sums
what one process holds on its GPU and names the biggest item; a stage over ``--gpu-memory`` stops the
dry run with the stage and that item. Sizes come from the model shapes (:mod:`llm.shapes`: the local
config.json, else the table of known hub models), the run config (LoRA, lengths, batches, β, judges,
vLLM) and the accelerate config (processes N and the sharding); the byte count of each item (weights,
gradients, optimizer, references, judges, vLLM, activations, KV cache, KL logits, overhead), with its
formula, is listed in :mod:`llm.memsizes`.

Phases: the static items are held through the stage; training (activations), generation and tracking
are transient and do not overlap, so peak = static + the largest phase. Disk per stage: ``model/``
(b·P), ``adapter/`` (LoRA), ``ckpt/`` (one checkpoint: weights + optimizer, DeepSpeed: 12·P_train over
all ranks); checkpoints are removed when a stage is DONE unless ``keep_checkpoints``; while a
checkpoint rotates two exist. Host memory per process: CSFT loads the policy on the CPU and copies it
(2·b·P), the LoRA merge (main process) loads the base (b·P).

What the pipeline does is read from its code (:func:`code_facts`): whether judges are shared and
released per stage, whether the tracker reuses the trainer's reference, computes lean KL logits, and
whether checkpoints and vLLM engines are released. The plan models the code as it is.

Checked on CPU: tests/llm/test_memplan.py (the estimators: see :mod:`llm.memsizes`; the stage walk on
every recipe, the refusal, the fixes). Deviation: prompt lengths are not in the config; the plan assumes
:data:`PROMPT_TOKENS` per prompt.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from llm.config import ConfigError, RunConfig, downstream_for, downstream_jobs
from llm.memsizes import GB, Sharding, activation_bytes, kl_logits_bytes, lm_head_bytes, sharding_of, training_memory
from llm.shapes import Shape, model_shape, tiny_world_shape

PROMPT_TOKENS = 512
TRACKER_BATCH = 16          # DownstreamTracker's default batch_size (prompts per generate call)
CUDA_OVERHEAD_GB = 1.5
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GRPO_KINDS = ("grpo", "frpo", "rlvr")


# ---------------------------------------------------------------------------------------------- code facts
def _src(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def code_facts() -> dict[str, bool]:
    """What the pipeline's code does today, read from it (the plan models the code as it is).

    judges_shared        one model per judge path and process (llm.judges' model cache)
    judges_released      judges freed at the end of each stage (llm.judges.release_judges called by the run)
    tracker_shares_ref   the downstream tracker uses the trainer's reference, or the aligned model loaded
                         from disk (llm.memfix.attach_tracker_reference called in llm.stages)
    lean_kl_logits       the KL of the tracker and the evaluation is computed per row chunk of ≈ 1 GB
                         (llm.memfix.chunked_sequence_kl called in llm.sampling)
    checkpoints_removed  ckpt/ removed when a stage is DONE (llm.memfix.remove_checkpoints called by the run)
    vllm_released        the colocated vLLM engine is released after each trainer (llm.memfix.release_vllm)
    """
    import importlib

    import llm.judges
    import llm.run
    import llm.stages

    run_src = _src(llm.run) + _src(llm.stages)
    kl_src = "".join(_src(importlib.import_module(m)) for m in ("llm.sampling", "llm.callbacks", "llm.evaluation")
                     if importlib.util.find_spec(m) is not None)
    return {
        "judges_shared": hasattr(llm.judges, "release_judges"),
        "judges_released": "release_judges(" in run_src,
        "tracker_shares_ref": "attach_tracker_reference(" in _src(llm.stages),
        "lean_kl_logits": "chunked_sequence_kl(" in kl_src,
        "checkpoints_removed": "remove_checkpoints(" in run_src,
        "vllm_released": "release_vllm(" in _src(llm.stages),
    }


# ---------------------------------------------------------------------------------------------- plan objects
@dataclass
class Item:
    name: str
    gb: float
    phase: str = "static"  # static, or the transient phase it belongs to (train, generate, track, eval)


@dataclass
class StagePlan:
    name: str
    count: int
    items: list[Item] = field(default_factory=list)
    disk_gb: float = 0.0     # kept per stage instance after it is DONE
    ckpt_gb: float = 0.0     # one checkpoint of this stage (two exist while it rotates)
    host_gb: float = 0.0     # per-process host memory peak

    def add(self, name: str, nbytes: float, phase: str = "static") -> None:
        if nbytes > 0:
            self.items.append(Item(name, nbytes / GB, phase))

    def phase_gb(self, phase: str) -> float:
        return sum(i.gb for i in self.items if i.phase == phase)

    @property
    def peak_phase(self) -> str:
        phases = sorted({i.phase for i in self.items} - {"static"})
        return max(phases, key=self.phase_gb, default="static")

    @property
    def peak_gb(self) -> float:
        p = self.peak_phase
        return self.phase_gb("static") + (self.phase_gb(p) if p != "static" else 0.0)

    @property
    def biggest(self) -> Item:
        return max((i for i in self.items if i.phase in ("static", self.peak_phase)), key=lambda i: i.gb)


@dataclass
class Plan:
    stages: list[StagePlan]
    gpu_memory_gb: float
    sharding: Sharding
    shapes: dict[str, Shape]
    facts: dict[str, bool]
    problems: list[str] = field(default_factory=list)

    @property
    def disk_gb(self) -> float:
        kept = sum(s.count * s.disk_gb for s in self.stages)
        return kept + max((s.ckpt_gb for s in self.stages), default=0.0)

    @property
    def over(self) -> list[StagePlan]:
        return [s for s in self.stages if s.peak_gb > self.gpu_memory_gb]


# ---------------------------------------------------------------------------------------------- the walk
def _dtype_bytes(cfg: RunConfig) -> int:
    if cfg.base.dtype != "auto":
        return DTYPE_BYTES[cfg.base.dtype]
    return 2 if (cfg.bf16 is not False and cfg.device != "cpu") else 4


def _judge_specs(specs: list[str], helpfulness: str = "") -> list[tuple[str, str, str]]:
    """(kind, path, owning spec) of the model judges behind reward specs (+ the helpfulness RM of a safety
    spec, owned by that spec: without the shared model cache each spec loads its own)."""
    out = []
    for s in specs:
        kind, sep, path = s.partition(":")
        if sep and kind in ("strongreject", "harmbench", "reward_model") and path:
            out.append((kind, path, s))
            if kind != "reward_model" and helpfulness.startswith("reward_model:"):
                out.append(("reward_model", helpfulness.partition(":")[2], s))
    return out


class _Walker:
    def __init__(self, cfg: RunConfig, gpu_memory_gb: float, facts: dict[str, bool]):
        self.cfg, self.gpu, self.facts = cfg, gpu_memory_gb, facts
        self.sh = sharding_of(cfg)
        self.b = _dtype_bytes(cfg)
        self.shapes: dict[str, Shape] = {}
        self.problems: list[str] = []
        self.resident_judges: list[tuple[str, str, str]] = []  # without release: everything loaded so far
        self.vllm_engines = 0
        m = cfg.base
        self.base = tiny_world_shape(m.hidden_size, m.num_layers) if m.model == "tiny-world" else self.shape(m.model)

    def shape(self, name: str, score: bool = False) -> Shape:
        if name not in self.shapes:
            self.shapes[name] = model_shape(name, score_head=score)
        return self.shapes[name]

    # ------------------------------------------------------------------ shared items
    def judges(self, st: StagePlan, needed: list[tuple[str, str, str]]) -> None:
        """Add the judge models of a stage (call once per stage with every (kind, path, spec) it uses)."""
        if not self.facts["judges_released"]:
            self.resident_judges += [j for j in needed if j not in self.resident_judges]
            needed = self.resident_judges
        # one model per path with the shared cache, else one per (spec, role)
        needed = list({(j[1] if self.facts["judges_shared"] else j): j for j in needed}.values())
        for kind, path, _ in needed:
            sh = self.shape(path, score=kind == "reward_model")
            st.add(f"judge {kind} ({Path(path).name}, {sh.params / 1e9:.1f}B)", self.b * sh.params)

    def overhead(self, st: StagePlan, training: bool) -> None:
        st.add("CUDA context + NCCL", CUDA_OVERHEAD_GB * GB)
        if training and self.sh.deepspeed and self.sh.zero_stage >= 2:
            st.add("DeepSpeed buckets", (2 * 5e8 if self.sh.zero_stage == 2 else 1.55e9) * self.b)

    def vllm(self, st: StagePlan, uses: bool) -> None:
        if not (self.cfg.use_vllm and self.cfg.vllm_mode == "colocate"):
            return
        if uses:
            self.vllm_engines += 1
        alive = (1 if uses else 0) if self.facts["vllm_released"] else self.vllm_engines
        if alive:
            frac = self.cfg.vllm_gpu_memory_utilization
            label = f"vLLM colocate ({frac:g} of the GPU)" + (f" × {alive} engines" if alive > 1 else "")
            st.add(label, alive * frac * self.gpu * GB)

    def tracker(self, st: StagePlan, d, lora: bool, trainer_has_ref: bool) -> list[tuple[str, str, str]]:
        """Add the tracker's items; returns the judges its rewards load."""
        cfg, s, b = self.cfg, self.base, self.b
        fam_set = cfg.eval.math_dataset if cfg.align.reward == "math" else cfg.eval.harmful_dataset
        has_probes = fam_set != "none" and (fam_set != "auto" or cfg.base.model == "tiny-world")
        if d.track_every <= 0 or not has_probes:
            return []
        if not lora:
            if trainer_has_ref and self.facts["tracker_shares_ref"]:
                pass  # the trainer's reference, counted once
            else:
                st.add("tracker reference (copy of the starting model)", b * s.params)
                if self.sh.weights and not self.facts["tracker_shares_ref"]:
                    self.problems.append(f"{st.name}: the tracker deep-copies a model partitioned by "
                                         f"{self.sh.name}; that copy is unusable (set downstream.track_every=0, "
                                         "use LoRA, or add the llm.memfix.attach_tracker_reference hook)")
        rows = min(TRACKER_BATCH, d.probe_prompts) * d.probe_samples
        tokens = PROMPT_TOKENS + cfg.align.max_completion_length
        st.add("tracker generation KV cache", rows * tokens * s.kv_bytes_per_token(b), "track")
        st.add("tracker KL logits" + (" (lean)" if self.facts["lean_kl_logits"] else " (all rows at once)"),
               kl_logits_bytes(s, rows, cfg.align.max_completion_length, self.facts["lean_kl_logits"]), "track")
        return _judge_specs(cfg.align.reward_funcs or [], cfg.align.helpfulness)

    # ------------------------------------------------------------------ stages
    def train_stage(self, name: str, count: int, kind: str, *, lora_r, lora_targets, rows, tokens, ckpt,
                    beta=0.0, gen_rows=0, d=None, reward_specs=(), helpfulness="") -> StagePlan:
        s, b, sh = self.base, self.b, self.sh
        st = StagePlan(name, count)
        lora_p = s.lora_params(lora_r, lora_targets) if lora_r else 0
        for k, v in training_memory(s, dtype_bytes=b, lora_params=lora_p, sharding=sh).items():
            st.add(k, v)
        has_ref = not lora_p and (kind in ("csft", "csft_pa") or (kind in GRPO_KINDS and beta > 0))
        if has_ref:
            label = "CSFT reference (frozen copy)" if kind.startswith("csft") else "TRL reference policy (β > 0)"
            st.add(label, b * s.params / (sh.processes if sh.shards_reference else 1))
        self.overhead(st, True)
        self.vllm(st, kind in GRPO_KINDS)
        st.add("activations" + (" (checkpointed)" if ckpt else ""), activation_bytes(s, rows, tokens, b, ckpt),
               "train")
        if not kind.startswith("csft"):  # TRL's fused LM head: 4096-token × 32768-vocab tiles, fp32 head gradient
            st.add("LM head (TRL fused tiles)", lm_head_bytes(s, rows, tokens, b, not lora_p), "train")
        if kind.startswith("csft"):
            st.add("CSFT logits (policy + reference, fp32)", rows * tokens * s.vocab * (2 * b + 4 * (4 if kind ==
                                                                                                 "csft_pa" else 3)),
                   "train")
        if kind in GRPO_KINDS and not self.cfg.use_vllm:
            st.add("HF generate KV cache", gen_rows * tokens * s.kv_bytes_per_token(b), "generate")
        needed = self.tracker(st, d, bool(lora_p), has_ref) if d is not None else []
        self.judges(st, needed + _judge_specs(list(reward_specs), helpfulness))
        # disk: model/ + adapter/ kept; one checkpoint (weights + optimizer over all ranks)
        trainable = lora_p or s.params
        st.disk_gb = (b * s.params + (b if sh.deepspeed else 4) * lora_p) / GB
        opt_total = (12 if b < 4 else 8) * trainable if sh.deepspeed else (2 * b if not lora_p else 8) * trainable
        st.ckpt_gb = ((b * lora_p if lora_p else b * s.params) + opt_total) / GB
        if not self.facts["checkpoints_removed"] or self.cfg_keep():
            st.disk_gb += st.ckpt_gb
        st.host_gb = (2 if kind.startswith("csft") and not lora_p else 1) * b * s.params / GB
        return st

    def cfg_keep(self) -> bool:
        return bool(getattr(self.cfg, "keep_checkpoints", False))

    def eval_stage(self, name: str, count: int, with_ref: bool) -> StagePlan:
        cfg, s, b, e = self.cfg, self.base, self.b, self.cfg.eval
        st = StagePlan(name, count)
        st.add("policy weights (eval copy)", b * s.params)
        if with_ref:
            st.add("reference weights (KL)", b * s.params)
        self.overhead(st, False)
        self.vllm(st, False)
        spec_sets = [x for x in (e.harmful_dataset, *e.variants.values()) if x not in ("none", "auto")]
        if spec_sets:
            helper = cfg.align.helpfulness if e.judge in cfg.align.reward_funcs else ""
            self.judges(st, _judge_specs([e.judge], helper))
        n = 1 if e.temperature == 0 else e.n_samples
        tokens = PROMPT_TOKENS + e.max_new_tokens
        st.add("eval generation KV cache", e.batch_size * n * tokens * s.kv_bytes_per_token(b), "eval")
        if with_ref:
            st.add("eval KL logits" + (" (lean)" if self.facts["lean_kl_logits"] else " (all rows at once)"),
                   kl_logits_bytes(s, e.batch_size * e.n_samples, e.max_new_tokens, self.facts["lean_kl_logits"]), "eval")
        return st


def plan(cfg: RunConfig, gpu_memory_gb: float = 80.0, facts: dict[str, bool] | None = None) -> Plan:
    """The memory and disk plan of every stage of ``cfg`` (in run order), with the sharding and shapes used."""
    if not (gpu_memory_gb > 0 and math.isfinite(gpu_memory_gb)):
        raise ValueError(f"gpu_memory_gb={gpu_memory_gb!r} must be a positive number of GB, e.g. 80")
    w = _Walker(cfg, gpu_memory_gb, facts or code_facts())
    a, seeds = cfg.align, len(cfg.seeds)
    stages = [w.eval_stage("eval base", seeds, False)]
    trained_arms = [arm for arm in a.arms if arm.algo != "none"]
    for arm in trained_arms:
        stages.append(w.train_stage(
            f"align/{arm.name}", seeds, arm.algo, lora_r=a.lora_r, lora_targets=a.lora_target_modules,
            rows=a.prompts_per_step * a.num_generations, tokens=PROMPT_TOKENS + a.max_completion_length,
            ckpt=a.gradient_checkpointing, beta=arm.beta,
            gen_rows=a.prompts_per_step * a.num_generations * a.gradient_accumulation_steps,
            reward_specs=a.reward_funcs, helpfulness=a.helpfulness))
    if trained_arms:
        stages.append(w.eval_stage("eval aligned", seeds * len(trained_arms), True))
    for kind, ds, label in downstream_jobs(cfg):
        d = downstream_for(cfg, ds)
        if kind == "rlvr":
            g = d.num_generations or a.num_generations
            rows, tokens = g * max(1, d.batch_size // g), PROMPT_TOKENS + (d.max_completion_length or
                                                                            a.max_completion_length)
        else:
            rows, tokens = d.batch_size, d.max_length
        stages.append(w.train_stage(
            f"downstream/{label}", seeds * len(a.arms), kind, lora_r=d.lora_r, lora_targets=d.lora_target_modules,
            rows=rows, tokens=tokens, ckpt=d.gradient_checkpointing, beta=d.beta,
            gen_rows=rows * d.gradient_accumulation_steps, d=d,
            reward_specs=d.reward_funcs if kind == "rlvr" else ()))
        stages.append(w.eval_stage(f"eval downstream/{label}", seeds * len(a.arms), True))
    return Plan(stages, gpu_memory_gb, w.sh, w.shapes | {"base": w.base}, w.facts, w.problems)


# ---------------------------------------------------------------------------------------------- output
def format_plan(p: Plan, fixed: Plan | None = None) -> str:
    """The plan as printed by ``--dry-run``: one row per stage, the peak stage's items, disk and facts.

    ``fixed``: the same config planned with every fix of :func:`code_facts` in place; a stage over the GPU
    as the code is today shows its peak with the fixes beside it.
    """
    cols = ("stage", "×", "static", "transient", "peak GB", "biggest item", "disk/stage", "host/proc")
    rows = []
    for k, s in enumerate(p.stages):
        ph = s.peak_phase
        trans = f"{s.phase_gb(ph):.1f} ({ph})" if ph != "static" else "-"
        flag = "  OVER" if s.peak_gb > p.gpu_memory_gb else ""
        if flag and fixed is not None:
            flag += f" ({fixed.stages[k].peak_gb:.1f} with the fixes)"
        rows.append((s.name, str(s.count), f"{s.phase_gb('static'):.1f}", trans, f"{s.peak_gb:.1f}{flag}",
                     f"{s.biggest.name} {s.biggest.gb:.1f}", f"{s.disk_gb:.1f}", f"{s.host_gb:.1f}"))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  " + " | ".join(v.ljust(w) for v, w in zip(r, widths))  # noqa: E731
    out = [f"[llm.run] memory plan per GPU ({p.sharding.name}, --gpu-memory {p.gpu_memory_gb:g} GB, "
           f"prompts assumed {PROMPT_TOKENS} tokens); GB = 1e9 bytes"]
    out += [f"  model {k}: {v.params / 1e9:.2f}B params ({v.source})" for k, v in p.shapes.items()]
    out += [line(cols), "  " + "-+-".join("-" * w for w in widths), *map(line, rows)]
    worst = max(p.stages, key=lambda s: s.peak_gb)
    out.append(f"  items of the largest stage, {worst.name} (static + {worst.peak_phase}):")
    out += [f"    {i.gb:7.2f}  {i.name}" + ("" if i.phase == "static" else f"  [{i.phase}]")
            for i in worst.items if i.phase in ("static", worst.peak_phase)]
    out.append(f"  disk: {p.disk_gb:.0f} GB for the whole run (models kept + the largest checkpoint while it "
               f"rotates)")
    missing = [k for k, v in p.facts.items() if not v]
    if missing:
        out.append(f"  modelled as the code is today; not (yet) in the code: {', '.join(missing)} "
                   "(llm.memplan.code_facts)")
    out += [f"  problem: {x}" for x in p.problems]
    return "\n".join(out)


def check(p: Plan) -> None:
    """Raise ConfigError when a stage exceeds the GPU memory, naming the stage and its biggest item."""
    over = p.over
    if over:
        s = max(over, key=lambda x: x.peak_gb)
        raise ConfigError(
            f"stage {s.name} needs about {s.peak_gb:.1f} GB per GPU, more than --gpu-memory "
            f"{p.gpu_memory_gb:g} GB; its biggest item is {s.biggest.name} ({s.biggest.gb:.1f} GB). "
            f"{len(over)} stage(s) over: {', '.join(x.name for x in over)}. Fix: LoRA "
            "(lora_r), gradient checkpointing, a smaller batch or vllm_gpu_memory_utilization, a sharded "
            "accelerate_config (zero3), or --gpu-memory for a larger GPU")


def plan_and_check(cfg: RunConfig, gpu_memory_gb: float = 80.0, *, show: bool = True) -> Plan:
    """Plan ``cfg``, print the table on the main process (``show``), and refuse the config if a stage does not fit.

    The refusal is about the config: it is decided on the plan with every fix of :func:`code_facts` in
    place. A stage that fits only with a fix the code does not have yet is printed as OVER with its peak
    after the fixes, and a warning names the missing fixes (a real run would run out of memory there).
    """
    try:
        p = plan(cfg, gpu_memory_gb)
        fixed = p if all(p.facts.values()) else plan(cfg, gpu_memory_gb, dict.fromkeys(p.facts, True))
    except ValueError as exc:
        raise ConfigError(f"memory plan: {exc}") from None
    if show and int(os.environ.get("RANK", "0")) == 0:
        print(format_plan(p, fixed), flush=True)
        if p.over and not fixed.over:
            missing = ", ".join(k for k, v in p.facts.items() if not v)
            print(f"[llm.run] warning: {len(p.over)} stage(s) fit only with fixes the code does not have yet "
                  f"({missing}; see llm.memfix): a real run would run out of GPU memory there", flush=True)
    check(fixed)
    return fixed
