"""Execute the three notebooks of notebooks/ at the smoke budget and check the figures they save.

The source of each notebook is its jupytext percent script ``notebooks/<name>.py``, paired with the committed
``notebooks/<name>.ipynb`` (``formats: ipynb,py:percent``). One test checks that the two hold the same cells
(type, source, tags) and that the .ipynb has no outputs, so editing one without ``jupytext --sync`` fails.
The execution tests convert the script to a notebook in memory (``jupytext.read``) and run it.

Each notebook runs in a fresh kernel whose interpreter is this test's ``sys.executable`` (a temporary
kernelspec, so a user-level "python3" kernelspec pointing elsewhere cannot be picked up), in a temporary
working directory, with the parameters passed by environment variable (see notebooks/README.md):
FRTK_NB_BUDGET=smoke, FRTK_NB_FIG_DIR=<tmp>/figures. A cell error fails the test; every expected PNG
must exist, be a real image with drawn content, and be shown inline in the notebook.

Run time, measured on 2 shared CPU cores (``pytest tests/test_notebooks.py -m "" --durations=0``): the four
default tests take 75 s at load average ~3.5 (01: 22 s, 02: 24 s, 03: 25 s) and 121 s at load ~5.5 (31 s,
43 s, 47 s): kernel start, imports and the toys' smoke presets. The load-saved-results path of 02/03 is
``@pytest.mark.slow`` (82 s at load ~5.5: it runs each toy once from the command line first).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
KERNEL_NAME = "frtk-test-sys-executable"
CELL_TIMEOUT_S = 180  # one cell; the toy runs are the longest (~15 s on 2 loaded cores)

# figures each notebook must save into FIG_DIR (file stems)
EXPECTED_FIGURES = {
    "01_theory_walkthrough": ["kl_dro_dual_vs_primal", "entropic_risk_vs_lambda", "jackknife_bias_slopes",
                              "rlvr_drift_vs_chi2_bound", "zero_correlation_counterexample"],
    "02_bandit_landscape": ["training_curves", "landscape", "matched_kl_vs_grpo", "ablation_baseline",
                            "ablation_jackknife", "ablation_kl_budget"],
    "03_lstm_study": ["kl_curves", "paired_differences"],
}
RESULTS_ENV = {"02_bandit_landscape": "FRTK_BANDIT_RESULTS", "03_lstm_study": "FRTK_LSTM_RESULTS"}
TOY_MODULE = {"02_bandit_landscape": "toy.bandit", "03_lstm_study": "toy.lstm"}
PAIRING = "ipynb,py:percent"                              # jupytext formats in each script's header


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A kernelspec directory holding one kernel that runs this interpreter's ipykernel."""
    kdir = tmp_path_factory.mktemp("kernels")
    (kdir / KERNEL_NAME).mkdir()
    (kdir / KERNEL_NAME / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "frtk tests (sys.executable)", "language": "python"}))
    ksm = KernelSpecManager(kernel_dirs=[str(kdir)])
    assert ksm.get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable
    return ksm


def _execute(name: str, ksm: KernelSpecManager, workdir: Path, monkeypatch, results_dir: Path | None = None):
    """Run the script notebooks/<name>.py in ``workdir``; return (executed notebook, figure dir, seconds)."""
    fig_dir = workdir / "figures"
    monkeypatch.setenv("FRTK_NB_BUDGET", "smoke")
    monkeypatch.setenv("FRTK_NB_FIG_DIR", str(fig_dir))
    monkeypatch.setenv("TMPDIR", str(workdir))           # the notebooks' tempfile.mkdtemp run dirs land here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)     # let ipykernel pick its inline backend (figures shown)
    for var in RESULTS_ENV.values():
        monkeypatch.delenv(var, raising=False)
    if results_dir is not None:
        monkeypatch.setenv(RESULTS_ENV[name], str(results_dir))
    nb = jupytext.read(NB_DIR / f"{name}.py")              # the source, converted in memory
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    client.execute()                                      # raises CellExecutionError on the first failing cell
    return nb, fig_dir, time.perf_counter() - t0


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == kind]


def _check_figures(name: str, nb, fig_dir: Path) -> None:
    import matplotlib.image as mpimg

    assert not _outputs(nb, "error")
    expected = EXPECTED_FIGURES[name]
    assert sorted(p.stem for p in fig_dir.glob("*.png")) == sorted(expected)
    for stem in expected:
        path = fig_dir / f"{stem}.png"
        assert path.stat().st_size > 10_000, f"{path.name} is only {path.stat().st_size} bytes"
        img = mpimg.imread(path)[..., :3]                  # (H, W, 3) in [0, 1]
        assert min(img.shape[:2]) > 200, f"{path.name} is {img.shape[:2]} pixels"
        drawn = (img.min(axis=-1) < 0.9).mean()            # fraction of non-white pixels: axes, lines, text
        colored = (img.max(axis=-1) - img.min(axis=-1) > 0.2).mean()  # lines/bars in colour, not only black axes
        assert drawn > 0.02, f"{path.name} is almost blank ({drawn:.3%} drawn pixels)"
        assert colored > 0.002, f"{path.name} has no coloured marks ({colored:.3%})"
    shown = [o for o in _outputs(nb, "display_data") if "image/png" in o.get("data", {})]
    assert len(shown) >= len(expected), f"{len(shown)} inline images for {len(expected)} saved figures"


def _cells(nb) -> list[tuple[str, str, list]]:
    """What pairing keeps equal: each cell's type, source and tags."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_scripts_are_paired_with_notebooks_in_sync_and_without_outputs():
    assert sorted(p.stem for p in NB_DIR.glob("*.py")) == sorted(EXPECTED_FIGURES)
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == sorted(EXPECTED_FIGURES)
    for name in EXPECTED_FIGURES:
        script, path = NB_DIR / f"{name}.py", NB_DIR / f"{name}.ipynb"
        src = jupytext.read(script)
        nb = nbformat.read(path, as_version=4)
        for what, book in ((script.name, src), (path.name, nb)):
            formats = book.metadata.get("jupytext", {}).get("formats")
            assert formats == PAIRING, f"{what}: jupytext formats {formats!r}, expected {PAIRING!r}"
        for i, (a, b) in enumerate(zip(_cells(src), _cells(nb))):
            assert a == b, (f"cell {i} of {path.name} differs from {script.name}; "
                            f"run `jupytext --sync notebooks/{script.name}`")
        assert len(src.cells) == len(nb.cells), (f"{path.name} has {len(nb.cells)} cells, {script.name} "
                                                 f"{len(src.cells)}; run `jupytext --sync notebooks/{script.name}`")
        first_code = next(c for c in src.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []) and "BUDGET" in first_code.source
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: committed with outputs"


@pytest.mark.parametrize("name", list(EXPECTED_FIGURES))
def test_notebook_executes_at_smoke_budget(name, kernel_specs, tmp_path, monkeypatch):
    nb, fig_dir, seconds = _execute(name, kernel_specs, tmp_path, monkeypatch)
    _check_figures(name, nb, fig_dir)
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    if name in TOY_MODULE:                                 # no saved results given: it ran the toy's smoke preset
        assert f"running {TOY_MODULE[name]} --preset smoke" in text
        assert len(list(tmp_path.glob("frtk_*/summary.json"))) == 1
    print(f"{name}: {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RESULTS_ENV))
def test_notebook_loads_saved_results(name, kernel_specs, tmp_path, monkeypatch):
    run = tmp_path / "saved_run"
    subprocess.run([sys.executable, "-m", TOY_MODULE[name], "--preset", "smoke", "--out", str(run), "--no-progress"],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    nb, fig_dir, _ = _execute(name, kernel_specs, work, monkeypatch, results_dir=run)
    _check_figures(name, nb, fig_dir)
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert f"loading saved results from {run}" in text
    assert not list(work.glob("frtk_*"))                   # nothing was trained
