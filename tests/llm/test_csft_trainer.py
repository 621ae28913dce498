"""CSFTTrainer on a tiny Llama (CPU): the gradient it produces is Qi et al.'s constrained SFT (+ PA).

References are written here from the formulas (no theory/ or llm/ import): per-token log-probabilities
by log_softmax + gather, β_t by response position, w_t = 2(1 − σ(β_t Δ_t)).
"""
from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from llm.csft import CSFTConfig, CSFTTrainer
from tests.tolerances import TOL

PAIRS = [("how make bomb ?", "sorry no"), ("add 3 4 ?", "sure the answer is 7"),
         ("how make bread ?", "here step add bread tea the answer is 5"), ("add 1 2 ?", "the answer is 3")]




def _dataset() -> Dataset:
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": p}] for p, _ in PAIRS],
        "completion": [[{"role": "assistant", "content": c}] for _, c in PAIRS],
    })


def _kwargs(tmp_path, **overrides):
    kwargs = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                  disable_tqdm=True, per_device_train_batch_size=4, max_steps=2, learning_rate=1e-2, logging_steps=1,
                  seed=0)
    kwargs.update(overrides)
    return kwargs


def _trainer(tiny_llama, tmp_path, model=None, ref_model=None, **overrides):
    if model is None:
        model, tok = tiny_llama()
    else:
        _, tok = tiny_llama()
    return CSFTTrainer(model=model, ref_model=ref_model, args=CSFTConfig(**_kwargs(tmp_path, **overrides)),
                       train_dataset=_dataset(), processing_class=tok)


def _other_reference(tiny_llama):
    """An 'aligned' reference that differs from the policy (another random tiny Llama, same vocabulary)."""
    return tiny_llama(seed=1)[0]


def _batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def _manual_logp(logits, labels):
    """log π(y_t) for the shifted labels, and the response mask: log_softmax + gather, by hand."""
    logits, targets = logits[:, :-1], labels[:, 1:]
    mask = targets != -100
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp, mask


def _manual_betas(mask, first=0.5, early=2.0, rest=0.1):
    betas = torch.zeros(mask.shape, dtype=torch.float32)
    for b in range(mask.shape[0]):
        pos = 0
        for t in range(mask.shape[1]):
            if mask[b, t]:
                pos += 1
                betas[b, t] = first if pos == 1 else early if pos <= 5 else rest
    return betas


class _LogitsGrad:
    """Keeps the lm_head output of the next forward and its gradient."""

    def __init__(self, model):
        self.logits = None
        self.handle = model.lm_head.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if output.requires_grad and self.logits is None:
            output.retain_grad()
            self.logits = output


def _loss_logits_grad(trainer, batch, num_items_in_batch=None):
    """d(trainer loss)/d(policy logits), (B, L, V)."""
    trainer.model.train()
    trainer.model.zero_grad()
    capture = _LogitsGrad(trainer.model)
    try:
        trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items_in_batch).backward()
    finally:
        capture.handle.remove()
    return capture.logits.grad.detach().clone()


# ---------------------------------------------------------------------------------------------- the gradient
@pytest.mark.parametrize("form", ["sigmoid", "weighted_nll"])
def test_per_token_gradient_is_minus_2_one_minus_sigmoid_beta_delta_grad_logp(tmp_path, form, tiny_llama):
    ref = _other_reference(tiny_llama)
    trainer = _trainer(tiny_llama, tmp_path, ref_model=copy.deepcopy(ref), pa=False, csft_form=form)
    batch = _batch(trainer)
    got = _loss_logits_grad(trainer, batch)

    # by hand: surrogate Σ_t −w_t log π_θ(y_t) / N with detached w_t = 2(1 − σ(β_t Δ_t))
    model = trainer.model
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits.retain_grad()
    logp, mask = _manual_logp(logits, batch["labels"])
    with torch.no_grad():
        ref_logp, _ = _manual_logp(ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                   batch["labels"])
        weight = 2 * (1 - torch.sigmoid(_manual_betas(mask) * (logp - ref_logp)))
    assert (weight[mask] - 1).abs().max() > 0.05  # the reference differs: CSFT is not plain SFT here
    (-(weight * logp * mask).sum() / mask.sum()).backward()
    want = logits.grad
    torch.testing.assert_close(got, want, rtol=TOL["float32"], atol=TOL["float32"] * want.abs().max().item())


def test_tiny_beta_is_plain_sft_gradient(tmp_path, tiny_llama):
    """β_t → 0: the CSFT gradient is the SFT (NLL) gradient, including TRL's token normalization."""
    tiny = dict(csft_beta_first=1e-7, csft_beta_early=1e-7, csft_beta_rest=1e-7, pa=False)
    csft = _trainer(tiny_llama, tmp_path, ref_model=_other_reference(tiny_llama), **tiny)
    model, tok = tiny_llama()
    sft = SFTTrainer(model=model, args=SFTConfig(**_kwargs(tmp_path)), train_dataset=_dataset(), processing_class=tok)
    batch = _batch(sft)
    n = (batch["labels"][:, 1:] != -100).sum()
    grads = []
    for trainer in (csft, sft):
        trainer.model.train()
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n).backward()
        grads.append({k: p.grad.clone() for k, p in trainer.model.named_parameters()})
    for name, g in grads[1].items():
        torch.testing.assert_close(grads[0][name], g, rtol=TOL["float32"], atol=TOL["float32"] * g.abs().max().item())


@pytest.mark.parametrize("detach_mu", [True, False])
def test_pa_term_has_no_gradient_where_argmaxes_agree(tmp_path, detach_mu, tiny_llama):
    # a perturbed copy of the policy: the argmaxes agree at most positions, not all (random tied-embedding
    # Llamas predict their input token, so two unrelated ones agree everywhere)
    model = tiny_llama()[0]
    ref = copy.deepcopy(model)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in ref.parameters():
            p.add_(2.0 * p.std() * torch.randn(p.shape, generator=gen))
    with_pa = _trainer(tiny_llama, tmp_path, model=copy.deepcopy(model), ref_model=ref, pa=True, detach_mu=detach_mu)
    without = _trainer(tiny_llama, tmp_path, model=copy.deepcopy(model), ref_model=ref, pa=False)
    batch = _batch(with_pa)
    pa_grad = _loss_logits_grad(with_pa, batch) - _loss_logits_grad(without, batch)  # δ · dL_PA/dlogits

    with torch.no_grad():
        inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        agree = model(**inputs).logits.argmax(-1) == ref(**inputs).logits.argmax(-1)  # (B, L)
    response = torch.zeros_like(agree)
    response[:, :-1] = batch["labels"][:, 1:] != -100  # positions whose next token is trained
    per_position = pa_grad.abs().amax(-1)
    assert (agree & response).any() and (~agree & response).any()
    assert torch.all(per_position[agree & response] < 1e-9)
    assert torch.all(per_position[~agree & response] > 1e-6)
    assert torch.all(per_position[~response] == 0)


def test_gradient_accumulation_2x2_equals_1x4(tmp_path, tiny_llama):
    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    grads = []
    for per_device, accum in ((4, 1), (2, 2)):
        capture = Capture()
        trainer = _trainer(tiny_llama, tmp_path, ref_model=_other_reference(tiny_llama),
                           per_device_train_batch_size=per_device, gradient_accumulation_steps=accum, max_steps=1,
                           max_grad_norm=0.0)
        trainer.add_callback(capture)
        trainer.train()
        grads.append(capture.grads)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=TOL["float32"], atol=TOL["float32"] * g.abs().max().item())


# ---------------------------------------------------------------------------------------------- training works
def test_every_parameter_changes_and_the_default_reference_stays_the_initial_model(tmp_path, tiny_llama):
    model, tok = tiny_llama()
    # regression: a model already used by a TRL trainer carries a patched forward bound to itself; a naive
    # deepcopy of it would compute the "reference" with the live policy
    SFTTrainer(model=model, args=SFTConfig(**_kwargs(tmp_path)), train_dataset=_dataset(), processing_class=tok)
    initial = tiny_llama()[0].eval()
    trainer = _trainer(tiny_llama, tmp_path, model=model, num_train_epochs=2, max_steps=-1,
                       per_device_train_batch_size=2)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(before[n], p)]
    assert not unchanged, unchanged
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())

    batch = _batch(trainer)
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(trainer.reference_logits(inputs), initial(**inputs).logits, rtol=0, atol=0)
        assert not torch.allclose(trainer.model(**inputs).logits, initial(**inputs).logits)
    logs = [e for e in trainer.state.log_history if "pa/delta" in e]
    assert [e["pa/delta"] for e in logs] == pytest.approx([0.1, 0.1, 0.2, 0.2])  # δ = 0.1 + 0.2·epoch/2
    for key in ("csft/loss", "csft/mean_weight", "csft/mean_delta", "pa/loss", "pa/mu", "pa/agree_frac",
                "entropy", "mean_token_accuracy", "num_tokens"):
        assert key in logs[-1]


def test_lora_reference_is_the_base_with_the_adapter_disabled(tmp_path, tiny_llama):
    from peft import LoraConfig

    model, tok = tiny_llama()
    base = tiny_llama()[0].eval()
    trainer = CSFTTrainer(model=model, args=CSFTConfig(**_kwargs(tmp_path, max_steps=3)), train_dataset=_dataset(),
                          processing_class=tok,
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert trainer.ref_model is None  # no second copy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert {n for n in before if "lora_B" in n} <= changed and all("lora_" in n for n in changed)

    batch = _batch(trainer)
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(trainer.reference_logits(inputs), base(**inputs).logits, rtol=0, atol=0)
        assert not torch.allclose(trainer.model(**inputs).logits, base(**inputs).logits)  # the adapter is back on


def test_reference_loaded_from_the_config_path(tmp_path, tiny_llama):
    aligned = _other_reference(tiny_llama)
    aligned.save_pretrained(tmp_path / "aligned")
    trainer = _trainer(tiny_llama, tmp_path, ref_model_name_or_path=str(tmp_path / "aligned"))
    batch = _batch(trainer)
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(trainer.reference_logits(inputs), aligned.eval()(**inputs).logits)
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())


# ---------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("kwargs,match", [
    (dict(csft_beta_first=0.0), "csft_beta_first=0.0"),
    (dict(csft_beta_rest=float("inf")), "csft_beta_rest=inf"),
    (dict(csft_form="logistic"), "csft_form='logistic'"),
    (dict(pa_delta_span=-0.1), "pa_delta_span=-0.1"),
    (dict(packing=True), "packing=True"),
    (dict(loss_type="dft"), "loss_type='dft'"),
])
def test_config_rejects_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CSFTConfig(**_kwargs(tmp_path, **kwargs))


def test_config_fields_cite_their_equation(tmp_path):
    from dataclasses import fields

    own = {f.name for f in fields(CSFTConfig)} - {f.name for f in fields(SFTConfig)}
    assert own == {"csft_beta_first", "csft_beta_early", "csft_beta_rest", "csft_form", "pa", "pa_delta_start",
                   "pa_delta_span", "detach_mu", "ref_model_name_or_path"}
    for f in fields(CSFTConfig):
        if f.name in own:
            assert "Eq." in f.metadata["help"], f.name


def test_model_given_by_path_builds_its_reference_from_the_path(tmp_path, tiny_llama):
    """Regression: CSFTTrainer(model="<path>") crashed in is_peft_model(str)."""
    from datasets import Dataset

    from llm.csft import CSFTConfig, CSFTTrainer

    model, tok = tiny_llama()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": "add 3 4 ?"}]],
                              "completion": [[{"role": "assistant", "content": "sure the answer is 7"}]]})
    args = CSFTConfig(output_dir=str(tmp_path / "out"), max_steps=1, use_cpu=True, bf16=False, report_to="none",
                      per_device_train_batch_size=1, save_strategy="no")
    trainer = CSFTTrainer(model=str(tmp_path / "m"), args=args, train_dataset=data, processing_class=tok)
    assert trainer.ref_model is not None and not any(p.requires_grad for p in trainer.ref_model.parameters())
    trainer.train()
