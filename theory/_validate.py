"""Small input checks shared by the theory modules (numpy arrays and, for theory.losses, torch tensors).

Every check raises one ``ValueError`` whose message names the argument, shows the bad value, states
the allowed range and says how to fix it, and returns the cleaned value (float64 arrays, floats, ints).
tests/theory/test_bad_input.py holds the table of bad calls they answer.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable

import numpy as np

# Probability rows must sum to one within this absolute tolerance before they are renormalized.
PROB_SUM_ATOL = 1e-8


def _show(x) -> str:
    """Short repr of a value for an error message."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        return repr(arr.item())
    return np.array2string(arr, threshold=8, edgeitems=3, precision=6)


def check_scalar(name: str, x, low: float = -math.inf, high: float = math.inf,
                 allow_inf: bool = False, fix: str = "") -> float:
    """Return ``float(x)`` after checking it is a real number, not NaN, in [low, high].

    ``allow_inf`` permits +-inf when the bounds do; otherwise the value must be finite.
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number; got {x!r}. Fix: pass a float.") from None
    hint = f" Fix: {fix}" if fix else ""
    if math.isnan(v):
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got nan.{hint}")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, in [{low}, {high}]; got {v}.{hint}")
    if not (low <= v <= high):
        raise ValueError(f"{name} must be in [{low}, {high}]; got {v!r}.{hint}")
    return v


def check_nonnegative(name: str, x, allow_inf: bool = True, fix: str = "") -> float:
    """Return ``float(x)`` after checking ``0 <= x`` (and ``x`` not NaN; ``+inf`` if allowed)."""
    return check_scalar(name, x, 0.0, math.inf, allow_inf=allow_inf, fix=fix)


def check_positive(name: str, x, allow_inf: bool = False, fix: str = "") -> float:
    """Return ``float(x)`` after checking ``x > 0`` (and not NaN)."""
    v = check_scalar(name, x, 0.0, math.inf, allow_inf=allow_inf, fix=fix)
    if v <= 0.0:
        hint = f" Fix: {fix}" if fix else ""
        raise ValueError(f"{name} must be > 0; got {v!r}.{hint}")
    return v


def check_finite(name: str, x, ndim: Iterable[int] | int | None = None) -> np.ndarray:
    """Return ``x`` as a float64 array after checking every entry is finite (no NaN, no inf).

    ``ndim`` (an int or a collection of ints) restricts the number of dimensions.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers; got {x!r}. "
                         f"Fix: pass a numpy array of floats.") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have ndim in {allowed}; got shape {arr.shape}. "
                             f"Fix: reshape {name}.")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}. Fix: pass at least "
                         f"one entry.")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{name} must be finite (no NaN or inf); got {arr[idx]} at index {idx}. "
                         f"Fix: clean or clip {name}.")
    return arr


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise unless arrays ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{name_b} must have the same shape as {name_a}: {name_a} has shape "
                         f"{np.shape(a)}, {name_b} has shape {np.shape(b)}. Fix: pass one "
                         f"{name_b} entry per {name_a} entry.")


def check_shape(name: str, x: np.ndarray, shape: tuple, why: str = "") -> None:
    """Raise unless ``x.shape == shape``; ``why`` explains where the expected shape comes from."""
    if np.shape(x) != tuple(shape):
        extra = f" ({why})" if why else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}; got {np.shape(x)}. "
                         f"Fix: reshape {name}.")


def check_prob_vector(name: str, p, atol: float = PROB_SUM_ATOL) -> np.ndarray:
    """Return ``p`` (1-D, or 2-D with one distribution per row) renormalized along the last axis.

    Checks: finite, no negative entries, each row sums to 1 within ``atol`` (absolute). The
    renormalization only removes that rounding-level slack, so downstream code can rely on
    ``p.sum(-1) == 1`` to float precision.
    """
    arr = check_finite(name, p, ndim=(1, 2))
    if (arr < 0).any():
        idx = tuple(int(i[0]) for i in np.nonzero(arr < 0))
        raise ValueError(f"{name} must have entries >= 0 (probabilities); got {arr[idx]!r} at "
                         f"index {idx}. Fix: pass probabilities, e.g. a softmax, not logits.")
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0)
    if (off > atol).any():
        i = int(np.argmax(off))
        where = f"row {i} sums" if arr.ndim == 2 else "entries sum"
        raise ValueError(f"{name} must sum to 1 along its last axis (tolerance {atol:g}); {where} "
                         f"to {float(np.atleast_1d(sums)[i])!r}. Fix: normalize, "
                         f"{name} / {name}.sum(-1, keepdims=True).")
    return arr / (sums[..., None] if arr.ndim == 2 else sums)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` after checking it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}. Fix: pick one of "
                         f"{', '.join(repr(c) for c in choices)}.")
    return value


def check_int(name: str, x, low: int | None = None, fix: str = "") -> int:
    """Return ``int(x)`` for a Python or numpy integer (``np.int64(4)`` is fine) that is ``>= low``.

    Rejects bools, floats (even 4.0) and strings: a group size or a count has to be a whole number.
    """
    hint = f" Fix: {fix or f'pass a whole number, e.g. {name}=4 (a numpy integer is fine).'}"
    allowed = "an integer" + (f" >= {low}" if low is not None else "")
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{name} must be {allowed}; got {_show(x) if _is_numeric(x) else repr(x)} "
                         f"({type(x).__name__}).{hint}")
    v = int(x)
    if low is not None and v < low:
        raise ValueError(f"{name} must be {allowed}; got {v}.{hint}")
    return v


def _is_numeric(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic))


# ----------------------------------------------------------------------------------------------
# torch tensors (theory.losses). torch is imported lazily: the numpy modules never need it.
# Each check is one or two elementwise passes and one reduction on the tensor (no Python loop over
# elements); the offending entry is only located when the check fails.
# ----------------------------------------------------------------------------------------------
# Log-probabilities above this count as "not a log-probability" (a probability or a logit was
# passed). 0 up to rounding: log_softmax is <= 0 exactly in float32/64; 16-bit formats round
# x - logsumexp(x) by up to ~2^-8 |x|, hence their larger slack.
LOGP_SLACK = {"default": 1e-3, "16bit": 0.125}


def _first_bad(x, bad) -> str:
    """"<value> at index <idx>" for the first True entry of ``bad`` (only called on failure)."""
    idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
    return f"{x[idx].item()!r} at index {idx}"


def check_tensor(name: str, x, ndim: int | tuple | None = None, floating: bool = False,
                 shape_doc: str = "", fix: str = ""):
    """Return ``x`` after checking it is a torch.Tensor (with ``ndim`` dims, a floating dtype)."""
    import torch

    doc = f" {shape_doc}" if shape_doc else ""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor{doc}; got {type(x).__module__}."
                         f"{type(x).__name__}. Fix: pass torch.as_tensor({name}).")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(f"{name} must be a tensor{doc} with ndim in {allowed}; got shape "
                             f"{tuple(x.shape)}. Fix: reshape {name}.")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype (float16/bfloat16/float32/float64); got "
                         f"{x.dtype}. Fix: pass {name}.float() (or .double()).{' ' + fix if fix else ''}")
    return x


def check_finite_tensor(name: str, x, fix: str = "") -> None:
    """Raise unless every entry of the tensor ``x`` is finite (no NaN, no ±inf)."""
    import torch

    ok = torch.isfinite(x)
    if not bool(ok.all()):
        hint = fix or f"clean {name} upstream (a NaN or inf here poisons the whole loss)."
        raise ValueError(f"{name} must be finite (no NaN or inf); got {_first_bad(x, ~ok)}. Fix: {hint}")


def check_logprobs(mask=None, **tensors) -> None:
    """Raise unless every given tensor holds log-probabilities: no NaN or +inf anywhere, and
    ``x <= slack`` where ``mask`` is nonzero (padding may hold anything finite; -inf is a legal
    log-probability).

    Fast path: one multiply and one max per tensor and a single host sync for all of them
    (max(x·mask) is NaN if x has a NaN or +inf anywhere); the exact check and the message run only
    when that max exceeds the slack.
    """
    import torch

    given = {name: x for name, x in tensors.items() if x is not None}
    if not given:
        return
    with torch.no_grad():
        m = None if mask is None else mask.to(next(iter(given.values())).dtype)
        peaks = torch.stack([((x * m) if m is not None and x.shape == m.shape else x).amax().float()
                             for x in given.values()])
        top = float(peaks.max())
    if top <= LOGP_SLACK["default"]:
        return
    for name, x in given.items():
        slack = LOGP_SLACK["16bit" if x.dtype in (torch.float16, torch.bfloat16) else "default"]
        broken = torch.isnan(x) | (x == math.inf)
        positive = (x > slack) & (mask != 0) if mask is not None else x > slack
        if bool(broken.any()) or bool(positive.any()):
            nan = bool(broken.any())
            kind = "NaN or +inf" if nan else f"a value > {slack:g}"
            raise ValueError(f"{name} must hold log-probabilities (<= 0 up to a rounding slack of "
                             f"{slack:g}, no NaN); got {kind}: {_first_bad(x, broken if nan else positive)}."
                             f" Fix: pass log_softmax(logits) gathered at the sampled tokens, not "
                             f"probabilities or logits.")


def check_mask(name: str, m) -> None:
    """Raise unless the response mask ``m`` is bool or has every value in [0, 1] (no NaN)."""
    import torch

    if m.dtype == torch.bool:
        return
    lo, hi = torch.aminmax(m)  # one pass; NaN fails both comparisons
    if not (bool(lo >= 0) and bool(hi <= 1)):
        bad = ~((m >= 0) & (m <= 1))
        raise ValueError(f"{name} must be a 0/1 (or bool) response mask, values in [0, 1]; got "
                         f"{_first_bad(m, bad)}. Fix: pass (attention_mask > 0) restricted to the "
                         f"response tokens.")
