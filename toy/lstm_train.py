"""Training and evaluation of the LSTM toy (``toy.lstm``): data streams, the loss registry, the stacked loop.

All groups × seeds of one experiment train as one stacked model (``toy.lstm_models``); every loss is
from ``theory.losses``. ``run_experiment`` returns the held-out metric curves that ``toy.lstm_report``
summarises; the setup, the losses and the metrics are documented in the module docstring of ``toy.lstm``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from theory.losses import csft_loss, nll_loss, pa_delta, pa_loss
from toy._common import progress
from toy.lstm_models import (METRICS, StackedSeqModel, build_models, calibrate_logit_scale, distribution_metrics,
                             kl_control_loss, params_per_model, response_logits, sample_sequences, token_logp)

if TYPE_CHECKING:
    from toy.lstm import Args

GROUPS = {"exp1": ("ce", "ce_pa"), "exp2": ("csft", "csft_pa")}
GROUP_LABELS = {"ce": "CE", "ce_pa": "CE+PA", "csft": "CSFT", "csft_pa": "CSFT+PA"}


def group_label(group: str) -> str:
    """Display name of a group: ``GROUP_LABELS``, "CE+PA (μ grad)" (``ce_pa_mugrad``), "CE+0.3·KL" (``ce_kl0.3``)."""
    if group in GROUP_LABELS:
        return GROUP_LABELS[group]
    base, _, arm = group.partition("_")
    return GROUP_LABELS.get(base, base) + ("+PA (μ grad)" if arm == "pa_mugrad" else f"+{arm[2:]}·KL")


# ----------------------------------------------------------------------------------------------
# data: uniform contexts, responses sampled from the reference (per-seed random streams)
# ----------------------------------------------------------------------------------------------
def stream_seed(base: int, exp: str, seed_index: int, stream: str) -> int:
    """Independent integer seed for one (experiment, seed, stream); stable across runs and seed counts."""
    tags = {"ref": 1, "policy": 2, "train": 3, "eval": 4, "order": 5, "calib": 6, "val": 7}
    return int(np.random.SeedSequence([base, int(exp[-1]), seed_index, tags[stream]]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------
# losses (a registry over theory.losses) and evaluation
# ----------------------------------------------------------------------------------------------
def loss_ce(logits, targets, ref_logits, mask, delta, detach_mu):
    nll = nll_loss(token_logp(logits, targets), mask)[0]
    return nll, {"loss/ce": float(nll.detach())}


def loss_csft(logits, targets, ref_logits, mask, delta, detach_mu):
    return csft_loss(token_logp(logits, targets), token_logp(ref_logits, targets), mask)


def _with_pa(base: Callable, force_detach: Optional[bool] = None) -> Callable:
    def loss(logits, targets, ref_logits, mask, delta, detach_mu):
        lb, mb = base(logits, targets, ref_logits, mask, delta, detach_mu)
        detach = detach_mu if force_detach is None else force_detach
        lp, mp = pa_loss(logits, ref_logits, mask, detach_mu=detach)
        return lb + delta * lp, {**mb, **mp, "loss/pa": float(lp.detach()), "pa/delta": delta}
    return loss


def _with_kl(base: Callable, coef: float) -> Callable:
    def loss(logits, targets, ref_logits, mask, delta, detach_mu):
        lb, mb = base(logits, targets, ref_logits, mask, delta, detach_mu)
        lk = kl_control_loss(logits, ref_logits, mask)
        return lb + coef * lk, {**mb, "loss/kl": float(lk.detach()), "kl/coef": coef}
    return loss


LOSSES = {"ce": loss_ce, "ce_pa": _with_pa(loss_ce), "csft": loss_csft, "csft_pa": _with_pa(loss_csft)}
BASES = {"ce": loss_ce, "csft": loss_csft}


def loss_for(group: str) -> Callable:
    """The loss of a group: a key of ``LOSSES`` (PA's μ_t detached as --detach-mu says), ``<base>_pa_mugrad``
    (base + δ·PA with μ_t differentiated) or ``<base>_kl<c>`` (base + c·``kl_control_loss``), base ce or csft."""
    if group in LOSSES:
        return LOSSES[group]
    base, _, arm = group.partition("_")
    if base in BASES and arm == "pa_mugrad":
        return _with_pa(BASES[base], force_detach=False)
    if base in BASES and arm.startswith("kl"):
        try:
            coef = float(arm[2:])
        except ValueError:
            coef = math.nan
        if coef > 0 and math.isfinite(coef):
            return _with_kl(BASES[base], coef)
    raise ValueError(f"group {group!r} is not one of {sorted(LOSSES)}, <base>_pa_mugrad or <base>_kl<c> "
                     f"(c > 0, base in {sorted(BASES)}); e.g. ce_kl0.3")


def stacked_group_loss(group: str, logits: Tensor, targets: Tensor, ref_logits: Tensor, delta: float,
                       detach_mu: bool = True) -> tuple[Tensor, dict]:
    """Σ over the S stacked models of one group's per-model loss, so each model gets its own gradient.

    logits/ref_logits (S, B, T, V), targets (S, B, T). Every row has the same T response tokens, so the
    token mean over the flattened (S·B, T) batch is the mean of the S per-model token means; × S gives the sum.
    """
    s, b, t, v = logits.shape
    mask = torch.ones(s * b, t, dtype=logits.dtype, device=logits.device)
    loss, metrics = loss_for(group)(logits.reshape(s * b, t, v), targets.reshape(s * b, t),
                                  ref_logits.reshape(s * b, t, v), mask, delta, detach_mu)
    return s * loss, {**metrics, "loss/total": float(loss.detach())}


def training_loss(policy: StackedSeqModel, batch: Tensor, ref_logits: Tensor, groups: Sequence[str], delta: float,
                  args: Args) -> tuple[Tensor, dict[str, float]]:
    """The loss one training step differentiates: Σ_groups Σ_seeds of each model's own loss.

    batch (S, B, L) tokens, ref_logits (S, B, T, V) of the reference on the same batch; the policy holds
    G·S models laid out group-major (model g·S + s is group g, seed s) and every group sees the same batch.
    Returns (total, {group: mean over seeds of its loss}).
    """
    return _training_loss_and_nll(policy, batch, ref_logits, groups, delta, args)[:2]


def _training_loss_and_nll(policy, batch, ref_logits, groups, delta, args):
    """``training_loss`` plus each model's token-mean NLL on the batch, (G, S) float64 numpy (no gradient)."""
    S = batch.shape[0]
    logits = response_logits(policy, batch.repeat(len(groups), 1, 1), args.context_len)
    logits = logits.view(len(groups), S, *logits.shape[1:])  # (G, S, B, T, V)
    targets = batch[:, :, args.context_len:]  # (S, B, T)
    total, per_group = 0.0, {}
    for gi, g in enumerate(groups):
        loss, m = stacked_group_loss(g, logits[gi], targets, ref_logits, delta, args.detach_mu)
        total = total + loss
        per_group[g] = m["loss/total"]
    with torch.no_grad():
        nll = -token_logp(logits.detach(), targets[None].expand(len(groups), *targets.shape)).double().mean((-1, -2))
    return total, per_group, nll.cpu().numpy()


@torch.no_grad()
def evaluate(policy: StackedSeqModel, eval_tokens: Tensor, ref_eval_logits: Tensor, n_groups: int,
             args: Args) -> dict[str, np.ndarray]:
    """Held-out metrics per model: {metric: (G, S)} averaged over all held-out response positions."""
    sums = {k: 0.0 for k in METRICS}
    n = eval_tokens.shape[1]
    for i in range(0, n, args.eval_batch):
        tok = eval_tokens[:, i:i + args.eval_batch]
        logits = response_logits(policy, tok.repeat(n_groups, 1, 1), args.context_len)
        s = tok.shape[0]
        logits = logits.view(n_groups, s, *logits.shape[1:])
        for k, v in distribution_metrics(logits, ref_eval_logits[None, :, i:i + args.eval_batch]).items():
            sums[k] = sums[k] + v.sum((2, 3))
    return {k: (v / (n * args.response_len)).cpu().numpy() for k, v in sums.items()}


@torch.no_grad()
def evaluate_nll(policy: StackedSeqModel, tokens: Tensor, n_groups: int, args: Args) -> np.ndarray:
    """Token-mean NLL −log π_θ(y_t) of each model on held-out sequences ``tokens`` (S, N, L): (G, S) float64."""
    total = 0.0
    n = tokens.shape[1]
    for i in range(0, n, args.eval_batch):
        tok = tokens[:, i:i + args.eval_batch]
        logits = response_logits(policy, tok.repeat(n_groups, 1, 1), args.context_len)
        logits = logits.view(n_groups, tok.shape[0], *logits.shape[1:])  # (G, S, b, T, V)
        targets = tok[:, :, args.context_len:]
        total = total - token_logp(logits.double(), targets[None].expand(n_groups, *targets.shape)).sum((2, 3))
    return (total / (n * args.response_len)).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# one pre-experiment: all groups × seeds in one stacked training loop
# ----------------------------------------------------------------------------------------------
def run_experiment(exp: str, args: Args, device, groups: Optional[Sequence[str]] = None, n_val: int = 0) -> dict:
    """Train every (group, seed) model of one experiment in one stacked loop; held-out curves per epoch.

    ``groups`` defaults to ``GROUPS[exp]`` (any name ``loss_for`` knows); ``n_val`` > 0 draws that many
    validation sequences per seed (stream "val") and records each model's NLL on them per epoch. Returns
    ``curves`` {metric: (G, S, epochs + 1)} (column 0 = initialisation), ``val_nll`` (G, S, epochs + 1) or
    None, ``train_nll`` (G, S, epochs: each model's mean NLL over the epoch's training batches), per-group
    ``train_loss`` (epochs,), ``param_counts`` and the reference's statistics.
    """
    groups, S = tuple(GROUPS[exp] if groups is None else groups), args.seeds
    G = len(groups)
    seed_of = lambda s, stream: stream_seed(args.seed, exp, s, stream)  # noqa: E731
    ref, policy = build_models(exp, args, [seed_of(s, "ref") for s in range(S)],
                               [seed_of(s, "policy") for _ in groups for s in range(S)])
    ref, policy = ref.to(device), policy.to(device)
    ref.requires_grad_(False)

    calib_gens = [torch.Generator().manual_seed(seed_of(s, "calib")) for s in range(S)]
    calib = torch.stack([torch.randint(args.vocab_size, (64, args.context_len + args.response_len), generator=g)
                         for g in calib_gens]).to(device)
    ref.logit_scale.copy_(calibrate_logit_scale(ref, calib, args.ref_entropy).to(device))
    train_tokens = sample_sequences(ref, [torch.Generator().manual_seed(seed_of(s, "train")) for s in range(S)],
                                    args.n_train, args, device)  # (S, N, L)
    eval_tokens = sample_sequences(ref, [torch.Generator().manual_seed(seed_of(s, "eval")) for s in range(S)],
                                   args.n_eval, args, device)
    with torch.no_grad():  # the frozen reference's logits, computed once: (S, N, T, V)
        ref_train_logits = torch.cat([response_logits(ref, train_tokens[:, i:i + args.eval_batch], args.context_len)
                                      for i in range(0, args.n_train, args.eval_batch)], 1)
        ref_eval_logits = torch.cat([response_logits(ref, eval_tokens[:, i:i + args.eval_batch], args.context_len)
                                     for i in range(0, args.n_eval, args.eval_batch)], 1)
        lq = torch.log_softmax(ref_eval_logits.double(), -1)  # (S, Ne, T, V)
        cond_entropy = -(lq.exp() * lq).sum(-1).mean((1, 2))  # (S,) mean H(q) over held-out positions
        q_bar = lq.exp().mean((1, 2))  # (S, V) marginal next-token distribution
        context_mi = -(q_bar * q_bar.clamp_min(1e-300).log()).sum(-1) - cond_entropy  # H(q̄) − E H(q)

    val_tokens = (sample_sequences(ref, [torch.Generator().manual_seed(seed_of(s, "val")) for s in range(S)],
                                   n_val, args, device) if n_val > 0 else None)
    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    order_gens = [torch.Generator().manual_seed(seed_of(s, "order")) for s in range(S)]
    curves = {k: np.zeros((G, S, args.epochs + 1)) for k in METRICS}
    for k, v in evaluate(policy, eval_tokens, ref_eval_logits, G, args).items():
        curves[k][..., 0] = v
    val_nll = np.zeros((G, S, args.epochs + 1)) if n_val > 0 else None
    if n_val > 0:
        val_nll[..., 0] = evaluate_nll(policy, val_tokens, G, args)
    train_nll = np.zeros((G, S, args.epochs))
    steps = args.n_train // args.batch_size
    seed_idx = torch.arange(S, device=device)[:, None]
    train_loss = {g: np.zeros(args.epochs) for g in groups}
    bar = progress(range(1, args.epochs + 1), f"{exp} ({'/'.join(group_label(g) for g in groups)})",
                   args.progress)
    for epoch in bar:
        delta = pa_delta(epoch, args.epochs, args.delta_start, args.delta_span)
        perms = torch.stack([torch.randperm(args.n_train, generator=g) for g in order_gens]).to(device)  # (S, N)
        for step in range(steps):
            rows = perms[:, step * args.batch_size:(step + 1) * args.batch_size]  # (S, B)
            batch = train_tokens[seed_idx, rows]  # (S, B, L)
            ref_logits = ref_train_logits[seed_idx, rows]  # (S, B, T, V)
            total, per_group, nll = _training_loss_and_nll(policy, batch, ref_logits, groups, delta, args)
            train_nll[..., epoch - 1] += nll / steps
            for g in groups:
                train_loss[g][epoch - 1] += per_group[g] / steps
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        for k, v in evaluate(policy, eval_tokens, ref_eval_logits, G, args).items():
            curves[k][..., epoch] = v
        if n_val > 0:
            val_nll[..., epoch] = evaluate_nll(policy, val_tokens, G, args)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({f"KL {group_label(g)}": f"{curves['kl'][gi, :, epoch].mean():.4f}"
                             for gi, g in enumerate(groups)})
    return {"groups": groups, "curves": curves, "train_loss": train_loss, "train_nll": train_nll, "val_nll": val_nll,
            "param_counts": {"policy": params_per_model(policy), "reference": params_per_model(ref),
                             "ratio": params_per_model(ref) / params_per_model(policy)},
            "ref_entropy": cond_entropy.cpu().numpy(), "ref_context_mi": context_mi.cpu().numpy(),
            "ref_logit_scale": ref.logit_scale.cpu().numpy()}
