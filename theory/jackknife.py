"""Jackknife bias correction and the exact bias of small-sample estimators.

FRPO (App. E; docs/theory.md §1) estimates log Z with
the log of a group mean and its gradient with a self-normalized (SNIS) ratio; both have bias
c/G + O(1/G²) in the group size G, and the jackknife G ĝ − (G−1)/G Σ_j ĝ_{−j} removes the 1/G
term. This module gives the generic jackknife and the *exact* expected bias of both estimators,
with and without the correction, for G iid draws from a small discrete distribution (enumerating
multinomial counts), so the orders O(1/G) and O(1/G²) can be measured as log-log slopes.

Notation → arguments: G → ``G`` (group size, also ``samples.shape[0]``), ĝ → ``estimator``.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import comb
from typing import Callable

import numpy as np
from scipy.special import gammaln, xlogy

from theory._validate import check_choice, check_finite, check_prob_vector

__all__ = ["ESTIMATOR_KINDS", "jackknife", "exact_bias", "bias_slope"]

ESTIMATOR_KINDS = ("log_mean", "snis")

# Enumerating more count vectors than this is slow and memory-hungry; it is also never needed for
# the support sizes (2–4) and group sizes (≤ 64) this module is for.
_MAX_COMPOSITIONS = 2_000_000


def jackknife(estimator: Callable[[np.ndarray], np.ndarray], samples) -> np.ndarray:
    """Jackknife bias-corrected estimate: g̃ = G ĝ(X) − (G−1)/G Σ_j ĝ(X_{−j}).

    If E ĝ − g = c/G + O(1/G²), then E g̃ − g = O(1/G²).
    Symbols → arguments: ĝ → ``estimator`` (maps an array of G samples stacked along axis 0 to a
    float or an array; extra trailing axes are passed through, so a batch of groups of shape
    (G, batch, ...) is one call when the estimator reduces over axis 0 only); X → ``samples``,
    G = ``samples.shape[0]`` ≥ 2; X_{−j} = ``samples`` with row j deleted.
    Paper: FRPO App. E ("The jackknife technique"), Algorithm 1 line 9.
    Deviation: none.
    """
    x = np.asarray(samples)
    if x.ndim == 0 or x.shape[0] < 2:
        got = f"a scalar {x.item()!r}" if x.ndim == 0 else f"G={x.shape[0]}"
        raise ValueError(
            f"samples must hold G >= 2 samples along axis 0, got {got}; the leave-one-out "
            "estimates need at least one remaining sample. Fix: pass an array with >= 2 rows"
        )
    G = x.shape[0]
    full = np.asarray(estimator(x), dtype=np.float64)
    loo_sum = sum(np.asarray(estimator(np.delete(x, j, axis=0)), dtype=np.float64)
                  for j in range(G))
    out = G * full - (G - 1) / G * loo_sum
    return float(out) if out.ndim == 0 else out


@lru_cache(maxsize=64)
def _compositions(G: int, K: int) -> np.ndarray:
    """All count vectors n ∈ ℕ^K with Σ n = G, shape (C(G+K−1, K−1), K) (stars and bars)."""
    bars = np.array(list(combinations(range(G + K - 1), K - 1)), dtype=np.int64)
    bars = bars.reshape(-1, K - 1)
    edges = np.concatenate(
        [np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), G + K - 1)], axis=1
    )
    counts = np.diff(edges, axis=1) - 1  # (N, K)
    counts.flags.writeable = False
    return counts


def _check_kind(kind) -> str:
    return check_choice("estimator_kind", kind, ESTIMATOR_KINDS)


def _check_distribution(kind: str, support, probs):
    p = check_prob_vector("probs", probs)
    if p.ndim != 1:
        raise ValueError(
            f"probs must be a 1-D probability vector (one entry per support point), got shape "
            f"{p.shape}; pass a single distribution"
        )
    x = np.asarray(support, dtype=np.float64)
    K = p.size
    want = (K,) if kind == "log_mean" else (K, 2)
    if x.shape != want:
        layout = "values x_k" if kind == "log_mean" else "rows (w_k, phi_k)"
        raise ValueError(
            f"support for {kind!r} must have shape {want} ({layout}, one per probability), got "
            f"{x.shape}; match len(probs)"
        )
    check_finite("support", x)
    positive = x if kind == "log_mean" else x[:, 0]
    if np.any(positive <= 0):
        what = "values" if kind == "log_mean" else "weights w (column 0)"
        raise ValueError(
            f"support {what} must be > 0 for {kind!r}, got {positive}; the estimator divides "
            "by (or takes the log of) a sum of them. Fix: pass positive values"
        )
    return x, p


def _check_group_size(G) -> int:
    try:
        ok = not isinstance(G, bool) and float(G).is_integer() and int(G) >= 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"G must be an integer >= 2 (group size; the jackknife needs G - 1 >= 1 samples "
            f"left out), got {G}; use e.g. G=4"
        )
    return int(G)


def _estimates(kind: str, x: np.ndarray, counts: np.ndarray, G: int, jack: bool) -> np.ndarray:
    """Estimator value for every count vector, (N,); jackknife via per-value leave-one-out."""
    n = counts.astype(np.float64)  # (N, K)
    if kind == "log_mean":
        total = n @ x  # (N,) Σ_i X_i
        if not jack:
            return np.log(total / G)
        loo = (total[:, None] - x[None, :]) / (G - 1)  # (N, K) mean without one copy of x_k
        with np.errstate(divide="ignore", invalid="ignore"):
            loo_est = np.where(n > 0, np.log(np.where(n > 0, loo, 1.0)), 0.0)
        return G * np.log(total / G) - (G - 1) / G * np.sum(n * loo_est, axis=1)
    w, phi = x[:, 0], x[:, 1]
    num, den = n @ (w * phi), n @ w  # (N,)
    if not jack:
        return num / den
    with np.errstate(divide="ignore", invalid="ignore"):
        loo_est = np.where(n > 0, (num[:, None] - w * phi) / (den[:, None] - w), 0.0)
    return G * num / den - (G - 1) / G * np.sum(n * loo_est, axis=1)


def exact_bias(estimator_kind: str, support, probs, G: int, jackknife: bool) -> float:
    """Exact bias E[ĝ] − g of a small-sample estimator over G iid draws, by enumerating counts.

    E[ĝ] = Σ_n Mult(n; G, p) ĝ(n) over all count vectors n (Σ n_k = G) of the support, with the
    multinomial pmf in log space (gammaln); the jackknife version uses ĝ(X_{−j}) grouped by the
    value left out, so it is exact too. Estimators:
      "log_mean": ĝ = log((1/G) Σ_i X_i), g = log E[X]; support (K,) values x_k > 0.
      "snis":     ĝ = Σ_i w_i φ_i / Σ_i w_i, g = E[wφ] / E[w]; support (K, 2) rows (w_k > 0, φ_k).
    Symbols → arguments: ĝ → ``estimator_kind``, support/probs → the discrete law of X (or of
    (w, φ)), G → ``G`` ≥ 2, jackknife → ``jackknife`` (apply G ĝ − (G−1)/G Σ_j ĝ_{−j}).
    Cost: C(G+K−1, K−1) count vectors (47 905 for K = 4, G = 64).
    Paper: FRPO App. E (log Ẑ and the SNIS ratio of Eq. (E.1), bias O(1/G) → O(1/G²)).
    Deviation: the paper states the orders only; the exact enumeration is ours (docs/theory.md §1).
    """
    kind = _check_kind(estimator_kind)
    G = _check_group_size(G)
    x, p = _check_distribution(kind, support, probs)
    K = p.size
    if comb(G + K - 1, K - 1) > _MAX_COMPOSITIONS:
        raise ValueError(
            f"G={G} with support size K={K} needs {comb(G + K - 1, K - 1)} count vectors, more "
            f"than {_MAX_COMPOSITIONS}; use K <= 4 or a smaller G"
        )
    if kind == "log_mean":
        truth = np.log(p @ x)
    else:
        truth = (p @ (x[:, 0] * x[:, 1])) / (p @ x[:, 0])
    counts = _compositions(G, K)
    log_pmf = gammaln(G + 1) - gammaln(counts + 1.0).sum(axis=1) + xlogy(counts, p).sum(axis=1)
    keep = np.isfinite(log_pmf)  # count vectors that put mass on a zero-probability point
    est = _estimates(kind, x, counts[keep], G, bool(jackknife))
    # Sum pmf·(ĝ − g), not pmf·ĝ − g: the bias is far smaller than ĝ at large G.
    return float(np.sum(np.exp(log_pmf[keep]) * (est - truth)))


def bias_slope(estimator_kind: str, support, probs, Gs, jackknife: bool) -> float:
    """Log-log slope of |exact bias| against G: least-squares fit of log|b(G)| = a + slope·log G.

    slope ≈ −1 for the plain estimators (bias c/G) and ≈ −2 with the jackknife (O(1/G²)).
    Symbols → arguments: as :func:`exact_bias`; ``Gs`` are the group sizes (≥ 2 distinct).
    Paper: FRPO App. E (orders of the bias).
    Deviation: a measurement, not in the paper (docs/theory.md §1 reports −1.02 / −1.89 for
    G = 4…64).
    """
    g = np.asarray(Gs)
    if g.ndim != 1 or np.unique(g).size < 2:
        raise ValueError(
            f"Gs must be a 1-D sequence with at least 2 distinct group sizes, got {Gs}; "
            "use e.g. Gs=[4, 8, 16, 32, 64]"
        )
    bias = np.array([exact_bias(estimator_kind, support, probs, int(G), jackknife) for G in g])
    if np.any(bias == 0):
        raise ValueError(
            f"the exact bias is 0 at G={g[bias == 0].tolist()} for this distribution, so "
            "log|bias| is undefined; pick a non-degenerate support (e.g. unequal weights)"
        )
    slope, _ = np.polyfit(np.log(g.astype(np.float64)), np.log(np.abs(bias)), 1)
    return float(slope)
