"""Every loss and advantage of the toolkit, as pure torch functions (the one home; toy/ and llm/ import it).

Conventions (one notation table, see README):
  lam = λ (entropic-risk temperature), beta = β (KL or CSFT coefficient), group_size = G,
  eps = PPO clip ε. Tensors: ``logp``/``old_logp``/``ref_logp``/``mask`` are (B, T) per-token
  log-probabilities of the sampled tokens and a 0/1 response mask; ``rewards``/``advantages``/
  ``group_ids`` are (B,). Losses return ``(loss, metrics)``: a scalar tensor to *minimize* and a dict of
  detached Python floats under namespaced keys (``loss/``, ``frpo/``, ``csft/``, ``pa/``).

Functions work in any floating dtype; they compute in the dtype of their inputs (use float64 for
checks), except ``frpo_advantages``, which computes in float64 and returns the input dtype. Rewards
are laid out as contiguous groups of ``group_size`` for the advantage functions, and carried with
explicit integer ``group_ids`` (any row order) for the literal FRPO surrogate.

Inputs are checked once per public call (``theory._validate``): one ValueError naming the argument,
the value, the allowed range and the fix for NaN/+inf, "log-probs" above 0 on response tokens
(a rounding slack of 1e-3, 0.125 for 16-bit dtypes), non-tensors, integer dtypes, mismatched
shapes, masks outside [0, 1], negative ε/β. The checks are a multiply and a max per tensor and one
host sync (~0.1 ms for three 64×512 tensors on one CPU core, against ~2-4 ms for the loss itself).

Length (~680 lines, past the ~400 guide): this is the one home of every loss by design; its
sections (validation, advantages, aggregation/KL, GRPO/FRPO, CSFT/PA, sequence KL) do not depend
on each other beyond the validation helpers.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from theory._validate import (check_finite_tensor, check_int, check_logprobs, check_mask,
                              check_scalar, check_tensor)

Tensor = torch.Tensor

SCALES = ("lambda", "one", "max1")
AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_sum_const")
CSFT_FORMS = ("sigmoid", "weighted_nll")


# ----------------------------------------------------------------------------------------------
# validation (one clear error per bad input: the argument, the value, the allowed range, the fix)
# ----------------------------------------------------------------------------------------------
def _check_lam(lam: float, *, allow_inf: bool = True) -> float:
    rng = "(0, inf]" if allow_inf else "(0, inf)"
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam={lam!r} is not a number; allowed: a float in {rng}. Fix: pass e.g. "
                         "lam=1.0") from None
    if math.isinf(lam) and lam > 0 and not allow_inf:
        raise ValueError(
            "lam=inf is outside the allowed range (0, inf) of frpo_loss: the literal surrogate "
            "−λ log Z̃ has no λ = inf form. Fix: pass a finite lam, or for the λ → inf limit (GRPO "
            "without std scaling) use grpo_loss with frpo_advantages(rewards, G, lam=math.inf)"
        )
    if math.isnan(lam) or lam <= 0:
        inf_hint = ", or math.inf for GRPO without std scaling" if allow_inf else ""
        raise ValueError(
            f"lam={lam} is outside the allowed range {rng}; λ is the entropic-risk temperature. "
            f"Fix: use a positive value (small = more robust){inf_hint}"
        )
    return lam


def _check_coef(name: str, value: float, high: float = math.inf, what: str = "") -> float:
    """A finite coefficient in [0, high] (ε, ε_high, β)."""
    return check_scalar(name, value, 0.0, high, allow_inf=False, fix=what)


def _check_group_layout(rewards: Tensor, group_size: int, name: str = "rewards") -> int:
    check_tensor(name, rewards, ndim=1, floating=True, shape_doc="of shape (B,)")
    group_size = check_int("group_size", group_size, 1, fix="pass the number of completions per "
                                                             "prompt, e.g. group_size=8")
    if rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"{name} has {rewards.shape[0]} rows, not a multiple of group_size={group_size}. Fix: "
            "lay rewards out as contiguous groups of group_size"
        )
    if not torch.isfinite(rewards).all():
        bad = rewards[~torch.isfinite(rewards)][:3].tolist()
        raise ValueError(
            f"{name} contains non-finite values {bad}; rewards must be finite. "
            "Fix: mark rows without a reward with valid=False instead of NaN"
        )
    return rewards.shape[0] // group_size


def _check_token_tensors(**tensors: Optional[Tensor]) -> tuple[int, int]:
    """Every given tensor is a floating (B, T) tensor of one shape; ``mask`` is a 0/1 (or bool) mask."""
    shape = None
    for name, t in tensors.items():
        if t is None:
            continue
        check_tensor(name, t, ndim=2, floating=name != "mask", shape_doc="of shape (B, T)")
        if shape is None:
            shape = tuple(t.shape)
        elif tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape} like the other (B, T) "
                             f"inputs. Fix: pass {name} for the same sequences and positions")
    if tensors.get("mask") is not None:
        check_mask("mask", tensors["mask"])
    return shape


def _check_no_nan(name: str, t: Tensor) -> None:
    """NaN or +inf anywhere in ``t`` is an error (-inf is allowed: a masked logit, a log 0)."""
    bad = torch.isnan(t) | (t == math.inf)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"{name} must not hold NaN or +inf (-inf is allowed); got {t[idx].item()!r} at "
                         f"index {idx}. Fix: check the model's forward pass (a NaN here is a NaN loss)")


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}. Fix: pick one; 'max1' (the default) "
                         "multiplies by max(λ, 1) like the authors' code")


def frpo_scale(lam: float, scale: str = "max1") -> float:
    """Multiplier s(λ) applied to the FRPO objective: "lambda" → λ, "one" → 1, "max1" → max(λ, 1).

    The paper's Eq. 4.1 carries the λ factor ("lambda"); its appendix drops it for the safety runs
    ("one"); the authors' public code multiplies by max(λ, 1) ("max1", our default).
    Deviation: the choice is exposed instead of fixed.
    """
    lam = _check_lam(lam)
    _check_scale(scale)
    if scale == "lambda":
        return lam
    if scale == "one":
        if math.isinf(lam):
            raise ValueError(
                "scale='one' with lam=inf gives a zero objective (the 1/λ factor vanishes). "
                "Fix: use scale='max1' or 'lambda' for the GRPO limit"
            )
        return 1.0
    return max(lam, 1.0)


# ----------------------------------------------------------------------------------------------
# advantages
# ----------------------------------------------------------------------------------------------
def group_advantages(rewards: Tensor, group_size: int, valid: Optional[Tensor] = None) -> Tensor:
    """GRPO group-centred advantages A_i = r_i − mean_{j in group} r_j, without std scaling.

    rewards (B,) in contiguous groups of ``group_size``; ``valid`` (B,) bool marks rows that have a
    reward (others get advantage 0 and are left out of their group's mean).
    Paper: FRPO Eq. 2.1 (A_i); Dr. GRPO's argument for dropping the std.
    """
    n_groups = _check_group_layout(rewards, group_size)
    group_size = int(group_size)
    r = rewards.view(n_groups, group_size)
    v = _valid_matrix(valid, rewards, n_groups, group_size)
    vf = v.to(r.dtype)
    count = vf.sum(-1, keepdim=True).clamp_min(1)
    mean = (r * vf).sum(-1, keepdim=True) / count
    return ((r - mean) * vf).reshape(-1)


def _valid_matrix(valid: Optional[Tensor], rewards: Tensor, n_groups: int, group_size: int) -> Tensor:
    if valid is None:
        return torch.ones(n_groups, group_size, dtype=torch.bool, device=rewards.device)
    if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != tuple(rewards.shape):
        got = tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__
        raise ValueError(f"valid must be a bool tensor of the rewards' shape {tuple(rewards.shape)}, got {got}. "
                         "Fix: pass one True/False per reward row (True = the row has a reward)")
    return valid.to(torch.bool).view(n_groups, group_size)


def frpo_advantages(
    rewards: Tensor,
    group_size: int,
    lam: float,
    jackknife: bool = True,
    scale: str = "max1",
    baseline: bool = True,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """On-policy closed-form FRPO advantages Â (docs/theory.md §1), so that GRPO's loss with Â has FRPO's gradient.

    With A_i = r_i − mean_j r_j, log-weights ℓ_i = −A_i/λ, p = softmax(ℓ) within the group:
      plain:     Â_i = s(λ)/λ · λ (b − G p_i)
      jackknife: Â_i = s(λ)/λ · λ (b − G w_i (1/u − (1/G) Σ_{j≠i} 1/u_{−j})),
                 u = mean_j w_j, u_{−j} = (Σ_k w_k − w_j)/(G−1)
    where b = 1 with the baseline term λ·mean(c) of Eq. 4.2 and b = 0 without it, and s(λ) is
    ``frpo_scale(lam, scale)``. Every weight is exp(ℓ_i − logsumexp) (finite for rewards up to 1e4
    and λ = 1e-4), and the differences that vanish as λ → ∞ are formed without cancellation:
    b − G p_i = Σ_j (p_j − p_i) with p_j − p_i = p_i expm1((r_i − r_j)/λ), and for the jackknife
    1 − G coef_i = G D_i − Σ_{j≠i} D^{(−j)}_i with D_i = 1 − G p_i and D^{(−j)} the same for the
    group without j (D^{(−j)}_i = (D_i − (p_j − p_i))/(1 − p_j)). Computed in float64 whatever the
    input dtype and returned in it: relative error <= 1e-12 (float64) / float32 rounding for λ from
    1e-3 to 1e8 (tested against a 50-digit reference), where the plain form lost 5x in float32 at
    λ = 1e5 and all digits by λ = 1e8.
    λ = inf returns the limit: A (plain) or A·G/(G−1) (jackknife) (requires the baseline).
    Without the baseline (b = 0) the plain coefficients are all negative (App. D: collapse); with
    the jackknife they sum to −λG but single ones can be positive (G = 2, r = (0, 2), λ = 1).

    Symbols → arguments: r → ``rewards`` (B,), G → ``group_size``, λ → ``lam``.
    Paper: FRPO Eq. 4.1–4.3 and App. D–E (jackknife). Deviation: the scale s(λ) is a choice
    (see ``frpo_scale``); rows with ``valid=False`` are excluded from their group (G becomes the
    number of valid rows; a group with a single valid row gets Â = 0).
    """
    lam = _check_lam(lam)
    _check_scale(scale)
    n_groups = _check_group_layout(rewards, group_size)
    group_size = int(group_size)
    if jackknife and group_size < 2:
        raise ValueError(
            f"group_size={group_size} is too small for the jackknife, which needs G >= 2. "
            "Fix: sample at least 2 completions per prompt or pass jackknife=False"
        )
    s = frpo_scale(lam, scale)
    v = _valid_matrix(valid, rewards, n_groups, group_size)
    out_dtype = rewards.dtype
    work = torch.float32 if rewards.device.type == "mps" else torch.float64  # MPS has no float64
    r = rewards.to(work).view(n_groups, group_size)  # float64 inside: see the docstring
    vf = v.to(r.dtype)
    g = vf.sum(-1, keepdim=True)  # (n, 1) valid count per group
    a = group_advantages(r.reshape(-1), group_size, valid).view(n_groups, group_size)

    if math.isinf(lam):
        if not baseline:
            raise ValueError(
                "baseline=False with lam=inf has no finite limit (every coefficient → −∞·λ). "
                "Fix: use a finite lam for the no-baseline ablation"
            )
        # s(λ)/λ → 1 for "lambda" and "max1" ("one" was rejected by frpo_scale)
        factor = g / (g - 1).clamp_min(1) if jackknife else torch.ones_like(g)
        adv = a * factor * (g >= 2)
        return (adv * vf).reshape(-1).to(out_dtype)

    neg_inf = torch.finfo(r.dtype).min
    logw = torch.where(v, -a / lam, torch.full_like(a, neg_inf))  # (n, G)
    lse = torch.logsumexp(logw, dim=-1, keepdim=True)  # (n, 1)
    p = torch.exp(logw - lse) * vf  # softmax over valid rows
    pair = v.unsqueeze(-1) & v.unsqueeze(1)  # [n, i, j] both valid
    # E_ij = p_j − p_i without cancellation: p_i expm1(ℓ_j − ℓ_i) with ℓ_j − ℓ_i = (r_i − r_j)/λ taken
    # from the raw rewards (|ℓ_j − ℓ_i| < 1), else the plain difference (no cancellation there)
    dl = (r.unsqueeze(-1) - r.unsqueeze(1)) / lam
    p_i, p_j = p.unsqueeze(-1), p.unsqueeze(1)
    e = torch.where(dl.abs() < 1.0, p_i * torch.expm1(dl.clamp(-1.0, 1.0)), p_j - p_i)
    e = torch.where(pair, e, torch.zeros_like(e))
    d = e.sum(-1)  # (n, G): D_i = Σ_j (p_j − p_i) = 1 − G p_i
    if not jackknife:
        adv = lam * d if baseline else -lam * g * p  # λ (b − G p_i)
    else:
        # b − G coef_i = b − 1 + G D_i − Σ_{j≠i} D^{(−j)}_i, with D^{(−j)}_i = 1 − (G−1) w_i/Σ_{k≠j} w_k
        # the leave-j-out D; = (D_i − E_ij)/(1 − p_j) (no cancellation while p_j <= ½), else from
        # the masked (G, G) logsumexp directly (then λ is small and the absolute error is ε λ)
        eye = torch.eye(group_size, dtype=torch.bool, device=r.device)
        loo = logw.unsqueeze(1).expand(n_groups, group_size, group_size).masked_fill(eye, neg_inf)
        lse_loo = torch.logsumexp(loo, dim=-1)  # (n, G): index j
        rest = torch.exp(lse_loo - lse).unsqueeze(1)  # [n, 1, j]: 1 − p_j = Σ_{k≠j} p_k
        by_rest = (d.unsqueeze(-1) - e) / rest.clamp_min(torch.finfo(r.dtype).tiny)
        by_lse = 1.0 - (g - 1).unsqueeze(-1) * torch.exp(logw.unsqueeze(-1) - lse_loo.unsqueeze(1))
        d_loo = torch.where(p_j <= 0.5, by_rest, by_lse)
        d_loo = torch.where(pair & ~eye, d_loo, torch.zeros_like(d_loo))
        core = g * d - d_loo.sum(-1)  # = 1 − G coef_i
        adv = lam * (core if baseline else core - 1.0)
        # a group with fewer than 2 valid rows has no jackknife: no signal
        adv = adv * (g >= 2)
    return (s / lam * adv * vf).reshape(-1).to(out_dtype)


# ----------------------------------------------------------------------------------------------
# aggregation and KL
# ----------------------------------------------------------------------------------------------
def aggregate(values: Tensor, mask: Tensor, mode: str = "seq_mean_token_mean", max_len: Optional[int] = None) -> Tensor:
    """Reduce per-token values (B, T) to a scalar under one named rule.

    "seq_mean_token_mean": mean over sequences of the token mean (TRL loss_type="grpo"; FRPO's s_i)
    "token_mean":          Σ values·mask / Σ mask (TRL "dapo"/"bnpo")
    "seq_sum_const":       Σ values·mask / (B · max_len) (TRL "dr_grpo"; max_len defaults to T)
    A sequence with an empty mask contributes 0 (and a finite gradient).
    """
    _check_mode(mode)
    _check_token_tensors(values=values, mask=mask)
    if max_len is not None:
        max_len = check_int("max_len", max_len, 1, fix="pass the padded completion length, e.g. "
                                                       "max_len=values.shape[1]")
    return _aggregate(values, mask, mode, max_len)


def _check_mode(mode: str) -> None:
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation mode={mode!r} is not one of {AGGREGATIONS}. Fix: pick one "
                         "(see aggregate's docstring; the trainers use 'seq_mean_token_mean')")


def _aggregate(values: Tensor, mask: Tensor, mode: str, max_len: Optional[int] = None) -> Tensor:
    """``aggregate`` without the input checks (the losses check their inputs once)."""
    _check_mode(mode)
    m = mask.to(values.dtype)
    if mode == "seq_mean_token_mean":
        per_seq = (values * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        return per_seq.mean()
    if mode == "token_mean":
        return (values * m).sum() / m.sum().clamp_min(1.0)
    denom = values.shape[0] * (max_len if max_len is not None else values.shape[1])
    return (values * m).sum() / denom


def nll_loss(logp: Tensor, mask: Tensor, aggregation: str = "token_mean") -> tuple[Tensor, dict]:
    """Plain SFT / cross-entropy loss: agg[−log π_θ(y_t)] over response tokens, ``logp`` and ``mask`` (B, T).

    The β → 0 limit of ``csft_loss`` (its gradient; the values differ by a constant per token).
    """
    _check_token_tensors(logp=logp, mask=mask)
    check_logprobs(mask, logp=logp)
    loss = _aggregate(-logp, mask, aggregation)
    return loss, {"loss/nll": float(loss.detach())}


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π_θ‖π_ref): e^{ref−logp} − (ref − logp) − 1 (≥ 0, unbiased).

    Schulman's k3; the KL term of GRPO and FRPO (Eq. 2.2; the −β KL of Eq. 2.1). Shapes (B, T) →
    (B, T) (any shape, the two equal). Both inputs must be log-probabilities (no NaN, <= 0 up to rounding).
    """
    for name, t in (("logp", logp), ("ref_logp", ref_logp)):
        check_tensor(name, t, floating=True, shape_doc="of log-probabilities")
    if tuple(logp.shape) != tuple(ref_logp.shape):
        raise ValueError(f"ref_logp has shape {tuple(ref_logp.shape)}, expected {tuple(logp.shape)} like "
                         "logp. Fix: pass the reference log-probs of the same tokens")
    check_logprobs(logp=logp, ref_logp=ref_logp)
    return _k3(logp, ref_logp)


def _k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    d = ref_logp - logp
    return torch.expm1(d) - d


# ----------------------------------------------------------------------------------------------
# GRPO and FRPO policy losses
# ----------------------------------------------------------------------------------------------
def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    advantages: Tensor,
    *,
    eps: float = 0.2,
    eps_high: Optional[float] = None,
    ref_logp: Optional[Tensor] = None,
    beta: float = 0.0,
    aggregation: str = "seq_mean_token_mean",
) -> tuple[Tensor, dict]:
    """PPO-clipped GRPO loss: −agg[min(ρ_t Â, clip(ρ_t, 1−ε, 1+ε_high) Â)] + β·agg[KL_k3].

    ρ_t = exp(logp − old_logp); Â → ``advantages`` (B,) broadcast over tokens.
    Paper: DeepSeekMath GRPO; with ``frpo_advantages`` it is FRPO's "advantage" mode.
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, mask=mask, ref_logp=ref_logp)
    check_tensor("advantages", advantages, floating=True, shape_doc="of shape (B,)")
    if advantages.ndim != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must have shape ({logp.shape[0]},), got {tuple(advantages.shape)}. "
                         "Fix: pass one advantage per sequence (row of logp)")
    check_finite_tensor("advantages", advantages,
                        fix="compute them from finite rewards (frpo_advantages / group_advantages)")
    check_logprobs(mask, logp=logp, old_logp=old_logp, ref_logp=ref_logp)
    eps = _check_coef("eps", eps, 1.0, "pass the PPO clip range ε in [0, 1], e.g. eps=0.2")
    eps_high = eps if eps_high is None else _check_coef("eps_high", eps_high, math.inf,
                                                         "pass the upper clip ε_high >= 0, e.g. eps_high=0.28")
    beta = _check_coef("beta", beta, math.inf, "pass the KL coefficient β >= 0 (0 = no KL term)")
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps, 1 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    metrics = {}
    if ref_logp is not None and beta != 0.0:
        kl = _k3(logp, ref_logp)
        per_token = per_token + beta * kl
        metrics["loss/kl"] = float(_aggregate(kl.detach(), mask, aggregation))
    loss = _aggregate(per_token, mask, aggregation)
    is_clipped = ((ratio < 1 - eps) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
    metrics["loss/clip_ratio"] = float(_aggregate(is_clipped.to(logp.dtype), mask, "token_mean"))
    return loss, metrics


def _group_index(group_ids: Tensor, group_size: Optional[int], n_rows: int) -> tuple[Tensor, int, int]:
    """Map arbitrary integer ids to a (n_groups, G) index matrix of row positions."""
    if not isinstance(group_ids, torch.Tensor) or group_ids.ndim != 1 or group_ids.shape[0] != n_rows:
        got = tuple(group_ids.shape) if isinstance(group_ids, torch.Tensor) else type(group_ids).__name__
        raise ValueError(f"group_ids must be an integer tensor of shape ({n_rows},), got {got}. "
                         "Fix: pass one integer prompt id per row")
    if group_ids.is_floating_point():
        raise ValueError(f"group_ids must be integers (one id per prompt group), got a floating tensor "
                         f"({group_ids.dtype}). Fix: pass group_ids.long()")
    uniq, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    # inferred G: the most common group size (so the error names the odd group out)
    g = int(torch.mode(counts).values) if group_size is None else check_int("group_size", group_size, 1)
    bad = (counts != g).nonzero().flatten()
    if len(bad) > 0:
        i = int(bad[0])
        raise ValueError(
            f"group_ids: group id {int(uniq[i])} has {int(counts[i])} rows, expected group_size={g}; every "
            "group must hold exactly G rows in the same call. Fix: keep whole groups in one micro-batch"
        )
    order = torch.argsort(inverse, stable=True)  # rows sorted by group
    return order.view(len(uniq), g), len(uniq), g


def frpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor,
    lam: float,
    *,
    group_size: Optional[int] = None,
    jackknife: bool = True,
    baseline: bool = True,
    scale: str = "max1",
    eps: float = 0.2,
    ref_logp: Optional[Tensor] = None,
    beta: float = 0.0,
) -> tuple[Tensor, dict]:
    """The literal FRPO surrogate of Eq. 4.1–4.3 (the "ratio" mode), to minimize.

    Per group of G rows (found by ``group_ids``, any order): A_i = r_i − mean r, w_i = e^{−A_i/λ},
    c_it = min(ρ_it, 1+ε) with ρ_it = π_θ/π_old, s_i = mean_t(w_i c_it), Ẑ = mean_i s_i,
      log Z̃ = log Ẑ                                           (plain)
      log Z̃ = G log Ẑ − (G−1)/G Σ_j log Ẑ_{−j}               (jackknife; Ẑ_{−j} leave-one-out)
      J = −log Z̃ + b·mean_i(mean_t c_it)                      (b = 1 with ``baseline``)
    loss = −s(λ) · mean_groups J + β · mean_i mean_t KL_k3(π_θ‖π_ref)
    with s(λ) = ``frpo_scale(lam, scale)``. Everything in log space: log s_i = ℓ_i + log mean_t c_it.
    At ρ ≡ 1 its gradient equals ``grpo_loss`` with ``frpo_advantages`` (tested).

    Symbols → arguments: λ → ``lam``, ε → ``eps``, β → ``beta``, G → ``group_size`` (inferred
    from ``group_ids`` when None). Paper: FRPO Eq. 4.1–4.3, App. D (baseline), App. E (jackknife).
    Deviation: the paper writes J = −λ log Z̃ + λ·mean c; we factor λ into s(λ) (see ``frpo_scale``).
    λ = inf is not defined for this form: use ``grpo_loss`` with ``frpo_advantages`` (its limit).
    """
    lam = _check_lam(lam, allow_inf=False)
    _check_scale(scale)
    _check_token_tensors(logp=logp, old_logp=old_logp, mask=mask, ref_logp=ref_logp)
    check_tensor("rewards", rewards, floating=True, shape_doc="of shape (B,)")
    if rewards.ndim != 1 or rewards.shape[0] != logp.shape[0]:
        raise ValueError(f"rewards must have shape ({logp.shape[0]},), got {tuple(rewards.shape)}. "
                         "Fix: pass one reward per sequence (row of logp)")
    if not torch.isfinite(rewards).all():
        raise ValueError(f"rewards contain non-finite values {rewards[~torch.isfinite(rewards)][:3].tolist()}. "
                         "Fix: drop rows without a reward (and their group) before the loss")
    check_logprobs(mask, logp=logp, old_logp=old_logp, ref_logp=ref_logp)
    eps = _check_coef("eps", eps, math.inf, "pass the one-sided clip ε >= 0 of c = min(ρ, 1 + ε), e.g. eps=0.2")
    beta = _check_coef("beta", beta, math.inf, "pass the KL coefficient β >= 0 (0 = no KL term)")
    idx, n_groups, g = _group_index(group_ids, group_size, logp.shape[0])
    if jackknife and g < 2:
        raise ValueError(f"group_size={g} is too small for the jackknife (needs G >= 2). Fix: pass "
                         "jackknife=False or sample >= 2 completions per prompt")
    s = frpo_scale(lam, scale)

    m = mask.to(logp.dtype)
    ntok = m.sum(-1).clamp_min(1.0)  # (B,)
    ratio = torch.exp(logp - old_logp)
    c = torch.clamp(ratio, max=1 + eps)  # the paper's one-sided clip
    mean_c = (c * m).sum(-1) / ntok  # (B,) mean_t c_it
    r = rewards.to(logp.dtype)[idx]  # (n, G)
    a = r - r.mean(-1, keepdim=True)
    logw = -a / lam
    log_s = logw + torch.log(mean_c[idx].clamp_min(torch.finfo(logp.dtype).tiny))  # (n, G)
    log_z = torch.logsumexp(log_s, -1) - math.log(g)  # (n,)
    if jackknife:
        eye = torch.eye(g, dtype=torch.bool, device=logp.device)
        loo = log_s.unsqueeze(1).expand(n_groups, g, g).masked_fill(eye, float("-inf"))
        log_z_loo = torch.logsumexp(loo, -1) - math.log(g - 1)  # (n, G)
        log_z_tilde = g * log_z - (g - 1) / g * log_z_loo.sum(-1)
    else:
        log_z_tilde = log_z
    j = -log_z_tilde
    if baseline:
        j = j + mean_c[idx].mean(-1)
    loss = -s * j.mean()

    metrics: dict = {}
    if ref_logp is not None and beta != 0.0:
        kl = _k3(logp, ref_logp)
        loss = loss + beta * _aggregate(kl, mask, "seq_mean_token_mean")
        metrics["loss/kl"] = float(_aggregate(kl.detach(), mask, "seq_mean_token_mean"))
    with torch.no_grad():
        metrics.update(frpo_weight_metrics(logw.detach()))
        metrics["frpo/log_z"] = float(log_z_tilde.mean())
        metrics["loss/clip_ratio"] = float(_aggregate((ratio > 1 + eps).to(logp.dtype), mask, "token_mean"))
    return loss, metrics


def frpo_weight_metrics(logw: Tensor) -> dict:
    """Diagnostics of the within-group weights p = softmax(−A/λ): entropy, max weight, effective size 1/Σp².

    ``logw`` (n_groups, G). Under uniform weights (λ→∞) entropy = log G, max = 1/G, effective size = G.
    """
    logp = torch.log_softmax(logw, -1)
    p = logp.exp()
    return {
        "frpo/weight_entropy": float(-(p * logp).sum(-1).mean()),
        "frpo/max_weight": float(p.max(-1).values.mean()),
        "frpo/effective_group_size": float((1.0 / (p * p).sum(-1)).mean()),
    }


# ----------------------------------------------------------------------------------------------
# constrained SFT (Qi et al. 2024) and the preference-alignment term (CSFT+PA)
# ----------------------------------------------------------------------------------------------
def csft_betas(mask: Tensor, first: float = 0.5, early: float = 2.0, rest: float = 0.1) -> Tensor:
    """Per-token β_t of Qi et al.'s token-wise constrained SFT: β_1 = first, β_2..5 = early, β_{t≥6} = rest.

    t is the 1-based position *within the response* (counted along ``mask`` (B, T), so left or right
    padding and prompt tokens do not shift it). Returns (B, T); 0 where mask is 0.
    """
    for name, val in (("first", first), ("early", early), ("rest", rest)):
        try:
            ok = float(val) > 0 and math.isfinite(float(val))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"csft beta {name}={val!r} must be a finite positive number, in (0, inf). "
                             f"Fix: pass e.g. {name}=0.1 (β → 0 is plain SFT; Qi et al. use 0.5, 2, 0.1)")
    check_tensor("mask", mask, ndim=2, shape_doc="of shape (B, T)")
    check_mask("mask", mask)
    m = mask.to(torch.long)
    pos = torch.cumsum(m, -1)  # 1-based position among response tokens
    beta = torch.full(mask.shape, rest, dtype=torch.float64, device=mask.device)
    beta = torch.where(pos <= 5, torch.full_like(beta, early), beta)
    beta = torch.where(pos == 1, torch.full_like(beta, first), beta)
    return beta * m


def csft_loss(
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    betas: Optional[Tensor] = None,
    *,
    form: str = "sigmoid",
    aggregation: str = "token_mean",
) -> tuple[Tensor, dict]:
    """Token-wise constrained SFT loss, ℓ_t = −(2/β_t) log σ(β_t (log π_θ(y_t) − log π_aligned(y_t))).

    form="sigmoid": Qi et al.'s objective above. form="weighted_nll": the CSFT+PA paper's
    −w_t log π_θ(y_t) with detached w_t = 2(1 − σ(β_t Δ_t)) — same gradient, different value.
    Gradient per token: −2(1 − σ(β_t Δ_t)) ∇log π_θ(y_t); β → 0 gives w_t → 1, i.e. plain NLL.
    Symbols → arguments: log π_θ → ``logp`` (B, T), log π_aligned → ``ref_logp``, β_t → ``betas``
    (default ``csft_betas(mask)``). Paper: Qi et al. 2024 Eq. (token-wise constrained objective);
    CSFT+PA seed Eq. 2. Deviation: none (both forms offered).
    """
    _check_token_tensors(logp=logp, ref_logp=ref_logp, mask=mask, betas=betas)
    if form not in CSFT_FORMS:
        raise ValueError(f"form={form!r} is not one of {CSFT_FORMS}. Fix: 'sigmoid' (Qi et al.'s loss) or "
                         "'weighted_nll' (same gradient)")
    check_logprobs(mask, logp=logp)
    # ref_logp enters only through Δ = logp − ref_logp: NaN/+inf are errors, its sign is not checked
    _check_no_nan("ref_logp", ref_logp)
    if betas is None:
        betas = csft_betas(mask)
    betas = betas.to(logp.dtype)
    m = mask.to(torch.bool)
    bad = ~(betas > 0) & m  # catches NaN too
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"betas must be finite and > 0 on response tokens, in (0, inf); got "
                         f"{betas[idx].item()!r} at index {idx}. Fix: β → 0 is plain SFT, use a small "
                         "positive β (or csft_betas(mask))")
    if not bool(torch.isfinite(betas[m]).all()):
        raise ValueError("betas must be finite and > 0 on response tokens, in (0, inf); got inf. Fix: pass "
                         "finite temperatures (csft_betas(mask) gives Qi et al.'s)")
    safe_beta = torch.where(m, betas, torch.ones_like(betas))
    delta = logp - ref_logp.detach()
    if form == "sigmoid":
        per_token = -(2.0 / safe_beta) * torch.nn.functional.logsigmoid(safe_beta * delta)
    else:
        w = 2.0 * torch.sigmoid(-safe_beta * delta).detach()  # 2(1 − σ(βΔ))
        per_token = -w * logp
    loss = _aggregate(per_token, mask, aggregation)
    with torch.no_grad():
        w = 2.0 * torch.sigmoid(-safe_beta * delta)
        metrics = {"csft/mean_weight": float(_aggregate(w, mask, "token_mean")),
                   "csft/mean_delta": float(_aggregate(delta, mask, "token_mean"))}
    return loss, metrics


def pa_loss(
    logits: Tensor,
    ref_logits: Tensor,
    mask: Tensor,
    *,
    detach_mu: bool = True,
    aggregation: str = "token_mean",
) -> tuple[Tensor, dict]:
    """Preference-alignment loss of CSFT+PA: ℓ_t = −log σ(μ_t (log π_θ(y^al_t) − log π_θ(y^θ_t))).

    y^al_t = argmax π_aligned(·|x, y_<t), y^θ_t = argmax π_θ(·|x, y_<t) (teacher-forced context),
    μ_t = KL(π_θ(·)‖π_aligned(·)) over the vocabulary at position t. Zero gradient where the two
    argmaxes agree. Symbols → arguments: π_θ logits → ``logits`` (B, T, V), π_aligned logits →
    ``ref_logits`` (B, T, V), positions to score → ``mask`` (B, T).
    Paper: CSFT+PA seed Eq. 3–7. Deviation: whether μ_t is detached is a flag (the seed
    differentiates it in App. A.2.4 but detaches its CSFT weights); default detached.
    """
    for name, t in (("logits", logits), ("ref_logits", ref_logits)):
        check_tensor(name, t, floating=True, shape_doc="of shape (B, T, V)")
    if logits.ndim != 3 or ref_logits.shape != logits.shape:
        raise ValueError(f"logits and ref_logits must both be (B, T, V); got {tuple(logits.shape)} and "
                         f"{tuple(ref_logits.shape)}. Fix: pass both models' logits at the same positions")
    check_tensor("mask", mask, shape_doc="of shape (B, T)")
    if tuple(mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"mask must be (B, T) = {tuple(logits.shape[:2])}, got {tuple(mask.shape)}. Fix: "
                         "pass the response mask of the same sequences")
    check_mask("mask", mask)
    _check_no_nan("logits", logits)  # -inf is a legal (masked-out) logit
    _check_no_nan("ref_logits", ref_logits)
    logq = torch.log_softmax(logits, -1)
    logq_ref = torch.log_softmax(ref_logits.detach(), -1)
    mu = (logq.exp() * (logq - logq_ref)).sum(-1)  # (B, T) KL(π_θ‖π_al)
    if detach_mu:
        mu = mu.detach()
    y_al = ref_logits.argmax(-1, keepdim=True)
    y_th = logits.detach().argmax(-1, keepdim=True)
    margin = logq.gather(-1, y_al).squeeze(-1) - logq.gather(-1, y_th).squeeze(-1)  # ≤ 0
    per_token = -torch.nn.functional.logsigmoid(mu * margin)
    loss = _aggregate(per_token, mask, aggregation)
    with torch.no_grad():
        agree = (y_al == y_th).squeeze(-1).to(logits.dtype)
        metrics = {"pa/mu": float(_aggregate(mu.detach(), mask, "token_mean")),
                   "pa/agree_frac": float(_aggregate(agree, mask, "token_mean"))}
    return loss, metrics


def pa_delta(epoch: int, max_epoch: int, start: float = 0.1, span: float = 0.2) -> float:
    """The PA weight schedule δ_epoch = start + span · epoch / max_epoch (seed: 0.1 + 0.2·epoch/max_epoch)."""
    max_epoch = check_int("max_epoch", max_epoch, 1, fix="pass the number of epochs, e.g. max_epoch=10")
    epoch = check_int("epoch", epoch, 0, fix="pass the 0-based epoch index")
    if epoch > max_epoch:
        raise ValueError(f"epoch={epoch} must be in [0, max_epoch={max_epoch}]. Fix: pass epoch <= max_epoch")
    start = check_scalar("start", start, fix="pass e.g. start=0.1")
    span = check_scalar("span", span, fix="pass e.g. span=0.2")
    return start + span * epoch / max_epoch


# ----------------------------------------------------------------------------------------------
# sequence KL estimators (the tracker's and the evaluation's KL(π‖π_ref) to a starting model)
# ----------------------------------------------------------------------------------------------
KL_ESTIMATORS = ("rb", "mc")


def sequence_kl_terms(logits: Tensor, ref_logits: Tensor, tokens: Tensor, mask: Tensor,
                      estimator: str = "rb") -> Tensor:
    """Per-sequence KL(π‖π_ref) estimates from responses y ~ π: shape (N,), one term per sampled response.

    ``rb`` (Rao–Blackwellized, the default): the exact KL of the two next-token distributions at every
    response position, summed along the sampled response,

        KL̂_rb(y) = Σ_t m_t Σ_v π(v | x, y_<t) [log π(v | x, y_<t) − log π_ref(v | x, y_<t)],

    never negative, and unbiased for the sequence-level KL(π(·|x) ‖ π_ref(·|x)) by the chain rule
    (its expectation over y ~ π is the KL of the response distribution, truncated where generation is).
    ``mc``: the plain log-ratio of the sampled tokens, KL̂_mc(y) = Σ_t m_t [log π(y_t|·) − log π_ref(y_t|·)],
    also unbiased, but with far larger variance (a single sample can be negative).

    Args:
        logits, ref_logits: (N, T, V) next-token logits of π and π_ref at the response positions
            (position t predicts ``tokens[:, t]``), any float dtype (computed in float32 or wider).
        tokens: (N, T) sampled response token ids.
        mask: (N, T) 1 for response tokens (through the first EOS), 0 for padding.
        estimator: "rb" or "mc".

    Returns the (N,) per-sequence estimates; their mean estimates KL and std/√N its standard error.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not one of {KL_ESTIMATORS}; use 'rb' (exact per-token KL, "
                         "low variance) or 'mc' (sampled log-ratio)")
    if logits.shape != ref_logits.shape or logits.ndim != 3:
        raise ValueError(f"logits {tuple(logits.shape)} and ref_logits {tuple(ref_logits.shape)} must both have "
                         "shape (N, T, V); pass the two models' logits at the same response positions")
    if tokens.shape != logits.shape[:2] or mask.shape != logits.shape[:2]:
        raise ValueError(f"tokens {tuple(tokens.shape)} and mask {tuple(mask.shape)} must have shape (N, T) = "
                         f"{tuple(logits.shape[:2])}; pass the response part of the sequences")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = torch.log_softmax(logits.to(dtype), dim=-1)  # (N, T, V)
    ref_logp = torch.log_softmax(ref_logits.to(dtype), dim=-1)  # (N, T, V)
    m = mask.to(dtype)
    if estimator == "mc":
        idx = tokens[..., None].long()
        terms = logp.gather(-1, idx)[..., 0] - ref_logp.gather(-1, idx)[..., 0]  # (N, T)
    else:
        # Σ_v p (log p − log q); where p = 0 the term is 0 (xlogy convention), even if q = 0 too
        p = logp.exp()
        terms = torch.where(p > 0, p * (logp - ref_logp), torch.zeros_like(p)).sum(-1)  # (N, T)
        terms = terms.clamp_min(0.0)  # exact KL per position is ≥ 0; clamp float round-off only
    return (terms * m).sum(-1)
