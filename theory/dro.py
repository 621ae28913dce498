"""f-divergence distributionally robust values: Lemma 3.1's KL/χ²/TV duals and cvxpy primals (FRPO).

Float64 numpy/scipy (duals) and cvxpy (primals). Notation: ``lam`` = λ, ``rho`` = ρ, ``pi`` = π (the
policy whose neighbourhood is searched), ``px`` = p(x) (prompt distribution), ``rewards`` = r(x, y).
Shapes: ``rewards`` and ``pi`` are (m prompts, n responses); a 1-D input is one prompt.

The worst case is over policies Q with the *average* constraint E_x D_f(Q(.|x) || π(.|x)) <= ρ: one
budget and one multiplier λ shared by all prompts. Q is restricted to π's support (Q << π: the lemma
parametrizes Q by the likelihood ratio L = Q/π), so "min" always means the minimum over π's support.

The primal solvers (``*_primal``) use cvxpy only and call none of the dual code: they are the
independent reference the duals are checked against. The entropic risk (the KL dual's inner value)
and its tilt are in ``theory.risk``.

Length (~500 lines, past the ~400 guide): the three duals share the edge cases and the λ search, and
the cvxpy primal stays beside them so its independence from the dual code is checked in one module
(tests/theory/test_dro.py::test_primal_does_not_use_dual_code).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from theory._validate import (check_choice, check_finite, check_nonnegative, check_prob_vector,
                              check_same_shape, check_shape)
from theory.risk import _support_shift, _tilt

F_DIVERGENCES = ("kl", "chi2", "tv")


@dataclass(frozen=True, eq=False)
class DROResult:
    """Solution of a robust (worst-case) value problem.

    value: inf_Q E_x E_{y~Q} r(x, y) over the divergence ball.
    lam:   the optimal multiplier λ* of the budget constraint (math.inf when ρ = 0, 0.0 when the
           budget reaches the argmin set).
    q:     a worst-case policy Q*, same shape as ``rewards`` (None where not recovered).
    eta:   the per-prompt normalization multipliers η*(x) of Eq. (3.2), shape ``rewards.shape[:-1]``
           (None where not defined, e.g. λ* = inf, or from a primal solver).
    """

    value: float
    lam: float
    q: Optional[np.ndarray]
    eta: Optional[np.ndarray] = None


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _prepare(rewards, pi, rho, px):
    """Validate and return r (m,n), p (m,n) rows renormalized, w (m,), rho, squeeze flag."""
    r = check_finite("rewards", rewards, ndim=(1, 2))
    p_in = check_finite("pi", pi, ndim=(1, 2))
    check_same_shape("rewards", r, "pi", p_in)
    p = check_prob_vector("pi", p_in)
    squeeze = r.ndim == 1
    r2, p2 = np.atleast_2d(r), np.atleast_2d(p)
    m = r2.shape[0]
    if px is None:
        w = np.full(m, 1.0 / m)
    else:
        w_in = check_finite("px", px, ndim=(0, 1)).reshape(-1)
        check_shape("px", w_in, (m,), why="one probability per prompt, i.e. per row of rewards")
        w = check_prob_vector("px", w_in)
    rho = check_nonnegative("rho", rho, allow_inf=True,
                            fix="rho is a divergence budget: pass a value >= 0 (0 = no perturbation).")
    return r2, p2, w, rho, squeeze


def _shape_out(q, eta, squeeze):
    if q is not None and squeeze:
        q = q[0]
    if eta is not None:
        eta = np.asarray(eta, dtype=np.float64)
        if squeeze:
            eta = eta.reshape(())
    return q, eta


def variance_penalty_value(rewards, pi, rho, px=None) -> float:
    """Remark 3.3's mean-variance approximation of the KL robust value: E r - sqrt(2 ρ E_x Var_π(r|x)).

    Formula: max_λ {E r - V/(2λ) - λρ} = E r - sqrt(2ρV) at λ = sqrt(V/(2ρ)), V = E_x Var_{π(.|x)} r.
    Symbols: r -> ``rewards`` (m, n), π -> ``pi`` (m, n), ρ -> ``rho``, p(x) -> ``px`` (m,).
    Paper: FRPO Remark 3.3 (second-order expansion of the entropic risk in 1/λ).
    Deviation: the paper writes Var(r(x, y)); with one λ shared by all prompts the expansion of
    E_x ER_λ(r(x, .)) gives the *average conditional* variance E_x Var(r|x), not the total variance.
    The exact dual (``kl_dro_dual``) minus this value is κ3/(3V)·ρ + O(ρ^{3/2}) as ρ -> 0 (m = 1;
    κ3 = E_x of the conditional third cumulant in general).
    """
    r, p, w, rho, _ = _prepare(rewards, pi, rho, px)
    mean = (p * r).sum(axis=1)                               # (m,)
    var = (p * (r - mean[:, None]) ** 2).sum(axis=1)         # (m,)
    return float(w @ mean - math.sqrt(2.0 * rho * float(w @ var)))


# ----------------------------------------------------------------------------------------------
# f-divergences: generators f(t) on t >= 0 and conjugates f*(s) = sup_{t>=0} st - f(t)
# ----------------------------------------------------------------------------------------------
def fdiv_generator(f: str, t):
    """Generator f(t) of an f-divergence D_f(Q||π) = E_π f(Q/π), on t >= 0.

    kl: t log t (0 at t = 0); chi2: (t - 1)²; tv: |t - 1| / 2.  Paper: FRPO Lemma 3.1.
    """
    check_choice("f", f, F_DIVERGENCES)
    t = np.asarray(t, dtype=np.float64)
    if f == "kl":
        return np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    if f == "chi2":
        return (t - 1.0) ** 2
    return 0.5 * np.abs(t - 1.0)


def fdiv_conjugate(f: str, s):
    """Fenchel conjugate on t >= 0, f*(s) = sup_{t>=0} {s t - f(t)} (docs/theory.md §1).

    kl: e^{s-1}; chi2: s + s²/4 for s >= -2, else -1; tv: max(s, -1/2) for s <= 1/2, +inf above.
    Paper: FRPO Lemma 3.1, Eq. (3.2).
    """
    check_choice("f", f, F_DIVERGENCES)
    s = np.asarray(s, dtype=np.float64)
    if f == "kl":
        with np.errstate(over="ignore"):
            return np.exp(s - 1.0)
    if f == "chi2":
        return np.where(s >= -2.0, s + 0.25 * s * s, -1.0)
    return np.where(s <= 0.5, np.maximum(s, -0.5), np.inf)


def fdiv_dual_objective(rewards, pi, rho, f: str, lam: float, eta, px=None) -> float:
    """The bracket of Eq. (3.2) at a given (λ, η): -λρ - E_x η(x) - λ E_x E_π f*((-r - η(x))/λ).

    Every (λ >= 0, η) gives a lower bound on the robust value (weak duality); the sup is the value.
    λ = 0 is the perspective limit: 0 if r + η >= 0 on the support of every prompt, else -inf.
    Symbols: r -> ``rewards`` (m, n), π -> ``pi``, ρ -> ``rho``, f -> ``f`` in {"kl","chi2","tv"},
    λ -> ``lam`` in [0, inf), η -> ``eta`` (broadcastable to (m,)), p(x) -> ``px``.
    Paper: FRPO Lemma 3.1, Eq. (3.2).
    """
    r, p, w, rho, _ = _prepare(rewards, pi, rho, px)
    check_choice("f", f, F_DIVERGENCES)
    lam = check_nonnegative("lam", lam, allow_inf=False, fix="pass a finite lam >= 0.")
    eta_arr = check_finite("eta", eta, ndim=(0, 1))
    if eta_arr.ndim == 1 and eta_arr.shape not in ((r.shape[0],), (1,)):
        check_shape("eta", eta_arr, (r.shape[0],), why="one multiplier per prompt, or a scalar")
    eta_arr = np.broadcast_to(eta_arr, (r.shape[0],))
    s = -r - eta_arr[:, None]                                # (m, n)
    sup = p > 0
    if lam == 0.0:
        if (s[sup] > 0).any():
            return -math.inf
        return float(-w @ eta_arr)                           # convention 0 * rho = 0
    if math.isinf(rho):
        return -math.inf
    # λ π f*(s/λ) in perspective form, so a tiny λ (1e-255 next to O(1) s) does not overflow s/λ
    # squared or exponentiated on the way to a finite product
    p_safe = np.where(sup, p, 1.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if f == "kl":
            term = np.exp(np.log(p_safe) + math.log(lam) + s / lam - 1.0)
        elif f == "chi2":
            term = np.where(s >= -2.0 * lam, p_safe * s + (np.sqrt(p_safe) * s) ** 2 / (4.0 * lam),
                            -lam * p_safe)
        else:
            term = np.where(s <= 0.5 * lam, p_safe * np.maximum(s, -0.5 * lam), np.inf)
        inner = np.where(sup, term, 0.0).sum(axis=1)          # (m,) λ E_π f*(s/λ)
        total = -lam * rho - w @ eta_arr - w @ inner
    return -math.inf if not np.isfinite(total) else float(total)


# ----------------------------------------------------------------------------------------------
# dual solvers (one λ for all prompts; dD/dλ of the dual = ρ-gap via the envelope theorem)
# ----------------------------------------------------------------------------------------------
def _find_lambda(h, lam_guess, lam_hi, lam_floor):
    """Root λ* of h(λ) = E_x D_f(Q_λ||π) - ρ, decreasing in λ; safeguarded Newton in t = log λ.

    ``h(lam)`` returns (h, dh/dlog λ) with closed-form derivatives. h is the derivative of the
    concave dual in λ, so its root is λ*. The bracket is [lam_floor, lam_hi]: h(lam_hi) <= 0 by an
    analytic bound; below lam_floor every Q_λ equals the λ -> 0 limit to float precision, so
    h(lam_floor) <= 0 means the budget covers the argmin set and 0.0 is returned. Newton steps that
    leave the bracket are replaced by bisection.
    """
    t_lo, t_hi = math.log(lam_floor), math.log(lam_hi)
    if h(lam_floor)[0] <= 0.0:
        return 0.0
    t = math.log(min(max(lam_guess, lam_floor), lam_hi))
    last_step = math.inf
    for _ in range(400):
        val, slope = h(math.exp(t))
        if val == 0.0:
            return math.exp(t)
        if val > 0.0:
            t_lo = t
        else:
            t_hi = t
        step = -val / slope if slope < 0.0 else math.inf
        if abs(step) <= 1e-11 * max(1.0, abs(t)):             # Newton converged (quadratically)
            return math.exp(t + step)
        # bisect when Newton leaves the bracket or stalls (e.g. h is rounding noise for tiny ρ)
        if not (t_lo < t + step < t_hi) or abs(step) > 0.5 * last_step:
            step = 0.5 * (t_lo + t_hi) - t
        last_step = abs(step)
        t += step
        if t_hi - t_lo <= 1e-13 * max(1.0, abs(t)):
            return math.exp(t)
    raise RuntimeError(f"lambda search did not converge: bracket [{math.exp(t_lo)}, {math.exp(t_hi)}]")


def _min_gap(d, sup, rows):
    """Smallest positive shifted reward over the given rows (the gap above the argmin set)."""
    pos = np.where(sup & (d > 0) & rows[:, None], d, np.inf)
    return float(pos.min())


def _edge_solutions(r, p, w, rho, f):
    """Closed-form results for ρ = 0 (mean, λ* = inf) and ρ >= D_f(argmin) (min, λ* = 0), else None.

    Also returns (sup, rmin, d, p_argmin, argmin mask) for the interior solvers.
    """
    sup, rmin, d = _support_shift(r, p)
    argmin = sup & (d == 0)                                  # exact ties count as the argmin set
    rest = (p * (sup & ~argmin)).sum(axis=1)                 # mass off the argmin set
    p_a = np.where(rest == 0, 1.0, (p * argmin).sum(axis=1))  # (m,) > 0; exactly 1 if r is constant
    if rho == 0.0:
        return DROResult(float(w @ (p * r).sum(axis=1)), math.inf, p.copy(), None), None
    # D_f(π restricted to the argmin set || π): the largest divergence reached along λ -> 0
    d0 = {"kl": -np.log(p_a), "chi2": 1.0 / p_a - 1.0, "tv": 1.0 - p_a}[f]
    if rho >= float(w @ d0):
        q = p * argmin / p_a[:, None]
        return DROResult(float(w @ rmin), 0.0, q, -rmin), None
    return None, (sup, rmin, d, p_a, argmin)


def _kl_of_tilt(x, p, pe, z):
    """KL(Q||π) and Var_Q(x) per row for Q = π e^{-x}/Z, x >= 0, centred at c = x at argmax Q.

    KL = -E_Q(x - c) - log E_π e^{-(x - c)}, with log E_π e^{-(x - c)} = log1p(Σ π expm1(c - x))
    and each π expm1(c - x) formed as exp(log π + c - x) - π when c - x > 1 (<= 0 in the exponent:
    Q_j <= Q_c); where that sum is near -1 (Q piled on an entry of tiny π) the plain log-sum-exp is
    used instead. About the bulk of Q nothing cancels: with the argmin shift (c = 0) a tilt that
    keeps Q near π but x ~ 300 on the bulk lost ε·300/KL of KL's digits (3e-5 at ρ = 1e-9).
    """
    q = pe / z[:, None]
    c = np.take_along_axis(x, np.argmax(q, axis=1)[:, None], axis=1)  # (m, 1)
    y = x - c
    m1 = (q * y).sum(axis=1)
    m2 = (q * y * y).sum(axis=1)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        far = -y > 1.0
        t = np.where(far, np.exp(np.log(p) - y) - p, p * np.expm1(np.where(far, 0.0, -y)))
        t = np.where(p > 0, t, 0.0).sum(axis=1)
        # far from Z_c = 1 (Q piled on an entry of tiny π) the direct log-sum-exp is the accurate one
        a = np.where(p > 0, np.log(p) - y, -np.inf)
        top = a.max(axis=1)
        direct = top + np.log(np.exp(a - top[:, None]).sum(axis=1))
    log_zc = np.where(t > -0.5, np.log1p(np.maximum(t, -0.5)), direct)
    kl = np.maximum(-m1 - log_zc, 0.0)
    return kl, np.maximum(m2 - m1 * m1, 0.0)


def _kl_interior(r, p, w, rho, sup, rmin, d):
    """KL dual for 0 < ρ < E_x[-log π_x(argmin)]: λ* solves E_x KL(Q_λ||π) = ρ, or None (λ* ~ 0).

    Solved for the rewards in units of their spread (d/spread in [0, 1], λ/spread), which the
    problem is invariant to, so rewards of any scale (1e-300 or 1e4) meet the same λ bracket.
    """
    active = w > 0
    spread = float(d[active].max())
    d = d / spread
    dw, pw, ww = d[active], p[active], w[active]            # prompts with p(x) = 0 cannot matter

    def h(lam):
        # KL(Q_λ||π) = -E_Q x - log Z and d KL / d log λ = -Var_Q(x), x = d/λ, per prompt
        _, pe, z, x = _tilt(dw, pw, lam)
        kl, var_q = _kl_of_tilt(x, pw, pe, z)
        return float(ww @ kl) - rho, -float(ww @ var_q)

    mean = (pw * dw).sum(axis=1)
    var = float(ww @ (pw * (dw - mean[:, None]) ** 2).sum(axis=1))  # in units of spread²
    lam_hi = 2.0 / math.sqrt(8.0 * rho)                       # KL(Q_λ||π) <= spread²/(8λ²) (Hoeffding)
    lam_guess = math.sqrt(var / (2.0 * rho))                  # Remark 3.3's λ
    # below gap/800 every e^{-d/λ} off the argmin is 0 in float64; 1e-300 keeps log λ finite when the
    # gap is that small relative to the spread (the value then differs from the λ = 0 edge by < 1e-299)
    lam_floor = max(_min_gap(d, sup, active) / 800.0, 1e-300)
    lam_n = _find_lambda(h, lam_guess, lam_hi, lam_floor)
    if lam_n == 0.0:
        return None
    log_z, pe, z, _ = _tilt(d, p, lam_n)
    er = rmin - spread * (lam_n * log_z)                      # (m,) entropic risk per prompt
    q = pe / z[:, None]
    lam = spread * lam_n
    return DROResult(float(w @ er - spread * (lam_n * rho)), lam, q, -lam - er)


def _chi2_inner(d, p, lam, order, rank):
    """Per-prompt penalized problem min_Q E_Q d + λ χ²(Q||π) in closed form (piecewise linear).

    Optimal ratio L = (u - d)_+ / (2λ) with E_π L = 1; u solves E_π (u - d)_+ = 2λ exactly by sorting.
    On the active set A (the sorted positions <= j, d_(j) the last breakpoint below u), with
    c = π(A), t = π(not A) and g_j = E_π (d_(j) - d)_+:
      u - d_(j) = (2λ - g_j) / c,    Q = π L = π (1 - g_j/(2λ)) / c + π (d_(j) - d) / (2λ) on A,
      χ²(Q||π) = t/c + Σ_A π (d - m_A)² / (4λ²),    m_A = E_π[d | A],
      d χ² / d log λ = -2 Σ_A π (d - m_A)² / (4λ²) = 2 t/c - 2 χ².
    Every term is a sum of nonnegative parts (g_j by its recurrence g_k = g_{k-1} + c_{k-1}
    (d_(k) - d_(k-1)), m_A about the weighted median of A), so π entries down to 1e-300 and
    2λ far below the spread of d keep full relative precision: nothing forms u - d from u itself.
    ``rank`` is the inverse permutation of ``order``. Returns u - 2λ (m,), Q (m, n), χ² (m,), slope (m,).
    """
    m_rows, n = d.shape
    ds = np.take_along_axis(d, order, axis=1)                 # (m, n) ascending on the support
    ps = np.take_along_axis(p, order, axis=1)
    c = np.cumsum(ps, axis=1)
    # mass strictly after position j, summed from the right so it is exactly 0 at the end
    tail = np.concatenate([np.cumsum(ps[:, :0:-1], axis=1)[:, ::-1], np.zeros((m_rows, 1))], 1)
    # breakpoints g_k = E_π (d_(k) - d)_+, nondecreasing; off-support entries (sorted last) never are
    steps = c[:, :-1] * np.diff(ds, axis=1)
    g = np.concatenate([np.zeros((m_rows, 1)), np.cumsum(np.maximum(steps, 0.0), axis=1)], 1)
    g = np.where(ps > 0, g, np.inf)
    two_lam = 2.0 * lam
    j = (g <= two_lam).sum(axis=1) - 1                        # last breakpoint below the root
    take = lambda a: np.take_along_axis(a, j[:, None], 1)[:, 0]  # noqa: E731
    cj, tj, gj, dj = take(c), take(tail), take(g), take(ds)
    act = (rank <= j[:, None]) & (p > 0)                      # (m, n) in the caller's layout
    # m_A about a pivot a = the weighted median of A, so Σ π (d - a) has no large cancellation
    k_med = np.minimum((c < 0.5 * cj[:, None]).sum(axis=1), j)
    a = np.take_along_axis(ds, k_med[:, None], 1)             # (m, 1)
    da = np.where(act, d - a, 0.0)
    m_a = (p * da).sum(axis=1) / cj                           # m_A - a
    z = np.where(act, np.sqrt(p) * ((da - m_a[:, None]) / two_lam), 0.0)
    spread_term = (z * z).sum(axis=1)                          # Σ_A π (d - m_A)² / (4λ²)
    chi2 = tj / cj + spread_term
    base = np.maximum(1.0 - gj / two_lam, 0.0) / cj            # L at d = d_(j)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        # π (d_(j) - d)/(2λ) <= g_j/(2λ) <= 1 on A: as π·quotient (no subnormal product π·d at
        # π ~ 1e-124, d ~ 1e-193), or as (π·difference)/(2λ) where the quotient alone overflows
        rise = (dj[:, None] - d) / two_lam
        rise = np.where(np.isfinite(rise), p * rise, (p * (dj[:, None] - d)) / two_lam)
        q = np.where(act, p * base[:, None] + rise, 0.0)
    v = (two_lam - gj) / cj - two_lam + dj                     # u - 2λ
    return v, q, chi2, -2.0 * spread_term


def _chi2_interior(r, p, w, rho, sup, rmin, d, p_a):
    """χ² dual for 0 < ρ < E_x[1/π_x(argmin) - 1]: λ* solves E_x χ²(Q_λ||π) = ρ."""
    active = w > 0
    # off-support entries go last in each row so they never become breakpoints
    order = np.argsort(np.where(sup, d, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(d.shape[1])[None, :].repeat(d.shape[0], 0), axis=1)

    # in units of the reward spread (as in _kl_interior): d/spread in [0, 1], λ/spread
    spread = float(d[active].max())
    d = d / spread
    da, pa, oa, ra, wa = d[active], p[active], order[active], rank[active], w[active]

    def h(lam):
        _, _, chi2, slope = _chi2_inner(da, pa, lam, oa, ra)
        return float(wa @ chi2) - rho, float(wa @ slope)

    mean = (p * d).sum(axis=1)
    var = float(w @ (p * (d - mean[:, None]) ** 2).sum(axis=1))   # in units of spread²
    lam_hi = 2.0 * max(0.5, 1.0 / (4.0 * math.sqrt(rho)))      # all active: χ² = Var/(4λ²)
    lam_guess = math.sqrt(var / (4.0 * rho))
    gaps = np.where(sup & (d > 0), d, np.inf).min(axis=1)             # (m,)
    # below this only the argmin set is active (2λ/π(A) < gap) and χ² equals its λ -> 0 limit
    lam_floor = max(0.25 * float(np.min(np.where(active & np.isfinite(gaps), p_a * gaps, np.inf))),
                    1e-300)
    lam_n = _find_lambda(h, lam_guess, lam_hi, lam_floor)
    if lam_n == 0.0:
        return None
    v, q, chi2, _ = _chi2_inner(d, p, lam_n, order, rank)
    inner = rmin + spread * ((q * d).sum(axis=1) + lam_n * chi2)   # E_Q r + λ χ² per prompt
    return DROResult(float(w @ inner - spread * (lam_n * rho)), spread * lam_n, q, -rmin - spread * v)


def _tv_exact(r, p, w, rho, sup, rmin, d, argmin, p_a):
    """TV dual, exact: sup_λ E_x E_π min(r, min r + λ) - λρ is concave piecewise linear in λ.

    Its slope is E_x π(d > λ) - ρ; λ* is the smallest breakpoint d where the mass strictly above
    falls to <= ρ. Q* moves that mass (and a fraction α of the mass tied at λ*) onto the argmin set.
    """
    sel = sup & (w[:, None] > 0)
    b, inv = np.unique(d[sel], return_inverse=True)          # ascending breakpoints (0 first)
    mass = np.bincount(inv, weights=(w[:, None] * p)[sel], minlength=b.size)
    above = np.maximum(mass.sum() - np.cumsum(mass), 0.0)     # mass strictly above each breakpoint
    above[-1] = 0.0                                           # nothing is above the largest reward
    k = int(np.argmax(above <= rho))
    lam = float(b[k])
    alpha = (rho - above[k]) / mass[k]                        # fraction of the tied mass to move
    moved = np.where(d > lam, 1.0, np.where(d == lam, alpha, 0.0)) * (p > 0) * ~argmin  # (m, n)
    shift = (p * moved).sum(axis=1)                           # mass leaving each prompt's tail
    q = p * (1.0 - moved) + shift[:, None] * p * argmin / p_a[:, None]
    value = float(w @ (rmin + (p * np.minimum(d, lam)).sum(axis=1)) - lam * rho)
    eta = -rmin - lam / 2.0
    for _ in range(8 if lam > 0 else 0):    # round η* up so (-min r - η*)/λ <= 1/2 holds in floats
        out = (-rmin - eta) / lam > 0.5
        if not out.any():
            break
        eta[out] = np.nextafter(eta[out], np.inf)
    return DROResult(value, lam, q, eta)


def kl_dro_dual(rewards, pi, rho, px=None) -> DROResult:
    """KL-robust value inf {E_x E_Q r : E_x KL(Q(.|x)||π(.|x)) <= ρ} by its one-dimensional dual.

    Formula: sup_{λ>=0} -λ E_x log E_π e^{-r/λ} - λρ = sup_λ E_x ER_λ(r(x,.)) - λρ, with
    Q*(y|x) ∝ π(y|x) e^{-r(x,y)/λ*} (one λ* for all prompts). The derivative of the dual in λ is
    E_x KL(Q_λ||π) - ρ, so λ* is its root: safeguarded Newton in log λ (d KL/d log λ =
    -Var_Q(r/λ)) started at Remark 3.3's λ = sqrt(E_x Var(r|x)/(2ρ)), bracketed above by the
    Hoeffding bound KL(Q_λ||π) <= (max r - min r)²/(8λ²). About 4-6 passes over the (m, n) arrays.
    Edge cases (exact): ρ = 0 -> E r, λ* = inf, Q* = π; ρ >= E_x[-log π_x(argmin r)] -> E_x min r,
    λ* = 0, Q* = π restricted to the argmin set and renormalized.
    Symbols: r -> ``rewards`` (m, n) or (n,), π -> ``pi`` (same shape, rows sum to 1),
    ρ -> ``rho`` in [0, inf], p(x) -> ``px`` (m,), uniform when None.
    Returns DROResult(value, lam=λ*, q=Q*, eta=η* = -λ* - ER_λ*).
    Paper: FRPO Lemma 3.1, Eq. (3.3); Remark 3.2 (ρ = 0).
    """
    r, p, w, rho, squeeze = _prepare(rewards, pi, rho, px)
    edge, aux = _edge_solutions(r, p, w, rho, "kl")
    res = edge or _kl_interior(r, p, w, rho, *aux[:3])
    if res is None:                                           # budget equals the λ -> 0 limit
        res = _edge_solutions(r, p, w, math.inf, "kl")[0]
        res = DROResult(res.value, 0.0, res.q, res.eta)
    q, eta = _shape_out(res.q, res.eta, squeeze)
    return DROResult(res.value, res.lam, q, eta)


def fdiv_dro_dual(rewards, pi, rho, f: str, px=None) -> DROResult:
    """f-divergence robust value inf {E_x E_Q r : E_x D_f(Q(.|x)||π(.|x)) <= ρ} by Lemma 3.1's dual.

    Formula: sup_{λ>=0, η} -λρ - E_x η(x) - λ E_x E_π f*((-r - η(x))/λ) (Eq. 3.2). For fixed λ the
    η(x) problems separate and are solved in closed form; the remaining concave function of λ has
    derivative E_x D_f(Q_λ||π) - ρ:
      kl:   η = -λ - ER_λ, Q ∝ π e^{-r/λ} (same solver as ``kl_dro_dual``);
      chi2: Q = π (u - r)_+/(2λ) with E_π (u - r)_+ = 2λ (exact by sorting); λ* by safeguarded
            Newton in log λ;
      tv:   value(λ) = E_x E_π min(r, min r + λ) - λρ, λ* = an exact breakpoint (no iteration);
            Q* moves mass ρ from the top rewards onto the argmin set.
    Edge cases: ρ = 0 -> E r (λ* = inf); ρ >= E_x D_f(π|argmin || π) -> E_x min r (λ* = 0), where
    D_f(π|argmin||π) is -log π(A) (kl), 1/π(A) - 1 (chi2), 1 - π(A) (tv).
    Symbols: r -> ``rewards``, π -> ``pi``, ρ -> ``rho``, f -> ``f`` in {"kl","chi2","tv"},
    p(x) -> ``px``. Returns DROResult(value, lam, q, eta).
    Paper: FRPO Lemma 3.1, Eq. (3.2).
    Deviation: Q is restricted to π's support (the lemma's L = Q/π). For tv this matters: without it
    ½||Q - π||_1 would also allow moving mass to responses π never produces.
    """
    check_choice("f", f, F_DIVERGENCES)
    if f == "kl":
        return kl_dro_dual(rewards, pi, rho, px)
    r, p, w, rho, squeeze = _prepare(rewards, pi, rho, px)
    edge, aux = _edge_solutions(r, p, w, rho, f)
    if edge is not None:
        res = edge
    else:
        sup, rmin, d, p_a, argmin = aux
        if f == "chi2":
            res = _chi2_interior(r, p, w, rho, sup, rmin, d, p_a)
            if res is None:
                res = _edge_solutions(r, p, w, math.inf, f)[0]
        else:
            res = _tv_exact(r, p, w, rho, sup, rmin, d, argmin, p_a)
    q, eta = _shape_out(res.q, res.eta, squeeze)
    return DROResult(res.value, res.lam, q, eta)


# ----------------------------------------------------------------------------------------------
# primal reference (cvxpy; independent of everything above except input validation)
# ----------------------------------------------------------------------------------------------
# CLARABEL tolerances tightened from the defaults (1e-8) so the reference is ~100x more exact than
# the test tolerance; "optimal_inaccurate" then still means the default 1e-8 level was met.
_TIGHT = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-8,
              reduced_tol_gap_abs=1e-8, reduced_tol_gap_rel=1e-8, reduced_tol_feas=1e-8,
              reduced_tol_ktratio=1e-6)
# CLARABEL stalls ("InsufficientProgress") on some exponential-cone instances with n >~ 1000 at its
# default step fraction 0.99; 0.9 solved every stalled instance measured (n = 1000, 3000, ρ in
# 0.01..3), so it goes first. The other attempts are fallbacks: (parametrization, settings).
_ATTEMPTS = (("q", dict(_TIGHT, max_step_fraction=0.9)), ("q", dict(_TIGHT, max_step_fraction=0.8)),
             ("q", _TIGHT), ("ratio", dict(_TIGHT, max_step_fraction=0.9)), ("q", {}))


def _primal_problem(cp, form, f, r, p, w, rho):
    """cvxpy problem for the primal in Q (form "q") or in the likelihood ratio L = Q/π ("ratio")."""
    m, n = r.shape
    sup = p > 0
    p_safe = np.where(sup, p, 1.0)
    centre = (p * r).sum(axis=1)                              # (m,)
    rc = np.where(sup, r - centre[:, None], 0.0)              # (m, n)
    var = cp.Variable((m, n), nonneg=True)
    if form == "q":
        q_expr, cons = var, [cp.sum(var, axis=1) == 1]
        if (~sup).any():
            cons.append(cp.multiply(var, (~sup).astype(float)) == 0)
        if f == "kl":
            div = cp.sum(cp.rel_entr(var, p_safe), axis=1)
        elif f == "chi2":
            div = cp.sum(cp.multiply(1.0 / p_safe, cp.square(var - p)), axis=1)
        else:
            div = 0.5 * cp.sum(cp.abs(var - p), axis=1)
    else:                                                     # L = Q/π, Q = π L (0 off the support)
        q_expr = cp.multiply(p, var)
        cons = [cp.sum(q_expr, axis=1) == 1]
        gen = {"kl": -cp.entr(var), "chi2": cp.square(var - 1), "tv": 0.5 * cp.abs(var - 1)}[f]
        div = cp.sum(cp.multiply(p, gen), axis=1)
    budget = None
    if not math.isinf(rho):
        budget = w @ div <= rho
        cons.append(budget)
    objective = cp.Minimize(cp.sum(cp.multiply(w[:, None] * rc, q_expr)))
    return cp.Problem(objective, cons), q_expr, budget, float(w @ centre)


def fdiv_dro_primal(rewards, pi, rho, f: str, px=None, solver: str = "CLARABEL") -> DROResult:
    """Reference solve of inf {E_x E_Q r : Q(.|x) in the simplex on supp π(.|x), E_x D_f(Q||π) <= ρ}.

    Formula: minimize Σ_x p(x) Σ_y Q(y|x) r(x,y) s.t. Σ_y Q(y|x) = 1, Q >= 0, Q = 0 off supp π,
    Σ_x p(x) Σ_y π f(Q/π) <= ρ, with kl: rel_entr(Q, π) (exponential cone), chi2: (Q - π)²/π,
    tv: |Q - π|/2. λ is the dual variable of the budget constraint.
    Symbols: as ``fdiv_dro_dual``; ``solver`` is passed to cvxpy (CLARABEL handles the exp cone).
    Paper: FRPO Eq. (3.1) inner problem / Lemma 3.1 primal.
    Deviation: ρ = 0 is answered without a solver (Q = π is the only feasible point; Slater fails).
    Rewards are centred per prompt inside the solve (a constant per prompt does not move the argmin)
    to keep the interior-point tolerances relative to the reward spread. With CLARABEL, stalled
    solves are retried with other settings / the ratio parametrization L = Q/π (``_ATTEMPTS``).
    """
    import cvxpy as cp

    check_choice("f", f, F_DIVERGENCES)
    r, p, w, rho, squeeze = _prepare(rewards, pi, rho, px)
    if rho == 0.0:
        q = p.copy()
        return DROResult(float(w @ (p * r).sum(axis=1)), math.inf, q[0] if squeeze else q, None)
    attempts = _ATTEMPTS if solver == "CLARABEL" else (("q", {}),)
    failures = []
    for form, opts in attempts:
        prob, q_expr, budget, offset = _primal_problem(cp, form, f, r, p, w, rho)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                prob.solve(solver=solver, **opts)
        except cp.error.SolverError as err:
            failures.append(f"{form}/{sorted(opts)[:1]}: {err}")
            continue
        ok = ("optimal", "optimal_inaccurate") if opts else ("optimal",)
        if prob.status in ok:
            q = np.clip(np.asarray(q_expr.value, dtype=np.float64), 0.0, None)
            lam = 0.0 if budget is None else float(max(budget.dual_value, 0.0))
            return DROResult(float(prob.value + offset), lam, q[0] if squeeze else q, None)
        failures.append(f"{form}: status {prob.status}")
    raise RuntimeError(f"cvxpy/{solver} failed on every attempt for f={f!r}, rho={rho}: {failures}")


def kl_dro_primal(rewards, pi, rho, px=None, solver: str = "CLARABEL") -> DROResult:
    """Reference cvxpy solve of the KL-robust value (see ``fdiv_dro_primal`` with f = "kl").

    Formula: minimize E_x E_Q r s.t. Q rows on the simplex over supp π, E_x KL(Q||π) <= ρ.
    Paper: FRPO Eq. (3.1) inner problem, checked against Lemma 3.1's dual (``kl_dro_dual``).
    """
    return fdiv_dro_primal(rewards, pi, rho, "kl", px=px, solver=solver)
