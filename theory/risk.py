"""Entropic risk ER_λ(r) = -λ log E_p e^{-r/λ} and its exponential tilt (FRPO Remark 3.3).

Float64 numpy. Notation: ``lam`` = λ, ``values`` = r, ``probs`` = p. The f-divergence robust values
(Lemma 3.1's KL/χ²/TV duals and their cvxpy primals) live in ``theory.dro``; they are re-exported
here (``from theory.risk import kl_dro_dual`` keeps working) and reuse ``_tilt`` for the KL case.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from theory._validate import check_finite, check_nonnegative, check_prob_vector, check_same_shape


def _support_shift(r, p):
    """Per-row minimum over the support and the shifted rewards d = r - min (0 off the support)."""
    sup = p > 0
    rmin = np.where(sup, r, np.inf).min(axis=1)             # (m,)
    d = np.where(sup, r - rmin[:, None], 0.0)               # (m, n), >= 0
    return sup, rmin, d


# ----------------------------------------------------------------------------------------------
# entropic risk
# ----------------------------------------------------------------------------------------------
def _tilt(d, p, lam):
    """Exponential tilt of each row of p by e^{-d/λ}, for d >= 0 with d = 0 somewhere on the support.

    Returns log Z (m,), p e^{-d/λ} (m, n), Z (m,) and x = d/λ (m, n), Z = E_p e^{-d/λ}.
    Shifting by the minimum keeps every exponent <= 0 (no overflow, Z >= p(argmin) > 0): the
    logsumexp trick with the shift known in advance. Rows whose exponents all lie in [-1, 0] use
    log Z = log1p(E_p expm1(-d/λ)), which keeps full relative precision as λ -> inf.
    """
    with np.errstate(over="ignore"):
        x = np.minimum(d / lam, 1e4)                          # (m, n); e^{-1e4} == 0 already
    near = x.max(axis=1) <= 1.0                               # (m,)
    log_z = np.empty(d.shape[0])
    if near.all():
        pem1 = p * np.expm1(-x)
        pe = p + pem1
        log_z[:] = np.log1p(pem1.sum(axis=1))
    else:
        pe = p * np.exp(-x)
        log_z[:] = np.log(pe.sum(axis=1))
        if near.any():
            pem1 = p[near] * np.expm1(-x[near])
            log_z[near] = np.log1p(pem1.sum(axis=1))
    return log_z, pe, pe.sum(axis=1), x


def entropic_risk(values, lam: float, probs=None) -> float:
    """Entropic risk ER_λ(r) = -λ log E_p e^{-r/λ} of a finite distribution.

    Formula: ER_λ = min r - λ log Σ_y p(y) e^{-(r(y) - min r)/λ} (shifted logsumexp); λ = inf gives
    E_p r, λ = 0 gives min over the support {y : p(y) > 0}.
    Symbols: r -> ``values`` (n,), p -> ``probs`` (n,) (uniform when None), λ -> ``lam`` in [0, inf].
    Paper: FRPO Remark 3.3 (the per-prompt term -λ log Z(x) of the KL dual, Eq. 3.3).
    Properties: min r <= ER <= E r, nondecreasing in λ, ER(r + c) = ER(r) + c, ER_{aλ}(a r) = a ER_λ(r),
    ER_λ = κ1 - κ2/(2λ) + κ3/(6λ²) - ... Finite for λ in [1e-4, 1e6] and |r| up to 1e4 (and beyond).
    """
    v = check_finite("values", values, ndim=1)
    if probs is None:
        p = np.full(v.shape, 1.0 / v.size)
    else:
        p = check_prob_vector("probs", check_finite("probs", probs, ndim=1))
        check_same_shape("values", v, "probs", p)
    lam = check_nonnegative("lam", lam, allow_inf=True,
                            fix="lam is the entropic-risk temperature: pass a value in [0, inf] "
                                "(0 = minimum, inf = mean).")
    if math.isinf(lam):
        return float(p @ v)
    sup, rmin, d = _support_shift(v[None, :], p[None, :])
    if lam == 0.0:
        return float(rmin[0])
    log_z = _tilt(d, p[None, :], lam)[0]
    return float(rmin[0] - lam * log_z[0])


# ----------------------------------------------------------------------------------------------
# re-exports of theory.dro (lazy: theory.dro imports this module, so an eager import would be a cycle)
# ----------------------------------------------------------------------------------------------
_DRO_NAMES = ("F_DIVERGENCES", "DROResult", "fdiv_generator", "fdiv_conjugate", "fdiv_dual_objective",
              "kl_dro_dual", "fdiv_dro_dual", "fdiv_dro_primal", "kl_dro_primal",
              "variance_penalty_value")

if TYPE_CHECKING:  # pragma: no cover
    from theory.dro import (F_DIVERGENCES, DROResult, fdiv_conjugate, fdiv_dro_dual,  # noqa: F401
                            fdiv_dro_primal, fdiv_dual_objective, fdiv_generator, kl_dro_dual,
                            kl_dro_primal, variance_penalty_value)


def __getattr__(name):
    if name in _DRO_NAMES:
        import theory.dro

        return getattr(theory.dro, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_DRO_NAMES))
