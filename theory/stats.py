"""Summary statistics shared by toy/ and llm/ reports: mean ± 95% confidence intervals over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with the half-width of a two-sided Student-t confidence interval."""

    mean: float
    half_width: float  # nan when n < 2
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        if math.isnan(self.half_width):
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def _check_level(level) -> None:
    try:
        ok = 0 < float(level) < 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"level={level!r} must be in (0, 1). Fix: pass a confidence level, e.g. level=0.95")


def _as_floats(name: str, x) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be real numbers (NaN/None are dropped); got {x!r}. Fix: pass "
                         f"floats, e.g. [float(v) for v in {name}]") from None


def mean_ci_axis(x, axis: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized mean ± t-interval over ``axis``, ignoring NaN: returns (mean, half_width, n).

    half-width = t_{(1+level)/2, n−1} · s / √n with s the n−1 sample standard deviation; NaN where n < 2.
    """
    _check_level(level)
    x = _as_floats("x", x)
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"axis={axis} is out of range for x of shape {x.shape}; allowed: "
                         f"{-x.ndim} <= axis < {x.ndim}. Fix: pass the seed axis, e.g. axis=0")
    n = np.sum(np.isfinite(x), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(np.where(np.isfinite(x), x, 0.0), axis=axis) / n
        dev = np.where(np.isfinite(x), x - np.expand_dims(mean, axis), 0.0)
        sd = np.sqrt(np.sum(dev ** 2, axis=axis) / (n - 1))
        t = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1))
        half = np.where(n >= 2, t * sd / np.sqrt(n), np.nan)
    return mean, half, n


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean ± t_{(1+level)/2, n−1} · s/√n over the finite values (NaN/None dropped).

    With one value the half-width is NaN (no interval from a single seed); with none the mean is NaN.
    """
    _check_level(level)
    x = _as_floats("values", [v for v in values if v is not None])
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return MeanCI(math.nan, math.nan, 0)
    mean, half, n = mean_ci_axis(x, 0, level)
    return MeanCI(float(mean), float(half), int(n))
