"""toy/rlvr_paths.py: the RLVR path model against theory.rlvr.

The references here do not call the code they check: the fixed point of GRPO's k3 gradient is solved
with brentq from its stationarity condition; the tilt is theory.rlvr's closed form.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from tests.tolerances import TOL
from theory import rlvr
from toy import rlvr_paths


def _paths(seed=1, prompts=5, n=6):
    rng = np.random.default_rng(seed)
    pi_ref = rng.dirichlet(np.ones(n), size=prompts)
    return pi_ref, rng.random((prompts, n)), rng.random((prompts, n))


def test_exact_kl_policy_gradient_converges_to_gibbs_tilt():
    pi_ref, g, _ = _paths()
    betas = (0.05, 0.2, 1.0)
    traj, steps = rlvr_paths.train_paths(pi_ref, g, betas, 600, 600)
    assert steps[-1] == 600
    for i, b in enumerate(betas):
        tilt = rlvr.gibbs_tilt(pi_ref, g, b)
        assert np.abs(traj[-1, 0, i] - tilt).max() < TOL["float64"]
        assert np.abs(traj[0, 0, i] - pi_ref).max() < TOL["float64"]  # starts at the reference


def test_grpo_k3_gradient_converges_to_reverse_kl_optimum_not_the_tilt():
    """Fixed point of Σ(π − π_ref)∇log π + ∇E_π g/β: π = β π_ref/(μ − g) with Σπ = 1 (argmax E g − β KL(π_ref‖π))."""
    pi_ref, g, _ = _paths(seed=2)
    betas = (0.05, 0.2, 1.0)
    traj, _ = rlvr_paths.train_paths(pi_ref, g, betas, 2000, 2000)
    for i, b in enumerate(betas):
        for p in range(len(pi_ref)):
            mu = brentq(lambda m: np.sum(b * pi_ref[p] / (m - g[p])) - 1.0, g[p].max() + 1e-12, g[p].max() + 10.0,
                        xtol=1e-15)
            np.testing.assert_allclose(traj[-1, 1, i, p], b * pi_ref[p] / (mu - g[p]), atol=TOL["dual_1d"])
        assert rlvr.tv_distance(traj[-1, 1, i], rlvr.gibbs_tilt(pi_ref, g, b)).max() > 1e-3


def test_safety_drift_stays_under_chi2_bound_and_counterexample():
    r, _ = rlvr_paths.rlvr_study(300, torch.Generator().manual_seed(4))  # the bandit smoke preset's study
    assert r["drift_bound_violations"] == 0 and 0 < r["drift_over_bound_max"] <= 1
    assert r["drift_final_abs_err"] < TOL["float64"]
    assert r["gibbs_tv"]["exact"] < TOL["float64"]
    ce = r["counterexample"]
    assert abs(ce["cov_sg"]) < TOL["float64"]
    assert ce["delta_s_trained"] == pytest.approx(ce["delta_s_exact"], abs=TOL["float64"])
    assert ce["delta_s_trained"] == pytest.approx(0.129, abs=TOL["quoted_3dp"])
    assert abs(ce["delta_s_trained"]) <= ce["chi2_bound"]


def test_chi2_drift_bound_policy_against_independent_routes():
    """theory.rlvr.chi2_drift_bound_policy (the study's bound along training): equals the log-space tilt
    bound at π = π*, equals |ΔS| with two paths (Cauchy–Schwarz is tight), holds for random π, and equals
    √(Var_ref(s)·χ²) written out in numpy (np.average, Σ(p − q)²/q)."""
    pi_ref, g, s = _paths(seed=3, prompts=7)
    for b in (0.05, 0.3, 2.0):
        tilt = rlvr.gibbs_tilt(pi_ref, g, b)
        np.testing.assert_allclose(rlvr.chi2_drift_bound_policy(tilt, pi_ref, s), rlvr.chi2_drift_bound(pi_ref, g, s, b),
                                   rtol=1e-9, atol=0)
    rng = np.random.default_rng(4)
    pi = rng.dirichlet(np.ones(pi_ref.shape[-1]), size=len(pi_ref))
    got = rlvr.chi2_drift_bound_policy(pi, pi_ref, s)
    var = np.array([np.average((s[p] - np.average(s[p], weights=pi_ref[p])) ** 2, weights=pi_ref[p]) for p in range(len(s))])
    np.testing.assert_allclose(got, np.sqrt(var * ((pi - pi_ref) ** 2 / pi_ref).sum(-1)), rtol=1e-12, atol=0)
    assert np.all(np.abs(rlvr.safety_drift(pi, pi_ref, s)) <= got)
    two_ref, two_pi, two_s = np.array([0.3, 0.7]), np.array([0.9, 0.1]), np.array([0.2, 1.0])
    assert abs(rlvr.safety_drift(two_pi, two_ref, two_s)) == pytest.approx(
        float(rlvr.chi2_drift_bound_policy(two_pi, two_ref, two_s)), abs=TOL["float64"])
    with pytest.raises(ValueError, match="pi"):
        rlvr.chi2_drift_bound_policy(pi[:3], pi_ref, s)
