"""Comparing arms at matched KL: the FRPO paper's Figure 2 reading of a forgetting run, as numbers.

A downstream fine-tuning moves each aligned model by a different amount, so "retained after N steps"
compares unlike things. The tracker records, along each (seed, arm) run, the sequence KL to the aligned
model and the retained metric (the tiny world: the exact first-token refusal probability on held-out
harmful probes). This module reads those trajectories at equal KL:

* :func:`first_passage` — a trajectory's value at KL g is interpolated linearly on the segment where its KL
  first reaches g (the KL along a run need not be monotone; the first passage is when the run *had* moved
  that far). A trajectory that never reaches g is missing there — never extrapolated.
* :func:`kl_grid` — the grid: given in the config, or 5 points evenly spaced up to the *common KL*, the
  largest KL every trajectory reaches.
* :func:`normalized_auc` — one robustness number per trajectory: (1/K) ∫_0^K v(g) dg with K the common KL
  (1 = nothing lost up to K).
* :func:`bootstrap_band` — a 95% percentile-bootstrap interval of the mean over seeds; for rates in [0, 1]
  it stays inside [0, 1] (a Student-t interval need not).
* :func:`dro_lower_bound` — the certified worst case: for each KL radius ρ, the KL-DRO value
  inf {E_x E_Q r : E_x KL(Q‖π) ≤ ρ} of the aligned model's refusal on the probes, from
  :func:`theory.dro.kl_dro_dual` (FRPO Lemma 3.1). The refusal depends on a response only through
  "refuses or not", so the worst case over response distributions equals the worst case over that
  two-point distribution (π_x = (p_x, 1 − p_x), r = (1, 0)): the bound is exact, not an approximation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np


def first_passage(kls: Sequence[float], values: Sequence[float], grid: Sequence[float]) -> list[Optional[float]]:
    """Values of one trajectory at each KL of ``grid``, by linear interpolation at the first passage.

    ``kls``/``values`` are the tracked points in step order (the first one is the start, KL 0). For g in
    ``grid``: i = the first index with kls[i] ≥ g; the value is interpolated between points i−1 and i
    (all earlier KLs are < g, so that segment brackets g); i = 0 gives values[0]; no such i gives None.
    """
    if len(kls) != len(values):
        raise ValueError(f"kls has {len(kls)} points, values {len(values)}; pass one value per tracked KL")
    out: list[Optional[float]] = []
    for g in grid:
        hit = next((i for i, k in enumerate(kls) if k >= g), None)
        if hit is None:
            out.append(None)
        elif hit == 0:
            out.append(float(values[0]))
        else:
            k0, k1, v0, v1 = kls[hit - 1], kls[hit], values[hit - 1], values[hit]
            out.append(float(v0 + (g - k0) / (k1 - k0) * (v1 - v0)))
    return out


def common_kl(trajectories: Sequence[Sequence[float]]) -> float:
    """The largest KL that every trajectory reaches: min over trajectories of max KL (0 for none)."""
    tops = [max(k) for k in trajectories if len(k)]
    return float(min(tops)) if tops and len(tops) == len(trajectories) else 0.0


def kl_grid(trajectories: Sequence[Sequence[float]], given: Sequence[float] = (), points: int = 5) -> list[float]:
    """``given`` if non-empty, else ``points`` KL values evenly spaced on (0, common KL]."""
    if given:
        return [float(g) for g in given]
    top = common_kl(trajectories)
    if not top > 0:
        return []
    return [top * (j + 1) / points for j in range(points)]


def normalized_auc(kls: Sequence[float], values: Sequence[float], upto: float, resolution: int = 200) -> Optional[float]:
    """(1/K) ∫_0^K v(g) dg of the first-passage curve, K = ``upto`` (trapezoid on ``resolution`` intervals).

    None when the trajectory does not reach K or K ≤ 0.
    """
    if not upto > 0 or max(kls) < upto:
        return None
    grid = np.linspace(0.0, upto, resolution + 1)
    v = np.array(first_passage(kls, values, grid), dtype=float)
    return float(np.sum((v[1:] + v[:-1]) / 2) / resolution)


def bootstrap_band(samples: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and its percentile-bootstrap interval (scipy.stats.bootstrap).

    Percentile intervals of a mean of values in [a, b] lie in [a, b]; with one sample, or all samples
    equal, the interval is the point itself.
    """
    x = np.asarray([s for s in samples if s is not None and not math.isnan(s)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return m, m, m
    from scipy.stats import bootstrap

    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    random_state=np.random.default_rng(seed))
    return m, float(res.confidence_interval.low), float(res.confidence_interval.high)


def dro_lower_bound(per_prompt_rates: Sequence[float], rhos: Sequence[float]) -> list[float]:
    """The KL-DRO worst-case refusal at each radius ρ: inf over E_x KL(Q‖π) ≤ ρ of the mean refusal rate.

    ``per_prompt_rates``: the aligned model's refusal probability per probe prompt, p_x ∈ [0, 1]. Each
    prompt's response distribution is reduced to (refuse, comply) with probabilities (p_x, 1 − p_x) and
    rewards (1, 0); :func:`theory.dro.kl_dro_dual` solves the one shared-budget dual (FRPO Lemma 3.1).
    """
    from theory.dro import kl_dro_dual

    p = np.clip(np.asarray(per_prompt_rates, dtype=float), 0.0, 1.0)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"per_prompt_rates must be a non-empty list of rates, got shape {p.shape}")
    r = np.tile(np.array([1.0, 0.0]), (p.size, 1))  # (m, 2)
    pi = np.stack([p, 1.0 - p], axis=1)  # (m, 2)
    return [float(kl_dro_dual(r, pi, float(rho)).value) for rho in rhos]
