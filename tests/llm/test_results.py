"""The README's tiny-world numbers are the stored runs' numbers, from today's code (llm.results, llm.provenance)."""
from __future__ import annotations

import json

import pytest

from llm import provenance as P
from llm import results as R


def test_readme_block_equals_the_rendering_of_the_stored_results():
    block = R.readme_block(R.README.read_text())
    assert block == R.render(), "README results block is stale: run `python -m llm.results update-readme`"
    stored = sorted(p.parent.name for p in R.RESULTS.glob("*/provenance.json"))
    assert "default" in stored  # the main job's numbers are in the README
    for name in stored:
        assert f"#### `{name}`" in block


def test_real_model_block_equals_the_rendering_of_its_stored_run():
    block = R.readme_block(R.README.read_text(), "real-model")
    assert block == R.render(group="real-model"), "README real-model block is stale: run `python -m llm.results update-readme`"
    stored = sorted(p.parent.name for p in R.REAL_RESULTS.glob("*/provenance.json"))
    assert stored == ["smollm2_safety"]
    assert "#### `smollm2_safety`" in block and "| base (shared by every seed) |" in block


def test_wilson_and_newcombe_match_the_published_examples():
    """Newcombe (1998), Stat. Med. 17:857, Tables I and II: 81/263 → Wilson [0.2553, 0.3662];
    56/70 − 48/80 → method 10 [0.0524, 0.3339]; the intervals stay inside [0, 1] at the edges."""
    lo, hi = R.wilson(81, 263)
    assert abs(lo - 0.2553) < 5e-5 and abs(hi - 0.3662) < 5e-5
    d, lo, hi = R.newcombe(56, 70, 48, 80)
    assert abs(d - 0.2) < 1e-12 and abs(lo - 0.0524) < 5e-5 and abs(hi - 0.3339) < 5e-5
    assert R.wilson(0, 10)[0] == 0.0 and R.wilson(10, 10)[1] == 1.0
    d, lo, hi = R.newcombe(10, 10, 0, 10)
    assert d == 1.0 and 0.0 < lo < 1.0 and hi <= 1.0


def test_stored_results_were_produced_by_todays_code():
    for path in R.stored_provenances():
        code = R.recorded_code(json.loads(path.read_text()))
        assert {"llm.run", "llm.world", "llm.stages", "theory.losses"} <= set(code), path
        stale = P.stale_modules(R.metric_modules(code))
        assert not stale, f"{path.parent.name}: modules changed since the run: {sorted(stale)}; run `make results`"


def test_fingerprint_ignores_docstrings_comments_and_formatting_but_not_code():
    a = 'def f(x):\n    """doc"""\n    return x + 1  # one\n'
    b = 'def f(x):\n    """other words"""\n\n    return (x +\n            1)\n'
    c = 'def f(x):\n    """doc"""\n    return x + 2\n'
    assert P.fingerprint_source(a) == P.fingerprint_source(b)
    assert P.fingerprint_source(a) != P.fingerprint_source(c)


def test_stale_modules_names_a_changed_module(tmp_path, monkeypatch):
    mod = tmp_path / "frtk_probe_mod.py"
    mod.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recorded = P.fingerprint_modules(["frtk_probe_mod"])
    assert P.stale_modules(recorded) == {}
    mod.write_text("X = 2\n")
    assert set(P.stale_modules(recorded)) == {"frtk_probe_mod"}


def test_readme_block_markers_are_required(tmp_path):
    with pytest.raises(ValueError, match="results block"):
        R.readme_block("no markers here")


def test_render_only_modules_are_not_called_by_the_training_and_evaluation_path():
    """The fingerprint check skips R.RENDER_ONLY; that is sound only while no module that produces metrics calls
    them: theory.dro only from llm.matched, llm.matched and llm.report only from llm.run's final report."""
    import re

    root = R.REPO / "llm"
    for path in sorted(root.glob("*.py")):
        text = path.read_text()
        name = f"llm.{path.stem}"
        if name in R.RENDER_ONLY:
            continue
        uses = set(re.findall(r"(?:from|import) (llm\.report|llm\.matched|theory\.dro|llm\.results)\b", text))
        allowed = {"llm.report"} if name == "llm.run" else set()
        assert uses <= allowed, (name, uses)
