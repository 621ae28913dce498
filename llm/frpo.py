"""FRPO on TRL: ``FRPOConfig`` and ``FRPOTrainer``, thin adapters over ``trl.GRPOTrainer`` (TRL >= 1.16).

FRPO (fine-tuning-robust policy optimization) maximizes the entropic risk −λ log E e^{−r/λ} of the
reward instead of its mean (paper Eq. 3.5, surrogate Eq. 4.1–4.3). The math lives in
``theory.losses`` and is only called from here:

* ``frpo_mode="advantage"`` (default, exact on-policy): TRL's GRPO loss with the closed-form FRPO
  advantages ``frpo_advantages`` computed from the gathered group rewards, replacing TRL's
  ``r − mean r`` (docs/theory.md §1 "On-policy closed form"). Everything else (vLLM, KL β, gradient
  accumulation, ``steps_per_generation``, multi-GPU) is TRL's own code path.
* ``frpo_mode="ratio"``: the literal surrogate ``frpo_loss`` (clipped ratios, log-partition,
  jackknife) in ``_compute_loss``, with explicit integer group ids carried in the batch; needed
  when samples are reused off-policy (``num_iterations > 1``).

λ = inf is GRPO with ``scale_rewards="none"`` and ``loss_type="grpo"`` (advantage mode).

Laptop CPU run (tiny model, see ``docs/snippets/frpo_tiny.py``)::

    python docs/snippets/frpo_tiny.py

Multi-GPU run (your script builds ``FRPOConfig``/``FRPOTrainer`` like the snippet)::

    accelerate launch --num_processes 8 your_frpo_script.py

Length (~430 lines, past the ~400 guide): the config's checks of TRL's fields against FRPO's (one
ValueError each, with the tables of required and ratio-mode-unsupported settings) and the trainer's
two modes (the advantage hook and the ratio-mode loss) adapt one TRL pair and stay together.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

from llm.trl_compat import (  # noqa: F401  (TESTED_TRL, TRLCompatibilityError: re-exported)
    _TRL_ATTRS,
    TESTED_TRL,
    TRLCompatibilityError,
    _trl_error,
    check_trl_compatibility,
)
from theory.losses import (
    SCALES,
    aggregate,
    frpo_advantages,
    frpo_loss,
    frpo_weight_metrics,
    group_advantages,
    kl_k3,
)

FRPO_MODES = ("advantage", "ratio")

# TRL settings that FRPO fixes: field -> (required value, why). FRPOConfig defaults to these values,
# so only an explicit conflicting choice by the user raises.
_REQUIRED = {
    "scale_rewards": ("none", "FRPO centres rewards without std scaling, A_i = r_i − mean_j r_j (Eq. 4.1); "
                              "λ is measured in reward units"),
    "loss_type": ("grpo", "FRPO's s_i is the token mean per sequence, then the mean over sequences (Eq. 4.2); "
                          "TRL's loss_type='grpo' is that aggregation"),
    "multi_objective_aggregation": ("sum_then_normalize", "FRPO needs the raw weighted reward sum r_i per row"),
    "importance_sampling_level": ("token", "FRPO's ratios are per token (Eq. 4.1)"),
}

# TRL loss features that the literal surrogate (ratio mode) does not implement: field -> (default, why).
_RATIO_UNSUPPORTED = {
    "top_entropy_quantile": (1.0, "the entropy mask is not part of Eq. 4.1"),
    "off_policy_mask_threshold": (None, "the off-policy sequence mask is not part of Eq. 4.1"),
    "entropy_coef": (0.0, "the entropy bonus is not part of Eq. 4.1"),
    "use_adaptive_entropy": (False, "the entropy bonus is not part of Eq. 4.1"),
    "delta": (None, "ratio mode uses the paper's one-sided clip min(ρ, 1+ε) (Eq. 4.1)"),
}


def _fail(name: str, value: Any, allowed: str, fix: str) -> None:
    raise ValueError(f"FRPOConfig: {name}={value!r} is not allowed; allowed: {allowed}. Fix: {fix}")


@dataclass
class FRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the five FRPO fields; fixes the TRL settings FRPO's math requires.

    Notation: ``lam`` = λ, ``num_generations`` = G, ``beta`` = β, ``epsilon``/``epsilon_high`` = ε.
    Defaults differ from ``GRPOConfig`` in ``scale_rewards="none"`` and ``loss_type="grpo"``;
    setting them (or ``multi_objective_aggregation``, ``importance_sampling_level``) to anything
    else raises a ValueError naming the field, the value, the allowed value and the fix.

    Aggregation and the baseline: the paper's per-sequence token mean (``loss_type="grpo"``, what this
    trainer uses, as the paper does) makes the baseline λ·mean_i mean_t c_it length-dependent, so with
    responses of different lengths it shifts the expected gradient by −λ∇E[1/|y|] (ledger row
    ``frpo.baseline_token_mean_lengths``, refuted by exact enumeration). A length-independent normalizer —
    a sequence sum, or ``theory.losses.aggregate(..., "seq_sum_const")`` — keeps the baseline unbiased.
    """

    lam: float | None = field(
        default=None,
        metadata={"help": "λ, the entropic-risk temperature of J_λ = −λ log E_π e^{−r/λ} (FRPO Eq. 3.5, 4.1). "
                          "Required, > 0; small = more robust to low-reward samples; `inf` is GRPO without std "
                          "scaling (Remark 3.2). The paper uses 0.2 (safety, rewards in [0,1]) and 2.0 (math)."},
    )
    jackknife: bool = field(
        default=True,
        metadata={"help": "Jackknife the log-partition estimate, log Z̃ = G log Ẑ − (G−1)/G Σ_j log Ẑ_{−j} "
                          "(FRPO Eq. 4.3, App. E): O(1/G²) instead of O(1/G) bias. Needs num_generations >= 2."},
    )
    baseline: bool = field(
        default=True,
        metadata={"help": "Add the baseline λ·mean_i mean_t c_it (FRPO Eq. 4.2, App. D). False is the "
                          "ablation of App. D / Fig. 9: every coefficient is negative and the policy collapses."},
    )
    lam_scale: str = field(
        default="max1",
        metadata={"help": "Multiplier s(λ) of the objective: 'lambda' (Eq. 4.1 as written), 'one' (the paper's "
                          "safety runs, App. B.1), 'max1' = max(λ, 1) (the authors' public code; default)."},
    )
    frpo_mode: str = field(
        default="advantage",
        metadata={"help": "'advantage': TRL's GRPO loss with the closed-form FRPO advantages (exact gradient of "
                          "Eq. 4.1–4.3 on-policy, i.e. num_iterations=1). 'ratio': the literal surrogate of "
                          "Eq. 4.1–4.3 with clipped ratios; use it for num_iterations > 1."},
    )
    # TRL fields whose default FRPO changes (validated in __post_init__)
    scale_rewards: str = field(
        default="none",
        metadata={"help": "FRPO requires 'none': A_i = r_i − mean_j r_j without std scaling (FRPO Eq. 2.1)."},
    )
    loss_type: str = field(
        default="grpo",
        metadata={"help": "FRPO requires 'grpo': token mean per sequence, then mean over sequences, matching "
                          "s_i = mean_t(w_i c_it) (FRPO Eq. 4.2)."},
    )

    def __post_init__(self):
        super().__post_init__()  # TRL maps scale_rewards True/False -> "group"/"none", sets steps_per_generation
        if self.lam is None:
            _fail("lam", None, "a float in (0, inf]",
                  "set lam explicitly, e.g. lam=0.2 for rewards in [0, 1] (paper, safety) or lam=math.inf for GRPO")
        try:
            lam = float(self.lam)
        except (TypeError, ValueError):
            _fail("lam", self.lam, "a float in (0, inf]", "pass a number")
        if math.isnan(lam) or lam <= 0:
            _fail("lam", self.lam, "a float in (0, inf]", "use a positive λ (small = more robust) or math.inf")
        self.lam = lam
        if self.lam_scale not in SCALES:
            _fail("lam_scale", self.lam_scale, f"{SCALES}", "use 'max1' (the authors' code) unless you know why")
        if self.frpo_mode not in FRPO_MODES:
            _fail("frpo_mode", self.frpo_mode, f"{FRPO_MODES}", "use 'advantage' on-policy, 'ratio' off-policy")
        for name, (required, why) in _REQUIRED.items():
            if getattr(self, name) != required:
                _fail(name, getattr(self, name), repr(required), f"leave {name} unset or set it to {required!r}; {why}")
        for name, g in (("num_generations", self.num_generations), ("num_generations_eval", self.num_generations_eval)):
            if g is not None and g < 2:
                _fail(name, g, "an integer >= 2",
                      "sample at least 2 completions per prompt: FRPO's weights compare samples within a group")
        if math.isinf(lam):
            if self.lam_scale == "one":
                _fail("lam_scale", "one", "'max1' or 'lambda' with lam=inf",
                      "with scale 'one' the objective vanishes as λ → inf; use lam_scale='max1'")
            if not self.baseline:
                _fail("baseline", False, "True with lam=inf",
                      "the no-baseline ablation has no λ → inf limit; use a finite lam")
        if not self.baseline:
            warnings.warn(
                "FRPOConfig(baseline=False) is the App. D ablation: without the baseline λ·mean(c) every "
                "coefficient is negative and the policy is expected to collapse (paper Fig. 9). Use it only "
                "to reproduce that ablation.", UserWarning, stacklevel=3)

        on_policy = self.num_iterations == 1 and self.gradient_accumulation_steps % self.steps_per_generation == 0
        if self.frpo_mode == "advantage" and not on_policy:
            if self.num_iterations != 1:
                _fail("num_iterations", self.num_iterations, "1 with frpo_mode='advantage'",
                      "the closed-form advantages are FRPO's gradient only on-policy; set frpo_mode='ratio' "
                      "for num_iterations > 1, or num_iterations=1")
            _fail("steps_per_generation", self.steps_per_generation,
                  f"a divisor of gradient_accumulation_steps={self.gradient_accumulation_steps} with "
                  "frpo_mode='advantage'",
                  "later optimizer steps would reuse stale samples (off-policy); set steps_per_generation to a "
                  "divisor of gradient_accumulation_steps, or frpo_mode='ratio'")
        if self.frpo_mode == "ratio":
            if math.isinf(lam):
                _fail("lam", lam, "a finite float with frpo_mode='ratio'",
                      "λ = inf is GRPO: use frpo_mode='advantage' (its exact limit)")
            g = self.num_generations
            if self.per_device_train_batch_size % g:
                _fail("per_device_train_batch_size", self.per_device_train_batch_size,
                      f"a multiple of num_generations={g} with frpo_mode='ratio'",
                      "the literal surrogate needs whole groups in every micro-batch: set "
                      f"per_device_train_batch_size to a multiple of {g} (raise gradient_accumulation_steps "
                      "to keep the effective batch), or use frpo_mode='advantage'")
            g_eval = self.num_generations_eval or g
            if self.eval_strategy != "no" and self.per_device_eval_batch_size % g_eval:
                _fail("per_device_eval_batch_size", self.per_device_eval_batch_size,
                      f"a multiple of num_generations_eval={g_eval} with frpo_mode='ratio'",
                      f"set per_device_eval_batch_size to a multiple of {g_eval}")
            for name, (default, why) in _RATIO_UNSUPPORTED.items():
                if getattr(self, name) != default:
                    _fail(name, getattr(self, name), f"{default!r} with frpo_mode='ratio'",
                          f"unset it or use frpo_mode='advantage' ({why})")
            if self.use_vllm and self.vllm_importance_sampling_correction:
                _fail("vllm_importance_sampling_correction", True, "False with frpo_mode='ratio' and use_vllm",
                      "the vLLM importance-sampling correction is not part of Eq. 4.1; set it to False or use "
                      "frpo_mode='advantage'")


def _permute(batch: dict[str, Any], order: torch.Tensor) -> dict[str, Any]:
    """Apply one row order to every per-row value of a batch (TRL's ``shuffle_sequence_dict`` rules)."""
    def permute(v):
        if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
            return v
        if isinstance(v, torch.Tensor):
            return v[order.to(v.device)]
        return [v[i] for i in order.tolist()]

    return {k: permute(v) for k, v in batch.items()}


def shuffle_whole_groups(batch: dict[str, Any], group_ids: torch.Tensor, generator=None) -> dict[str, Any]:
    """Shuffle the groups of a batch, keeping each group's rows together (and in their order)."""
    ids = group_ids.cpu()
    uniq, inverse = torch.unique(ids, return_inverse=True)
    slot = torch.empty(len(uniq), dtype=torch.long)
    slot[torch.randperm(len(uniq), generator=generator)] = torch.arange(len(uniq))
    order = torch.argsort(slot[inverse], stable=True)
    return _permute(batch, order)


class FRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with FRPO's advantages (``frpo_mode="advantage"``) or surrogate (``"ratio"``).

    Takes the same arguments as ``trl.GRPOTrainer``; ``args`` must be an :class:`FRPOConfig`.
    Adds to each generation batch ``frpo_rewards`` (B,), ``frpo_valid`` (B,) bool (False where every
    reward function returned None) and ``frpo_group_ids`` (B,) int64 (unique per prompt group and
    generation round, assigned by position in the gathered generation batch — no hashing), and in advantage
    mode ``frpo_advantages`` (B,). Guards against a TRL that would make it plain GRPO: at init every private
    GRPOTrainer method it overrides or calls must exist with the parameters it uses
    (:func:`check_trl_compatibility`, tested TRL :data:`TESTED_TRL`); during training every loss must come
    from a batch FRPO scored, with the advantages FRPO set, through FRPO's ``_compute_loss``
    (:attr:`frpo_loss_batches` counts them); otherwise TRLCompatibilityError. Logs
    ``frpo/weight_entropy``, ``frpo/max_weight``, ``frpo/effective_group_size`` (and in ratio mode
    ``frpo/log_z``, ``frpo/clip_ratio``) beside TRL's metrics.
    """

    _tag_names = ["trl", "grpo", "frpo"]
    _name = "FRPO"

    def __init__(self, model, reward_funcs=None, args: FRPOConfig | None = None, *a, **kw):
        if not isinstance(args, FRPOConfig):
            raise TypeError(
                f"FRPOTrainer needs args=FRPOConfig(...), got {type(args).__name__}; FRPOConfig sets lam and "
                "the TRL settings FRPO requires (scale_rewards='none', loss_type='grpo')")
        check_trl_compatibility()
        super().__init__(model, reward_funcs, args, *a, **kw)
        missing = [k for k in _TRL_ATTRS if not hasattr(self, k)] + \
            ([] if isinstance(getattr(self, "_logs", None), dict) and "advantages" in self._logs else ["_logs['advantages']"])
        if missing:
            raise _trl_error("__init__", f"does not set {missing}")
        self._frpo_rewards_per_func: torch.Tensor | None = None
        self._frpo_next_group_id = 0
        self.frpo_loss_batches = 0
        """Micro-batches whose loss used FRPO's advantages (advantage mode) or surrogate (ratio mode)."""

    # -------------------------------------------------------------------------------- generation
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL returns the rewards gathered over processes, (N_global, n_funcs), NaN where a function returned None
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._frpo_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards_per_func, self._frpo_rewards_per_func = self._frpo_rewards_per_func, None
        if rewards_per_func is None:
            raise _trl_error("_generate_and_score_completions", "scored the completions without calling "
                             "_calculate_rewards, so FRPO never saw the rewards")
        # the reward r_i exactly as TRL aggregates it (sum_then_normalize, before normalization)
        weights = self.reward_weights.to(rewards_per_func.device, rewards_per_func.dtype)
        valid = ~torch.isnan(rewards_per_func).all(dim=1)  # (N,)
        rewards = torch.where(valid, (rewards_per_func * weights).nansum(dim=1), 0.0)  # (N,)
        n_global, n_local = rewards.shape[0], len(inputs)
        local = slice(self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local)
        # TRL's RepeatSampler lays the gathered batch out as contiguous groups of G: position // G is the group
        group_ids = self._frpo_next_group_id + torch.arange(n_global, device=rewards.device) // group_size
        self._frpo_next_group_id += n_global // group_size
        args = self.args

        if args.frpo_mode == "advantage":
            adv = frpo_advantages(rewards.double(), group_size, args.lam, jackknife=args.jackknife,
                                  scale=args.lam_scale, baseline=args.baseline, valid=valid)
            adv = adv.to(output["advantages"].dtype)
            output["advantages"] = adv[local]
            output["frpo_advantages"] = adv[local].clone()  # checked against what the loss reads
            logged = self._logs["advantages"]  # TRL logged its own advantages for the completions table
            for _ in range(min(n_global, len(logged))):
                logged.pop()
            logged.extend(adv.tolist())

        output["frpo_rewards"] = rewards[local]
        output["frpo_valid"] = valid[local]
        output["frpo_group_ids"] = group_ids[local]
        self._log_weight_metrics(rewards, valid, group_size, mode)
        return output

    def _log_weight_metrics(self, rewards, valid, group_size, mode):
        a = group_advantages(rewards.double(), group_size, valid).view(-1, group_size)
        v = valid.view(-1, group_size)
        keep = v.sum(-1) >= 2  # a group needs two scored rows to have weights
        if not bool(keep.any()):
            return
        logw = torch.zeros_like(a) if math.isinf(self.args.lam) else -a / self.args.lam
        logw = logw.masked_fill(~v, torch.finfo(logw.dtype).min)[keep]  # invalid rows get weight 0
        for key, value in frpo_weight_metrics(logw).items():
            self._metrics[mode][key].append(value)

    def _prepare_inputs(self, generation_batch):
        if self.args.frpo_mode != "ratio" or not self.model.training:
            return super()._prepare_inputs(generation_batch)
        # TRL's buffering (GRPOTrainer._prepare_inputs) with one change: the shuffle keeps groups whole,
        # so that every micro-batch holds whole groups (the surrogate's log-partition is per group).
        steps = self.args.steps_per_generation
        if self._step % (steps * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            batch = split_pixel_values_by_grid(batch)
            batch = shuffle_whole_groups(batch, batch["frpo_group_ids"])
            self._buffered_inputs = [unsplit_pixel_values_by_grid(b) for b in split_tensor_dict(batch, steps)]
        return self._buffered_inputs[self._step % steps]

    # -------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        calls = self.frpo_loss_batches
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if self.frpo_loss_batches == calls:
            raise _trl_error("_compute_loss", "computed the loss without calling _compute_loss, so FRPO's "
                             "advantages / surrogate were not used")
        return out

    def _compute_loss(self, model, inputs):
        if "frpo_group_ids" not in inputs:
            raise _trl_error("_prepare_inputs", "built this batch without FRPO's _generate_and_score_completions "
                             "(no frpo_* columns): its advantages are GRPO's")
        self.frpo_loss_batches += 1
        if self.args.frpo_mode == "advantage":
            if not torch.equal(inputs["advantages"], inputs["frpo_advantages"]):
                raise _trl_error("_generate_and_score_completions", "changed the advantages after FRPO set them")
            return super()._compute_loss(model, inputs)
        return self._compute_ratio_loss(model, inputs)

    def _compute_ratio_loss(self, model, inputs):
        """The literal surrogate ``frpo_loss`` on one micro-batch of whole groups, scaled like TRL's 'grpo'."""
        args, mode = self.args, "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        group_ids, valid, rewards = inputs["frpo_group_ids"], inputs["frpo_valid"], inputs["frpo_rewards"]
        counts = Counter(group_ids.tolist())
        partial = {gid: c for gid, c in counts.items() if c != group_size}
        if partial:
            gid, c = next(iter(partial.items()))
            raise ValueError(
                f"frpo_mode='ratio': group {gid} has {c} of its {group_size} rows in this micro-batch; the "
                "surrogate's log-partition needs whole groups. Keep per_device_train_batch_size (and "
                "per_device_eval_batch_size) a multiple of num_generations, and do not reorder rows outside "
                "FRPOTrainer._prepare_inputs")

        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logp, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
            completion_ids.size(1), compute_entropy=True, compute_aux_loss=self.aux_loss_enabled,
            pixel_values=inputs.get("pixel_values"), image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"), pixel_attention_mask=inputs.get("pixel_attention_mask"),
            spatial_shapes=inputs.get("spatial_shapes"), num_tiles=inputs.get("num_tiles"),
            image_sizes=inputs.get("image_sizes"), token_type_ids=inputs.get("token_type_ids"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"), image_position_ids=inputs.get("image_position_ids"),
        )  # (B, T)
        old_logp = inputs.get("old_per_token_logps")
        old_logp = logp.detach() if old_logp is None else old_logp

        # Rows without a reward leave their group (as frpo_advantages' `valid`); groups are batched by their
        # number k of scored rows and weighted k/B, so that at ρ = 1 the gradient equals the advantage mode's
        # (TRL 'grpo' averages over all B rows). Groups with fewer than 2 scored rows carry no signal.
        n_rows = logp.shape[0]
        valid_count = {gid: 0 for gid in counts}
        for gid, ok in zip(group_ids.tolist(), valid.tolist()):
            valid_count[gid] += int(ok)
        row_k = torch.tensor([valid_count[g] for g in group_ids.tolist()], device=logp.device)
        policy_loss = (logp * 0.0).sum()  # keeps the graph (DDP) when no group is usable
        metrics: dict[str, float] = {}  # logged from the largest groups present
        for k in sorted({c for c in valid_count.values() if c >= 2}):
            rows = (valid & (row_k == k)).nonzero().flatten()
            loss_k, metrics_k = frpo_loss(
                logp[rows], old_logp[rows], mask[rows], rewards[rows].to(logp.dtype), group_ids[rows], args.lam,
                group_size=k, jackknife=args.jackknife, baseline=args.baseline, scale=args.lam_scale,
                eps=self.epsilon_high)
            policy_loss = policy_loss + loss_k * (len(rows) / n_rows)
            metrics = metrics_k
        loss = policy_loss
        if self.beta != 0.0:
            kl = kl_k3(logp, inputs["ref_per_token_logps"])  # (B, T)
            if args.use_bias_correction_kl:  # TRL's default: KL weighted by the (differentiable) ratio π/π_old
                kl = kl * torch.exp(logp - old_logp)
            loss = loss + self.beta * aggregate(kl, mask, "seq_mean_token_mean")

        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss / normalizer
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        def global_masked_mean(x):
            totals = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum().to(x.dtype)]), reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        if self.beta != 0.0:
            self._metrics[mode]["kl"].append(global_masked_mean(kl.detach()))
        self._metrics[mode]["entropy"].append(global_masked_mean(entropies))
        for key in ("frpo/log_z", "loss/clip_ratio"):
            if key in metrics:
                name = "frpo/clip_ratio" if key == "loss/clip_ratio" else key
                self._metrics[mode][name].append(metrics[key])
        return loss
