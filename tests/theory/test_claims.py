"""The claims ledger: every check runs, agrees with its expected verdict, and the CLI reports it; plus one
regression test per check that used to be unable to fail (issue 9), named after what broke."""
import json
import math

import numpy as np
import pytest
import torch

from theory import dro, losses, risk, rlvr
from theory.ledger import (ERROR, INCONSISTENT, MUTATIONS, NOT_CHECKABLE, REFUTED, REGISTRY, VERIFIED, Outcome,
                           _load_all_checks, claim, main, resolve, run_all, run_claim, summary)

_load_all_checks()
CLAIMS = {c.id: c for c in REGISTRY}


def _row(claim_id):
    return run_claim(CLAIMS[claim_id])


def _mutate(monkeypatch, name):
    m = MUTATIONS[name]
    module, attr = resolve(m.target)
    monkeypatch.setattr(module, attr, m.make(getattr(module, attr)))


def test_every_claim_agrees_with_its_expected_verdict():
    rows = run_all()
    assert len(rows) >= 30
    bad = [(r.id, r.verdict, r.expected, r.measured) for r in rows if not r.ok]
    assert not bad, bad
    # the ledger must hold refutations, not only confirmations
    assert {r.id for r in rows if r.verdict == REFUTED} >= {
        "csft.thm42_as_stated", "rlvr.zero_correlation_not_enough", "frpo.no_baseline_sign_jackknife",
        "frpo.baseline_token_mean_lengths", "csft.pa_gradient_lipschitz"}
    assert {r.origin for r in rows} == {"paper", "toolkit"}


def test_a_failing_check_is_reported_and_exits_nonzero(capsys):
    n = len(REGISTRY)
    try:
        @claim("test.always_fails", "TEST", "-", "a claim whose check fails", origin="toolkit", expect=VERIFIED)
        def _bad():
            return Outcome(False, "measured something else", 1.0)

        @claim("test.crashes", "TEST", "-", "a check that raises", origin="toolkit", expect=VERIFIED)
        def _crash():
            raise RuntimeError("boom")

        @claim("test.inconsistent", "TEST", "-", "a refutation whose closed form fails", origin="toolkit",
               expect=REFUTED)
        def _incons():
            return Outcome(False, "counterexample off its formula", None, consistent=False)

        assert not run_claim(REGISTRY[-3]).ok
        crashed = run_claim(REGISTRY[-2])
        assert not crashed.ok and crashed.verdict == ERROR and "RuntimeError: boom" in crashed.measured
        incons = run_claim(REGISTRY[-1])
        assert not incons.ok and incons.verdict == INCONSISTENT
        assert main(["--only", "test.always_fails", "--json"]) == 1
        out = json.loads(capsys.readouterr().out)
        assert out[0]["verdict"] == REFUTED and out[0]["expected"] == VERIFIED and out[0]["origin"] == "toolkit"
    finally:
        del REGISTRY[n:]


def test_unknown_claim_id_is_a_clear_error(capsys):
    assert main(["--only", "no.such.claim"]) == 2
    assert "unknown claim ids ['no.such.claim']" in capsys.readouterr().err


def test_claim_origin_must_be_paper_or_toolkit():
    with pytest.raises(ValueError, match="origin='mine'.*'paper'.*'toolkit'"):
        claim("test.bad_origin", "TEST", "-", "x", origin="mine")


def test_summary_separates_origins_and_does_not_count_not_checkable():
    rows = run_all(["frpo.table2_math", "frpo.shift_invariance", "csft.thm42_as_stated", "csft.llm_asr"])
    line = summary(rows)
    assert line.startswith("paper: 1 checks, 0 verified, 1 refuted; toolkit: 1 checks, 1 verified, 0 refuted; "
                           "2 not checkable (not counted)"), line


# ---------------------------------------------------------------------------------------------
# regressions (issue 9): each named after what broke
# ---------------------------------------------------------------------------------------------
def test_baseline_with_variable_lengths_and_token_mean_is_its_own_refuted_row():
    from theory.claims_frpo import _TREE_LEN, _TREE_THETA, _tree_expected_grad, _tree_logp

    row = _row("frpo.baseline_token_mean_lengths")
    assert row.verdict == REFUTED and row.error > 0.05 and "seq_sum_const" in row.note
    # the shift, recomputed here with the plain estimator: −λ∇E[1/|y|], against no shift for seq_sum_const
    lam, g = 2.0, 2

    def frpo(b):
        return lambda x, m, r, gid: losses.frpo_loss(x, x.detach(), m, r, gid, lam, jackknife=False, baseline=b,
                                                     scale="lambda")[0]

    def seq_sum(b):
        return lambda x, m, r, gid: losses.grpo_loss(x, x.detach(), m, losses.frpo_advantages(
            r, g, lam, jackknife=False, baseline=b, scale="lambda"), aggregation="seq_sum_const")[0]

    theta = _TREE_THETA.clone().requires_grad_(True)
    logp, mask = _tree_logp(theta)
    (d_inv_len,) = torch.autograd.grad(((logp * mask).sum(-1).exp() / _TREE_LEN).sum(), theta)
    shift = _tree_expected_grad(frpo(True), g) - _tree_expected_grad(frpo(False), g)
    torch.testing.assert_close(shift, -lam * d_inv_len, rtol=0, atol=1e-12)
    assert float(shift.abs().max()) > 0.1
    ss = _tree_expected_grad(seq_sum(True), g) - _tree_expected_grad(seq_sum(False), g)
    assert float(ss.abs().max()) < 1e-12


def _nonmonotone_er(v, lam, p):
    return risk.entropic_risk(v, lam * (1 + 0.9 * math.sin(5 * math.log(lam))), p)


def test_entropic_risk_monotonicity_uses_minus_min_of_differences():
    from theory.claims_frpo_dro import _er_violations

    v, p, lams = np.array([-3.0, 0.5, 4.0]), np.full(3, 1 / 3), np.logspace(-2, 3, 30)
    viol = _er_violations(_nonmonotone_er, v, p, lams)
    assert viol["monotone"] > 0 and viol["bounds"] <= 0  # a non-monotone risk inside [min, mean] is caught
    diffs = np.diff([_nonmonotone_er(v, lam, p) for lam in lams])
    assert -np.max(diffs) < 0  # ... which the old −max(diff) test let through
    assert max(_er_violations(risk.entropic_risk, v, p, lams).values()) <= 0


def test_entropic_risk_limits_are_checked_at_finite_lambda_not_the_special_branches():
    from theory.claims_frpo_dro import _er_violations

    v, p, lams = np.array([-3.0, 0.5, 4.0]), np.full(3, 1 / 3), np.logspace(-6, 8, 43)
    mean_everywhere = _er_violations(lambda v, lam, p: float(p @ v), v, p, lams)
    assert mean_everywhere["small_lam"] > 0 and mean_everywhere["monotone"] <= 0 and mean_everywhere["bounds"] <= 0
    min_everywhere = _er_violations(lambda v, lam, p: float(v.min()), v, p, lams)
    assert min_everywhere["large_lam"] > 0 and min_everywhere["expansion"] > 0


def test_chi2_bound_row_fails_on_an_identically_zero_bound(monkeypatch):
    monkeypatch.setattr(rlvr, "chi2_drift_bound", lambda *a: 0.0)
    assert _row("rlvr.chi2_bound").verdict == REFUTED
    assert _row("rlvr.chi2_tight").verdict == REFUTED


def test_k3_refutation_is_not_kept_with_k3_sign_flipped(monkeypatch):
    original = losses.kl_k3
    monkeypatch.setattr(losses, "kl_k3", lambda logp, ref: -original(logp, ref))
    row = _row("rlvr.thm1_under_grpo_k3")
    assert row.verdict == INCONSISTENT, row.measured  # still nonzero at the tilt, but off the closed form


def test_jackknife_sign_refutation_checks_the_closed_form_not_just_a_positive_entry(monkeypatch):
    original = losses.frpo_advantages
    # a wrong estimator that still has a positive entry: the old check (some Â ≥ 0) kept "refuted"
    monkeypatch.setattr(losses, "frpo_advantages", lambda *a, **k: original(*a, **k) * 1.5 + 0.1)
    assert _row("frpo.no_baseline_sign_jackknife").verdict == INCONSISTENT


def test_lambda_inf_plain_errors_enter_the_verdict(monkeypatch):
    _mutate(monkeypatch, "frpo_advantages.plain_g_off_by_one")  # the jackknife path is untouched
    row = _row("frpo.lambda_inf_limit")
    assert row.verdict == REFUTED, row.measured


def test_worst_case_tilt_small_rho_goes_through_the_interior_solver_not_the_rho0_branch(monkeypatch):
    assert math.isinf(dro.kl_dro_dual(np.array([0.0, 1.0]), np.array([0.5, 0.5]), 0.0).lam)  # the old tautology
    _mutate(monkeypatch, "kl_dro_dual.small_rho_is_mean")
    assert _row("frpo.worst_case_tilt").verdict == REFUTED


def test_drift_row_is_not_the_covariance_identity_that_holds_for_any_policy(monkeypatch):
    # tilt and drift consistently wrong (2β): Cov(s, π/π_ref) = S(π) − S(π_ref) still holds for that π ...
    tilt, drift = rlvr.gibbs_tilt, rlvr.exact_drift
    pi, g, s, beta = np.array([0.2, 0.5, 0.3]), np.array([0.0, 0.4, 1.0]), np.array([0.9, 0.2, 0.6]), 0.3
    w = tilt(pi, g, 2 * beta) / pi
    assert abs(np.sum(pi * s * w) - np.sum(pi * s) - drift(pi, g, s, 2 * beta)) < 1e-12
    # ... but the row compares with the cvxpy optimum of Theorem 1 and fails
    monkeypatch.setattr(rlvr, "gibbs_tilt", lambda p, r, b: tilt(p, r, 2 * b))
    monkeypatch.setattr(rlvr, "exact_drift", lambda p, r, s, b: drift(p, r, s, 2 * b))
    assert _row("rlvr.drift_of_optimum").verdict == REFUTED


def test_pa_row_checks_the_gradient_not_only_its_zero_by_construction(monkeypatch):
    _mutate(monkeypatch, "pa_loss.sign")  # still zero where argmaxes agree and nonzero elsewhere
    assert _row("csft.pa_gradient").verdict == REFUTED


def test_theorem41_is_not_claimed_verified_by_one_sgd_run():
    assert CLAIMS["csft.thm41_convergence"].expect == NOT_CHECKABLE
    row = _row("csft.pa_gradient_lipschitz")
    assert row.verdict == REFUTED and "unbounded" in row.measured


def test_jackknife_order_is_measured_on_frpo_advantages_itself():
    from theory.claims_frpo_jackknife import frpo_gradient_bias

    values, probs, gs = np.array([1.0, 0.2, -0.7]), np.array([0.5, 0.3, 0.2]), [4, 8, 16, 32]
    fits = {}
    for lam in (0.5, 2.0):
        for jk in (False, True):
            b = [np.abs(frpo_gradient_bias(values, probs, g, lam, jk)).max() for g in gs]
            fits[lam, jk] = np.polyfit(np.log(gs), np.log(b), 1)[0]
    # the numbers: jackknife −1.56 at λ = 0.5 and about −2.2 at λ = 2, plain about −1
    assert -1.6 < fits[0.5, True] < -1.5 and -2.25 < fits[2.0, True] < -2.1
    assert -1.25 < fits[0.5, False] < -0.9 and -1.1 < fits[2.0, False] < -0.9
    assert _row("frpo.jackknife_order_advantages").verdict == VERIFIED


def test_frpo_gradient_bias_matches_monte_carlo_free_brute_force_at_small_g():
    """The multinomial enumeration equals plain enumeration over all G-tuples (G = 3, K = 3)."""
    import itertools

    from theory.claims_frpo_jackknife import frpo_gradient_bias

    values, probs, lam, g = np.array([1.0, 0.2, -0.7]), np.array([0.5, 0.3, 0.2]), 0.7, 3
    for jk in (False, True):
        grad = np.zeros(3)
        for tup in itertools.product(range(3), repeat=g):
            adv = losses.frpo_advantages(torch.tensor(values[list(tup)]), g, lam, jackknife=jk, scale="lambda").numpy()
            for a, ai in zip(tup, adv):
                grad += np.prod(probs[list(tup)]) * ai * (np.eye(3)[a] - probs) / g
        limit = lam * (1 - np.exp(-values / lam) / (probs @ np.exp(-values / lam)))
        np.testing.assert_allclose(frpo_gradient_bias(values, probs, g, lam, jk),
                                   grad - (probs * limit - probs * (probs @ limit)), rtol=0, atol=1e-14)
