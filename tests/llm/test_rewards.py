"""Tests of llm.rewards: math verifier + format, keyword refusal judge, model judges on tiny models built here."""
from __future__ import annotations

import math
import pickle
import threading
import time

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from llm.judge_templates import HARMBENCH_TEMPLATE, STRONGREJECT_TEMPLATE
from llm.judges import HarmBenchJudge, RewardModelJudge, StrongRejectJudge
from llm.refusal import REFUSAL_PREFIXES, REFUSAL_SUBSTRINGS, KeywordRefusalJudge, is_refusal
from llm.rewards import (
    boxed_format_reward,
    get_reward,
    keyword_safety_reward,
    make_safety_reward,
    math_correct_reward,
    math_reward,
)
from llm.tiny import build_tiny_llama, build_word_tokenizer
from tests.tolerances import TOL



# ----------------------------------------------------------------------------- math


def conv(text):
    return [{"role": "assistant", "content": text}]


MATH_CASES = [  # (completion, gold, correct, format)
    (r"so the answer is \boxed{42}", "42", 1.0, 1.0),
    (r"I get \boxed{41}", "42", 0.0, 1.0),
    (r"first \boxed{41}, finally \boxed{42}", "42", 1.0, 0.0),  # last box is the final answer
    (r"\boxed{42} or maybe \boxed{41}", "42", 0.0, 0.0),
    ("The final answer is 42", "42", 1.0, 0.0),  # anchored, unboxed
    ("42", "42", 0.0, 0.0),  # bare number: no final-answer anchor
    (r"half: \boxed{0.5}", r"\frac{1}{2}", 1.0, 1.0),  # symbolic equivalence
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0, 1.0),
    (r"\boxed{42}", "Janet has 6 eggs ... #### 42", 1.0, 1.0),  # GSM8K gold
    (r"\boxed{42", "42", 0.0, 0.0),  # unclosed box
    ("}{ \\boxed{ garbage $$ \\frac{", "42", 0.0, 0.0),
    (r"\boxed{\text{x}{}}", "42", 0.0, 1.0),
    (conv(r"ok \boxed{7}"), "7", 1.0, 1.0),  # conversational completion
]


def test_math_reward_cases_and_parts():
    completions = [c for c, *_ in MATH_CASES]
    gold = [g for _, g, *_ in MATH_CASES]
    correct = math_correct_reward(None, completions, answer=gold)
    fmt = boxed_format_reward(None, completions)
    total = math_reward(None, completions, answer=gold)
    assert correct == [c for *_, c, _ in MATH_CASES]
    assert fmt == [f for *_, f in MATH_CASES]
    for t, c, f in zip(total, correct, fmt, strict=True):
        assert t == pytest.approx(0.8 * c + 0.2 * f, abs=TOL["float64"])
    assert (math_reward.__name__, math_correct_reward.__name__, boxed_format_reward.__name__) == (
        "math_reward", "math_correct_reward", "boxed_format_reward")


def test_math_unjudged_rows_are_none_but_format_still_judged():
    completions = [r"\boxed{1}", r"\boxed{1}", r"\boxed{1}", r"\boxed{1}"]
    gold = [None, "", "not a number at all", "1"]
    assert math_reward(None, completions, answer=gold) == [None, None, None, 1.0]
    assert math_correct_reward(None, completions, answer=gold) == [None, None, None, 1.0]
    assert boxed_format_reward(None, completions) == [1.0] * 4


def test_math_missing_answer_column_raises():
    with pytest.raises(ValueError, match="'answer'"):
        math_reward(None, [r"\boxed{1}"], kind=["benign"])


def test_math_timeout_bounds_pathological_answer():
    # 10↑↑5 makes sympy's comparison hang; math-verify's alarm must cut it at timeout_s=1.
    start = time.perf_counter()
    out = math_correct_reward(None, [r"\boxed{10^{10^{10^{10^{10}}}}}"], answer=["42"], timeout_s=1)
    assert out == [0.0]
    assert time.perf_counter() - start < 4.0


def test_math_bad_timeout_raises():
    with pytest.raises(ValueError, match="timeout_s"):
        math_correct_reward(None, [r"\boxed{1}"], answer=["1"], timeout_s=0)


def test_math_verifier_exception_scores_zero(monkeypatch):
    import math_verify

    def broken(*args, **kwargs):
        raise RuntimeError("verifier crashed")

    monkeypatch.setattr(math_verify, "verify", broken)
    assert math_correct_reward(None, [r"\boxed{42}"], answer=["42"]) == [0.0]
    assert math_reward(None, [r"\boxed{42}"], answer=["42"]) == [pytest.approx(0.2)]


def test_math_reward_runs_outside_main_thread():
    # signal.alarm is main-thread only: a reward called from a worker thread must still work.
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        r=math_reward(None, [r"\boxed{3}", r"\boxed{4}"], answer=["3", "3"])))
    worker.start()
    worker.join(30)
    assert result["r"] == [pytest.approx(1.0), pytest.approx(0.2)]


# ----------------------------------------------------------------------------- keyword refusal

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I\u2019m sorry, I cannot do that.",  # curly apostrophe
    "i cannot help with making explosives.",  # case-insensitive
    "  **Sorry**, that is not something I can do.",  # leading markdown
    "Unfortunately, I am unable to assist with this request.",
    "As an AI language model, I must decline.",
    "Here is some context. But I cannot provide instructions for that.",  # substring anywhere
    "",  # empty: neither harm nor help
]
NON_REFUSALS = [
    "Sure! Here is a recipe for bread: mix flour and water.",
    "Step 1: preheat the oven. Step 2: bake.",
    "Jaywalking is illegal in some places, so cross at the lights.",  # GCG single words dropped
    "The answer is 42.",
    "Here is how to bake it. Sorry for the wait!",  # opener outside the first sentence
]


@pytest.mark.parametrize("text", REFUSALS)
def test_is_refusal_true(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", NON_REFUSALS)
def test_is_refusal_false(text):
    assert not is_refusal(text)


def test_every_listed_phrase_is_detected():
    for p in REFUSAL_PREFIXES:
        assert is_refusal(p + " do that for you."), p
        assert is_refusal("Well, " + p.upper() + " do that."), p  # inside the first sentence
    for s in REFUSAL_SUBSTRINGS:
        assert is_refusal("Here is an intro sentence. Then " + s + " more text."), s


def test_is_refusal_rejects_non_string():
    with pytest.raises(ValueError, match="string"):
        is_refusal(["I cannot"])


def test_keyword_safety_reward_kinds_and_formats():
    prompts = ["how make bomb ?", [{"role": "user", "content": "how make bread ?"}], "x", "y", "z", "w"]
    completions = ["I cannot help.", conv("Sure, mix flour."), "Sure, here is how.", conv("Sorry, no."),
                   "anything", "anything"]
    kinds = ["harmful", "benign", "harmful", "benign", None, "math"]
    assert keyword_safety_reward(prompts, completions, kind=kinds) == [1.0, 1.0, 0.0, 0.0, None, None]
    assert keyword_safety_reward.__name__ == "keyword_safety_reward"
    # TRL's async GRPO worker pickles reward functions
    clone = pickle.loads(pickle.dumps(keyword_safety_reward))
    assert clone(prompts, completions, kind=kinds) == [1.0, 1.0, 0.0, 0.0, None, None]
    with pytest.raises(ValueError, match="'kind'"):
        keyword_safety_reward(prompts, completions)


# ----------------------------------------------------------------------------- model judges

WORDS = "1 2 3 4 5 yes no how make bomb bread ? sorry sure here step".split()


@pytest.fixture(scope="module")
def judge_tok():
    return build_word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, judge_tok):
    path = tmp_path_factory.mktemp("lm_judge")
    model = build_tiny_llama(judge_tok, hidden_size=32, num_layers=1, num_heads=2, seed=1,
                             max_position_embeddings=512)
    model.save_pretrained(path)
    judge_tok.save_pretrained(path)
    return path, model.eval()


ROWS = [("how make bomb ?", "sorry"), ("how make bread ?", "sure here step 1 2 3 bread"),
        ("how make bomb ?", "step 1 bomb step 2 bomb ?")]


def _next_token_logits(model, tok, text):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0, -1].double().numpy()


def test_strongreject_expected_value_matches_manual_softmax(lm_dir, judge_tok):
    path, model = lm_dir
    judge = StrongRejectJudge(str(path), batch_size=2, device="cpu")  # 3 rows: a padded batch + a single
    got = judge.harmfulness([p for p, _ in ROWS], [r for _, r in ROWS])
    vocab = judge_tok.get_vocab()
    for (p, r), g in zip(ROWS, got, strict=True):
        logits = _next_token_logits(model, judge_tok, STRONGREJECT_TEMPLATE.format(prompt=p, response=r))
        z = logits[[vocab[d] for d in "12345"]]
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        expected = float((probs * np.arange(1, 6)).sum())
        assert g == pytest.approx((expected - 1) / 4, abs=TOL["float32"])
        assert 0.0 <= g <= 1.0
    assert len(set(np.round(got, 6))) == 3  # the judge reads the rows, not a constant


def test_judges_uniform_logits_give_known_value(tmp_path, judge_tok):
    model = build_tiny_llama(judge_tok, hidden_size=32, num_layers=1, num_heads=2, seed=2,
                             max_position_embeddings=512)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # final hidden state 0 → every logit 0
    model.save_pretrained(tmp_path)
    judge_tok.save_pretrained(tmp_path)
    sr = StrongRejectJudge(str(tmp_path), device="cpu")
    assert sr.expected_score(["how"], ["sure"]) == [pytest.approx(3.0, abs=TOL["float32"])]
    assert sr.harmfulness(["how"], ["sure"]) == [pytest.approx(0.5, abs=TOL["float32"])]
    hb = HarmBenchJudge(str(tmp_path), device="cpu")
    assert hb.harmfulness(["how"], ["sure"]) == [pytest.approx(0.5, abs=TOL["float32"])]


def test_harmbench_probability_matches_manual_yes_no(lm_dir, judge_tok):
    path, model = lm_dir
    template = "behavior {prompt} generation {response} answer"
    judge = HarmBenchJudge(str(path), template=template, batch_size=2, device="cpu")
    got = judge.harmfulness([p for p, _ in ROWS], [r for _, r in ROWS])
    vocab = judge_tok.get_vocab()
    for (p, r), g in zip(ROWS, got, strict=True):
        logits = _next_token_logits(model, judge_tok, template.format(prompt=p, response=r))
        py, pn = np.exp(logits[vocab["yes"]]), np.exp(logits[vocab["no"]])
        assert g == pytest.approx(py / (py + pn), abs=TOL["float32"])
    assert "{prompt}" in HARMBENCH_TEMPLATE and "{response}" in HARMBENCH_TEMPLATE

    # use_chat_template: the rubric goes in as a user turn followed by the generation prompt
    chat_judge = HarmBenchJudge(str(path), template=template, use_chat_template=True, device="cpu")
    got = chat_judge.harmfulness([ROWS[0][0]], [ROWS[0][1]])[0]
    text = judge_tok.apply_chat_template([{"role": "user", "content": template.format(
        prompt=ROWS[0][0], response=ROWS[0][1])}], tokenize=False, add_generation_prompt=True)
    logits = _next_token_logits(model, judge_tok, text)
    assert got == pytest.approx(1 / (1 + np.exp(logits[vocab["no"]] - logits[vocab["yes"]])), abs=TOL["float32"])


def test_judge_rejects_vocabulary_without_labels(tmp_path):
    tok = build_word_tokenizer("how make bomb ?".split())
    model = build_tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'yes'"):
        HarmBenchJudge(str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match="'1'"):
        StrongRejectJudge(str(tmp_path), device="cpu")


def test_missing_local_path_fails_without_network():
    with pytest.raises(ValueError, match="not a directory"):
        StrongRejectJudge("./no/such/judge_dir", device="cpu")


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, judge_tok):
    path = tmp_path_factory.mktemp("rm")
    config = LlamaConfig(vocab_size=len(judge_tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, num_labels=1, pad_token_id=judge_tok.pad_token_id)
    torch.manual_seed(3)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(30.0)  # spread the scores away from σ(0) = 0.5
    model.save_pretrained(path)
    judge_tok.save_pretrained(path)
    return path, model.eval()


def test_reward_model_judge_sigmoid_matches_manual(rm_dir, judge_tok):
    path, model = rm_dir
    judge = RewardModelJudge(str(path), batch_size=2, device="cpu")
    got = judge.score([p for p, _ in ROWS], [r for _, r in ROWS])
    for (p, r), g in zip(ROWS, got, strict=True):
        text = judge_tok.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
        ids = torch.tensor([judge_tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logit = model(ids).logits[0, 0].double().item()
        assert g == pytest.approx(1 / (1 + math.exp(-logit)), abs=TOL["float32"])
    assert max(got) - min(got) > 1e-3
    assert judge.harmfulness(["a"], ["b"])[0] == pytest.approx(1 - judge.helpfulness(["a"], ["b"])[0])


def test_make_safety_reward_routes_rows_to_judges(lm_dir, rm_dir):
    sr = StrongRejectJudge(str(lm_dir[0]), device="cpu")
    rm = RewardModelJudge(str(rm_dir[0]), device="cpu")
    prompts = ["how make bomb ?", [{"role": "user", "content": "how make bread ?"}], "how", "how make bomb ?"]
    completions = ["step 1 bomb", conv("sure here step"), "sure", conv("sorry")]
    kinds = ["harmful", "benign", "other", "harmful"]

    keyword_help = make_safety_reward(sr)
    out = keyword_help(prompts, completions, kind=kinds, completion_ids=[[1]] * 4)
    harm = sr.harmfulness(["how make bomb ?", "how make bomb ?"], ["step 1 bomb", "sorry"])
    assert out == [pytest.approx(1 - harm[0]), 1.0, None, pytest.approx(1 - harm[1])]
    assert keyword_help.__name__ == "strongreject_safety"

    rm_help = make_safety_reward(sr, helpfulness=rm, name="sr_rm")
    out = rm_help(prompts, completions, kind=kinds)
    assert out[1] == pytest.approx(rm.score(["how make bread ?"], ["sure here step"])[0])
    assert rm_help.__name__ == "sr_rm"
    with pytest.raises(ValueError, match="harmfulness"):
        make_safety_reward(object())
    with pytest.raises(ValueError, match="helpfulness"):
        make_safety_reward(KeywordRefusalJudge(), helpfulness=sr)


def test_registry_names_specs_and_errors(lm_dir, rm_dir):
    assert get_reward("math") is math_reward
    assert get_reward("keyword_safety") is keyword_safety_reward
    assert get_reward("math_correct") is math_correct_reward
    assert get_reward("boxed_format") is boxed_format_reward
    f = get_reward(f"harmbench:{lm_dir[0]}", device="cpu")
    assert f.__name__ == "harmbench_safety"
    assert f(["how"], ["sure"], kind=["benign"]) == [1.0]
    g = get_reward(f"strongreject:{lm_dir[0]}", helpfulness=f"reward_model:{rm_dir[0]}", device="cpu")
    assert 0.0 < g(["how"], ["sure"], kind=["benign"])[0] < 1.0
    rm = get_reward(f"reward_model:{rm_dir[0]}", device="cpu")
    assert rm.__name__ == "reward_model" and len(rm(["a", "b"], ["c", conv("d")])) == 2
    with pytest.raises(ValueError, match="valid names.*keyword_safety.*strongreject:<path>"):
        get_reward("safety")
    with pytest.raises(ValueError, match="valid names"):
        get_reward("strongreject:")
    with pytest.raises(ValueError, match="helpfulness"):
        get_reward(f"harmbench:{lm_dir[0]}", helpfulness="bleu", device="cpu")
