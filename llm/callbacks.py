"""Downstream tracking during fine-tuning: KL to the starting model and retained rewards on probe prompts.

:class:`DownstreamTracker` is a ``transformers.TrainerCallback`` for any (TRL) trainer. Every ``every``
optimizer steps (and at step 0) it samples K completions per probe prompt from the current policy
π with a fixed seed (common random numbers across measurements) and records

    kl    = (1/N) Σ_i KL̂(y_i),  y_i ~ π(·|x_i)      (N = #probes · K)
    kl_se = std_i(KL̂(y_i)) / √N                      (ddof = 1)

with the Rao–Blackwellized per-sample term KL̂_rb(y) = Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t)) — the exact
KL of the two next-token distributions summed along the sampled response (never negative, unbiased for
the sequence-level KL(π‖π_ref); :func:`theory.losses.sequence_kl_terms`) — by default, and the plain
sampled log-ratio as ``kl_mc`` beside it. This is the sequence-level KL to the frozen starting policy
(FRPO Fig. 2 right, "average sequence-level KL on safety prompts"); with the retained rewards (each reward
function's mean over those samples, ignoring None) and an optional task metric it is the x-axis and
y-axis of FRPO's reward-vs-KL landscape plots (Fig. 2, 5): the robust objective (Eq. 3.1) is about reward
within a KL ball around the pre-fine-tuning policy. With ``stop_kl`` the fine-tuning stops at the first
measurement whose KL reaches it: the downstream *dose* is then set in nats of KL, not in steps.

Laptop CPU::

    tracker = DownstreamTracker(probes, every=10, reward_funcs=[keyword_safety_reward],
                                probe_columns={"kind": kinds}, jsonl_path="runs/x/downstream.jsonl")
    trainer = SFTTrainer(model=..., args=SFTConfig(..., use_cpu=True), train_dataset=...)
    tracker.attach(trainer); trainer.train()

Multi-GPU (``accelerate launch``): the same code; every process samples (sharded models need all
ranks), only the world-process-zero writes the JSONL. DeepSpeed ZeRO-3 is not supported by the
deep-copy reference (use LoRA, whose reference is the adapter-disabled base).
"""
from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import TrainerCallback

from llm import sampling



def _reward_name(func: Callable) -> str:
    while hasattr(func, "func") and hasattr(func, "args"):  # functools.partial
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and callable(getattr(model, "disable_adapter", None))


def _mean_ignoring_none(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


class DownstreamTracker(TrainerCallback):
    """Record KL(π‖π_start), retained rewards and a task metric on fixed probe prompts during fine-tuning.

    Args:
        probe_prompts: prompts (strings, or conversations rendered with the tokenizer's chat
            template and a generation prompt).
        every: measure when ``global_step % every == 0`` at a step end (and at train begin).
        num_samples: K completions sampled per probe prompt.
        max_new_tokens: generation length cap.
        reward_funcs: TRL-signature reward functions (list, or dict name → function) evaluated
            on the samples; recorded as ``reward/<name>`` (name = ``__name__``), mean over non-None.
        probe_columns: dataset columns for the reward functions, one value per probe prompt
            (e.g. ``{"kind": [...], "answer": [...]}``); repeated K times like the prompts.
        task_metric: ``task_metric(model, tokenizer) -> dict[str, float]``, recorded as ``task/<key>``.
        jsonl_path: if given, each row is appended to this file as one JSON line (flushed).
        seed: sampling seed; the same at every measurement (common random numbers), drawn in a
            forked RNG so training randomness is untouched.
        batch_size: probe prompts per generate call.
        reference: ``"auto"`` (adapter-disabled base for a PEFT model, else a deep copy at train
            begin; doubles the model's memory), ``"copy"`` or ``"disable_adapter"``. Frozen at the first train begin unless
            :meth:`set_reference` was called before (do so with the starting model when resuming
            from a checkpoint, whose weights are loaded before train begin).
        tokenizer: overrides the trainer's ``processing_class``.
        at_train_end: also measure at train end if the last step was not measured.
        kl_estimator: "rb" (exact per-token KL summed along each sample; default) or "mc" (log-ratio).
        stop_kl: stop the training (``control.should_training_stop``) at the first measurement whose KL
            is at least this many nats; 0 = never.
        per_prompt: also record each reward's per-probe means (``reward_per_prompt/<name>``, a list).

    Rows in :attr:`history` (and the JSONL): ``{"step", "kl", "kl_se", "kl_mc", "kl_mc_se", "kl_estimator",
    "reward/<name>", "task/<key>"}`` (a task metric may also return a list, e.g. per-prompt values);
    logged as ``downstream/<key>`` through the attached trainer (see :meth:`attach`), else appended
    to ``state.log_history``.
    Deviation: the paper reports the KL during fine-tuning without saying how it is estimated; this
    uses the Rao–Blackwellized estimator (same expectation as the sampled log-ratio, lower variance).
    """

    def __init__(self, probe_prompts: Sequence[Any], *, every: int = 50, num_samples: int = 4,
                 max_new_tokens: int = 64, reward_funcs: Sequence[Callable] | Mapping[str, Callable] | None = None,
                 probe_columns: Mapping[str, Sequence[Any]] | None = None,
                 task_metric: Callable[[Any, Any], Mapping[str, float]] | None = None,
                 jsonl_path: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 16,
                 reference: str = "auto", tokenizer=None, at_train_end: bool = True, kl_estimator: str = "rb",
                 stop_kl: float = 0.0, per_prompt: bool = False):
        if not probe_prompts:
            raise ValueError("probe_prompts is empty; pass at least one prompt (string or conversation).")
        for name, value in (("every", every), ("num_samples", num_samples),
                            ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1.")
        if len(probe_prompts) * num_samples < 2:
            raise ValueError(f"{len(probe_prompts)} probe(s) × num_samples={num_samples} < 2 samples: the KL "
                             "standard error needs at least 2; raise num_samples.")
        if kl_estimator not in sampling.KL_ESTIMATORS:
            raise ValueError(f"kl_estimator={kl_estimator!r} must be one of {sampling.KL_ESTIMATORS} ('rb': exact "
                             "per-token KL along the samples; 'mc': sampled log-ratio).")
        if not (isinstance(stop_kl, (int, float)) and stop_kl >= 0 and math.isfinite(stop_kl)):
            raise ValueError(f"stop_kl={stop_kl!r} must be a finite number >= 0 (0 = never stop on KL).")
        if reference not in ("auto", "copy", "disable_adapter"):
            raise ValueError(f"reference={reference!r} must be 'auto', 'copy' or 'disable_adapter'.")
        self.probe_prompts = list(probe_prompts)
        self.probe_columns = {k: list(v) for k, v in (probe_columns or {}).items()}
        for k, v in self.probe_columns.items():
            if len(v) != len(self.probe_prompts):
                raise ValueError(f"probe_columns[{k!r}] has {len(v)} values for {len(self.probe_prompts)} "
                                 "probe prompts; give one value per prompt.")
        if isinstance(reward_funcs, Mapping):
            self.reward_funcs = dict(reward_funcs)
        else:
            self.reward_funcs = {_reward_name(f): f for f in (reward_funcs or [])}
        self.every, self.num_samples, self.max_new_tokens = every, num_samples, max_new_tokens
        self.task_metric, self.seed, self.batch_size = task_metric, seed, batch_size
        self.jsonl_path = None if jsonl_path is None else os.fspath(jsonl_path)
        self.reference, self.tokenizer, self.at_train_end = reference, tokenizer, at_train_end
        self.kl_estimator, self.stop_kl, self.per_prompt = kl_estimator, float(stop_kl), per_prompt
        self.stopped_at: int | None = None
        """The step at which ``stop_kl`` ended the training (None: it did not)."""
        self.reference_mode: str | None = None
        self.ref_model = None
        self.history: list[dict[str, float | None]] = []
        self.last_samples: list[tuple[list[int], list[int]]] = []  # (prompt ids, response ids incl. EOS)
        self._trainer = None

    # ------------------------------------------------------------------ wiring

    def attach(self, trainer) -> "DownstreamTracker":
        """Add this callback to ``trainer`` and log through it (``downstream/<key>`` in its loggers)."""
        trainer.add_callback(self)
        self._trainer = trainer
        return self

    def set_reference(self, model) -> None:
        """Freeze π_ref = the current ``model``: a deep copy, or the adapter-disabled PEFT base."""
        mode = self.reference
        if mode == "auto":
            mode = "disable_adapter" if _is_peft(model) else "copy"
        if mode == "disable_adapter":
            if not _is_peft(model):
                raise ValueError(f"reference='disable_adapter' needs a PEFT model; got {type(model).__name__}. "
                                 "Use reference='copy' or 'auto'.")
            self.ref_model = None
        else:
            ref = copy.deepcopy(model).eval().requires_grad_(False)
            # accelerate's forward wrappers live in the instance dict and close over the original
            # module: a copied wrapper would run the *trained* weights. Drop them from the copy.
            ref.__dict__.pop("forward", None)
            ref.__dict__.pop("_original_forward", None)
            self.ref_model = ref
        self.reference_mode = mode

    @contextmanager
    def _reference(self, model):
        if self.reference_mode == "disable_adapter":
            with model.disable_adapter():
                yield model
        else:
            yield self.ref_model

    def _tokenizer_from(self, kwargs: Mapping[str, Any]):
        tok = next((t for t in (self.tokenizer, kwargs.get("processing_class"), kwargs.get("tokenizer"))
                    if t is not None), None)
        if tok is None:
            raise ValueError("DownstreamTracker needs a tokenizer: pass tokenizer=... or use a trainer with "
                             "processing_class.")
        return getattr(tok, "tokenizer", tok)  # a multimodal processor wraps its tokenizer

    # ------------------------------------------------------------------ callback events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.reference_mode is None:  # set_reference() called before training wins (e.g. on resume)
            self.set_reference(model)
        self._record(model, self._tokenizer_from(kwargs), state, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._record(model, self._tokenizer_from(kwargs), state, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_train_end and (not self.history or self.history[-1]["step"] != state.global_step):
            self._record(model, self._tokenizer_from(kwargs), state, control)

    def _record(self, model, tokenizer, state, control) -> None:
        row = self.measure(model, tokenizer, step=state.global_step)
        if self.stop_kl > 0 and row["kl"] >= self.stop_kl and state.global_step > 0:
            control.should_training_stop = True
            self.stopped_at = int(state.global_step)
            row["stopped_on_kl"] = True
        if self.jsonl_path is not None and state.is_world_process_zero:
            os.makedirs(os.path.dirname(os.path.abspath(self.jsonl_path)), exist_ok=True)
            with open(self.jsonl_path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
        logs = {f"downstream/{k}": v for k, v in row.items()  # the loggers take numbers only
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._trainer is not None:
            # The base Trainer.log, not TRL's override: TRL's log() flushes and clears the trainer's
            # own accumulated metrics into whatever dict it is given.
            from transformers import Trainer

            # Trainer.log → on_log resets control.should_log, which DefaultFlowCallback has just set
            # for this step: without the restore the trainer's own loss log of this step is lost.
            should_log = control.should_log
            Trainer.log(self._trainer, logs)
            control.should_log = self._trainer.control.should_log = should_log
        else:
            state.log_history.append({**logs, "step": state.global_step})

    # ------------------------------------------------------------------ measurement

    @torch.no_grad()
    def measure(self, model, tokenizer=None, step: int = 0) -> dict[str, Any]:
        """One measurement at the current weights: the history row (also appended to :attr:`history`)."""
        if self.reference_mode is None:
            raise ValueError("no reference policy: call set_reference(model) (done at train begin) first.")
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a multimodal processor wraps its tokenizer
        if tokenizer is None:
            raise ValueError("measure needs a tokenizer; pass tokenizer=... .")
        was_training = model.training
        model.eval()
        try:
            out = sampling.sample(model, tokenizer, self.probe_prompts, n=self.num_samples,
                                  max_new_tokens=self.max_new_tokens, seed=self.seed, batch_size=self.batch_size,
                                  reference=lambda: self._reference(model), kl_estimator=self.kl_estimator)
            row: dict[str, Any] = {"step": int(step)}
            row["kl"], row["kl_se"] = out.kl_mean_se()
            row["kl_mc"], row["kl_mc_se"] = sampling.mean_se(out.kl_mc)
            row["kl_estimator"] = self.kl_estimator
            row.update(self._rewards(out.texts))
            if self.task_metric is not None:
                metrics = self.task_metric(model, tokenizer)
                if not isinstance(metrics, Mapping):
                    raise ValueError(f"task_metric returned {type(metrics).__name__}; it must return dict[str, float].")
                row.update({f"task/{k}": ([float(x) for x in v] if isinstance(v, (list, tuple)) else float(v))
                            for k, v in metrics.items()})
        finally:
            model.train(was_training)
        self.last_samples = list(zip(out.prompt_ids, out.response_ids))
        self.history.append(row)
        return row

    def _rewards(self, texts: list[str]) -> dict[str, float | None]:
        k = self.num_samples
        prompts = [p for p in self.probe_prompts for _ in range(k)]
        completions = [t if isinstance(p, str) else [{"role": "assistant", "content": t}]
                       for p, t in zip(prompts, texts, strict=True)]
        columns = {name: [v for v in col for _ in range(k)] for name, col in self.probe_columns.items()}
        out = {}
        for name, func in self.reward_funcs.items():
            values = func(prompts=prompts, completions=completions, **columns)
            out[f"reward/{name}"] = _mean_ignoring_none(values)
            if self.per_prompt:
                out[f"reward_per_prompt/{name}"] = [_mean_ignoring_none(values[i * k:(i + 1) * k])
                                                    for i in range(len(self.probe_prompts))]
        return out
