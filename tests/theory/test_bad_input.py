"""Bad input across the public theory API: one table, one ValueError per bad call.

Each row is (call, argument, value): the call must meet tests/errors.py's contract, exactly one
``ValueError`` (no exception chained behind it, no TypeError/RuntimeError/AttributeError from inside
numpy or torch) whose message names the argument and shows the offending value, states what is
allowed and says how to fix it. The llm config and reward entry points have their own table in
tests/llm/test_bad_input_llm.py.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from tests.errors import assert_one_clear_value_error
from theory import csft, dro, losses, risk, rlvr, stats

jackknife = importlib.import_module("theory.jackknife")  # the package exports the function of that name

NAN, INF = float("nan"), float("inf")
R2 = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
P2 = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
REF = np.array([0.25, 0.75])
G2 = np.array([0.0, 1.0])
S2 = np.array([0.2, 0.9])


def _t(*rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


LOGP = _t([-1.0, -0.5, -2.0], [-0.3, -0.7, -1.1], [-0.2, -0.9, -0.4], [-1.5, -0.1, -0.6])  # (4, 3)
MASK = torch.ones(4, 3, dtype=torch.float64)
REWARDS = torch.tensor([0.0, 1.0, 0.5, 0.2], dtype=torch.float64)
GIDS = torch.tensor([0, 0, 1, 1])
ADV = torch.tensor([0.1, -0.1, 0.2, -0.2], dtype=torch.float64)
LOGITS = torch.zeros(4, 3, 5, dtype=torch.float64)


def with_entry(t, idx, value):
    t = t.clone()
    t[idx] = value
    return t


# (id, call, argument name, value as it must appear in the message)
CASES = [
    # ---------------------------------------------------------------- theory.risk
    ("er-values-nan", lambda: risk.entropic_risk([0.0, NAN], 1.0), "values", "nan"),
    ("er-values-inf", lambda: risk.entropic_risk([0.0, INF], 1.0), "values", "inf"),
    ("er-values-2d", lambda: risk.entropic_risk([[0.0, 1.0]], 1.0), "values", "(1, 2)"),
    ("er-values-empty", lambda: risk.entropic_risk([], 1.0), "values", "(0,)"),
    ("er-values-str", lambda: risk.entropic_risk(["a", "b"], 1.0), "values", "'a'"),
    ("er-lam-neg", lambda: risk.entropic_risk([0.0, 1.0], -0.5), "lam", "-0.5"),
    ("er-lam-nan", lambda: risk.entropic_risk([0.0, 1.0], NAN), "lam", "nan"),
    ("er-lam-str", lambda: risk.entropic_risk([0.0, 1.0], "big"), "lam", "'big'"),
    ("er-lam-none", lambda: risk.entropic_risk([0.0, 1.0], None), "lam", "None"),
    ("er-probs-neg", lambda: risk.entropic_risk([0.0, 1.0], 1.0, [1.2, -0.2]), "probs", "-0.2"),
    ("er-probs-sum", lambda: risk.entropic_risk([0.0, 1.0], 1.0, [0.5, 0.4]), "probs", "0.9"),
    ("er-probs-shape", lambda: risk.entropic_risk([0.0, 1.0], 1.0, [0.2, 0.3, 0.5]), "probs", "(3,)"),
    ("er-probs-nan", lambda: risk.entropic_risk([0.0, 1.0], 1.0, [0.5, NAN]), "probs", "nan"),
    # ---------------------------------------------------------------- theory.dro
    ("kl-rho-neg", lambda: dro.kl_dro_dual(R2, P2, -0.1), "rho", "-0.1"),
    ("kl-rho-nan", lambda: dro.kl_dro_dual(R2, P2, NAN), "rho", "nan"),
    ("kl-rho-str", lambda: dro.kl_dro_dual(R2, P2, "x"), "rho", "'x'"),
    ("kl-pi-shape", lambda: dro.kl_dro_dual(R2, P2[:, :2], 0.1), "pi", "(2, 2)"),
    ("kl-pi-neg", lambda: dro.kl_dro_dual(R2, -P2, 0.1), "pi", "-0.2"),
    ("kl-pi-sum", lambda: dro.kl_dro_dual(R2, P2 * 0.9, 0.1), "pi", "0.9"),
    ("kl-rewards-nan", lambda: dro.kl_dro_dual(np.where(R2 == 2.0, NAN, R2), P2, 0.1), "rewards", "nan"),
    ("kl-rewards-3d", lambda: dro.kl_dro_dual(R2[None], P2[None], 0.1), "rewards", "(1, 2, 3)"),
    ("kl-px-len", lambda: dro.kl_dro_dual(R2, P2, 0.1, [1.0]), "px", "(1,)"),
    ("kl-px-sum", lambda: dro.kl_dro_dual(R2, P2, 0.1, [0.7, 0.7]), "px", "1.4"),
    ("kl-px-neg", lambda: dro.kl_dro_dual(R2, P2, 0.1, [1.5, -0.5]), "px", "-0.5"),
    ("fdiv-f", lambda: dro.fdiv_dro_dual(R2, P2, 0.1, "hellinger"), "f", "'hellinger'"),
    ("fdiv-chi2-rho", lambda: dro.fdiv_dro_dual(R2, P2, -1.0, "chi2"), "rho", "-1.0"),
    ("fdiv-tv-pi-nan", lambda: dro.fdiv_dro_dual(R2, np.where(P2 == 0.3, NAN, P2), 0.1, "tv"), "pi", "nan"),
    ("primal-f", lambda: dro.fdiv_dro_primal(R2, P2, 0.1, "js"), "f", "'js'"),
    ("primal-rho", lambda: dro.fdiv_dro_primal(R2, P2, -2.0, "kl"), "rho", "-2.0"),
    ("primal-kl-px", lambda: dro.kl_dro_primal(R2, P2, 0.1, [0.2, 0.2]), "px", "0.4"),
    ("obj-lam-neg", lambda: dro.fdiv_dual_objective(R2, P2, 0.1, "kl", -1.0, 0.0), "lam", "-1.0"),
    ("obj-lam-inf", lambda: dro.fdiv_dual_objective(R2, P2, 0.1, "kl", INF, 0.0), "lam", "inf"),
    ("obj-eta-nan", lambda: dro.fdiv_dual_objective(R2, P2, 0.1, "kl", 1.0, [NAN, 0.0]), "eta", "nan"),
    ("obj-eta-len", lambda: dro.fdiv_dual_objective(R2, P2, 0.1, "kl", 1.0, [0.0, 0.0, 0.0]), "eta", "(3,)"),
    ("obj-f", lambda: dro.fdiv_dual_objective(R2, P2, 0.1, "l2", 1.0, 0.0), "f", "'l2'"),
    ("gen-f", lambda: dro.fdiv_generator("renyi", 1.0), "f", "'renyi'"),
    ("conj-f", lambda: dro.fdiv_conjugate("alpha", 0.0), "f", "'alpha'"),
    ("vp-rho", lambda: dro.variance_penalty_value(R2, P2, -0.3), "rho", "-0.3"),
    ("vp-pi", lambda: dro.variance_penalty_value(R2, P2 * 2, 0.3), "pi", "2.0"),
    # ---------------------------------------------------------------- theory.rlvr
    ("tilt-ref-neg", lambda: rlvr.gibbs_tilt([-0.1, 1.1], G2, 0.1), "pi_ref", "-0.1"),
    ("tilt-ref-nan", lambda: rlvr.gibbs_tilt([NAN, 1.0], G2, 0.1), "pi_ref", "nan"),
    ("tilt-ref-sum", lambda: rlvr.gibbs_tilt([0.2, 0.2], G2, 0.1), "pi_ref", "0.4"),
    ("tilt-beta-0", lambda: rlvr.gibbs_tilt(REF, G2, 0.0), "beta", "0.0"),
    ("tilt-beta-neg", lambda: rlvr.gibbs_tilt(REF, G2, -1.0), "beta", "-1.0"),
    ("tilt-beta-nan", lambda: rlvr.gibbs_tilt(REF, G2, NAN), "beta", "nan"),
    ("tilt-beta-inf", lambda: rlvr.gibbs_tilt(REF, G2, INF), "beta", "inf"),
    ("tilt-reward-shape", lambda: rlvr.gibbs_tilt(REF, [0.0, 1.0, 2.0], 0.1), "reward", "(3,)"),
    ("tilt-reward-inf", lambda: rlvr.gibbs_tilt(REF, [0.0, INF], 0.1), "reward", "inf"),
    ("value-beta", lambda: rlvr.gibbs_value(REF, G2, -2.0), "beta", "-2.0"),
    ("rate-values", lambda: rlvr.path_rate(REF, [1.0]), "values", "(1,)"),
    ("drift-shape", lambda: rlvr.safety_drift([1.0, 0.0, 0.0], REF, S2), "pi_ref", "(2,)"),
    ("drift-safety-nan", lambda: rlvr.safety_drift(REF, REF, [NAN, 0.1]), "safety", "nan"),
    ("chi2-shape", lambda: rlvr.chi2_divergence([1.0], REF), "q", "(2,)"),
    ("kl-q-neg", lambda: rlvr.kl_divergence(REF, [0.5, -0.5, 1.0]), "q", "-0.5"),
    ("tv-p-sum", lambda: rlvr.tv_distance([0.5, 0.6], REF), "p", "1.1"),
    ("tiltchi2-beta", lambda: rlvr.tilt_chi2(REF, G2, 0.0), "beta", "0.0"),
    ("exact-safety-shape", lambda: rlvr.exact_drift(REF, G2, [0.5], 0.1), "safety", "(1,)"),
    ("bound-beta-nan", lambda: rlvr.chi2_drift_bound(REF, G2, S2, NAN), "beta", "nan"),
    ("bound-unit-reward", lambda: rlvr.chi2_drift_bound_unit(REF, [NAN, 0.0], 0.1), "reward", "nan"),
    ("bound-policy-shape", lambda: rlvr.chi2_drift_bound_policy([1.0, 0.0, 0.0], REF, S2), "pi_ref", "(2,)"),
    ("inv-safety-inf", lambda: rlvr.invariance_covariance(REF, G2, [INF, 0.0], 0.1), "safety", "inf"),
    ("tanh-0", lambda: rlvr.tv_bound_tanh(0.0), "beta", "0.0"),
    ("tanh-nan", lambda: rlvr.tv_bound_tanh(NAN), "beta", "nan"),
    ("tanh-array", lambda: rlvr.tv_bound_tanh([0.1, -1.0]), "beta", "-1.0"),
    ("pinsker-neg", lambda: rlvr.pinsker_bound(-1.0), "kl", "-1.0"),
    ("pinsker-nan", lambda: rlvr.pinsker_bound(NAN), "kl", "nan"),
    ("dS-beta", lambda: rlvr.safety_rate_derivative(REF, G2, S2, -1.0), "beta", "-1.0"),
    ("dG-reward", lambda: rlvr.success_rate_derivative(REF, [1.0, 2.0, 3.0], 0.5), "reward", "(3,)"),
    ("cvx-beta", lambda: rlvr.solve_kl_regularized(G2, REF, -0.5), "beta", "-0.5"),
    ("cvx-2d", lambda: rlvr.solve_kl_regularized(np.ones((2, 2)), np.full((2, 2), 0.5), 0.1),
     "pi_ref", "(2, 2)"),
    ("revkl-2d", lambda: rlvr.reverse_kl_optimum(np.full((2, 2), 0.5), np.zeros((2, 2)), 0.2),
     "pi_ref", "(2, 2)"),
    ("revkl-beta", lambda: rlvr.reverse_kl_optimum(REF, G2, 0.0), "beta", "0.0"),
    # ---------------------------------------------------------------- theory.jackknife
    ("jk-scalar", lambda: jackknife.jackknife(np.mean, 3.0), "samples", "3.0"),
    ("jk-one", lambda: jackknife.jackknife(np.mean, [1.0]), "samples", "G=1"),
    ("bias-kind", lambda: jackknife.exact_bias("mean", [1.0, 2.0], [0.5, 0.5], 4, False),
     "estimator_kind", "'mean'"),
    ("bias-G1", lambda: jackknife.exact_bias("log_mean", [1.0, 2.0], [0.5, 0.5], 1, False), "G", "1"),
    ("bias-Gfloat", lambda: jackknife.exact_bias("log_mean", [1.0, 2.0], [0.5, 0.5], 2.5, True),
     "G", "2.5"),
    ("bias-probs-neg", lambda: jackknife.exact_bias("log_mean", [1.0, 2.0], [-0.5, 1.5], 4, False),
     "probs", "-0.5"),
    ("bias-probs-nan", lambda: jackknife.exact_bias("log_mean", [1.0, 2.0], [NAN, 0.5], 4, False),
     "probs", "nan"),
    ("bias-support-shape", lambda: jackknife.exact_bias("log_mean", [1.0, 2.0, 3.0], [0.5, 0.5], 4, False),
     "support", "(3,)"),
    ("bias-support-neg", lambda: jackknife.exact_bias("log_mean", [-1.0, 2.0], [0.5, 0.5], 4, False),
     "support", "-1."),
    ("bias-support-nan", lambda: jackknife.exact_bias("snis", [[1.0, NAN], [2.0, 0.0]], [0.5, 0.5], 4, False),
     "support", "nan"),
    ("bias-too-big", lambda: jackknife.exact_bias("log_mean", np.arange(1.0, 9.0), np.full(8, 0.125), 64,
                                                  False), "G", "64"),
    ("slope-Gs", lambda: jackknife.bias_slope("log_mean", [1.0, 2.0], [0.5, 0.5], [4], False), "Gs", "[4]"),
    # ---------------------------------------------------------------- theory.csft
    ("csft-delta-nan", lambda: csft.csft_token_objective([NAN, 0.0], 0.5), "delta", "nan"),
    ("csft-beta-0", lambda: csft.csft_token_objective([0.0, 1.0], 0.0), "beta", "0.0"),
    ("csft-beta-nan", lambda: csft.csft_token_objective([0.0, 1.0], NAN), "beta", "nan"),
    ("csft-w-beta-neg", lambda: csft.csft_token_weight([0.0, 1.0], -1.0), "beta", "-1.0"),
    ("csft-broadcast", lambda: csft.csft_token_weight([0.0, 1.0, 2.0], [0.5, 0.5]), "beta", "(2,)"),
    ("sched-T-neg", lambda: csft.csft_beta_schedule(-1), "T", "-1"),
    ("sched-T-float", lambda: csft.csft_beta_schedule(2.5), "T", "2.5"),
    ("sched-first-nan", lambda: csft.csft_beta_schedule(8, first=NAN), "first", "nan"),
    ("sched-rest-0", lambda: csft.csft_beta_schedule(8, rest=0.0), "rest", "0.0"),
    ("thm42-L", lambda: csft.theorem42_counterexample(-1.0, 0.5, 0.1, 1.0), "L", "-1.0"),
    ("thm42-mu-nan", lambda: csft.theorem42_counterexample(2.0, NAN, 0.1, 1.0), "mu", "nan"),
    ("thm42-eps", lambda: csft.theorem42_counterexample(2.0, 0.5, 0.0, 1.0), "eps", "0.0"),
    ("bound-rng", lambda: csft.check_corrected_bound(42, 2, 10), "rng", "int"),
    ("bound-dim", lambda: csft.check_corrected_bound(np.random.default_rng(0), 0, 10), "dim", "0"),
    ("bound-trials", lambda: csft.check_corrected_bound(np.random.default_rng(0), 2, 1.5), "n_trials", "1.5"),
    # ---------------------------------------------------------------- theory.stats
    ("ci-level", lambda: stats.mean_ci([1.0, 2.0], level=1.5), "level", "1.5"),
    ("ci-level-nan", lambda: stats.mean_ci([1.0, 2.0], level=NAN), "level", "nan"),
    ("ci-values-str", lambda: stats.mean_ci(["a", 2.0]), "values", "'a'"),
    ("ci-axis-level", lambda: stats.mean_ci_axis(np.ones((3, 2)), 0, level=0.0), "level", "0.0"),
    ("ci-axis-axis", lambda: stats.mean_ci_axis(np.ones(3), axis=5), "axis", "5"),
    ("ci-axis-str", lambda: stats.mean_ci_axis([["a"]]), "x", "'a'"),
    # ---------------------------------------------------------------- theory.losses: advantages
    ("adv-nan", lambda: losses.frpo_advantages(with_entry(REWARDS, 1, NAN), 2, 1.0), "rewards", "nan"),
    ("adv-int", lambda: losses.frpo_advantages(torch.tensor([0, 1, 1, 0]), 2, 1.0), "rewards", "torch.int64"),
    ("adv-numpy", lambda: losses.frpo_advantages(np.zeros(4), 2, 1.0), "rewards", "ndarray"),
    ("adv-2d", lambda: losses.frpo_advantages(REWARDS.view(2, 2), 2, 1.0), "rewards", "(2, 2)"),
    ("adv-G0", lambda: losses.frpo_advantages(REWARDS, 0, 1.0), "group_size", "0"),
    ("adv-Gfloat", lambda: losses.frpo_advantages(REWARDS, 2.0, 1.0), "group_size", "2.0"),
    ("adv-Gmultiple", lambda: losses.frpo_advantages(REWARDS, 3, 1.0), "group_size", "3"),
    ("adv-G1-jk", lambda: losses.frpo_advantages(REWARDS, 1, 1.0), "group_size", "1"),
    ("adv-lam-0", lambda: losses.frpo_advantages(REWARDS, 2, 0.0), "lam", "0.0"),
    ("adv-lam-nan", lambda: losses.frpo_advantages(REWARDS, 2, NAN), "lam", "nan"),
    ("adv-lam-str", lambda: losses.frpo_advantages(REWARDS, 2, "abc"), "lam", "'abc'"),
    ("adv-scale", lambda: losses.frpo_advantages(REWARDS, 2, 1.0, scale="two"), "scale", "'two'"),
    ("adv-scale-one-inf", lambda: losses.frpo_advantages(REWARDS, 2, math.inf, scale="one"), "scale", "'one'"),
    ("adv-inf-nobaseline", lambda: losses.frpo_advantages(REWARDS, 2, math.inf, baseline=False),
     "baseline", "False"),
    ("adv-valid", lambda: losses.frpo_advantages(REWARDS, 2, 1.0, valid=torch.ones(3, dtype=torch.bool)),
     "valid", "(3,)"),
    ("gadv-numpy", lambda: losses.group_advantages([0.0, 1.0], 2), "rewards", "list"),
    ("scale-lam", lambda: losses.frpo_scale(-1.0), "lam", "-1.0"),
    ("scale-name", lambda: losses.frpo_scale(1.0, "half"), "scale", "'half'"),
    # ---------------------------------------------------------------- theory.losses: grpo / frpo
    ("grpo-eps-neg", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, eps=-0.1), "eps", "-0.1"),
    ("grpo-eps-nan", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, eps=NAN), "eps", "nan"),
    ("grpo-eps-high", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, eps_high=-1.0), "eps_high", "-1.0"),
    ("grpo-beta-neg", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, ref_logp=LOGP, beta=-1.0), "beta", "-1.0"),
    ("grpo-adv-nan", lambda: losses.grpo_loss(LOGP, LOGP, MASK, with_entry(ADV, 2, NAN)), "advantages", "nan"),
    ("grpo-adv-numpy", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV.numpy()), "advantages", "ndarray"),
    ("grpo-adv-shape", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV[:3]), "advantages", "(3,)"),
    ("grpo-logp-nan", lambda: losses.grpo_loss(with_entry(LOGP, (1, 1), NAN), LOGP, MASK, ADV), "logp", "nan"),
    ("grpo-logp-pos", lambda: losses.grpo_loss(with_entry(LOGP, (0, 2), 0.5), LOGP, MASK, ADV), "logp", "0.5"),
    ("grpo-old-pos", lambda: losses.grpo_loss(LOGP, with_entry(LOGP, (2, 0), 3.0), MASK, ADV), "old_logp", "3.0"),
    ("grpo-ref-nan", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, ref_logp=with_entry(LOGP, 0, NAN),
                                              beta=0.1), "ref_logp", "nan"),
    ("grpo-ref-shape", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, ref_logp=LOGP[:, :2], beta=0.1),
     "ref_logp", "(4, 2)"),
    ("grpo-agg", lambda: losses.grpo_loss(LOGP, LOGP, MASK, ADV, aggregation="sum"), "aggregation", "'sum'"),
    ("grpo-mask-values", lambda: losses.grpo_loss(LOGP, LOGP, MASK * 2, ADV), "mask", "2.0"),
    ("grpo-logp-int", lambda: losses.grpo_loss(LOGP.long(), LOGP, MASK, ADV), "logp", "torch.int64"),
    ("frpo-eps-neg", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, 0.5, eps=-0.1), "eps", "-0.1"),
    ("frpo-beta-neg", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, 0.5, ref_logp=LOGP,
                                               beta=-0.5), "beta", "-0.5"),
    ("frpo-lam-inf", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, math.inf), "lam", "inf"),
    ("frpo-lam-neg", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, -0.5), "lam", "-0.5"),
    ("frpo-logp-nan", lambda: losses.frpo_loss(with_entry(LOGP, (3, 2), NAN), LOGP, MASK, REWARDS, GIDS, 0.5),
     "logp", "nan"),
    ("frpo-logp-pos", lambda: losses.frpo_loss(LOGP.abs(), LOGP, MASK, REWARDS, GIDS, 0.5), "logp", "1.0"),
    ("frpo-old-shape", lambda: losses.frpo_loss(LOGP, LOGP[:, :2], MASK, REWARDS, GIDS, 0.5), "old_logp", "(4, 2)"),
    ("frpo-rewards-nan", lambda: losses.frpo_loss(LOGP, LOGP, MASK, with_entry(REWARDS, 0, NAN), GIDS, 0.5),
     "rewards", "nan"),
    ("frpo-rewards-numpy", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS.numpy(), GIDS, 0.5),
     "rewards", "ndarray"),
    ("frpo-rewards-shape", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS[:3], GIDS, 0.5), "rewards", "(3,)"),
    ("frpo-gids-float", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS.double(), 0.5),
     "group_ids", "torch.float64"),
    ("frpo-gids-groups", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, torch.tensor([0, 0, 0, 1]), 0.5,
                                                  group_size=2), "group_ids", "3 rows"),
    ("frpo-gids-numpy", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, np.array([0, 0, 1, 1]), 0.5),
     "group_ids", "ndarray"),
    ("frpo-G1-jk", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, torch.arange(4), 0.5), "group_size", "1"),
    ("frpo-scale", lambda: losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, 0.5, scale="x"), "scale", "'x'"),
    # ---------------------------------------------------------------- theory.losses: kl, aggregate, nll
    ("k3-shape", lambda: losses.kl_k3(LOGP, LOGP[:, :2]), "ref_logp", "(4, 2)"),
    ("k3-nan", lambda: losses.kl_k3(with_entry(LOGP, 0, NAN), LOGP), "logp", "nan"),
    ("k3-pos", lambda: losses.kl_k3(LOGP, with_entry(LOGP, (1, 2), 0.7)), "ref_logp", "0.7"),
    ("k3-numpy", lambda: losses.kl_k3(LOGP.numpy(), LOGP), "logp", "ndarray"),
    ("agg-shape", lambda: losses.aggregate(LOGP, MASK[:, :2]), "mask", "(4, 2)"),
    ("agg-mode", lambda: losses.aggregate(LOGP, MASK, "sum"), "mode", "'sum'"),
    ("agg-max-len", lambda: losses.aggregate(LOGP, MASK, "seq_sum_const", max_len=0), "max_len", "0"),
    ("agg-1d", lambda: losses.aggregate(LOGP[0], MASK[0]), "values", "(3,)"),
    ("nll-pos", lambda: losses.nll_loss(-LOGP, MASK), "logp", "1.0"),
    ("nll-nan", lambda: losses.nll_loss(with_entry(LOGP, (2, 2), NAN), MASK), "logp", "nan"),
    # ---------------------------------------------------------------- theory.losses: csft and pa
    ("betas-first", lambda: losses.csft_betas(MASK, first=-1.0), "first", "-1.0"),
    ("betas-rest-nan", lambda: losses.csft_betas(MASK, rest=NAN), "rest", "nan"),
    ("betas-mask-numpy", lambda: losses.csft_betas(MASK.numpy()), "mask", "ndarray"),
    ("csft-betas-nan", lambda: losses.csft_loss(LOGP, LOGP, MASK, with_entry(MASK * 0.5, (1, 1), NAN)),
     "betas", "nan"),
    ("csft-betas-neg", lambda: losses.csft_loss(LOGP, LOGP, MASK, with_entry(MASK * 0.5, (0, 0), -2.0)),
     "betas", "-2.0"),
    ("csft-form", lambda: losses.csft_loss(LOGP, LOGP, MASK, form="hinge"), "form", "'hinge'"),
    ("csft-logp-nan", lambda: losses.csft_loss(with_entry(LOGP, (0, 1), NAN), LOGP, MASK), "logp", "nan"),
    ("csft-logp-pos", lambda: losses.csft_loss(with_entry(LOGP, (3, 0), 2.0), LOGP, MASK), "logp", "2.0"),
    ("csft-ref-nan", lambda: losses.csft_loss(LOGP, with_entry(LOGP, (0, 0), NAN), MASK), "ref_logp", "nan"),
    ("csft-agg", lambda: losses.csft_loss(LOGP, LOGP, MASK, aggregation="mean"), "aggregation", "'mean'"),
    ("pa-nan", lambda: losses.pa_loss(with_entry(LOGITS, (0, 0, 1), NAN), LOGITS, MASK), "logits", "nan"),
    ("pa-ref-inf", lambda: losses.pa_loss(LOGITS, with_entry(LOGITS, (1, 2, 0), INF), MASK), "ref_logits", "inf"),
    ("pa-shape", lambda: losses.pa_loss(LOGITS, LOGITS[..., :4], MASK), "ref_logits", "(4, 3, 4)"),
    ("pa-mask", lambda: losses.pa_loss(LOGITS, LOGITS, MASK[:, :2]), "mask", "(4, 2)"),
    ("pa-delta-max", lambda: losses.pa_delta(0, 0), "max_epoch", "0"),
    ("pa-delta-epoch", lambda: losses.pa_delta(11, 10), "epoch", "11"),
    ("pa-delta-float", lambda: losses.pa_delta(1.5, 10), "epoch", "1.5"),
]

def test_the_table_is_large_enough():
    assert len(CASES) >= 100, len(CASES)
    assert len({case[0] for case in CASES}) == len(CASES), "duplicate ids"


@pytest.mark.parametrize("call, arg, value", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_raises_one_clear_value_error(call, arg, value):
    assert_one_clear_value_error(call, arg, value)


# ---------------------------------------------------------------------------------------------
# inputs that look odd but are fine must not be rejected
# ---------------------------------------------------------------------------------------------
def test_numpy_integer_group_size_is_accepted():
    """Regression: np.int64(4) was rejected as a group size (isinstance(·, int) only)."""
    r = torch.tensor([0.0, 1.0, 0.5, 0.2, 1.0, 0.0, 0.3, 0.3], dtype=torch.float64)
    torch.testing.assert_close(losses.frpo_advantages(r, np.int64(4), 0.7),
                               losses.frpo_advantages(r, 4, 0.7), rtol=0, atol=0)
    torch.testing.assert_close(losses.group_advantages(r, np.int32(2)), losses.group_advantages(r, 2))
    logp = -torch.rand(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gids = torch.arange(2).repeat_interleave(4)
    a, _ = losses.frpo_loss(logp, logp, torch.ones(8, 3), r, gids, 0.7, group_size=np.int64(4))
    b, _ = losses.frpo_loss(logp, logp, torch.ones(8, 3), r, gids, 0.7, group_size=4)
    assert float(a) == float(b)


def test_padding_and_minus_inf_are_not_bad_log_probs():
    """Checks look only at response positions for the sign, and allow -inf logits/log-probs."""
    logp = torch.tensor([[-0.5, 7.0], [-0.2, -0.1]], dtype=torch.float64)  # 7.0 is padding
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    losses.grpo_loss(logp, logp, mask, torch.tensor([0.5, -0.5], dtype=torch.float64))
    logits = torch.zeros(2, 2, 3, dtype=torch.float64)
    logits[0, 0, 2] = -math.inf
    losses.pa_loss(logits, torch.zeros(2, 2, 3, dtype=torch.float64), mask)


def test_lam_inf_message_points_to_the_form_that_accepts_it():
    """Regression: frpo_loss rejected lam=inf with a message that said to pass math.inf."""
    with pytest.raises(ValueError) as info:
        losses.frpo_loss(LOGP, LOGP, MASK, REWARDS, GIDS, math.inf)
    msg = str(info.value)
    assert "grpo_loss" in msg and "frpo_advantages" in msg and "(0, inf)" in msg
    adv = losses.frpo_advantages(REWARDS, 2, math.inf)            # the form that takes math.inf
    assert torch.isfinite(adv).all()
