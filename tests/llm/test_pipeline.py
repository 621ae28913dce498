"""The forgetting pipeline end to end on the smallest budget, resume after a kill, config validation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm.config import ConfigError, load_config
from llm.run import main
from llm.trainkit import last_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = ["seeds=[0]", "base.pretrain_steps=40", "align.steps=2", "align.prompts_per_step=2",
        "align.num_generations=4", "align.max_completion_length=4", "downstream.steps=2",
        "downstream.track_every=1", "downstream.batch_size=4", "downstream.probe_prompts=2",
        "downstream.probe_samples=2", "eval.n_samples=2", "eval.max_prompts=4", "base.seed=null"]  # a base per seed


def test_end_to_end_smallest_budget(tmp_path, capsys):
    rc = main([f"output_dir={tmp_path}", "run_name=e2e", *TINY])
    assert rc == 0
    run_dir = tmp_path / "e2e"
    out = capsys.readouterr().out
    assert f"run directory: {run_dir}" in out
    assert "| grpo | sft |" in out and "| frpo | sft |" in out  # the retention table is printed
    for f in ("config.yaml", "metrics.jsonl", "report.md", "reward_vs_kl.png", "before_after.png"):
        assert (run_dir / f).stat().st_size > 0, f
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    stages = {(r["arm"], r["stage"]) for r in rows if r["type"] == "eval"}
    assert stages == {("base", "base"), ("grpo", "aligned"), ("frpo", "aligned"), ("grpo", "downstream/sft"),
                      ("frpo", "downstream/sft")}
    for r in rows:
        if r["type"] == "eval":
            assert 0.0 <= r["eval/refusal_rate"] <= 1.0 and 0.0 <= r["eval/math_accuracy"] <= 1.0
    tracks = [r for r in rows if r["type"] == "track"]
    assert {r["arm"] for r in tracks} == {"grpo", "frpo"}
    assert all("kl" in r and "reward/safety" in r for r in tracks)
    steps = sorted({r["step"] for r in tracks if r["arm"] == "grpo"})
    assert steps[0] == 0 and steps[-1] == 2
    report = (run_dir / "report.md").read_text()
    assert "## Retention after downstream fine-tuning" in report and "reward_vs_kl.png" in report
    # the same command again: every stage is skipped, the report is rebuilt identically
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("DONE.json")}
    assert main([f"output_dir={tmp_path}", "run_name=e2e", *TINY]) == 0
    assert "skip seed0/frpo/downstream/sft (done)" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.rglob("DONE.json")}


def test_resume_after_kill_mid_stage(tmp_path):
    """SIGKILL the pipeline once the first align stage has a checkpoint; the rerun resumes it."""
    args = [sys.executable, "-m", "llm.run", f"output_dir={tmp_path}", "run_name=r", *TINY,
            "align.steps=40", "--save-every", "2"]  # ~38 steps left after the first checkpoint: the kill lands mid-stage
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ckpt_dir = tmp_path / "r" / "seed0" / "grpo" / "align" / "ckpt"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if last_checkpoint(ckpt_dir) is not None:  # a complete checkpoint (its trainer_state.json parses)
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the pipeline finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    base_done = tmp_path / "r" / "seed0" / "base" / "DONE.json"
    assert base_done.exists()
    assert not (tmp_path / "r" / "seed0" / "grpo" / "align" / "DONE.json").exists()
    mtime = base_done.stat().st_mtime_ns
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "skip seed0/base (done)" in res.stdout
    assert "resume from" in res.stdout and "checkpoint-" in res.stdout
    assert base_done.stat().st_mtime_ns == mtime  # a finished stage is not redone
    assert (tmp_path / "r" / "report.md").exists()
    assert "| frpo | sft |" in res.stdout


def test_config_validation_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['stepz'\] in section 'align'; valid keys: reward"):
        load_config(None, ["align.stepz=3"])
    with pytest.raises(ConfigError, match=r"align.arms.1.lam=0.0 is not allowed; allowed: \(0, inf\]"):
        load_config(None, ["align.arms.1.lam=0"])
    with pytest.raises(ConfigError, match="downstream.kinds"):
        load_config(None, ["downstream.kinds=[finetune]"])
    with pytest.raises(ConfigError, match="align.num_generations=1"):
        load_config(None, ["align.num_generations=1"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(None, ["align.steps=many"])
    with pytest.raises(ConfigError, match="not found; give a YAML path or one of the bundled configs: .*default"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("align:\n  arms:\n    - {name: a, algo: ppo}\n")
    with pytest.raises(ConfigError, match=r"align.arms.0.algo='ppo' is not allowed; allowed: grpo \| frpo"):
        load_config(str(bad))
    bad.write_text("nonsense: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'nonsense'; valid keys: run_name"):
        load_config(str(bad))
    # through the CLI: one clear line on stderr, exit code 2, no traceback
    assert main(["align.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key") and "Traceback" not in err


def test_changed_config_refuses_to_mix_runs(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.yaml").write_text("run_name: x\n")
    assert main([f"output_dir={tmp_path}", "run_name=x", *TINY]) == 2
    assert "holds a run with a different config" in capsys.readouterr().err


def test_shared_base_stop_kl_and_resumed_rerun_keeps_stage_timings(tmp_path, capsys):
    """base.seed shares one base; stop_kl ends downstream at a KL dose; a rerun reports the stored stage times."""
    args = [f"output_dir={tmp_path}", "run_name=s", *TINY, "seeds=[0,1]", "base.seed=0", "downstream.steps=6",
            "downstream.stop_kl=1e-9", "downstream.learning_rate=0.01"]
    assert main(args) == 0
    run_dir = tmp_path / "s"
    assert (run_dir / "base" / "DONE.json").exists() and not (run_dir / "seed0" / "base").exists()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows if r.get("stage") == "base"] == [0]  # one shared base row
    tracks = [r for r in rows if r["type"] == "track"]
    assert all(r["kl"] >= 0.0 and r["kl_estimator"] == "rb" for r in tracks)
    for seed in (0, 1):  # stopped at the first tracking step (KL > 1e-9), long before the 6-step cap
        steps = sorted(r["step"] for r in tracks if r["seed"] == seed and r["arm"] == "grpo")
        assert steps == [0, 1]
    report = (run_dir / "report.md").read_text()
    assert report.index("## Retained safety at matched KL") < report.index("## Retention after downstream")
    assert "one base model shared by all seeds" in report and "Rao–Blackwellized" in report

    def timings(text):
        part = text.split("## Timings")[1].split("## Resolved config")[0]
        return {line.split("|")[1].strip(): float(line.split("|")[2]) for line in part.splitlines()
                if line.startswith("| ") and not line.startswith("| stage")}

    first = timings(report)
    assert first["align"] > 0 and first["downstream"] > 0 and first["eval"] > 0
    capsys.readouterr()
    assert main(args) == 0  # everything is skipped now
    assert "skip seed1/frpo/downstream/sft (done)" in capsys.readouterr().out
    again = timings((run_dir / "report.md").read_text())
    for key in ("base", "align", "downstream", "eval", "total (all stages, as run)"):
        assert again[key] == first[key]  # the stored stage times, not the near-zero time of skipping
    assert again["wall time of this invocation"] < first["wall time of this invocation"]
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert "llm.run" in prov["code"] and prov["command"].startswith("python -m llm.run")


def test_match_kl_calibrates_later_arms_to_the_first_arms_kl_to_base(tmp_path):
    args = [f"output_dir={tmp_path}", "run_name=m", *TINY, "align.steps=3", "align.match_kl=true",
            "align.match_every=1", "align.match_max_steps=6"]
    assert main(args) == 0
    sdir = tmp_path / "m" / "seed0"
    first = [json.loads(x) for x in (sdir / "grpo" / "align" / "track.jsonl").read_text().splitlines()]
    assert [r["step"] for r in first] == [0, 3]  # the reference arm: its dose at the end of align.steps
    target = first[-1]["kl"]
    later = [json.loads(x) for x in (sdir / "frpo" / "align" / "track.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in later]
    assert steps == list(range(steps[-1] + 1))  # tracked every step
    reached = [r["kl"] >= target for r in later[1:]]
    # it stops at the first step whose KL reaches the target, or runs to the cap without reaching it
    assert (reached[-1] and not any(reached[:-1])) or (steps[-1] == 6 and not any(reached))
    report = (tmp_path / "m" / "report.md").read_text()
    assert "## Alignment dose" in report and ("**matched**" in report or "**not matched**" in report)


def test_eval_benchmarks_run_after_each_stage_and_land_in_the_rows(tmp_path, monkeypatch):
    """eval.benchmarks calls llm.standard_evals.run_benchmarks on every stage's saved model (stubbed here: the
    lm-eval / evalplus paths themselves are tested in test_standard_evals)."""
    import llm.standard_evals as SE

    calls = []

    def fake(cfg, model_path):
        calls.append(model_path)
        return {"math500/math_verify": 0.25, "math500/n": 4.0}

    monkeypatch.setattr(SE, "run_benchmarks", fake)
    assert main([f"output_dir={tmp_path}", "run_name=b", *TINY, "eval.benchmarks=[math500]",
                 "align.arms=[{name: grpo, algo: grpo}]"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["type"] == "eval"]
    assert len(calls) == len(evals) == 3  # base, aligned, downstream
    assert all(r["eval/math500_math_verify"] == 0.25 and r["eval/math500_n"] == 4.0 for r in evals)
    assert calls[-1].endswith("downstream/sft/model")


def test_last_checkpoint_skips_one_whose_trainer_state_was_cut_by_a_kill(tmp_path):
    """Regression: a SIGKILL during the write of checkpoint-4's trainer_state.json left a truncated file, and the
    rerun crashed resuming from it (JSONDecodeError); the newest *complete* checkpoint is the one to resume."""
    for step, text in ((2, '{"global_step": 2}'), (4, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    assert last_checkpoint(tmp_path).endswith("checkpoint-2")
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("")
    assert last_checkpoint(tmp_path) is None
