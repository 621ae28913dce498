"""--overwrite redoes only the stages whose config changed (llm.overwrite), on the tiny world's smallest budget."""
from __future__ import annotations

from pathlib import Path

import pytest

from llm.config import dump_config, load_config
from llm.overwrite import limited_overwrite, stage_fingerprints
from llm.run import main
from tests.llm.test_pipeline import TINY

STAGES = ("seed0/base", "seed0/grpo/align", "seed0/frpo/align", "seed0/grpo/downstream/sft",
          "seed0/frpo/downstream/sft")


def _stamps(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Per stage: (mtime of DONE.json, mtime of its saved weights)."""
    return {s: ((run_dir / s / "DONE.json").stat().st_mtime_ns,
                (run_dir / s / "model" / "model.safetensors").stat().st_mtime_ns)
            for s in STAGES if (run_dir / s / "model").exists()}


def _changed(before: dict, after: dict) -> set[str]:
    return {s for s in before if before[s] != after.get(s)}


@pytest.mark.slow  # ~50 s: five tiny runs (the fast check of the same rule: test_limited_overwrite_on_a_stored_run)
def test_overwrite_redoes_only_the_stages_whose_config_changed(tmp_path, capsys):
    args = [f"output_dir={tmp_path}", "run_name=o", *TINY]
    run_dir = tmp_path / "o"
    assert main(args) == 0
    s0 = _stamps(run_dir)
    assert set(s0) == set(STAGES)
    capsys.readouterr()

    # a downstream setting: base and both aligned models kept, both downstream stages redone
    args = [*args, "downstream.learning_rate=0.002"]
    assert main(args) == 2  # without --overwrite the changed config is refused, nothing removed
    assert _stamps(run_dir) == s0
    assert main([*args, "--overwrite"]) == 0
    out = capsys.readouterr().out
    s1 = _stamps(run_dir)
    assert _changed(s0, s1) == {"seed0/grpo/downstream/sft", "seed0/frpo/downstream/sft"}
    assert "overwrite: keep   seed0/grpo/align" in out
    assert "overwrite: remove seed0/frpo/downstream/sft (changed: downstream)" in out
    assert "skip seed0/base (done)" in out and "run  seed0/frpo/downstream/sft" in out

    # one arm's setting: that arm's align + downstream redone, the other arm and the base kept
    args = [*args, "align.arms.1.lam=0.5"]
    assert main([*args, "--overwrite"]) == 0
    out = capsys.readouterr().out
    s2 = _stamps(run_dir)
    assert _changed(s1, s2) == {"seed0/frpo/align", "seed0/frpo/downstream/sft"}
    assert "overwrite: remove seed0/frpo/align (changed: arm frpo)" in out

    # an align setting shared by the arms: every align and downstream stage redone, the base kept
    args = [*args, "align.learning_rate=0.002"]
    assert main([*args, "--overwrite"]) == 0
    s3 = _stamps(run_dir)
    assert _changed(s2, s3) == set(STAGES) - {"seed0/base"}
    assert "overwrite: keep   seed0/base" in capsys.readouterr().out

    # the same config again: nothing to overwrite, nothing redone
    assert main([*args, "--overwrite"]) == 0
    assert _stamps(run_dir) == s3
    assert "overwrite:" not in capsys.readouterr().out


def test_fingerprints_follow_the_stage_dependencies():
    """Which stages a change reaches, without training: eval and top-level keys reach all, seeds none."""
    base = load_config(None, ["seeds=[0]", "base.seed=null"])

    def changed(*overrides: str) -> set[str]:
        a, b = stage_fingerprints(base), stage_fingerprints(load_config(None, ["seeds=[0]", "base.seed=null",
                                                                             *overrides]))
        return {s for s in a if a[s] != b.get(s)}

    every = set(stage_fingerprints(base))
    assert every == set(STAGES)
    assert changed("eval.max_prompts=3") == every  # DONE.json holds the evaluation; the trackers probe eval sets
    assert changed("judge_template=paraphrase") == every
    assert changed("base.pretrain_steps=7") == every
    assert changed("report_to=none", "keep_checkpoints=true", "ddp_timeout=60", "run_name=other") == set()
    assert changed("downstream.steps=3") == {"seed0/grpo/downstream/sft", "seed0/frpo/downstream/sft"}
    assert changed("align.arms.0.beta=0.1") == {"seed0/grpo/align", "seed0/grpo/downstream/sft"}
    # align.match_kl: a later arm stops at the first arm's KL, so the first arm's change reaches it
    assert changed("align.match_kl=true") == every - {"seed0/base"}
    m = ["align.match_kl=true"]
    a, b = (stage_fingerprints(load_config(None, ["seeds=[0]", "base.seed=null", *m, *extra]))
            for extra in ([], ["align.arms.0.beta=0.1"]))
    assert {s for s in a if a[s] != b[s]} == every - {"seed0/base"}
    # a seed more: the existing seed's stages keep their fingerprints; a shared base has one of its own
    more = stage_fingerprints(load_config(None, ["seeds=[0,1]", "base.seed=null"]))
    assert all(more[s] == stage_fingerprints(base)[s] for s in STAGES)
    assert "base" in stage_fingerprints(load_config(None, ["seeds=[0]", "base.seed=0"]))


def test_limited_overwrite_on_a_stored_run(tmp_path):
    """The removal itself on a run directory of marker files (no training): changed and dropped stages go."""
    old = load_config(None, ["seeds=[0]", "base.seed=null", "downstream.kinds=[sft,csft]"])
    new = load_config(None, ["seeds=[0]", "base.seed=null", "downstream.kinds=[sft]", "align.arms.1.lam=0.5"])
    run_dir = tmp_path / "r"
    extra = ("seed0/grpo/downstream/csft", "seed0/frpo/downstream/csft")
    for s in (*STAGES, *extra):
        (run_dir / s).mkdir(parents=True)
        (run_dir / s / "DONE.json").write_text("{}")
    (run_dir / "config.yaml").write_text(dump_config(old))
    (run_dir / "metrics.jsonl").write_text("{}\n")
    lines: list[str] = []
    kept, removed = limited_overwrite(run_dir, new, lines.append)
    assert set(kept) == {"seed0/base", "seed0/grpo/align", "seed0/grpo/downstream/sft"}
    assert set(removed) == {"seed0/frpo/align", "seed0/frpo/downstream/sft", *extra}
    assert all((run_dir / s / "DONE.json").exists() for s in kept)
    assert not any((run_dir / s).exists() for s in removed)
    assert not (run_dir / "metrics.jsonl").exists()  # rebuilt from the stages by the run
    assert "overwrite: remove seed0/grpo/downstream/csft (not in the new config)" in lines
    assert "overwrite: remove seed0/frpo/align (changed: arm frpo)" in lines
    assert "overwrite: keep   seed0/grpo/align (its config is unchanged)" in lines
    # a stored config that no longer loads: the whole run directory goes, as --overwrite did before
    (run_dir / "config.yaml").write_text("align:\n  stepz: 3\n")
    assert limited_overwrite(run_dir, new, lines.append) == ([], ["everything"])
    assert not run_dir.exists()
