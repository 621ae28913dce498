"""The bandit toy's environment, policy and losses (``python -m toy.bandit``; its docstring describes them).

:func:`make_bandit` draws the contexts (rewards with a sharp peak, its pit and a plateau; RBF
features; π_ref; the downstream target and reward); the policy is linear-softmax (:func:`log_policy`,
:func:`sample`, exact :func:`exact_stats`); the losses route every formula through ``theory.losses``
(:func:`train_loss` for GRPO/FRPO with a float β or one β per seed, :func:`sft_loss`, :func:`pg_loss`).
Arguments ``a`` are a ``toy.bandit.BanditArgs``, ``configs`` its ``Config`` rows (read by attribute).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

from theory import rlvr
from theory.losses import aggregate, frpo_advantages, frpo_loss, grpo_loss, group_advantages, kl_k3, nll_loss

Tensor = torch.Tensor
DT = torch.float64
# layout: coarse position features, plateau half-width, pit half-width, min arms from peak to plateau centre
N_GLOBAL, PLATEAU_HALF, PIT, PLATEAU_GAP = 6, 3, 2, 7


class Bandit(NamedTuple):
    reward: Tensor      # (S, C, K) original reward r(x, a)
    phi: Tensor         # (S, C, K, d) features φ(x, a)
    theta_ref: Tensor   # (d,) reference parameters
    sft_target: Tensor  # (S, C, K) downstream SFT data distribution
    reward2: Tensor     # (S, C, K) downstream (conflicting) reward r₂


def make_bandit(a, gen: torch.Generator) -> Bandit:
    """Draw S × C contexts: rewards, features, π_ref's parameters and the downstream task (see module doc)."""
    S, C, K = a.seeds, a.contexts, a.arms
    k = torch.arange(K, dtype=DT)
    z = k / (K - 1)
    # layout left to right: downstream task, peak (± pit), gap, plateau; then mirrored with probability ½
    d = a.task_offset
    lo, hi = max(PIT, d), K - 1 - PLATEAU_GAP - PLATEAU_HALF
    peak = lo + (torch.rand(S, C, generator=gen, dtype=DT) * (hi - lo + 1)).long().clamp(max=hi - lo)
    room = K - 1 - PLATEAU_HALF - (peak + PLATEAU_GAP)
    plateau = peak + PLATEAU_GAP + (torch.rand(S, C, generator=gen, dtype=DT) * (room + 1)).long().clamp(max=room)
    task = peak - d
    flip = torch.rand(S, C, generator=gen, dtype=DT) < 0.5
    peak, plateau, task = (torch.where(flip, K - 1 - x, x) for x in (peak, plateau, task))
    dist = lambda c: (k - c.unsqueeze(-1).to(DT)).abs()  # (S, C, K)  # noqa: E731
    uniform = lambda lo_hi: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * torch.rand(S, C, 1, generator=gen, dtype=DT)  # noqa: E731
    height, backgr = uniform(a.plateau_reward), uniform(a.background_reward)
    r = torch.where(dist(plateau) <= PLATEAU_HALF, height, backgr)
    r = torch.where((dist(peak) >= 1) & (dist(peak) <= PIT), 0.0, r)
    r = torch.where(dist(peak) == 0, 1.0, r)
    rbf = lambda d, w: torch.exp(-0.5 * (d / w) ** 2)  # noqa: E731
    centres = torch.linspace(0, 1, N_GLOBAL, dtype=DT)
    phi = torch.cat([rbf(dist(peak), a.feature_width).unsqueeze(-1),
                     rbf(dist(plateau), a.feature_width).unsqueeze(-1),
                     rbf(z.view(K, 1) - centres, 1.0 / (N_GLOBAL - 1)).expand(S, C, K, N_GLOBAL)], -1)
    theta_ref = torch.zeros(phi.shape[-1], dtype=DT)
    theta_ref[0] = a.ref_bump
    # downstream: SFT data ≈ 80% on the task arm, 15% on its two neighbours; r₂ a bump of width 1.5 arms
    target = torch.softmax(6.0 * rbf(dist(task), 1.0), -1)
    return Bandit(r, phi, theta_ref, target, rbf(dist(task), 1.5))


def log_policy(theta: Tensor, phi: Tensor) -> Tensor:
    """log π_θ(a|x) for θ (S, V, d) and φ (S, C, K, d) → (S, V, C, K)."""
    return torch.log_softmax(torch.einsum("sckd,svd->svck", phi, theta), -1)


def sample(logp: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """n arms per row of a (..., K) log-policy → (..., n) indices."""
    flat = logp.detach().exp().reshape(-1, logp.shape[-1])
    return torch.multinomial(flat, n, replacement=True, generator=gen).view(*logp.shape[:-1], n)


def kl_rows(p: Tensor, q: Tensor) -> np.ndarray:
    """Mean over contexts of KL(p‖q) (theory.rlvr.kl_divergence), p, q (..., C, K) → (...)."""
    pn, qn = p.detach().numpy(), q.detach().expand_as(p).numpy()
    return rlvr.kl_divergence(pn.reshape(-1, pn.shape[-1]), qn.reshape(-1, qn.shape[-1])).reshape(pn.shape[:-1]).mean(-1)


def exact_stats(logp: Tensor, ref_logp: Tensor, reward: Tensor) -> tuple[np.ndarray, ...]:
    """(E_π r, KL(π‖π_ref), H(π)/log K), each (S, V) and averaged over contexts; H = log K − KL(π‖uniform).

    logp (S, V, C, K), ref_logp (S, 1, C, K), reward (S, C, K)."""
    p = logp.detach().exp()
    K = p.shape[-1]
    ent = 1.0 - kl_rows(p, torch.full_like(p, 1.0 / K)) / math.log(K)
    return (p * reward.unsqueeze(1)).sum(-1).mean(-1).numpy(), kl_rows(p, ref_logp.exp()), ent


# ----------------------------------------------------------------------------------------------
# losses (all math from theory.losses; rows = contiguous groups of G, one "token" per sampled arm)
# ----------------------------------------------------------------------------------------------
def train_loss(logp: Tensor, ref_logp: Tensor, reward: Tensor, arms: Tensor, configs: Sequence,
               a) -> Tensor:
    """Sum over configs of the GRPO/FRPO loss on sampled arms, scaled so each (seed, config) θ gets
    the gradient of its own mean loss. logp (S, V, C, K), ref_logp and reward (S, 1, C, K), arms (S, V, C, G).
    ``cfg.beta`` is a float, or S floats (one per seed) for a KL-matched arm."""
    S, V, C, G = arms.shape
    lp = logp.gather(-1, arms)                                          # (S, V, C, G)
    ref = ref_logp.expand(S, V, C, -1).gather(-1, arms)
    rew = reward.expand(S, V, C, -1).gather(-1, arms)
    mask = torch.ones(S * C * G, 1, dtype=DT)
    group_ids = torch.arange(S * C).repeat_interleave(G)
    total = logp.new_zeros(())
    for v, cfg in enumerate(configs):
        lp_v, ref_v, r_v = lp[:, v].reshape(-1, 1), ref[:, v].reshape(-1, 1), rew[:, v].reshape(-1)  # (B, 1), (B,)
        per_seed = not isinstance(cfg.beta, (int, float))  # a KL-matched arm: one β per seed
        beta = 0.0 if per_seed else cfg.beta
        if math.isfinite(cfg.lam) and a.form == "ratio":
            loss, _ = frpo_loss(lp_v, lp_v.detach(), mask, r_v, group_ids, cfg.lam, group_size=G,
                                jackknife=cfg.jackknife, baseline=cfg.baseline, scale=a.scale,
                                ref_logp=ref_v, beta=beta)
        else:
            adv = (group_advantages(r_v, G) if math.isinf(cfg.lam) else
                   frpo_advantages(r_v, G, cfg.lam, jackknife=cfg.jackknife, scale=a.scale, baseline=cfg.baseline))
            loss, _ = grpo_loss(lp_v, lp_v.detach(), mask, adv, ref_logp=ref_v, beta=beta)
        if per_seed:  # the losses add β·aggregate(k3); aggregate is linear, so β per row gives β_s per seed
            b = torch.as_tensor(cfg.beta, dtype=DT).repeat_interleave(C * G).view(-1, 1)
            loss = loss + aggregate(b * kl_k3(lp_v, ref_v), mask)
        total = total + loss
    return total * S


def sft_loss(logp: Tensor, data: Tensor) -> Tensor:
    """Mean NLL of data arms (S, 1, C, n) under logp (S, V, C, K), times S·V (per-row gradients)."""
    S, V = logp.shape[:2]
    lp = logp.gather(-1, data.expand(S, V, -1, -1))
    return nll_loss(lp.reshape(-1, 1), torch.ones(lp.numel(), 1, dtype=DT))[0] * S * V


def pg_loss(logp: Tensor, reward2: Tensor, arms: Tensor) -> Tensor:
    """GRPO (group_advantages + grpo_loss, no KL) on the second reward, times S·V."""
    S, V, C, G = arms.shape
    lp = logp.gather(-1, arms).reshape(-1, 1)
    r2 = reward2.unsqueeze(1).expand(S, V, C, -1).gather(-1, arms).reshape(-1)
    loss, _ = grpo_loss(lp, lp.detach(), torch.ones_like(lp), group_advantages(r2, G))
    return loss * S * V
