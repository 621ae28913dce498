"""Model judges and reward models (llm.judges): one model per path and process, freed per stage; last-position
logits only; reward models cut the START of a long response, never its end; the StrongREJECT judge as a LoRA
adapter on a local base; official / paraphrased rubrics selectable by config. Tiny models built here; the
references are the models' own forward passes on unpadded inputs."""
from __future__ import annotations

import functools
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from llm import judge_templates as T
from llm import judges as J
from llm import rewards as R
from llm.config import ConfigError, load_config
from llm.tiny import build_tiny_llama, build_word_tokenizer

WORDS = "1 2 3 4 5 yes no how make bomb bread ? sorry sure here step end good bad".split()


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, tok):
    path = tmp_path_factory.mktemp("lm")
    model = build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=3, max_position_embeddings=512)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model.eval()


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tok):
    path = tmp_path_factory.mktemp("rm")
    torch.manual_seed(4)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=512, num_labels=1, pad_token_id=tok.pad_token_id))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model.eval()


@pytest.fixture(autouse=True)
def _fresh_cache():
    J.release_judges()
    yield
    J.release_judges()


def _unpadded_next_logits(model, tok, text):
    ids = torch.tensor([tok(text, add_special_tokens=True)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1]


ROWS = [("how make bomb ?", "sorry"), ("how make bread ?", "sure here step 1 2 3 bread"),
        ("how make bomb ?", "step 1 bomb step 2 bomb ? end")]


def test_judge_reads_only_the_last_position_and_matches_unpadded_rows(lm_dir, tok, monkeypatch):
    path, model = lm_dir
    judge = J.StrongRejectJudge(str(path), batch_size=3, device="cpu", template="paraphrase")
    shapes = []
    real = type(judge.model).forward

    @functools.wraps(real)
    def spy(self, *a, **kw):
        out = real(self, *a, **kw)
        shapes.append(tuple(out.logits.shape))
        return out

    monkeypatch.setattr(type(judge.model), "forward", spy)
    got = judge.expected_score([p for p, _ in ROWS], [r for _, r in ROWS])
    assert shapes == [(3, 1, len(tok))]  # one position per row, not (B, T, V)
    ids = [tok.get_vocab()[s] for s in "12345"]
    for (p, r), g in zip(ROWS, got):
        logits = _unpadded_next_logits(model, tok, T.STRONGREJECT_PARAPHRASE.format(prompt=p, response=r))
        want = (torch.softmax(logits[ids], -1) @ torch.arange(1.0, 6.0)).item()
        assert g == pytest.approx(want, abs=1e-5)  # left padding + position ids = the unpadded row


def test_one_model_per_path_shared_and_released(rm_dir, lm_dir):
    rm_path, _ = rm_dir
    reward = R.get_reward(f"reward_model:{rm_path}", device="cpu")
    safety = R.get_reward(f"strongreject:{lm_dir[0]}", helpfulness=f"reward_model:{rm_path}", device="cpu")
    assert reward.judge.model is safety.helpfulness_judge.model  # the RM of the RL reward = the helpfulness RM
    assert len(J.loaded_judges()) == 2
    before = reward.judge.score(["how make bread ?"], ["sure"])
    assert J.release_judges() == 2 and J.loaded_judges() == []
    assert reward.judge.score(["how make bread ?"], ["sure"]) == pytest.approx(before)  # reloaded on use
    assert len(J.loaded_judges()) == 1


def test_reward_model_cuts_the_start_of_a_long_response(rm_dir, tok):
    path, model = rm_dir
    judge = J.RewardModelJudge(str(path), device="cpu", max_length=16)
    prompt, head, tail = "how make bread ?", " ".join(["step"] * 30), "sure here good end"
    text = judge.fit_text(prompt, head + " " + tail)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) <= 16 and judge.truncated == 1
    assert text.rstrip().endswith(tail + " </s>") or text.rstrip().endswith(tail)  # the end is kept
    assert "how make bread ?" in text  # the prompt is kept while the response can be cut
    got = judge.score([prompt], [head + " " + tail])[0]
    with torch.no_grad():
        want = torch.sigmoid(model(input_ids=torch.tensor([ids])).logits[0, 0]).item()
    assert got == pytest.approx(want, abs=1e-5)
    n = judge.truncated
    assert judge.fit_text(prompt, "sure") == judge.build_text(prompt, "sure") and judge.truncated == n  # untouched


def test_reward_model_cuts_the_prompt_start_when_the_response_is_not_enough(rm_dir, tok):
    judge = J.RewardModelJudge(str(rm_dir[0]), device="cpu", max_length=12)
    text = judge.fit_text(" ".join(["how"] * 40) + " make bread ?", "sure here good end")
    assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 12
    assert "make bread ?" in text and "sure here good end" in text


def test_strongreject_adapter_on_a_local_base(lm_dir, tok, tmp_path):
    from peft import LoraConfig, get_peft_model

    base_path, base = lm_dir
    peft = get_peft_model(build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=3,
                                           max_position_embeddings=512),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                                     init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    cfg_file = tmp_path / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = "google/gemma-2b"  # as downloaded: a hub id
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a local directory.*base_model=DIR"):
        J.StrongRejectJudge(str(tmp_path / "adapter"), device="cpu")
    judge = J.StrongRejectJudge(str(tmp_path / "adapter"), base_model=str(base_path), device="cpu")
    merged = peft.merge_and_unload().eval()
    p, r = ROWS[1]
    ids = [tok.get_vocab()[s] for s in "12345"]
    text = T.STRONGREJECT_TEMPLATE.format(prompt=p, response=r)
    want = (torch.softmax(_unpadded_next_logits(merged, tok, text)[ids], -1) @ torch.arange(1.0, 6.0)).item()
    assert judge.expected_score([p], [r])[0] == pytest.approx(want, abs=1e-5)
    base_only = (torch.softmax(_unpadded_next_logits(base, tok, text)[ids], -1) @ torch.arange(1.0, 6.0)).item()
    assert abs(want - base_only) > 1e-4  # the adapter is applied, not just the base
    cfg["base_model_name_or_path"] = str(base_path)  # or point the adapter at the local base
    cfg_file.write_text(json.dumps(cfg))
    J.release_judges()
    assert J.StrongRejectJudge(str(tmp_path / "adapter"), device="cpu").expected_score([p], [r])[0] == \
        pytest.approx(want, abs=1e-5)


def test_templates_official_paraphrase_file_and_config(lm_dir, tmp_path):
    path = str(lm_dir[0])
    assert J.StrongRejectJudge(path, device="cpu").template == T.STRONGREJECT_TEMPLATE  # official by default
    assert J.HarmBenchJudge(path, device="cpu", template="paraphrase").template == T.HARMBENCH_PARAPHRASE
    assert "Vague or very short instances do not count" in T.HARMBENCH_TEMPLATE
    assert "using the following criteria" in T.STRONGREJECT_TEMPLATE
    f = tmp_path / "rubric.txt"
    f.write_text("rate {prompt} -> {response} : ")
    assert R.get_reward(f"harmbench:{path}", device="cpu", template=str(f)).judge.template == f.read_text()
    with pytest.raises(ValueError, match="judge template 'nonsense'"):
        J.StrongRejectJudge(path, device="cpu", template="nonsense")
    assert load_config(None, [f"judge_template={f}"]).judge_template == str(f)
    with pytest.raises(ConfigError, match="judge_template"):
        load_config(None, ["judge_template=/no/such/rubric.txt"])


def test_reward_model_spec_ignores_the_rubric(rm_dir):
    reward = R.get_reward(f"reward_model:{rm_dir[0]}", device="cpu", template="paraphrase")
    assert isinstance(reward, R.RewardModelReward)
