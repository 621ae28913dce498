"""theory: the math of fine-tuning-robust policies, implemented once and checked numerically.

Modules: ``losses`` (torch: every loss and advantage, imported by toy/ and llm/), ``risk``
(entropic risk), ``dro`` (KL and f-divergence DRO duals and cvxpy primals), ``rlvr`` (Gibbs tilt and the
χ² safety-drift bounds), ``jackknife`` (bias orders by exact enumeration), ``csft`` (CSFT weights,
Theorem 4.2's counterexample), ``stats`` (mean ± CI), ``claims`` (the ledger: ``python -m theory.claims``).

The names below are imported from their submodules on first use (PEP 562 module ``__getattr__``), so that
``import theory.losses`` does not also pay for SciPy and cvxpy; ``from theory import frpo_loss`` works as
always.
"""
from __future__ import annotations

import importlib

_NAMES = {  # submodule -> the public names it defines
    "csft": ("check_corrected_bound", "csft_beta_schedule", "csft_token_objective", "csft_token_weight",
            "theorem42_counterexample",),
    "dro": ("DROResult", "F_DIVERGENCES", "fdiv_conjugate", "fdiv_dro_dual", "fdiv_dro_primal",
           "fdiv_dual_objective", "fdiv_generator", "kl_dro_dual", "kl_dro_primal", "variance_penalty_value",),
    "jackknife": ("bias_slope", "exact_bias", "jackknife",),
    "losses": ("aggregate", "csft_betas", "csft_loss", "frpo_advantages", "frpo_loss", "frpo_scale",
              "group_advantages", "grpo_loss", "kl_k3", "nll_loss", "pa_delta", "pa_loss",),
    "risk": ("entropic_risk",),
    "rlvr": ("chi2_divergence", "chi2_drift_bound", "chi2_drift_bound_unit", "exact_drift", "gibbs_tilt",
            "gibbs_value", "invariance_covariance", "kl_divergence", "pinsker_bound", "reverse_kl_optimum",
            "safety_drift", "safety_rate_derivative", "solve_kl_regularized", "success_rate_derivative",
            "tilt_chi2", "tv_bound_tanh", "tv_distance",),
    "stats": ("mean_ci",),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}

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


def __getattr__(name: str):
    """``theory.<name>``: import its submodule on first use and cache the name here."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"theory.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'theory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
