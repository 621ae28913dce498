"""The report names the judge behind its headline; a configured model judge's rate is the headline, with the
keyword judge's rate on the same completions beside it (llm.report)."""
from __future__ import annotations

from llm import report as R


def _rows(with_judge: bool) -> list[dict]:
    rows = []
    for seed in (0, 1):
        for arm in ("grpo", "frpo"):
            for stage, kw, mj in (("aligned", 0.6, 0.8), ("downstream/sft", 0.3, 0.5)):
                r = {"type": "eval", "seed": seed, "arm": arm, "stage": stage, "eval/refusal_rate": kw + 0.01 * seed}
                if with_judge:
                    r["eval/judge_refusal_rate"] = mj + 0.01 * seed
                if stage != "aligned":
                    r["eval/kl_to_aligned"] = 3.0
                rows.append(r)
    return rows


def test_headline_is_the_model_judge_when_one_was_measured():
    assert R.headline_metric("safety", _rows(True)) == "eval/judge_refusal_rate"
    assert R.headline_metric("safety", _rows(False)) == "eval/refusal_rate"
    assert R.headline_metric("math", _rows(True)) == "eval/math_accuracy"


def _report(tmp_path, rows, **kw) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    R.write_report(tmp_path, title="t", config_text="a: 1\n", arms=["grpo", "frpo"], kinds=["sft"], reward="safety",
                   eval_rows=rows, track_rows=[], timings={"align": 1.0}, **kw)
    return (tmp_path / "report.md").read_text()


def test_report_names_the_model_judge_and_shows_the_keyword_rate_beside_it(tmp_path):
    text = _report(tmp_path, _rows(True), judge="strongreject", tiny=False)
    assert "Judge behind the headline: the model judge `strongreject`" in text
    assert "refusal rate (model judge): aligned" in text  # the headline table
    assert "Keyword judge, same completions:" in text
    # retained = after/aligned per seed: model judge 0.5/0.8, 0.51/0.81; keyword 0.3/0.6, 0.31/0.61
    head, keyword = text.split("Keyword judge, same completions:")
    assert f"{(0.5 / 0.8 + 0.51 / 0.81) / 2:.3f}" in head.split("## Retention")[1]
    assert f"{(0.3 / 0.6 + 0.31 / 0.61) / 2:.3f}" in keyword.split("##")[0]


def test_report_names_the_keyword_and_the_tiny_world_judges(tmp_path):
    text = _report(tmp_path / "a", _rows(False), judge="keyword_safety", tiny=False)
    assert "Judge behind the headline: the keyword judge (`llm.refusal.is_refusal`" in text
    assert "Keyword judge, same completions" not in text
    text = _report(tmp_path / "b", _rows(False), tiny=True)
    assert "the tiny world's prefix judge" in text
