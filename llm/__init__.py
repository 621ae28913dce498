"""llm: thin TRL adapters (FRPOTrainer, CSFTTrainer), rewards and judges, the tracking callback, the
embedded tiny world and the forgetting pipeline ``python -m llm.run``.

The trainers import TRL; importing ``llm`` itself stays light (names resolve on first use).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FRPOConfig": "llm.frpo", "FRPOTrainer": "llm.frpo", "shuffle_whole_groups": "llm.frpo",
    "CSFTConfig": "llm.csft", "CSFTTrainer": "llm.csft",
    "DownstreamTracker": "llm.callbacks",
    "math_reward": "llm.rewards", "math_correct_reward": "llm.rewards", "boxed_format_reward": "llm.rewards",
    "is_refusal": "llm.refusal", "keyword_safety_reward": "llm.rewards", "KeywordRefusalJudge": "llm.refusal",
    "StrongRejectJudge": "llm.judges", "HarmBenchJudge": "llm.judges", "RewardModelJudge": "llm.judges",
    "SafetyReward": "llm.rewards", "make_safety_reward": "llm.rewards", "RewardModelReward": "llm.rewards",
    "get_reward": "llm.rewards",
    "build_word_tokenizer": "llm.tiny", "build_tiny_llama": "llm.tiny", "tiny_model_and_tokenizer": "llm.tiny",
    "WorldConfig": "llm.world", "build_world": "llm.world",
    "pretrain_base": "llm.world_train", "train_sft": "llm.world_train",
    "refusal_prob": "llm.world_eval", "refusal_rate": "llm.world_eval", "over_refusal": "llm.world_eval",
    "math_accuracy": "llm.world_eval", "sequence_kl": "llm.world_eval",
    "RunConfig": "llm.config", "load_config": "llm.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llm' has no attribute {name!r}")
