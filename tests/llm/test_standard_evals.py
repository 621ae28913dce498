"""The papers' standard evaluations (llm.standard_evals): MATH500 through lm-eval-harness, MBPP+ through evalplus, on
local data made here. References: tiny models trained here to always give one answer (so the accuracy is known:
one problem right, one wrong) and hand-written solutions (one passing, one failing, one that kills its process)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from llm import standard_evals as SE
from llm.config import ConfigError, load_config
from llm.tiny import build_tiny_llama, build_word_tokenizer

needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval not installed")
needs_evalplus = pytest.mark.skipif(importlib.util.find_spec("evalplus") is None, reason="evalplus not installed")

MATH_ROWS = [{"problem": "what is 1 + 2 ?", "solution": "1 + 2 = \\boxed{3}", "answer": "3", "subject": "Algebra",
              "level": 1, "unique_id": "t/1"},
             {"problem": "what is 2 + 2 ?", "solution": "2 + 2 = \\boxed{4}", "answer": "4", "subject": "Algebra",
              "level": 1, "unique_id": "t/2"}]
MBPP_ROWS = [
    {"task_id": "Mbpp/901", "prompt": '"""\nWrite a function add(a, b) that returns a + b.\nassert add(1, 2) == 3\n"""\n',
     "entry_point": "add", "canonical_solution": "\ndef add(a, b):\n    return a + b\n", "base_input": [[1, 2], [3, 4]],
     "plus_input": [[10, -3], [0, 0]], "atol": 0, "contract": "", "assertion": "assert add(1, 2) == 3"},
    {"task_id": "Mbpp/902", "prompt": '"""\nWrite a function mul(a, b) that returns a * b.\nassert mul(2, 3) == 6\n"""\n',
     "entry_point": "mul", "canonical_solution": "\ndef mul(a, b):\n    return a * b\n", "base_input": [[2, 3]],
     "plus_input": [[4, 5], [-1, 7]], "atol": 0, "contract": "", "assertion": "assert mul(2, 3) == 6"},
]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _parrot(out: Path, response: str, extra_words: str) -> str:
    """A tiny Llama trained to answer every prompt with ``response`` (what lm-eval / evalplus then score)."""
    words = sorted(set((extra_words + " " + response).split()))
    tok = build_word_tokenizer(words)
    model = build_tiny_llama(tok, seed=0, max_position_embeddings=512)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    texts = [tok.apply_chat_template([{"role": "system", "content": s}, {"role": "user", "content": u},
                                      {"role": "assistant", "content": response}], tokenize=False)
             for s in ("", SE.BOXED_SYSTEM_PROMPT) for u in extra_words.split()[:6]]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    for _ in range(150):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


# ---------------------------------------------------------------------------------------------- fast
def test_benchmark_specs_and_config_key():
    assert SE.parse_benchmark("math500") == ("math500", None)
    assert SE.parse_benchmark("mbpp_plus:/data/MbppPlus.jsonl") == ("mbpp_plus", "/data/MbppPlus.jsonl")
    with pytest.raises(ValueError, match="task must be one of"):
        SE.parse_benchmark("humaneval")
    assert load_config(None, ["eval.benchmarks=[math500, 'mbpp_plus:/d/m.jsonl']"]).eval.benchmarks == \
        ["math500", "mbpp_plus:/d/m.jsonl"]
    with pytest.raises(ConfigError, match=r"eval\.benchmarks\.0"):
        load_config(None, ["eval.benchmarks=[gsm8k]"])


def test_missing_local_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="data='/no/such.jsonl' does not exist"):
        SE.mbpp_plus_problems("/no/such.jsonl")
    assert SE.main(["--model", str(tmp_path / "none"), "--task", "math500"]) == 2


@needs_evalplus
def test_mbpp_problems_from_a_local_file(tmp_path):
    rows = SE.mbpp_plus_problems(_write_jsonl(tmp_path / "m.jsonl", MBPP_ROWS), limit=1)
    assert [r["task_id"] for r in rows] == ["Mbpp/901"]
    _write_jsonl(tmp_path / "bad.jsonl", [{"question": "x"}])
    with pytest.raises(ValueError, match="need"):
        SE.mbpp_plus_problems(str(tmp_path / "bad.jsonl"))


# ---------------------------------------------------------------------------------------------- slow: real runs
@pytest.mark.slow
@needs_evalplus
def test_solutions_run_in_evalplus_sandbox_not_here(tmp_path):
    """One right, one wrong, one that exits its process: pass@1 1/3, and this process is untouched."""
    rows = MBPP_ROWS + [{**MBPP_ROWS[1], "task_id": "Mbpp/903"}]
    got = SE.evaluate_solutions(rows, {"Mbpp/901": "def add(a, b): return a + b",
                                       "Mbpp/902": "def mul(a, b): return a + b",
                                       "Mbpp/903": "import os\nos._exit(3)\ndef mul(a, b): return a * b"}, tmp_path)
    assert got == {"mbpp_plus/pass@1": pytest.approx(1 / 3), "mbpp/pass@1": pytest.approx(1 / 3), "mbpp_plus/n": 3.0}


@pytest.mark.slow
@needs_evalplus
def test_mbpp_plus_end_to_end_on_a_tiny_model(tmp_path):
    model = _parrot(tmp_path / "coder", "def add(a, b): return a + b", "Please write add mul function code")
    got = SE.mbpp_plus(model, data=_write_jsonl(tmp_path / "m.jsonl", MBPP_ROWS), max_new_tokens=12, device="cpu")
    assert got["mbpp_plus/pass@1"] == pytest.approx(0.5) and got["mbpp_plus/n"] == 2.0


@pytest.mark.slow
@needs_lm_eval
def test_math500_through_lm_eval_on_local_data(tmp_path, capsys):
    """minerva_math500's own prompt and math_verify metric, the chat template and the boxed system prompt: a model
    that always answers \\boxed{3} gets one of the two problems right."""
    model = _parrot(tmp_path / "solver", "the answer is \\boxed{3}", "Problem: Solution: what is 1 2 + ? Please")
    data = _write_jsonl(tmp_path / "math500.jsonl", MATH_ROWS)
    samples = tmp_path / "samples.json"
    got = SE.math500(model, data=data, max_gen_toks=8, batch_size=2, device="cpu", dtype="float32",
                     samples_out=str(samples))
    # math_verify reads the box; minerva's exact_match wants "Final Answer: The final answer is ..." (absent here)
    assert got == {"math500/math_verify": 0.5, "math500/exact_match": 0.0, "math500/n": 2.0}
    prompts = [s["prompt"] for s in json.loads(samples.read_text())]
    assert all(p.startswith("<s> <system> " + SE.BOXED_SYSTEM_PROMPT) and " <assistant> " in p for p in prompts)
    assert "Problem:\nwhat is 1 + 2 ?\n\nSolution:" in prompts[0]
    assert SE.main(["--model", model, "--task", "math500", "--data", data, "--max-new-tokens", "8",
                    "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["math500/math_verify"] == 0.5
