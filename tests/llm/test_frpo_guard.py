"""The TRL guard of FRPOTrainer (llm.trl_compat, llm.frpo): a TRL that renames or reshapes a private method
FRPO relies on fails at init with the method and the tested version named; a TRL that bypasses FRPO's
scoring, advantages or loss during training fails at the first loss instead of training plain GRPO."""
from __future__ import annotations

import types

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from llm.frpo import FRPOConfig, FRPOTrainer
from llm.trl_compat import TESTED_TRL, TRLCompatibilityError, check_trl_compatibility

PROMPTS = ["how make bomb ?", "add 3 4 ?", "how make bread ?", "add 1 2 ?"]


def digit_reward(completions, **kwargs):
    return [sum(w.isdigit() for w in c[0]["content"].split()) / 4.0 for c in completions]


def _trainer(tiny_llama, tmp_path, **overrides):
    model, tok = tiny_llama()
    kw = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no",
              disable_tqdm=True, per_device_train_batch_size=8, num_generations=4, max_completion_length=4,
              max_steps=1, learning_rate=1e-2, logging_steps=1, lam=0.5, seed=0, bf16=False)
    kw.update(overrides)
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    return FRPOTrainer(model=model, reward_funcs=digit_reward, args=FRPOConfig(**kw), train_dataset=data,
                       processing_class=tok)


def test_installed_trl_passes_and_pyproject_pins_the_tested_range():
    import tomllib
    from pathlib import Path

    import trl
    from packaging.specifiers import SpecifierSet

    check_trl_compatibility()
    assert trl.__version__ in SpecifierSet(TESTED_TRL)
    deps = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"trl{TESTED_TRL}" in [d.replace(" ", "") for d in deps]


@pytest.mark.parametrize("name", ["_calculate_rewards", "_generate_and_score_completions", "_prepare_inputs",
                                  "_compute_loss", "_get_per_token_logps_and_entropies"])
def test_a_renamed_private_method_fails_at_init(monkeypatch, tmp_path, name, tiny_llama):
    monkeypatch.delattr(GRPOTrainer, name)
    # gone, or (for _prepare_inputs) only transformers.Trainer's of another signature is left
    with pytest.raises(TRLCompatibilityError,
                       match=rf"GRPOTrainer\.{name}.*tested with trl>=1\.16,<1\.17.*(no such|has)"):
        _trainer(tiny_llama, tmp_path)


def test_a_changed_signature_fails_at_init(monkeypatch, tmp_path, tiny_llama):
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts, completions: None)
    with pytest.raises(TRLCompatibilityError, match=r"_calculate_rewards.*has _calculate_rewards\('inputs', "
                                                     r"'prompts', 'completions'\)"):
        _trainer(tiny_llama, tmp_path)


def test_a_body_that_no_longer_reads_the_advantages_fails_at_init(monkeypatch):
    def _compute_loss(self, model, inputs):  # a TRL whose loss reads another key
        return inputs["token_advantages"].sum()

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", _compute_loss)
    with pytest.raises(TRLCompatibilityError, match=r"no longer contains \['inputs\[\"advantages\"\]'\]"):
        check_trl_compatibility()


def test_training_counts_frpo_losses(tmp_path, tiny_llama):
    trainer = _trainer(tiny_llama, tmp_path)
    trainer.train()
    assert trainer.frpo_loss_batches >= 1


def test_bypassed_scoring_fails_during_training(tmp_path, tiny_llama):
    """A TRL whose buffering calls a renamed scoring method: batches without FRPO's columns reach the loss."""
    trainer = _trainer(tiny_llama, tmp_path)
    trainer._generate_and_score_completions = types.MethodType(GRPOTrainer._generate_and_score_completions, trainer)
    with pytest.raises(TRLCompatibilityError, match="without FRPO's _generate_and_score_completions"):
        trainer.train()


def test_advantages_changed_after_frpo_fails_during_training(tmp_path, monkeypatch, tiny_llama):
    trainer = _trainer(tiny_llama, tmp_path)
    orig = FRPOTrainer._generate_and_score_completions

    def overwrite(self, inputs):  # TRL recomputing the advantages after FRPO's hook
        out = orig(self, inputs)
        out["advantages"] = out["advantages"] * 0 + 1.0
        return out

    trainer._generate_and_score_completions = types.MethodType(overwrite, trainer)
    with pytest.raises(TRLCompatibilityError, match="changed the advantages after FRPO set them"):
        trainer.train()


def test_a_loss_not_through_frpo_fails_during_training(tmp_path, monkeypatch, tiny_llama):
    trainer = _trainer(tiny_llama, tmp_path)
    monkeypatch.setattr(FRPOTrainer, "_compute_loss", lambda self, model, inputs: GRPOTrainer._compute_loss(
        self, model, inputs))  # e.g. TRL calling a renamed loss method: FRPO's override never runs
    with pytest.raises(TRLCompatibilityError, match="without calling _compute_loss"):
        trainer.train()


def test_scoring_without_calculate_rewards_fails(tmp_path, monkeypatch, tiny_llama):
    trainer = _trainer(tiny_llama, tmp_path)
    trainer._calculate_rewards = types.MethodType(GRPOTrainer._calculate_rewards, trainer)  # FRPO's never runs
    with pytest.raises(TRLCompatibilityError, match="without calling _calculate_rewards"):
        trainer.train()
    assert torch.is_tensor(trainer.reward_weights)
