"""Batched calibration of a positive knob by bisection on its logarithm (used by the bandit's KL-matched arms).

:func:`bisect_log` solves f(x) = target elementwise for f decreasing in x > 0, where one call of f
evaluates a whole array of x (every element independent: the bandit trains seeds × arms at once, so
a bisection step costs one training run for all of them).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np


class Bisection(NamedTuple):
    """Result of :func:`bisect_log`, each array of the target's shape."""

    x: np.ndarray          # the evaluated x whose f is closest to the target (relative error)
    value: np.ndarray      # f(x)
    rel_err: np.ndarray    # |f(x)/target − 1|
    bracketed: np.ndarray  # bool: f(hi) ≤ target ≤ f(lo) at the ends of the search range
    evals: int             # calls of f (2 for the ends + the bisection steps)


def bisect_log(f: Callable[[np.ndarray], np.ndarray], target, lo: float, hi: float, *, rtol: float,
               max_iter: int) -> Bisection:
    """Elementwise root of f(x) = target for f decreasing in x, by bisection on log x in [lo, hi].

    Evaluates f at lo and hi, then at the geometric midpoints x = √(x_lo·x_hi): where f(x) > target
    the root lies above x (x_lo ← x), else below (x_hi ← x). Keeps, per element, the evaluated x with
    the smallest |f(x)/target − 1| and stops once every bracketed element is within ``rtol`` or after
    ``max_iter`` steps (bracket width in log x: log(hi/lo)/2^max_iter). An element whose target lies
    outside [f(hi), f(lo)] is reported with ``bracketed`` False (its x is the nearer end); an element
    where f jumps across the target (a noisy or discontinuous f) ends at the jump with rel_err > rtol.
    Symbols → arguments: f → ``f`` (array → array of the same shape), the level → ``target`` (> 0).
    """
    target = np.asarray(target, dtype=np.float64)
    if not (np.all(np.isfinite(target)) and np.all(target > 0)):
        raise ValueError(f"target={target!r} must be finite and > 0 everywhere (a KL level, say)")
    if not (0 < lo < hi < math.inf):
        raise ValueError(f"the search range lo={lo}, hi={hi} must satisfy 0 < lo < hi < inf, e.g. lo=1e-3, hi=100")
    if not (rtol > 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol={rtol} must be a finite number > 0, e.g. 0.02")
    if max_iter < 0:
        raise ValueError(f"max_iter={max_iter} must be >= 0")

    def call(x):
        v = np.asarray(f(x), dtype=np.float64)
        if v.shape != target.shape:
            raise ValueError(f"f returned shape {v.shape}, expected the target's {target.shape}")
        return v

    x_lo, x_hi = np.full(target.shape, float(lo)), np.full(target.shape, float(hi))
    v_lo, v_hi = call(x_lo), call(x_hi)
    bracketed = (v_hi <= target) & (target <= v_lo)
    err = lambda v: np.abs(v / target - 1.0)  # noqa: E731  (NaN compares False: never "best")
    use_lo = err(v_lo) <= err(v_hi)
    best_x, best_v = np.where(use_lo, x_lo, x_hi), np.where(use_lo, v_lo, v_hi)
    evals = 2
    for _ in range(max_iter):
        if np.all(err(best_v)[bracketed] <= rtol):
            break
        mid = np.sqrt(x_lo * x_hi)
        v = call(mid)
        evals += 1
        better = err(v) < err(best_v)
        best_x, best_v = np.where(better, mid, best_x), np.where(better, v, best_v)
        above = v > target  # decreasing f: the root is above mid
        x_lo, x_hi = np.where(above, mid, x_lo), np.where(above, x_hi, mid)
    return Bisection(best_x, best_v, err(best_v), bracketed, evals)
