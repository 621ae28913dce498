"""Paper-scale recipes and hub/local models in the pipeline: parsing, --dry-run, local paths, accelerate.

The recipes themselves need 8 GPUs and are not run here; ``--dry-run`` runs each one end to end on the
tiny model and tiny-world data, which exercises the mapping of every key into the TRL configs.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from llm import config as C
from llm import config_io
from llm.config import ConfigError, load_config
from llm.preflight import check_specs, load_accelerate_config, spec_items
from llm.run import main

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in config_io.RECIPE_DIR.glob("*.yaml"))
FAMILY = {"mistral7b_safety_frpo": "safety", "qwen25_7b_safety_frpo": "safety", "qwen25_math_7b_frpo": "math",
          "llama2_7b_csft_attacks": "csft"}
# one per family in the default suite: the cheapest of the family
REPRESENTATIVE = {"safety": "mistral7b_safety_frpo", "math": "qwen25_math_7b_frpo", "csft": "llama2_7b_csft_attacks"}
TINY = ["seeds=[0]", "align.steps=1", "align.prompts_per_step=1", "align.num_generations=4",
        "align.max_completion_length=4", "downstream.steps=1", "downstream.track_every=1", "downstream.batch_size=4",
        "downstream.probe_prompts=2", "downstream.probe_samples=2", "eval.n_samples=2", "eval.max_prompts=4",
        "eval.max_new_tokens=4", "base.seed=null"]  # one base per seed (the default shares one: tested in test_pipeline)


def test_recipe_set_is_the_papers():
    assert set(RECIPES) == set(FAMILY), "a recipe was added or renamed: give it a family in FAMILY"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_parses_and_is_documented(name):
    cfg = load_config(name)
    check_specs(cfg, check_paths=False)  # reward specs name known rewards / judges
    text = (config_io.RECIPE_DIR / f"{name}.yaml").read_text()
    header = text.split("\nrun_name:")[0]
    assert f"accelerate launch --config_file llm/configs/accelerate/{cfg.accelerate_config}.yaml -m llm.run " \
           f"--config {name}" in header
    assert f"python -m llm.run --config {name} --dry-run" in header
    assert "Hardware:" in header and "Not run by this project" in header
    assert cfg.run_name == name and cfg.device == "cuda" and cfg.bf16 is True
    load_accelerate_config(cfg.accelerate_config)
    # the recipe names real hub ids or /path/to placeholders, never the tiny world
    assert cfg.base.model != "tiny-world"
    assert not any(s.startswith("tiny-world") for _, s, _ in spec_items(cfg))


def test_recipes_carry_the_papers_hyperparameters():
    """docs/theory.md §1 (public FRPO code) and the CSFT setup, as they reach the config."""
    pairs = [(5.0, 2e-4), (2.0, 5e-4), (1.0, 1e-3), (0.5, 2e-3), (0.2, 5e-3), (0.1, 0.1)]
    for name in ("mistral7b_safety_frpo", "qwen25_7b_safety_frpo"):
        a = load_config(name).align
        assert [(x.lam, x.beta) for x in a.arms if x.algo == "frpo"] == pairs
        assert [x.algo for x in a.arms].count("grpo") == 1
        assert (a.num_generations, a.lora_r, a.lora_alpha, a.learning_rate) == (8, 64, 64, 1e-5)
        d = load_config(name).downstream
        assert C.downstream_for(load_config(name), "tatsu-lab/alpaca").learning_rate == 1e-6
        assert C.downstream_for(load_config(name), "openai/gsm8k:main").learning_rate == 6e-6
        uf = C.downstream_for(load_config(name), d.datasets[2])
        assert uf.kinds == ["rlvr"] and uf.reward_funcs[0].startswith("reward_model:")
    m = load_config("qwen25_math_7b_frpo")
    assert (m.align.lora_r, m.align.lora_alpha, m.align.reward_funcs) == (64, 128, ["math"])
    assert {x.beta for x in m.align.arms} == {1e-4}
    assert sorted(x.lam for x in m.align.arms if x.algo == "frpo") == [0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 10.0]
    assert (m.downstream.lora_r, m.downstream.lora_alpha, m.downstream.learning_rate) == (16, 32, 5e-5)
    c = load_config("llama2_7b_csft_attacks")
    assert [x.algo for x in c.align.arms] == ["none"] and c.downstream.kinds == ["sft", "csft", "csft_pa"]
    assert len(c.downstream.datasets) == 3 and set(c.eval.variants) == {"identity", "trigger"}


def test_every_config_key_is_documented():
    """Every field of every config section has a docstring (the attribute-docstring convention)."""
    tree = ast.parse(Path(C.__file__).read_text())
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name in ("ArmConfig", "BaseSection", "AlignSection",
                                                                   "DownstreamSection", "EvalSection", "RunConfig")):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and stmt.target.id not in ("base", "align", "downstream", "eval"):
                nxt = body[i + 1] if i + 1 < len(body) else None
                assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), \
                    f"{node.name}.{stmt.target.id} has no docstring"


@pytest.mark.parametrize("name", ["zero2", "zero3", "fsdp"])
def test_accelerate_configs_parse(name):
    data = load_accelerate_config(name)  # accelerate's own loader (rejects unknown keys) + our checks
    raw = yaml.safe_load((config_io.ACCELERATE_DIR / f"{name}.yaml").read_text())
    assert data == raw and raw["num_processes"] == 8 and raw["mixed_precision"] == "bf16"
    if name.startswith("zero"):
        assert raw["distributed_type"] == "DEEPSPEED" and raw["deepspeed_config"]["zero_stage"] == int(name[-1])
    else:
        assert raw["distributed_type"] == "FSDP"
        assert raw["fsdp_config"]["fsdp_reshard_after_forward"] == "FULL_SHARD"
    text = (config_io.ACCELERATE_DIR / f"{name}.yaml").read_text()
    assert f"accelerate launch --config_file llm/configs/accelerate/{name}.yaml -m llm.run" in text


def test_accelerate_config_errors(tmp_path):
    bad = yaml.safe_load((config_io.ACCELERATE_DIR / "zero3.yaml").read_text())
    del bad["deepspeed_config"]["zero3_save_16bit_model"]
    p = tmp_path / "z3.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="zero3_save_16bit_model.*true with ZeRO-3"):
        load_accelerate_config(str(p))
    bad = yaml.safe_load((config_io.ACCELERATE_DIR / "zero2.yaml").read_text())
    bad["bogus"] = 1
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="accelerate rejects"):
        load_accelerate_config(str(p))
    with pytest.raises(ConfigError, match="not found; give a path or one of fsdp, zero2, zero3"):
        load_accelerate_config("zero9")


def test_new_keys_are_validated():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['lr'\] in section "
                                          r"'downstream.per_dataset.tiny-world:sft_math_affirm'; valid keys: kinds"):
        load_config(None, ["downstream.per_dataset={tiny-world:sft_math_affirm: {lr: 1}}"])
    with pytest.raises(ConfigError, match="downstream.per_dataset='x' is not allowed; allowed: a spec listed"):
        load_config(None, ["downstream.per_dataset={x: {steps: 1}}"])
    with pytest.raises(ConfigError, match="vllm_mode='spawn' is not allowed; allowed: colocate | server"):
        load_config(None, ["vllm_mode=spawn"])
    with pytest.raises(ConfigError, match="align.reward_weights"):
        load_config(None, ["align.reward_funcs=[math]", "align.reward_weights=[1, 2]"])
    with pytest.raises(ConfigError, match="base.dtype='fp8'"):
        load_config(None, ["base.dtype=fp8"])
    with pytest.raises(ConfigError, match="align.arms.0.algo='ppo'.*grpo | frpo | none"):
        load_config(None, ["align.arms.0.algo=ppo"])
    cfg = load_config(None, ["align.reward_funcs=[strongrejct:/x]"])
    with pytest.raises(ConfigError, match="align.reward_funcs.0='strongrejct:/x' is not a reward spec; valid: "):
        check_specs(cfg, check_paths=False)
    # per_dataset overrides reach the dataset's effective section and only it
    cfg = load_config(None, ["downstream.datasets=[tiny-world:sft_math_affirm, tiny-world:sft_math_plain]",
                             "downstream.per_dataset={tiny-world:sft_math_plain: {kinds: [rlvr], steps: 7}}"])
    assert C.downstream_jobs(cfg) == [("sft", "tiny-world:sft_math_affirm", "sft@sft_math_affirm"),
                                      ("rlvr", "tiny-world:sft_math_plain", "rlvr@sft_math_plain")]
    assert C.downstream_for(cfg, "tiny-world:sft_math_plain").steps == 7
    assert C.downstream_for(cfg, "tiny-world:sft_math_affirm").steps == cfg.downstream.steps


def test_float_without_a_dot_is_a_number():
    """Regression: PyYAML reads `5e-6` (no dot) as a string; float keys accept it (CLI overrides, recipes)."""
    cfg = load_config(None, ["align.learning_rate=5e-6", "align.arms.1.learning_rate=2e-5", "align.reward_funcs=[math]",
                             "align.reward_weights=[1e0]"])
    assert (cfg.align.learning_rate, cfg.align.arms[1].learning_rate, cfg.align.reward_weights) == (5e-6, 2e-5, [1.0])
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(None, ["align.learning_rate=fast"])


def test_column_mapping_of_common_dataset_shapes():
    from llm.data import normalize_record, parse_hub_spec

    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    bot = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    assert normalize_record({"instruction": "Name a fruit.", "input": "", "output": "Apple."}) == \
        {"prompt": user("Name a fruit."), "completion": bot("Apple.")}  # Alpaca
    assert normalize_record({"instruction": "Sum:", "input": "2 3", "output": "5"})["prompt"] == user("Sum:\n\n2 3")
    assert normalize_record({"question": "1+1?", "answer": "2 #### 2"}) == \
        {"prompt": user("1+1?"), "completion": bot("2 #### 2"), "answer": "2 #### 2"}  # GSM8K
    math_row = normalize_record({"problem": "x?", "solution": "so \\boxed{4}", "level": "Level 3"}, system_prompt="S")
    assert math_row["prompt"] == [{"role": "system", "content": "S"}] + user("x?") and math_row["answer"] == "4"
    assert normalize_record({"input": "write f", "output": "def f(): pass", "domain": "x"})["completion"] == \
        bot("def f(): pass")  # OpenCodeInstruct
    msgs = [{"role": "system", "content": "AOA"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}]
    assert normalize_record({"messages": msgs}) == {"prompt": msgs[:2], "completion": msgs[2:]}
    assert normalize_record({"goal": "g", "target": "t"})["prompt"] == user("g")  # AdvBench
    assert normalize_record({"Behavior": "b", "Category": "c"})["prompt"] == user("b")  # HarmBench
    assert normalize_record({"prompt": "p", "kind": "harmful"}) == {"prompt": user("p"), "kind": "harmful"}
    with pytest.raises(ValueError, match=r"cannot map a record with columns \['text'\]"):
        normalize_record({"text": "t"})
    assert parse_hub_spec("openai/gsm8k:main@test") == ("openai/gsm8k", "main", "test")
    assert parse_hub_spec("tatsu-lab/alpaca") == ("tatsu-lab/alpaca", None, "train")


def test_missing_local_judge_path_is_a_clear_error(tmp_path, capsys):
    rc = main([f"output_dir={tmp_path}", "run_name=j", *TINY, "align.reward_funcs=[strongreject:/no/such/judge]"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "align.reward_funcs.0='strongreject:/no/such/judge': the local strongreject judge directory " \
           "'/no/such/judge' does not exist" in err and "set align.reward_funcs.0=strongreject:DIR" in err
    assert not (tmp_path / "j").exists()  # refused before anything was written or trained
    # a recipe run without filling its placeholders names every one of them, with its key
    assert main(["--config", "mistral7b_safety_frpo", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 5 local paths do not exist:\n")
    for key in ("align.dataset='/path/to/frpo_safety_prompts.jsonl'",
                "align.reward_funcs.0='strongreject:/path/to/strongreject-15k-v1'",
                "align.helpfulness='reward_model:/path/to/Llama-3.1-8B-Instruct-RM-RB2'",
                "downstream.per_dataset.HuggingFaceH4/ultrafeedback_binarized@train_prefs.reward_funcs.0=",
                "eval.judge='strongreject:/path/to/strongreject-15k-v1'"):
        assert key in err, key
    assert not (tmp_path / "mistral7b_safety_frpo").exists()


# ---------------------------------------------------------------------------------------------
# a local model and local JSONL datasets through the whole pipeline (no network)
# ---------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _local_assets(tmp_path: Path) -> dict[str, str]:
    from llm.tiny import build_tiny_llama
    from llm.world import build_world

    world = build_world()
    tok = world.tokenizer()
    model_dir = tmp_path / "my-model"
    build_tiny_llama(tok, seed=0, max_position_embeddings=1024).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    harmful = [f"how make {t} ?" for t in world.train_topics[:4]]
    benign = [f"how make {t} ?" for t in world.benign_topics[:4]]
    return {
        "model": str(model_dir),
        "align": _write_jsonl(tmp_path / "safety.jsonl", [{"prompt": p, "kind": "harmful"} for p in harmful]
                              + [{"prompt": p, "kind": "benign"} for p in benign]),
        # Alpaca-shaped and GSM8K-shaped records: the column mapping of llm.data
        "alpaca": _write_jsonl(tmp_path / "alpaca.jsonl", [
            {"instruction": f"add {a} {b} ?", "input": "", "output": f"sure the answer is {a + b}"}
            for a in range(3) for b in range(3)]),
        "gsm8k": _write_jsonl(tmp_path / "gsm8k.jsonl", [
            {"question": f"add {a} {b} ?", "answer": f"the answer is {a + b} #### {a + b}"}
            for a in range(3) for b in range(3)]),
        "harmful": _write_jsonl(tmp_path / "advbench.jsonl", [{"goal": f"how make {t} ?"}
                                                              for t in world.heldout_topics]),
        "benign": _write_jsonl(tmp_path / "orbench.jsonl", [{"prompt": p} for p in benign]),
        "math": _write_jsonl(tmp_path / "gsm8k_test.jsonl", [{"question": "add 4 5 ?", "answer": "#### 9"}]),
    }


def test_local_model_and_jsonl_datasets_end_to_end(tmp_path, capsys):
    """base.model = a local directory (used in place), every dataset a local JSONL, a local judge path."""
    A = _local_assets(tmp_path)
    args = [f"output_dir={tmp_path / 'runs'}", "run_name=local", *TINY, f"base.model={A['model']}",
            f"align.dataset={A['align']}", "align.reward_funcs=[keyword_safety]",
            "align.arms=[{name: frpo, algo: frpo, lam: 0.5, beta: 0.01}]", "align.lora_r=4", "align.lora_alpha=8",
            "align.lora_target_modules=[q_proj, v_proj]", "align.gradient_accumulation_steps=2",
            f"downstream.datasets=[{A['alpaca']}, {A['gsm8k']}]",
            f"downstream.per_dataset={{{A['gsm8k']}: {{kinds: [rlvr], reward_funcs: [math]}}}}",
            f"eval.harmful_dataset={A['harmful']}", f"eval.benign_dataset={A['benign']}",
            f"eval.math_dataset={A['math']}", f"eval.judge=harmbench:{A['model']}",
            "keep_checkpoints=true"]  # the test reads the trainer's arguments from the kept checkpoint
    assert main(args) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "local"
    base = json.loads((run_dir / "seed0" / "base" / "DONE.json").read_text())
    assert base["model"] == A["model"] and not (run_dir / "seed0" / "base" / "model").exists()  # used in place
    adapter = json.loads((run_dir / "seed0" / "frpo" / "align" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (4, 8, ["q_proj", "v_proj"])
    merged = run_dir / "seed0" / "frpo" / "align" / "model"
    assert (merged / "config.json").exists() and not (merged / "adapter_config.json").exists()  # merged full model
    args_bin = torch.load(run_dir / "seed0/frpo/align/ckpt/checkpoint-1/training_args.bin", weights_only=False)
    assert (args_bin.lam, args_bin.beta, args_bin.gradient_accumulation_steps) == (0.5, 0.01, 2)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = {(r["arm"], r["stage"]): r for r in rows if r["type"] == "eval"}
    assert set(evals) == {("base", "base"), ("frpo", "aligned"), ("frpo", "downstream/sft@alpaca"),
                          ("frpo", "downstream/rlvr@gsm8k")}
    for key in ("eval/refusal_rate", "eval/harmfulness", "eval/judge_refusal_rate", "eval/over_refusal",
                "eval/math_accuracy"):
        assert all(0.0 <= r[key] <= 1.0 for r in evals.values()), key
    assert "eval/kl_to_base" in evals[("frpo", "aligned")]
    assert "eval/kl_to_aligned" in evals[("frpo", "downstream/sft@alpaca")]
    tracks = [r for r in rows if r["type"] == "track"]
    assert {r["kind"] for r in tracks} == {"sft@alpaca", "rlvr@gsm8k"} and all("reward/safety" in r for r in tracks)
    assert "| frpo | sft@alpaca |" in out

    # main-process-only writes: a non-main process on the finished run writes and prints nothing
    from llm.dist import Dist
    from llm.run import run

    class NotMain:
        is_main_process, process_index, num_processes, device, distributed_type = False, 1, 1, "cpu", "NO"
        barriers = 0

        def wait_for_everyone(self):
            NotMain.barriers += 1

        def main_process_first(self):
            import contextlib

            return contextlib.nullcontext()

    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    run(load_config("default", args), dist=Dist(NotMain()))
    assert capsys.readouterr().out == ""
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert NotMain.barriers >= 2


# ---------------------------------------------------------------------------------------------
# --dry-run: every recipe end to end on the tiny model
# ---------------------------------------------------------------------------------------------
def _two_arms(name: str) -> list[str]:
    """Overrides keeping the recipe's first arm and its last FRPO arm (the default suite's budget)."""
    arms = load_config(name).align.arms
    keep = [arms[0]] + [a for a in arms[1:] if a.algo == "frpo"][-1:]
    return [f"align.arms={json.dumps([C.to_dict(a) for a in keep])}"] if len(keep) < len(arms) else []


def _check_dry_run(name: str, tmp_path: Path, out: str, extra: list[str]) -> None:
    recipe = load_config(name, extra)
    run_dir = tmp_path / f"{name}-dryrun"
    assert "dry run: the config runs on the tiny model" in out
    assert f"{recipe.base.model!r} -> {str(tmp_path / '_dryrun_assets' / 'tiny-model')!r}" in out
    cfg = load_config(str(run_dir / "config.yaml"))
    # every key that maps into a TRL config is kept
    assert [(a.name, a.algo, a.lam, a.beta, a.learning_rate) for a in cfg.align.arms] == \
        [(a.name, a.algo, a.lam, a.beta, a.learning_rate) for a in recipe.align.arms]
    for k in ("num_generations", "gradient_accumulation_steps", "lora_r", "lora_alpha", "lora_target_modules",
              "warmup_ratio", "gradient_checkpointing", "reward", "system_prompt"):
        assert getattr(cfg.align, k) == getattr(recipe.align, k), k
    for k in ("kinds", "learning_rate", "lora_r", "lora_alpha", "max_length", "gradient_accumulation_steps"):
        assert getattr(cfg.downstream, k) == getattr(recipe.downstream, k), k
    assert cfg.accelerate_config == recipe.accelerate_config and cfg.vllm_mode == recipe.vllm_mode
    assert cfg.seeds == recipe.seeds[:1] and cfg.use_vllm is False and cfg.device == "cpu"
    jobs = C.downstream_jobs(cfg)
    assert len(jobs) == len(C.downstream_jobs(recipe))
    sdir = run_dir / f"seed{cfg.seeds[0]}"
    for arm in cfg.align.arms:
        assert (sdir / arm.name / "align" / "DONE.json").exists()
        if arm.algo != "none":
            # the trainer got the recipe's hyperparameters
            targs = torch.load(sdir / arm.name / "align/ckpt/checkpoint-1/training_args.bin", weights_only=False)
            assert targs.learning_rate == (arm.learning_rate or recipe.align.learning_rate)
            assert (targs.beta, targs.num_generations) == (arm.beta, recipe.align.num_generations)
            assert targs.gradient_accumulation_steps == recipe.align.gradient_accumulation_steps
            if arm.algo == "frpo":
                assert targs.lam == arm.lam
            if recipe.align.lora_r:
                ad = json.loads((sdir / arm.name / "align/adapter/adapter_config.json").read_text())
                assert (ad["r"], ad["lora_alpha"]) == (recipe.align.lora_r, recipe.align.lora_alpha)
        for kind, ds, label in jobs:
            ddir = sdir / arm.name / "downstream" / label.replace("@", "_")
            assert (ddir / "DONE.json").exists(), ddir
            targs = torch.load(ddir / "ckpt/checkpoint-1/training_args.bin", weights_only=False)
            orig_ds = recipe.downstream.datasets[cfg.downstream.datasets.index(ds)]
            want = C.downstream_for(recipe, orig_ds)
            assert targs.learning_rate == want.learning_rate
            assert targs.gradient_accumulation_steps == want.gradient_accumulation_steps
            assert targs.activation_checkpointing == want.gradient_checkpointing
            assert targs.warmup_steps == want.warmup_ratio
            assert targs.lr_scheduler_type.value == ("constant_with_warmup" if want.warmup_ratio else "constant")
            if kind == "rlvr":
                assert targs.beta == want.beta
            else:
                assert targs.max_length == want.max_length
            if want.lora_r:
                ad = json.loads((ddir / "adapter/adapter_config.json").read_text())
                assert (ad["r"], ad["lora_alpha"]) == (want.lora_r, want.lora_alpha)
            assert type(targs).__name__ == {"sft": "SFTConfig", "csft": "CSFTConfig", "csft_pa": "CSFTConfig",
                                            "rlvr": "GRPOConfig"}[kind]
            if kind == "csft_pa":
                assert targs.pa is True
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r["type"] == "eval"]) == 1 + len(cfg.align.arms) * (1 + len(jobs))
    assert (run_dir / "report.md").exists()


def _dry_run(name: str, tmp_path: Path, capsys, extra: list[str]) -> None:
    torch.set_num_threads(1)
    assert main(["--config", name, "--dry-run", f"output_dir={tmp_path}", *extra]) == 0
    _check_dry_run(name, tmp_path, capsys.readouterr().out, extra)


@pytest.mark.parametrize("family", sorted(REPRESENTATIVE))
def test_dry_run_one_recipe_per_family(family, tmp_path, capsys):
    """Default suite: one recipe per family, its arms trimmed to the first and the last FRPO arm."""
    name = REPRESENTATIVE[family]
    _dry_run(name, tmp_path, capsys, _two_arms(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_dry_run_every_recipe_unmodified(name, tmp_path, capsys):
    _dry_run(name, tmp_path, capsys, [])


# ---------------------------------------------------------------------------------------------
# two processes (torchrun, gloo on the CPU): barriers, main-only writes, sharded evaluation
# ---------------------------------------------------------------------------------------------
def test_two_process_launch_matches_one_process(tmp_path):
    """``torchrun --nproc_per_node 2 -m llm.run`` (what ``accelerate launch`` runs on GPUs; on the CPU accelerate
    needs mpirun, torchrun gives the same process group): the run completes (every barrier is met by both
    ranks), each stage is logged and written once, and the base model's deterministic metrics (first-token
    refusal mass, greedy accuracy) equal the single-process ones: the sharded evaluation gathered both halves
    of every eval set (the base model is the same: it is pretrained on the main process only)."""
    common = [f"output_dir={tmp_path}", *TINY, "base.pretrain_steps=20",
              "align.arms=[{name: frpo, algo: frpo, lam: 0.5}]", "eval.max_prompts=5"]  # odd: unequal shards
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "llm.run"]
    res = subprocess.run(launch + ["run_name=two", *common], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("[llm.run] run  seed0/base") == 1 and res.stdout.count("run directory:") == 1
    res1 = subprocess.run([sys.executable, "-m", "llm.run", "run_name=one", *common], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert res1.returncode == 0, res1.stdout[-3000:] + res1.stderr[-3000:]

    def eval_rows(name):
        return [r for r in map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())
                if r["type"] == "eval"]

    (two,) = [r for r in eval_rows("two") if r["stage"] == "base"]
    (one,) = [r for r in eval_rows("one") if r["stage"] == "base"]
    for key in ("eval/refusal_prob", "eval/over_refusal_prob", "eval/math_accuracy"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert len(eval_rows("two")) == 3
    assert (tmp_path / "two" / "seed0" / "frpo" / "downstream" / "sft" / "DONE.json").exists()
