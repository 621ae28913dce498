"""Constrained-SFT per-token objective and the Theorem 4.2 robustness material, float64 numpy.

The CSFT+PA paper ("the seed"; docs/theory.md §2). CSFT (Qi et al. 2024)
penalizes each token through Δ_t = log π_θ(y_t) − log π_aligned(y_t):
    ℓ_t = −(2/β_t) log σ(β_t Δ_t),
whose gradient −2(1 − σ(β_t Δ_t)) ∇log π_θ(y_t) is that of the seed's weighted NLL −w_t log π_θ(y_t)
with the weight w_t = 2(1 − σ(β_t Δ_t)) detached (Eq. 2–3 of the seed). Values differ; gradients
agree.

Theorem 4.2 of the seed claims ‖θ^{*,ε} − θ*‖ ≤ εG/L from an L-Lipschitz gradient; that is false
(an upper bound on ‖∇L‖ bounds nothing from above). The correct statement needs μ-strong convexity:
‖θ^{*,ε} − θ*‖ ≤ εG/μ. :func:`theorem42_counterexample` and :func:`check_corrected_bound` make both
points concrete.

Notation → arguments: Δ → ``delta``, β → ``beta``, T → ``T`` (sequence length), L → ``L``,
μ → ``mu``, ε → ``eps``, G → ``G`` (gradient-perturbation size, not a group size here).
Log-sigmoids are evaluated with ``np.logaddexp`` (log σ(x) = −logaddexp(0, −x)), so |βΔ| up to
1e300 stays finite.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "csft_token_objective",
    "csft_token_weight",
    "csft_beta_schedule",
    "Theorem42Counterexample",
    "theorem42_counterexample",
    "check_corrected_bound",
]


def _delta_beta(delta, beta):
    d = np.asarray(delta, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError(
            f"delta must be finite (log pi_theta - log pi_aligned), got "
            f"{float(d.ravel()[~np.isfinite(d.ravel())][0])}; clamp log-probabilities before "
            "subtracting (a token with probability 0 under either model gives +-inf)"
        )
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(
            f"beta must be finite and > 0 (per-token CSFT temperature), got {beta}; use "
            "csft_beta_schedule(T) for Qi et al.'s values (0.5, 2, 0.1)"
        )
    try:
        np.broadcast_shapes(d.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"delta and beta must broadcast, got shapes {d.shape} and {b.shape}; pass beta as a "
            "float or with the token axis last, e.g. csft_beta_schedule(delta.shape[-1])"
        ) from None
    return d, b


def csft_token_objective(delta, beta) -> np.ndarray:
    """Per-token CSFT loss (Qi et al.): ℓ_t = −(2/β_t) log σ(β_t Δ_t) = (2/β_t) log(1 + e^{−βΔ}).

    dℓ_t/dΔ_t = −2(1 − σ(β_t Δ_t)) = −:func:`csft_token_weight`; as β → 0,
    ℓ_t = 2 log 2/β − Δ_t + r with 0 ≤ r ≤ β Δ_t²/4, i.e. the NLL −log π_θ(y_t) up to terms
    constant in θ.
    Symbols → arguments: Δ_t = log π_θ(y_t) − log π_aligned(y_t) → ``delta``; β_t → ``beta``
    (float or array broadcasting against ``delta``, > 0).
    Paper: Qi et al. (2024) token-wise constrained objective, cited as Eq. 2 of the CSFT+PA seed.
    Deviation: the seed writes only the weighted-NLL form (see :func:`csft_token_weight`).
    """
    d, b = _delta_beta(delta, beta)
    return (2.0 / b) * np.logaddexp(0.0, -b * d)


def csft_token_weight(delta, beta) -> np.ndarray:
    """Detached CSFT token weight: w_t = 2(1 − σ(β_t Δ_t)) = 2σ(−β_t Δ_t) ∈ (0, 2).

    −w_t log π_θ(y_t) with w_t treated as a constant has the gradient of
    :func:`csft_token_objective` (not its value). |w_t − 1| ≤ β_t|Δ_t|/2, so w_t → 1 (plain NLL) as
    β → 0. Computed as 2 exp(−logaddexp(0, β_t Δ_t)).
    Symbols → arguments: Δ_t → ``delta``, β_t → ``beta``.
    Paper: CSFT+PA seed, Eq. 2–3 (w_t).
    Deviation: none.
    """
    d, b = _delta_beta(delta, beta)
    return 2.0 * np.exp(-np.logaddexp(0.0, b * d))


def csft_beta_schedule(
    T: int, first: float = 0.5, early: float = 2.0, rest: float = 0.1
) -> np.ndarray:
    """Qi et al.'s per-position CSFT temperatures: β_1 = first, β_2..5 = early, β_{t≥6} = rest.

    Positions are 1-based response-token positions; returns shape (T,), float64.
    Symbols → arguments: T → ``T`` (≥ 0), β_1 → ``first``, β_{2..5} → ``early``, β_{≥6} → ``rest``.
    Paper: Qi et al. (2024) as summarized in docs/theory.md §2 (the CSFT+PA seed omits the values).
    Deviation: none.
    """
    if isinstance(T, bool) or not float(T).is_integer() or int(T) < 0:
        raise ValueError(
            f"T must be an integer >= 0 (number of response tokens), got {T}; "
            "pass the sequence length, e.g. T=logp.shape[-1]"
        )
    for name, value in (("first", first), ("early", early), ("rest", rest)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(
                f"{name} must be a finite float > 0 (a CSFT temperature), got {value}; "
                "Qi et al. use first=0.5, early=2.0, rest=0.1"
            )
    position = np.arange(1, int(T) + 1)  # 1-based
    return np.where(position == 1, first, np.where(position <= 5, early, rest)).astype(np.float64)


class Theorem42Counterexample(NamedTuple):
    """μ-strongly convex quadratic whose perturbed minimizer moves εG/μ, beyond the claimed εG/L."""

    hessian: np.ndarray  # (2, 2) diag(L, mu)
    g: np.ndarray  # (2,) perturbation direction, ‖g‖ = G, along the μ-eigenvector
    theta_star: np.ndarray  # (2,) unperturbed minimizer (0)
    theta_eps: np.ndarray  # (2,) perturbed minimizer
    gradient_perturbation: float  # sup_θ ‖∇L^ε(θ) − ∇L(θ)‖ = εG
    displacement: float  # ‖θ^ε − θ*‖
    claimed_bound: float  # εG/L (Theorem 4.2 as stated)
    corrected_bound: float  # εG/μ


def _positive(name: str, value) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}; pass e.g. {name}=1.0")
    return v


def theorem42_counterexample(L, mu, eps, G) -> Theorem42Counterexample:
    """Counterexample to Theorem 4.2: L(θ) = ½ θᵀHθ, H = diag(L, μ), perturbed by ε gᵀθ, g = (0, G).

    The gradient perturbation is ε g (size εG everywhere) and the gradient is L-Lipschitz, as the
    theorem assumes. θ* = 0 and θ^ε = −ε H⁻¹ g = (0, −εG/μ), so ‖θ^ε − θ*‖ = εG/μ > εG/L when μ < L:
    the claimed bound fails by the factor L/μ; the corrected bound εG/μ holds with equality.
    Symbols → arguments: L → ``L``, μ → ``mu`` (0 < μ < L), ε → ``eps`` > 0, G → ``G`` > 0.
    Paper: CSFT+PA seed, Theorem 4.2 (Robustness Bound).
    Deviation: the theorem is false as stated (docs/theory.md §2); this returns the counterexample and
    the corrected bound εG/μ for a μ-strongly convex loss.
    """
    L, mu, eps, G = (_positive(n, v) for n, v in (("L", L), ("mu", mu), ("eps", eps), ("G", G)))
    if not mu < L:
        raise ValueError(
            f"mu must be < L for a counterexample (0 < mu < L), got mu={mu}, L={L}; "
            "pass e.g. L=10.0, mu=1.0"
        )
    H = np.diag([L, mu])
    g = np.array([0.0, G])
    theta_star = np.zeros(2)
    theta_eps = np.linalg.solve(H, -eps * g)  # ∇(½θᵀHθ + ε gᵀθ) = 0
    return Theorem42Counterexample(
        hessian=H,
        g=g,
        theta_star=theta_star,
        theta_eps=theta_eps,
        gradient_perturbation=float(eps * np.linalg.norm(g)),
        displacement=float(np.linalg.norm(theta_eps - theta_star)),
        claimed_bound=eps * G / L,
        corrected_bound=eps * G / mu,
    )


def check_corrected_bound(rng: np.random.Generator, dim: int, n_trials: int) -> float:
    """Largest ratio ‖θ^ε − θ*‖ / (εG/μ) over random strongly convex quadratics (≤ 1 by the bound).

    Each trial draws H = Q diag(λ) Qᵀ with Q Haar-orthogonal and eigenvalues λ ∈ [μ, L] (log-uniform
    spread, μ = min λ), θ* ~ N(0, I), a perturbation direction g uniform on the sphere of radius
    G, and ε; the loss ½(θ − θ*)ᵀH(θ − θ*) perturbed by ε gᵀθ has θ^ε = θ* − ε H⁻¹g (solved, not
    formed from eigenvalues). μ-strong convexity gives ‖θ^ε − θ*‖ ≤ εG/μ, equality when g is a
    μ-eigenvector (always in dimension 1, where the returned ratio is 1 up to float64 round-off).
    Symbols → arguments: random generator → ``rng``; dimension → ``dim`` ≥ 1; ``n_trials`` ≥ 1.
    Paper: CSFT+PA seed, Theorem 4.2 (corrected form, docs/theory.md §2).
    Deviation: the corrected bound εG/μ replaces the seed's εG/L.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "pass np.random.default_rng(seed)"
        )
    for name, value in (("dim", dim), ("n_trials", n_trials)):
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}; pass e.g. {name}=3")
    d, n = int(dim), int(n_trials)
    q, r = np.linalg.qr(rng.standard_normal((n, d, d)))  # (n, d, d)
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar sign fix
    mu = rng.uniform(0.1, 1.0, size=n)  # (n,)
    L = mu * np.exp(rng.uniform(0.0, np.log(100.0), size=n))  # condition number up to 100
    lam = np.exp(rng.uniform(np.log(mu)[:, None], np.log(L)[:, None], size=(n, d)))  # (n, d)
    lam[:, 0] = mu  # make μ the exact smallest eigenvalue
    H = np.einsum("nij,nj,nkj->nik", q, lam, q)  # (n, d, d)
    G = rng.uniform(0.1, 10.0, size=n)
    eps = rng.uniform(1e-3, 1.0, size=n)
    g = rng.standard_normal((n, d))
    g *= (G / np.linalg.norm(g, axis=1))[:, None]  # ‖g‖ = G
    theta_star = rng.standard_normal((n, d))
    # ∇[½(θ − θ*)ᵀH(θ − θ*) + ε gᵀθ] = 0  ⇒  H(θ^ε − θ*) = −ε g
    theta_eps = theta_star + np.linalg.solve(H, (-eps[:, None] * g)[..., None])[..., 0]
    ratio = np.linalg.norm(theta_eps - theta_star, axis=1) / (eps * G / mu)
    return float(ratio.max())
