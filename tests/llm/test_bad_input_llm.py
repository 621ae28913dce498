"""Bad input at the llm entry points: config overrides, reward specs, reward columns.

Same contract as tests/theory/test_bad_input.py (tests/errors.py): exactly one ValueError
(ConfigError is one), nothing chained behind it, a message naming the key or argument, showing the
value, and saying what to do. Nothing here loads a model or touches the network.
"""
from __future__ import annotations

import pytest

from llm.config import load_config
from llm.rewards import (boxed_format_reward, get_reward, keyword_safety_reward, math_correct_reward,
                         math_reward)
from tests.errors import assert_one_clear_value_error


def cfg(*overrides):
    return lambda: load_config(None, list(overrides))


# (id, call, key or argument, value as it must appear in the message)
CASES = [
    # ---------------------------------------------------------------- llm.config.load_config
    ("steps-neg", cfg("align.steps=-1"), "align.steps", "-1"),
    ("steps-str", cfg("align.steps=abc"), "align.steps", "'abc'"),
    ("steps-float", cfg("align.steps=2.5"), "align.steps", "2.5"),
    ("lam-0", cfg("align.arms.0.lam=0"), "align.arms.0.lam", "0.0"),
    ("lam-neg", cfg("align.arms.0.lam=-1"), "align.arms.0.lam", "-1.0"),
    ("lam-nan", cfg("align.arms.0.lam=nan"), "align.arms.0.lam", "nan"),
    ("arm-beta", cfg("align.arms.0.beta=-0.1"), "align.arms.0.beta", "-0.1"),
    ("arm-algo", cfg("align.arms.0.algo=ppo"), "align.arms.0.algo", "'ppo'"),
    ("arm-scale", cfg("align.arms.0.lam_scale=two"), "align.arms.0.lam_scale", "'two'"),
    ("arm-missing", cfg("align.arms.5.lam=1"), "align.arms.5.lam", "1"),
    ("num-gen", cfg("align.num_generations=1"), "align.num_generations", "1"),
    ("align-lr", cfg("align.learning_rate=0"), "align.learning_rate", "0.0"),
    ("warmup", cfg("align.warmup_ratio=1.5"), "align.warmup_ratio", "1.5"),
    ("temperature", cfg("align.temperature=-1"), "align.temperature", "-1.0"),
    ("align-reward", cfg("align.reward=chess"), "align.reward", "'chess'"),
    ("max-len", cfg("align.max_completion_length=0"), "align.max_completion_length", "0"),
    ("unknown-key", cfg("align.stepz=3"), "stepz", "'align'"),
    ("no-equals", cfg("align.steps"), "align.steps", "key=value"),
    ("seeds-empty", cfg("seeds=[]"), "seeds", "[]"),
    ("seeds-dup", cfg("seeds=[0,0]"), "seeds", "[0, 0]"),
    ("device", cfg("device=tpu"), "device", "'tpu'"),
    ("run-name", cfg("run_name=a/b"), "run_name", "'a/b'"),
    ("vllm-mem", cfg("vllm_gpu_memory_utilization=1.5"), "vllm_gpu_memory_utilization", "1.5"),
    ("dtype", cfg("base.dtype=float8"), "base.dtype", "'float8'"),
    ("base-lr", cfg("base.learning_rate=-0.001"), "base.learning_rate", "-0.001"),
    ("kinds", cfg("downstream.kinds=[dpo]"), "downstream.kinds", "['dpo']"),
    ("ds-steps", cfg("downstream.steps=-5"), "downstream.steps", "-5"),
    ("ds-lr", cfg("downstream.learning_rate=-1e-4"), "downstream.learning_rate", "-0.0001"),
    ("ds-kl-est", cfg("downstream.kl_estimator=xx"), "downstream.kl_estimator", "'xx'"),
    ("ds-stop-kl", cfg("downstream.stop_kl=-1"), "downstream.stop_kl", "-1.0"),
    ("eval-n", cfg("eval.n_samples=0"), "eval.n_samples", "0"),
    ("eval-temp", cfg("eval.temperature=-0.5"), "eval.temperature", "-0.5"),
    ("eval-samples", cfg("eval.samples=-1"), "eval.samples", "-1"),
    ("config-path", lambda: load_config("no_such_config_anywhere"), "config file", "'no_such_config_anywhere'"),
    # ---------------------------------------------------------------- llm.rewards.get_reward
    ("reward-unknown", lambda: get_reward("chess"), "reward", "'chess'"),
    ("reward-no-path", lambda: get_reward("strongreject:"), "reward", "'strongreject:'"),
    ("reward-kind-only", lambda: get_reward("reward_model"), "reward", "'reward_model'"),
    ("reward-int", lambda: get_reward(42), "reward", "42"),
    ("reward-helpfulness", lambda: get_reward("math", helpfulness="keyword"), "reward", "'math'"),
    ("reward-judge-kw", lambda: get_reward("keyword_safety", device="cpu"), "reward", "'keyword_safety'"),
    # ---------------------------------------------------------------- reward functions: columns
    ("math-answer-len", lambda: math_correct_reward(None, ["a", "b"], answer=["1"]), "answer", "1 values"),
    ("math-no-answer", lambda: math_reward(None, ["a"]), "answer", "got columns"),
    ("kw-no-kind", lambda: keyword_safety_reward(["p"], ["c"]), "kind", "[]"),
    ("kw-kind-len", lambda: keyword_safety_reward(["p", "q"], ["c", "d"], kind=["harmful"] * 3), "kind",
     "3 values"),
    ("kw-prompts-len", lambda: keyword_safety_reward(["p"], ["c", "d"], kind=["harmful", "benign"]),
     "prompts", "1 prompts"),
    ("format-type", lambda: boxed_format_reward(None, [42]), "completion", "int"),
]


@pytest.mark.parametrize("call, arg, value", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_raises_one_clear_value_error(call, arg, value):
    assert_one_clear_value_error(call, arg, value, whole_word=False)


def test_good_overrides_still_load():
    """The table is about bad values: the same keys with good values load."""
    c = load_config(None, ["align.steps=3", "align.arms.0.lam=0.5", "seeds=[0,1]", "downstream.stop_kl=0"])
    assert c.align.steps == 3 and c.align.arms[0].lam == 0.5 and c.seeds == [0, 1]
