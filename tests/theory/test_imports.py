"""``import theory.losses`` (what every trainer and toy imports) does not also load SciPy, cvxpy or the ledger;
the package's public names still resolve lazily, to the functions their submodules define."""
from __future__ import annotations

import subprocess
import sys


def test_losses_import_leaves_scipy_and_cvxpy_unloaded():
    code = ("import sys, theory.losses; heavy = [m for m in ('scipy', 'cvxpy', 'theory.dro', 'theory.claims') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import theory.losses also loaded: {out}"


def test_public_names_resolve_to_their_submodules():
    import theory
    from theory import dro, losses, rlvr, stats

    assert theory.frpo_loss is losses.frpo_loss and theory.kl_dro_dual is dro.kl_dro_dual
    assert theory.tilt_chi2 is rlvr.tilt_chi2 and theory.mean_ci is stats.mean_ci
    assert set(theory.__all__) <= set(dir(theory))
    for name in theory.__all__:
        assert getattr(theory, name) is not None
    try:
        theory.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
