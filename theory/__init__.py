"""theory: the math of fine-tuning-robust policies, implemented once and checked numerically.

Modules: ``losses`` (torch: every loss and advantage, imported by toy/ and llm/), ``risk``
(entropic risk), ``dro`` (KL and f-divergence DRO duals and cvxpy primals), ``rlvr`` (Gibbs tilt and the
χ² safety-drift bounds), ``jackknife`` (bias orders by exact enumeration), ``csft`` (CSFT weights,
Theorem 4.2's counterexample), ``stats`` (mean ± CI), ``claims`` (the ledger: ``python -m theory.claims``).
"""
from theory.csft import (
    check_corrected_bound,
    csft_beta_schedule,
    csft_token_objective,
    csft_token_weight,
    theorem42_counterexample,
)
from theory.jackknife import bias_slope, exact_bias, jackknife
from theory.losses import (
    aggregate,
    csft_betas,
    csft_loss,
    frpo_advantages,
    frpo_loss,
    frpo_scale,
    grpo_loss,
    group_advantages,
    kl_k3,
    nll_loss,
    pa_delta,
    pa_loss,
)
from theory.dro import (
    F_DIVERGENCES,
    DROResult,
    fdiv_conjugate,
    fdiv_dro_dual,
    fdiv_dro_primal,
    fdiv_dual_objective,
    fdiv_generator,
    kl_dro_dual,
    kl_dro_primal,
    variance_penalty_value,
)
from theory.risk import entropic_risk
from theory.rlvr import (
    chi2_divergence,
    chi2_drift_bound,
    chi2_drift_bound_unit,
    exact_drift,
    gibbs_tilt,
    gibbs_value,
    invariance_covariance,
    kl_divergence,
    pinsker_bound,
    reverse_kl_optimum,
    safety_drift,
    safety_rate_derivative,
    solve_kl_regularized,
    success_rate_derivative,
    tilt_chi2,
    tv_bound_tanh,
    tv_distance,
)
from theory.stats import mean_ci

__all__ = [
    # losses (torch)
    "aggregate", "csft_betas", "csft_loss", "frpo_advantages", "frpo_loss", "frpo_scale",
    "grpo_loss", "group_advantages", "kl_k3", "nll_loss", "pa_delta", "pa_loss",
    # risk, dro
    "F_DIVERGENCES", "DROResult", "entropic_risk", "fdiv_conjugate", "fdiv_dro_dual", "fdiv_dro_primal",
    "fdiv_dual_objective", "fdiv_generator", "kl_dro_dual", "kl_dro_primal", "variance_penalty_value",
    # rlvr
    "chi2_divergence", "chi2_drift_bound", "chi2_drift_bound_unit", "exact_drift", "gibbs_tilt",
    "gibbs_value", "invariance_covariance", "kl_divergence", "pinsker_bound", "reverse_kl_optimum", "safety_drift",
    "safety_rate_derivative", "solve_kl_regularized", "success_rate_derivative", "tilt_chi2",
    "tv_bound_tanh", "tv_distance",
    # jackknife, csft, stats
    "bias_slope", "exact_bias", "jackknife", "check_corrected_bound", "csft_beta_schedule",
    "csft_token_objective", "csft_token_weight", "theorem42_counterexample", "mean_ci",
]
