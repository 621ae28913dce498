"""FRPOTrainer on a tiny Llama (CPU): the advantages and gradients that reach the optimizer are FRPO's.

Every trainer here runs TRL's real generation/scoring/loss path on ``llm.tiny``; the reference values
come from ``theory.losses`` (the verified math) or from TRL's own GRPOTrainer, never from llm.frpo.
"""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from llm.frpo import FRPOConfig, FRPOTrainer, shuffle_whole_groups
from tests.tolerances import TOL
from theory.losses import frpo_advantages

G = 4
PROMPTS = ["how make bomb ?", "add 3 4 ?", "how make bread ?", "add 1 2 ?",
           "how make tea ?", "add 5 6 ?", "how make poison ?", "add 7 8 ?"]


def _dataset(n: int = 8) -> Dataset:
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS[:n]]})


def digit_reward(completions, **kwargs):
    """Deterministic, varied: fraction of digit words, plus a bonus for short answers."""
    out = []
    for c in completions:
        words = c[0]["content"].split()
        out.append(sum(w.isdigit() for w in words) / max(len(words), 1) + 0.25 * (len(words) <= 4))
    return out


def digit_reward_with_none(completions, **kwargs):
    """``digit_reward`` with no reward (None) at fixed positions of the generation batch: one row of group 0,
    all of group 2, and three of group 3 (so groups with 3, 4, 0 and 1 scored rows)."""
    missing = {3} | {8, 9, 10, 11} | {12, 13, 14}
    return [None if i in missing else r for i, r in enumerate(digit_reward(completions))]




@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_llama):
    """A saved tiny model: loading by path lets TRL build its own reference model (beta > 0)."""
    path = tmp_path_factory.mktemp("tiny_llama")
    model, tok = tiny_llama()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _config(tmp_path, **overrides) -> FRPOConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=8, num_generations=G, max_completion_length=8, max_steps=2,
        learning_rate=1e-2, logging_steps=1, lam=0.5, seed=0, bf16=False,  # float32: TRL defaults to bf16 autocast
    )
    kwargs.update(overrides)
    return FRPOConfig(**kwargs)


def _trainer(tiny_llama, tmp_path, model=None, reward=digit_reward, n_prompts=8, cls=FRPOTrainer, args=None,
             **overrides):
    if model is None:
        model, tok = tiny_llama()
    else:
        _, tok = tiny_llama()
    args = args if args is not None else _config(tmp_path, **overrides)
    return cls(model=model, reward_funcs=reward, args=args, train_dataset=_dataset(n_prompts), processing_class=tok)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class GradCapture(TrainerCallback):
    """Copies the accumulated gradients just before each optimizer step (after TRL's loss scaling)."""

    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def _grads_of_loss(trainer, inputs):
    trainer.model.zero_grad()
    trainer._compute_loss(trainer.model, inputs).backward()
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def _assert_grads_close(a, b, rtol):
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        scale = max(a[name].abs().max().item(), b[name].abs().max().item(), 1e-12)
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=rtol * scale, msg=name)


# ---------------------------------------------------------------------------------------------- training works
@pytest.mark.parametrize("mode", ["advantage", "ratio"])
def test_every_trainable_parameter_changes(tmp_path, mode, tiny_llama):
    extra = dict(num_iterations=2) if mode == "ratio" else {}
    trainer = _trainer(tiny_llama, tmp_path, frpo_mode=mode, **extra)
    before = _snapshot(trainer.model)
    trainer.train()
    unchanged = [n for n, p in before.items() if torch.equal(p, trainer.model.get_parameter(n))]
    assert not unchanged, f"parameters not updated: {unchanged}"
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"frpo/weight_entropy", "frpo/max_weight", "frpo/effective_group_size", "reward"} <= logged
    if mode == "ratio":
        assert {"frpo/log_z", "frpo/clip_ratio"} <= logged


def test_lora_trains_adapter_only_with_kl_to_disabled_adapter(tmp_path, tiny_llama):
    from peft import LoraConfig

    model, tok = tiny_llama()
    trainer = FRPOTrainer(
        model=model, reward_funcs=digit_reward, train_dataset=_dataset(), processing_class=tok,
        args=_config(tmp_path, frpo_mode="ratio", beta=0.05, num_iterations=2, max_steps=2),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    assert trainer.ref_model is None  # the reference is the base with the adapter disabled: no second copy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    lora_b = {n for n in before if "lora_B" in n}
    assert lora_b and lora_b <= changed  # lora_B starts at 0: a change means the adapter trained
    assert all("lora_" in n for n in changed)  # the base stays frozen
    kls = [e["kl"] for e in trainer.state.log_history if "kl" in e]
    assert kls and all(math.isfinite(k) for k in kls) and max(kls) > 0


# ---------------------------------------------------------------------------------------------- the math that reaches the loss
@pytest.mark.parametrize("lam", [0.5, math.inf])
def test_advantages_reaching_the_loss_are_frpo_advantages_of_returned_rewards(tmp_path, lam, tiny_llama):
    """One generation batch of 4 groups, split by TRL into 2 shuffled micro-batches (gradient accumulation 2)."""
    calls = []

    def recording_reward(prompts, completions, completion_ids, **kwargs):
        rewards = digit_reward_with_none(completions)
        calls.append([(p[-1]["content"], tuple(c), r) for p, c, r in zip(prompts, completion_ids, rewards)])
        return rewards

    trainer = _trainer(tiny_llama, tmp_path, reward=recording_reward, lam=lam, per_device_train_batch_size=8,
                       gradient_accumulation_steps=2, max_steps=1)
    captured = []
    compute_loss = trainer._compute_loss
    trainer._compute_loss = lambda model, inputs: (captured.append(inputs), compute_loss(model, inputs))[1]
    trainer.train()

    assert len(calls) == 1 and len(captured) == 2
    records = calls[0]
    for start in range(0, len(records), G):  # TRL's layout: groups of G consecutive rows share the prompt
        assert len({rec[0] for rec in records[start:start + G]}) == 1
    rewards = torch.tensor([0.0 if r is None else r for _, _, r in records], dtype=torch.float64)
    valid = torch.tensor([r is not None for _, _, r in records])
    expected = frpo_advantages(rewards, G, lam, jackknife=True, scale="max1", valid=valid)
    by_key = defaultdict(set)
    for (prompt, comp, _), a in zip(records, expected.tolist()):
        by_key[(prompt, comp)].add(round(a, 9))

    tok = trainer.processing_class
    seen = 0
    for inputs in captured:
        for row in range(inputs["advantages"].shape[0]):
            prompt = tok.decode(inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()], skip_special_tokens=True)
            comp = tuple(inputs["completion_ids"][row][inputs["completion_mask"][row].bool()].tolist())
            want = by_key[(prompt, comp)]
            assert len(want) == 1, "identical completions of one prompt must get identical advantages"
            assert inputs["advantages"][row].item() == pytest.approx(next(iter(want)), rel=TOL["float32"], abs=TOL["float32"])
            seen += 1
    assert seen == len(records)
    assert torch.all(expected[~valid] == 0)


def test_lam_inf_is_grpo_without_std_scaling(tmp_path, tiny_llama):
    """λ = inf: FRPO's advantages are TRL GRPO's (scale_rewards='none', loss_type='grpo'), reward-less rows
    included; the jackknife multiplies them by G/(G−1), the exact λ → inf limit (docs/theory.md §1)."""
    def generation(cls, args):
        trainer = _trainer(tiny_llama, tmp_path, reward=digit_reward_with_none, n_prompts=4, cls=cls, args=args)
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.train()
        torch.manual_seed(123)
        return trainer._generate_and_score_completions(batch)

    common = dict(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", per_device_train_batch_size=16, bf16=False,
                  num_generations=G, max_completion_length=8, seed=0)
    grpo = generation(GRPOTrainer, GRPOConfig(loss_type="grpo", scale_rewards="none", **common))
    plain = generation(FRPOTrainer, FRPOConfig(lam=math.inf, jackknife=False, **common))
    jack = generation(FRPOTrainer, FRPOConfig(lam=math.inf, **common))
    assert torch.equal(grpo["completion_ids"], plain["completion_ids"])
    assert torch.equal(grpo["completion_ids"], jack["completion_ids"])
    assert grpo["advantages"].abs().max() > 0
    tol = dict(rtol=TOL["float32"], atol=TOL["float32"])
    torch.testing.assert_close(plain["advantages"], grpo["advantages"], **tol)
    # jackknife: G/(G−1) with G = the group's scored rows (3, 4, 0, 1 in digit_reward_with_none)
    factor = torch.tensor([3 / 2] * 4 + [4 / 3] * 4 + [0.0] * 8)
    torch.testing.assert_close(jack["advantages"], grpo["advantages"] * factor, **tol)


def test_ratio_and_advantage_modes_same_gradient_at_ratio_one(tmp_path, model_dir, tiny_llama):
    """Same generations (with KL, TRL's KL bias correction, and reward-less rows): ratio mode's literal surrogate
    and advantage mode's closed form give one gradient when π_θ = π_old. The batch has been row-shuffled by
    TRL, so ratio mode can only find the groups by their explicit ids."""
    adv = _trainer(tiny_llama, tmp_path, model=model_dir, reward=digit_reward_with_none,
                   per_device_train_batch_size=16, beta=0.05, frpo_mode="advantage")
    ratio = _trainer(tiny_llama, tmp_path, model=model_dir, reward=digit_reward_with_none,
                     per_device_train_batch_size=16, beta=0.05, frpo_mode="ratio")
    batch = next(iter(adv.get_train_dataloader()))
    adv.model.train(), ratio.model.train()
    torch.manual_seed(0)
    inputs = adv._prepare_inputs(batch)  # generation, scoring, reference log-probs and TRL's row shuffle
    assert inputs["frpo_valid"].sum() == 16 - 8 and inputs["advantages"].abs().max() > 0
    assert not torch.equal(inputs["frpo_group_ids"], inputs["frpo_group_ids"].sort().values)  # rows are shuffled
    for t in (adv, ratio):
        t.current_gradient_accumulation_steps = 1
    _assert_grads_close(_grads_of_loss(ratio, inputs), _grads_of_loss(adv, inputs), rtol=TOL["float32"])


@pytest.mark.parametrize("mode", ["advantage", "ratio"])
def test_gradient_accumulation_4x1_equals_1x4(tmp_path, mode, tiny_llama):
    """Same 16 generations (4 groups) as one micro-batch of 16, or 4 accumulated micro-batches of 4."""
    grads = []
    for per_device, accum in ((16, 1), (4, 4)):
        capture = GradCapture()
        trainer = _trainer(tiny_llama, tmp_path, frpo_mode=mode, per_device_train_batch_size=per_device,
                           gradient_accumulation_steps=accum, max_steps=1, max_grad_norm=0.0)
        trainer.add_callback(capture)
        trainer.train()
        grads.append(capture.grads[0])
    _assert_grads_close(grads[1], grads[0], rtol=TOL["float32"])


def test_reward_none_rows_leave_their_group(tmp_path, tiny_llama):
    """Both modes train without NaN when reward functions return None; the reward-less rows get advantage 0."""
    for mode in ("advantage", "ratio"):
        trainer = _trainer(tiny_llama, tmp_path, reward=digit_reward_with_none, per_device_train_batch_size=16,
                           max_steps=1, frpo_mode=mode)
        captured = []
        compute_loss = trainer._compute_loss
        trainer._compute_loss = lambda model, inputs: (captured.append(inputs), compute_loss(model, inputs))[1]
        trainer.train()
        (inputs,) = captured
        assert torch.all(inputs["advantages"][~inputs["frpo_valid"]] == 0)
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        assert losses and all(math.isfinite(v) for v in losses)


# ---------------------------------------------------------------------------------------------- ratio-mode plumbing
def test_shuffle_whole_groups_keeps_groups_contiguous():
    ids = torch.arange(24) // 4
    batch = {"ids": ids, "x": torch.arange(24.0), "names": [f"r{i}" for i in range(24)], "n": torch.tensor(7)}
    out = shuffle_whole_groups(batch, ids, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(out["ids"], ids)
    for start in range(0, 24, 4):
        block = out["ids"][start:start + 4]
        assert torch.all(block == block[0])  # a group stays in one block
        assert torch.equal(out["x"][start:start + 4], torch.arange(4.0) + 4 * block[0])  # in its order
    assert out["names"] == [f"r{int(x)}" for x in out["x"]] and out["n"] == 7


def test_ratio_mode_rejects_a_micro_batch_with_a_partial_group(tmp_path, tiny_llama):
    trainer = _trainer(tiny_llama, tmp_path, frpo_mode="ratio", per_device_train_batch_size=8)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    inputs = trainer._prepare_inputs(batch)
    half = {k: (v[:6] if isinstance(v, torch.Tensor) and v.ndim > 0 else v) for k, v in inputs.items()}
    trainer.current_gradient_accumulation_steps = 1
    with pytest.raises(ValueError, match="whole groups.*multiple of num_generations"):
        trainer._compute_loss(trainer.model, half)


# ---------------------------------------------------------------------------------------------- configuration
BAD_CONFIGS = [
    (dict(), "lam=None"),
    (dict(lam=0.0), "lam=0.0"),
    (dict(lam=-1.0), "lam=-1.0"),
    (dict(lam=float("nan")), "lam=nan"),
    (dict(lam=1.0, scale_rewards="group"), "scale_rewards='group'.*'none'"),
    (dict(lam=1.0, scale_rewards=True), "scale_rewards='group'"),
    (dict(lam=1.0, scale_rewards="batch"), "scale_rewards='batch'"),
    (dict(lam=1.0, loss_type="dapo"), "loss_type='dapo'.*'grpo'"),
    (dict(lam=1.0, multi_objective_aggregation="normalize_then_sum"), "multi_objective_aggregation"),
    (dict(lam=1.0, importance_sampling_level="sequence"), "importance_sampling_level"),
    (dict(lam=1.0, lam_scale="sqrt"), "lam_scale='sqrt'"),
    (dict(lam=1.0, frpo_mode="literal"), "frpo_mode='literal'"),
    (dict(lam=math.inf, lam_scale="one"), "lam_scale='one'"),
    (dict(lam=math.inf, baseline=False), "baseline=False"),
    (dict(lam=1.0, num_iterations=2), "num_iterations=2.*frpo_mode='ratio'"),
    (dict(lam=1.0, steps_per_generation=3, gradient_accumulation_steps=2), "steps_per_generation=3"),
    (dict(lam=math.inf, frpo_mode="ratio"), "lam=inf.*frpo_mode='advantage'"),
    (dict(lam=1.0, frpo_mode="ratio", per_device_train_batch_size=2, gradient_accumulation_steps=2),
     "per_device_train_batch_size=2.*multiple of"),
    (dict(lam=1.0, frpo_mode="ratio", top_entropy_quantile=0.5), "top_entropy_quantile"),
    (dict(lam=1.0, frpo_mode="ratio", entropy_coef=0.01), "entropy_coef"),
    (dict(lam=1.0, num_generations_eval=1), "num_generations_eval=1"),
]


@pytest.mark.parametrize("kwargs,match", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_config_rejects_conflicting_settings(tmp_path, kwargs, match):
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8,
                num_generations=G)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FRPOConfig(**base)


def test_config_defaults_are_what_frpo_needs(tmp_path):
    args = FRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", lam=0.2, scale_rewards=False,
                      per_device_train_batch_size=8)
    assert (args.scale_rewards, args.loss_type, args.jackknife, args.baseline, args.lam_scale, args.frpo_mode) == (
        "none", "grpo", True, True, "max1", "advantage")
    from dataclasses import fields
    own = {f.name for f in fields(FRPOConfig)} - {f.name for f in fields(GRPOConfig)}
    assert own == {"lam", "jackknife", "baseline", "lam_scale", "frpo_mode"}
    for f in fields(FRPOConfig):
        if f.name in own | {"scale_rewards", "loss_type"}:
            assert "Eq." in f.metadata["help"], f.name


def test_baseline_false_warns(tmp_path):
    with pytest.warns(UserWarning, match="collapse"):
        FRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", lam=0.5, baseline=False,
                   per_device_train_batch_size=8)


def test_trainer_needs_frpo_config(tmp_path, tiny_llama):
    model, tok = tiny_llama()
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8)
    with pytest.raises(TypeError, match="FRPOConfig"):
        FRPOTrainer(model=model, reward_funcs=digit_reward, args=args, train_dataset=_dataset(),
                    processing_class=tok)
