"""The bandit's KL-matched arms: toy/calibrate.bisect_log on hand-checkable monotone cases, the per-seed β
of train_loss against the scalar-β route of theory.losses, and the calibrated KLs of a small run.

References: f(x) = c/x has the root x* = c/target, and with lo = 1, hi = 16 the geometric midpoints are
4, then 2 or 8, ... (checked by hand below); a per-seed β must give each seed the gradient that the
same config with that seed's β as a float gives it (the float goes through grpo_loss / frpo_loss).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.tolerances import TOL
from toy import bandit
from toy._common import parse_args
from toy.calibrate import bisect_log


# ---------------------------------------------------------------------------------------------
# bisection on log x
# ---------------------------------------------------------------------------------------------
def test_bisect_log_hits_hand_computed_midpoints():
    calls = []

    def f(x):
        calls.append(x.copy())
        return 4.0 / x  # decreasing; f = target at x = 4 / target

    res = bisect_log(f, np.array([1.0, 2.0, 0.5]), 1.0, 16.0, rtol=1e-12, max_iter=10)
    # ends (1, 16), then √(1·16) = 4: exact for target 1; target 2 → x* = 2 = √(1·4); target 0.5 → 8 = √(4·16).
    # Element 0 is done at 4 (kept as its best), but f(4) = 1 is not above 1, so its bracket becomes [1, 4] → 2.
    np.testing.assert_array_equal(calls[0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(calls[1], [16.0, 16.0, 16.0])
    np.testing.assert_array_equal(calls[2], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(calls[3], [2.0, 2.0, 8.0])
    np.testing.assert_allclose(res.x, [4.0, 2.0, 8.0], rtol=TOL["float64"])
    assert res.evals == 4 and res.bracketed.all() and np.all(res.rel_err <= 1e-12)


def test_bisect_log_converges_at_the_stated_rate_and_flags_unbracketed_targets():
    c = np.array([0.3, 1.0, 7.0, 50.0])
    target = np.array([1.0, 0.2, 3.0, 1e4])  # roots 0.3, 5, 7/3 and 0.005 (outside [0.01, 100])
    lo, hi, k = 0.01, 100.0, 20
    res = bisect_log(lambda x: c / x, target, lo, hi, rtol=1e-15, max_iter=k)
    inside = np.array([True, True, True, False])
    np.testing.assert_array_equal(res.bracketed, inside)
    # the best midpoint is within one bracket width of the root on the log scale
    width = math.log(hi / lo) / 2 ** k
    assert np.all(np.abs(np.log(res.x[inside] / (c / target)[inside])) <= width)
    assert res.x[~inside][0] == lo and res.rel_err[~inside][0] == pytest.approx(1 - 50.0 / lo / 1e4)
    assert res.evals == k + 2
    # a loose tolerance stops early, with every bracketed element inside it
    loose = bisect_log(lambda x: c / x, target, lo, hi, rtol=0.02, max_iter=k)
    assert loose.evals < k + 2 and np.all(loose.rel_err[inside] <= 0.02)


@pytest.mark.parametrize("kw, needle", [
    (dict(target=np.array([0.0])), "target"), (dict(lo=0.0), "lo=0.0"), (dict(hi=0.5), "hi=0.5"),
    (dict(rtol=0.0), "rtol=0.0"), (dict(max_iter=-1), "max_iter=-1"),
])
def test_bisect_log_bad_input_names_the_argument(kw, needle):
    args = dict(target=np.array([1.0]), lo=1.0, hi=2.0, rtol=0.1, max_iter=3) | kw
    with pytest.raises(ValueError, match=needle):
        bisect_log(lambda x: 1.0 / x, args.pop("target"), args.pop("lo"), args.pop("hi"), **args)


# ---------------------------------------------------------------------------------------------
# per-seed β in the trainer's loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["advantage", "ratio"])
def test_per_seed_beta_gives_each_seed_its_own_beta(form):
    a, _ = parse_args(bandit.BanditArgs, ["--seeds", "3", "--arms", "16", "--contexts", "4", "--group-size", "4",
                                          "--form", form], presets=bandit.PRESETS)
    gen = torch.Generator().manual_seed(1)
    env = bandit.make_bandit(a, gen)
    betas = (0.01, 0.4, 3.0)
    C = bandit.Config
    per_seed = [C("m", "matched", 0.5, True, True, betas), C("g", "matched", math.inf, True, True, betas)]
    theta = (env.theta_ref + torch.randn(3, 2, env.phi.shape[-1], generator=gen, dtype=torch.float64)).requires_grad_(True)
    ref_logp = bandit.log_policy(env.theta_ref.expand(3, 1, -1), env.phi)
    logp = bandit.log_policy(theta, env.phi)
    arms = bandit.sample(logp, a.group_size, gen)

    def grad(configs):
        loss = bandit.train_loss(logp, ref_logp, env.reward.unsqueeze(1), arms, configs, a)
        return torch.autograd.grad(loss, theta, retain_graph=True)[0]

    got = grad(per_seed)
    for s, b in enumerate(betas):
        want = grad([c._replace(beta=b) for c in per_seed])  # a float β: the theory.losses route
        np.testing.assert_allclose(got[s].numpy(), want[s].numpy(), rtol=0, atol=TOL["float64"])
    assert (got[0] - got[2]).abs().max() > 1e-3  # the β's matter


# ---------------------------------------------------------------------------------------------
# the calibrated arms of a small run
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("matched")
    # 4 bisection steps: some (seed, λ) pairs match within 5%, some do not, so both paths are exercised
    summary = bandit.main(["--preset", "smoke", "--seeds", "3", "--no-ablations", "--rlvr-steps", "0",
                           "--match-iters", "4", "--out", str(out), "--no-progress"])
    return summary, dict(np.load(out / "metrics.npz"))


def test_calibrated_kls_agree_with_grpo_within_tolerance(small):
    summary, m = small
    rtol = summary["args"]["match_rtol"]
    names = list(m["configs"])
    grpo_kl = m["train_kl_ref"][:, names.index("grpo"), -1]
    cols = [names.index(n) for n in names if n.endswith("_matched")]
    assert len(cols) == 2
    kl = m["train_kl_ref"][:, cols, -1]  # the arms as trained at the calibrated β
    np.testing.assert_array_equal(kl, m["match_kl"])  # the final training reproduces the calibration
    ok = m["match_rel_err"] <= rtol
    assert ok.any() and not ok.all() and m["match_evals"] == 6
    np.testing.assert_allclose(kl[ok], np.broadcast_to(grpo_kl[:, None], kl.shape)[ok], rtol=rtol, atol=0)
    assert np.all(m["match_beta"] >= 1e-3) and np.all(m["match_beta"] <= 100.0)
    for j, name in enumerate(n for n in names if n.endswith("_matched")):
        arm = summary["matching"]["arms"][name]
        assert arm["n_matched"] == ok[:, j].sum() == summary["results"][name]["train/reward"]["n"]
        assert summary["vs_grpo_matched"][name]["train/kl_ref"]["n"] == ok[:, j].sum()
        if ok[:, j].any():
            assert arm["rel_err_max"] <= rtol
    cfg = next(c for c in summary["configs"] if c["name"] == "frpo_lam0.2_matched")
    assert len(cfg["beta"]) == 3 and cfg["group"] == "matched"


def test_unmatched_arms_do_not_depend_on_matching(small, tmp_path):
    summary, m = small
    off = bandit.main(["--preset", "smoke", "--seeds", "3", "--no-ablations", "--rlvr-steps", "0", "--no-matched",
                       "--out", str(tmp_path), "--no-progress"])
    m0 = dict(np.load(tmp_path / "metrics.npz"))
    V = len(m0["configs"])
    for key in ("train_reward", "train_kl_ref", "sft_kl", "sft_reward", "pg_kl", "pg_reward", "worst_value"):
        np.testing.assert_array_equal(m0[key], m[key][:, :V], err_msg=key)
    assert off["vs_grpo"] == summary["vs_grpo"] and "matching" not in off
