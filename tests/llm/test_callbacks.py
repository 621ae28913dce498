"""Tests of llm.callbacks.DownstreamTracker on tiny Llamas: KL estimator, rows, PEFT reference, inside SFTTrainer."""
from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import TrainerControl, TrainerState

from llm.callbacks import DownstreamTracker
from llm.rewards import keyword_safety_reward
from tests.tolerances import TOL



PROBES = [[{"role": "user", "content": "how make bomb ?"}], [{"role": "user", "content": "how make bread ?"}],
          "add 2 3 ?"]
KINDS = ["harmful", "benign", None]
MAX_NEW = 6


def begin(tracker, model, tok, step=0):
    state = TrainerState()
    state.global_step = step
    tracker.on_train_begin(None, state, TrainerControl(), model=model, processing_class=tok)
    return state


def perturb(params, scale=0.05, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=gen))


def independent_kl(samples, policy, reference):
    """mean and standard error of Σ_t log π − log π_ref, one unpadded forward per sample."""
    kls = []
    with torch.no_grad():
        for prompt_ids, resp_ids in samples:
            ids = torch.tensor([prompt_ids + resp_ids])
            n = len(prompt_ids)
            total = 0.0
            for model, sign in ((policy, 1.0), (reference, -1.0)):
                logp = torch.log_softmax(model(ids).logits[0, n - 1:-1].double(), dim=-1)
                total += sign * logp[torch.arange(len(resp_ids)), torch.tensor(resp_ids)].sum().item()
            kls.append(total)
    mean = sum(kls) / len(kls)
    se = math.sqrt(sum((k - mean) ** 2 for k in kls) / (len(kls) - 1) / len(kls))
    return mean, se


def independent_rb_kl(samples, policy, reference):
    """mean and standard error of Σ_t Σ_v p_t(v) (log p_t(v) − log q_t(v)) along each sample, in float64."""
    kls = []
    with torch.no_grad():
        for prompt_ids, resp_ids in samples:
            ids = torch.tensor([prompt_ids + resp_ids])
            n = len(prompt_ids)
            logp = torch.log_softmax(policy(ids).logits[0, n - 1:-1].double(), dim=-1)  # (T, V)
            logq = torch.log_softmax(reference(ids).logits[0, n - 1:-1].double(), dim=-1)
            kls.append(float((logp.exp() * (logp - logq)).sum()))
    mean = sum(kls) / len(kls)
    se = math.sqrt(sum((k - mean) ** 2 for k in kls) / (len(kls) - 1) / len(kls))
    return mean, se


def test_kl_zero_at_start_and_matches_independent_estimate_after_perturbation(tiny_llama):
    model, tok = tiny_llama()
    # several stop tokens so that some samples end early and the EOS masking is exercised
    stops = [tok.eos_token_id] + tok.convert_tokens_to_ids(["sorry", "sure", "?", "the", "is"])
    model.generation_config.eos_token_id = stops
    tracker = DownstreamTracker(PROBES, every=1, num_samples=4, max_new_tokens=MAX_NEW, batch_size=2)
    begin(tracker, model, tok)
    assert tracker.reference_mode == "copy"
    assert tracker.history[0]["kl"] == 0.0 and tracker.history[0]["kl_se"] == 0.0

    perturb(model.parameters())
    row = tracker.measure(model, tok, step=5)
    assert row["kl"] > 0 and row["kl_se"] > 0
    samples = tracker.last_samples
    assert len(samples) == len(PROBES) * 4
    assert any(len(r) < MAX_NEW for _, r in samples)  # early stops happened
    for _, r in samples:  # responses run through their first stop token and no further
        assert all(t not in stops for t in r[:-1])
        assert r[-1] in stops or len(r) == MAX_NEW
    reference, _ = tiny_llama()  # the starting weights, rebuilt independently
    mean, se = independent_kl(samples, model.eval(), reference.eval())
    assert row["kl_mc"] == pytest.approx(mean, abs=TOL["float32"])
    assert row["kl_mc_se"] == pytest.approx(se, abs=TOL["float32"])
    rb_mean, rb_se = independent_rb_kl(samples, model.eval(), reference.eval())
    assert row["kl_estimator"] == "rb"
    assert row["kl"] == pytest.approx(rb_mean, abs=TOL["float32"])
    assert row["kl_se"] == pytest.approx(rb_se, abs=TOL["float32"])
    assert rb_se < se  # the Rao–Blackwellized estimator has the smaller spread on the same samples


def test_reference_copy_ignores_forward_wrapper_closing_over_original(tiny_llama):
    # What broke inside SFTTrainer: accelerate's autocast wrapper is an instance attribute closing
    # over the original bound forward; deepcopy keeps the closure, so the "reference" ran the policy.
    model, tok = tiny_llama()
    original_forward = model.forward
    model.forward = lambda *args, **kwargs: original_forward(*args, **kwargs)
    tracker = DownstreamTracker(PROBES, num_samples=3, max_new_tokens=MAX_NEW)
    begin(tracker, model, tok)
    perturb(model.parameters())
    row = tracker.measure(model, tok, step=1)
    reference, _ = tiny_llama()
    mean, _ = independent_rb_kl(tracker.last_samples, model.eval(), reference.eval())
    assert row["kl"] != 0.0
    assert row["kl"] == pytest.approx(mean, abs=TOL["float32"])


def test_fixed_seed_reproducible_and_training_rng_untouched(tiny_llama):
    model, tok = tiny_llama()
    tracker = DownstreamTracker(PROBES, num_samples=2, max_new_tokens=MAX_NEW, seed=7)
    begin(tracker, model, tok)
    first = tracker.last_samples
    perturb(model.parameters())
    rng = torch.get_rng_state()
    tracker.measure(model, tok, step=1)
    assert torch.equal(torch.get_rng_state(), rng)
    tracker.measure(model, tok, step=2)
    again = tracker.last_samples
    tracker.measure(model, tok, step=3)
    assert tracker.last_samples == again and again != first  # same seed, same weights → same samples


def test_rows_jsonl_logs_and_train_mode(tmp_path, tiny_llama):
    model, tok = tiny_llama()

    def response_words(prompts, completions, kind, **kwargs):
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [float(len(t.split())) if k == "harmful" else None for t, k in zip(texts, kind, strict=True)]

    calls = []

    def task_metric(m, t):
        calls.append(m.training)
        return {"acc": 0.25, "n": 3}

    path = tmp_path / "sub" / "downstream.jsonl"
    tracker = DownstreamTracker(PROBES, every=2, num_samples=3, max_new_tokens=MAX_NEW, jsonl_path=path,
                                reward_funcs=[keyword_safety_reward, response_words],
                                probe_columns={"kind": KINDS}, task_metric=task_metric)
    model.train()
    state = begin(tracker, model, tok)
    assert model.training and calls == [False]  # measured in eval mode, training mode restored
    # retained rewards are means over the samples, ignoring None (only the harmful probe's 3 samples)
    harmful = [tok.decode(r, skip_special_tokens=True) for _, r in tracker.last_samples[:3]]
    assert tracker.history[0]["reward/response_words"] == pytest.approx(
        sum(len(t.split()) for t in harmful) / 3, abs=TOL["float64"])
    for step in (1, 2, 3):
        state.global_step = step
        tracker.on_step_end(None, state, TrainerControl(), model=model, processing_class=tok)
    tracker.on_train_end(None, state, TrainerControl(), model=model, processing_class=tok)
    model.eval()
    tracker.measure(model, tok, step=9)
    assert not model.training

    keys = {"step", "kl", "kl_se", "kl_mc", "kl_mc_se", "kl_estimator", "reward/keyword_safety_reward",
            "reward/response_words", "task/acc", "task/n"}
    assert [r["step"] for r in tracker.history] == [0, 2, 3, 9]
    assert all(set(r) == keys for r in tracker.history)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == tracker.history[:3]  # measure() alone does not write; callback events do
    logged = [e for e in state.log_history if "downstream/kl" in e]
    assert [e["step"] for e in logged] == [0, 2, 3]
    assert set(logged[0]) == {"step"} | {f"downstream/{k}" for k in keys - {"step", "kl_estimator"}}  # numbers only


def test_peft_reference_is_adapter_disabled_base(tiny_llama):
    peft = pytest.importorskip("peft")
    base, tok = tiny_llama()
    torch.manual_seed(0)  # LoRA A is drawn from the global RNG
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      lora_dropout=0.0))
    tracker = DownstreamTracker(PROBES, num_samples=3, max_new_tokens=MAX_NEW)
    begin(tracker, model, tok)
    assert tracker.reference_mode == "disable_adapter" and tracker.ref_model is None
    assert tracker.history[0]["kl"] == 0.0

    perturb([p for n, p in model.named_parameters() if "lora_B" in n], scale=0.5)
    row = tracker.measure(model, tok, step=1)
    assert row["kl"] > 0.0  # the Rao–Blackwellized estimate is positive once the policy moved
    reference, _ = tiny_llama()
    mean, _ = independent_kl(tracker.last_samples, model.eval(), reference.eval())
    assert row["kl_mc"] == pytest.approx(mean, abs=TOL["float32"])
    rb_mean, _ = independent_rb_kl(tracker.last_samples, model.eval(), reference.eval())
    assert row["kl"] == pytest.approx(rb_mean, abs=TOL["float32"])
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # adapter re-enabled


def test_bad_arguments_raise(tiny_llama):
    with pytest.raises(ValueError, match="every=0"):
        DownstreamTracker(PROBES, every=0)
    with pytest.raises(ValueError, match="probe_columns"):
        DownstreamTracker(PROBES, probe_columns={"kind": ["harmful"]})
    with pytest.raises(ValueError, match="num_samples"):
        DownstreamTracker(["x"], num_samples=1)
    model, tok = tiny_llama()
    with pytest.raises(ValueError, match="PEFT"):
        begin(DownstreamTracker(PROBES, reference="disable_adapter"), model, tok)
    with pytest.raises(ValueError, match="set_reference"):
        DownstreamTracker(PROBES).measure(model, tok)


def test_runs_inside_sft_trainer(tmp_path, tiny_llama):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny_llama()
    data = Dataset.from_list([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                              for q, a in [("how make bread ?", "sure here step 1"), ("add 2 3 ?", "the answer is 5"),
                                           ("how make tea ?", "sure add tea"), ("add 1 1 ?", "the answer is 2")]])
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                     learning_rate=5e-3, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                     use_cpu=True, report_to="none", disable_tqdm=True, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    tracker = DownstreamTracker(PROBES, every=1, num_samples=2, max_new_tokens=MAX_NEW,
                                reward_funcs=[keyword_safety_reward], probe_columns={"kind": KINDS},
                                jsonl_path=tmp_path / "downstream.jsonl").attach(trainer)
    trainer.train()

    assert [r["step"] for r in tracker.history] == [0, 1, 2]
    assert tracker.history[0]["kl"] == 0.0
    # Regression: SFTConfig's default bf16 makes accelerate wrap model.forward in a closure over the
    # live module; a deep-copied reference that kept it ran the trained weights and KL stayed ≡ 0.
    assert tracker.history[-1]["kl"] != 0.0
    policy = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)  # plain fp32 forward
    reference, _ = tiny_llama()
    mean, _ = independent_rb_kl(tracker.last_samples, policy.eval(), reference.eval())
    assert tracker.history[-1]["kl"] == pytest.approx(mean, abs=TOL["float32"])
    assert len((tmp_path / "downstream.jsonl").read_text().splitlines()) == 3
    logged = [e for e in trainer.state.log_history if "downstream/kl" in e]
    assert [e["step"] for e in logged] == [0, 1, 2]
    assert "downstream/reward/keyword_safety_reward" in logged[0]
    # TRL's own per-step metrics are still logged (the tracker bypasses TRL's metric-flushing log())
    train_logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in train_logs] == [1, 2] and all("mean_token_accuracy" in e for e in train_logs)
