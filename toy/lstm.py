"""Pre-experiments 1 and 2 of CSFT+PA: does the PA loss pull an LSTM policy towards a different LSTM reference?

Commands (laptop CPU; this toy needs no GPU, ``--device cuda`` runs the same study on one GPU)::

    python -m toy.lstm --preset smoke              # < 60 s: 3 seeds, 3 epochs, tiny data, both pre-experiments
    python -m toy.lstm --preset paper              # the full study: 10 seeds, 30 epochs (≈ 10–35 min, see below)
    python -m toy.lstm --preset paper --seeds 5 --delta-start 1 --delta-span 2   # PA weight ×10
    python -m toy.lstm --preset paper --seeds 20 --out results/lstm20
    python -m toy.lstm --help                      # every option, with its meaning

Setup (CSFT+PA paper §5.1–5.2; docs/theory.md §2)
---------------------------------------------------------------------------------
For every seed s a *reference* π_ref (the paper's π_aligned) is drawn at random and frozen. Two knobs
make a random LSTM a usable teacher: its weights are initialised ``ref_init_gain`` (5) times wider than
PyTorch's default (at gain 1 a 3-layer random LSTM ignores its input: context→next-token mutual
information ≈ 0.001 nats), and its logits are multiplied by one scalar per seed, found by bisection, so
that its mean next-token entropy on uniform-random token sequences is ``ref_entropy`` nats. Sequences
are a context of ``context_len`` uniform-random tokens followed by ``response_len`` tokens *sampled*
from π_ref. ``n_train`` training sequences and ``n_eval`` held-out sequences (fresh contexts — a repeat
has probability ≈ n_train·n_eval/V^context_len ≈ 1e-6 — and fresh samples) are drawn per seed. A
*policy* π_θ, randomly initialised, is trained with Adam on the training sequences (loss on the
response tokens only) and evaluated, teacher-forced, on the held-out response positions after every
epoch. The paper gives no sizes, data, optimiser or schedule for these toys; all of those are ours.

  pre-experiment 1: policy  = embedding → 1-layer LSTM → one FC layer (H → V);
                    reference = embedding → 1-layer LSTM → ``ref_blocks`` residual FC blocks
                    h ← h + W₂ relu(W₁ h) → FC (H_ref → V), about twice the policy's parameters.
                    Groups: "ce" (plain NLL) vs "ce_pa" (NLL + δ_epoch · PA).
  pre-experiment 2: policy  = embedding → 2-layer LSTM → width-preserving FC (H → H, relu) → FC (H → V);
                    reference = embedding → 3-layer LSTM → dimension-expanding FC (H → 2H, relu) → FC (2H → V).
                    Groups: "csft" vs "csft_pa" (CSFT + δ_epoch · PA).

Losses (all from ``theory.losses``; nothing is re-implemented here). Per model, over the response
tokens of a minibatch: CE = ``nll_loss(log π_θ(y_t), mask)`` (token mean); CSFT = ``csft_loss(log π_θ(y_t), log π_ref(y_t), mask)`` with
``csft_betas`` (β₁=0.5, β₂..₅=2, β_{t≥6}=0.1, t counted from the first response token); PA =
``pa_loss(logits, ref_logits, mask, detach_mu=args.detach_mu)``; δ_epoch = ``pa_delta(epoch,
epochs, delta_start, delta_span)`` with epoch = 1..epochs, so the last epoch uses the paper's cap 0.3.
Both groups of a seed share the reference, the data, the minibatch order and the policy's
initialisation (a paired comparison).

Seeds are a batch dimension: all seeds and both groups of a pre-experiment are one stacked model
whose parameters carry a leading model axis (grouped LSTM/linear weights applied with ``bmm``), so one
forward/backward trains every (group, seed) model at once. The summed loss Σ_models loss_m gives each
model exactly its own gradient, and Adam acts element-wise, so this equals separate training runs.

Metrics (held-out response positions; p = π_θ(·|context, y_<t), q = π_ref(·|context, y_<t), V tokens;
each is computed per position, averaged over all held-out positions of a seed, then summarised over
seeds as mean ± 95% Student-t CI):
  ``kl``            KL(p‖q) = Σ_v p_v log(p_v/q_v) — the direction of the paper's μ_t (Eq. 6); the
                    paper does not say which direction its "KL divergence" is, so we also report
  ``kl_ref_policy`` KL(q‖p) (the direction plain NLL on reference samples minimises).
  ``prob_diff``     per-token probability difference, (1/V) Σ_v |p_v − q_v| (= 2·TV/V). The paper does
                    not define it; we chose the mean absolute difference over the vocabulary.
  ``cosine``        Σ_v p_v q_v / (‖p‖₂ ‖q‖₂).
  ``pearson``       Pearson correlation of the V pairs (p_v, q_v) at one position (0 if either
                    distribution is exactly uniform). The paper does not say whether it pools positions;
                    we correlate per position and average.
  ``overlap``       distribution overlap Σ_v min(p_v, q_v) = 1 − TV(p, q).
  ``kl_similarity`` exp(−KL(p‖q)) per position, in (0, 1]. The paper does not define it; exp(−KL)
                    is our choice (1 iff identical, higher is better).
  ``argmax_agree``  fraction of positions where argmax p = argmax q (what PA pushes towards).

Outputs in ``--out`` (default ``results/lstm``); a "ci" is {"mean", "ci95" (95% t half-width), "n"}:
  ``summary.json``
    args, preset            resolved options and the preset name (null when none was given)
    runtime_s               wall seconds: exp1, exp2, total
    torch_version           torch.__version__
    paper                   the paper's numbers: exp1.values (KL, prob_diff per group), exp1/exp2
                            .rel_change_pct, .pa_better_on (metrics the paper says PA improves)
    exp1, exp2              per pre-experiment (only those run):
      groups                [base group, PA group], e.g. ["ce", "ce_pa"]
      param_counts          {policy, reference, ratio} parameters of one model
      reference             entropy_nats (ci over seeds of the mean held-out next-token entropy),
                            context_mi_nats (ci of H(mean q) − mean H(q) over held-out positions: how
                            much the context matters), logit_scale (per seed)
      results[group]        "eval/<metric>": ci over seeds of the final held-out metric
      train/final_loss      {group: last epoch's mean training loss (over seeds and steps)}
      pa_minus_base         "eval/<metric>": ci of the paired per-seed difference PA − base, plus
                            frac_seeds_pa_better
      rel_change_pct        "eval/<metric>": 100·(mean PA − mean base)/|mean base|
      pa_better             "eval/<metric>": "yes" (paired CI excludes 0 in PA's favour),
                            "no, worse" (excludes 0 the other way) or "no difference"
      vs_paper              for the metrics the paper reports: "agrees", "opposite" or
                            "not reproduced (n.s.)"
      pa_reduces_kl         true iff the paired CI of ΔKL(p‖q) lies below 0
      verdict               one sentence: KL base → PA, relative change, paired difference
  ``metrics.npz``   ``<exp>/<group>/final/<metric>`` (seeds,), ``<exp>/<group>/curve/<metric>``
                    (seeds, epochs+1; column 0 = initialisation), ``<exp>/<group>/train_loss`` (epochs,),
                    ``<exp>/ref_entropy``, ``<exp>/ref_context_mi``, ``<exp>/ref_logit_scale`` (seeds,)
  ``kl_curves.png`` held-out KL(p‖q) per epoch, one column per experiment: mean and 95% CI band per
                    group (top), paired difference PA − base with its 95% CI band (bottom)
  ``metrics_bar.png`` final metrics per group with 95% CI error bars
  stdout            the table of both experiments beside the paper's numbers, and the verdicts

Run time (1 torch thread on a 2-core machine shared with other jobs, measured):
  smoke   runtime_s.total 14 s; 25–30 s wall with imports and plots.
  paper   2036 s wall (exp1 894 s, exp2 1142 s) with the load average at 5–11 on the 2 cores; its CPU
          time is ≈ 10 min (estimated: a 5-seed run of the same preset took 317 s CPU), so expect ≈ 10–12 min on
          an otherwise idle core. Cost is linear in seeds × n_train × epochs.
A seed's numbers do not depend on how many seeds run beside it (checked: seeds 0–4 of a 5-seed run
equal those of the 10-seed run bit for bit on CPU).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from theory.losses import csft_loss, nll_loss, pa_delta, pa_loss
from toy._common import ci_dict, fmt_ci, format_table, parse_args, progress, write_json
from toy.lstm_models import (StackedLSTMLayer, StackedSeqModel, build_models,  # noqa: F401  (re-exported for callers)
                             calibrate_logit_scale, distribution_metrics, params_per_model, response_logits,
                             sample_sequences, token_logp)


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
@dataclass
class Args:
    experiments: tuple[int, ...] = (1, 2)
    """Which pre-experiments to run, comma-separated: 1 (CE vs CE+PA), 2 (CSFT vs CSFT+PA)."""
    seeds: int = 10
    """Number of seeds (independent references, data sets and policy initialisations); >= 2 for a CI."""
    seed: int = 0
    """Base seed; every random stream (reference, data, policy, minibatch order) is derived from it."""
    vocab_size: int = 32
    """Vocabulary size V."""
    context_len: int = 8
    """Tokens of uniform-random context before each response."""
    response_len: int = 24
    """Response tokens sampled from the reference; the losses and metrics use these positions."""
    n_train: int = 2000
    """Training sequences per seed."""
    n_eval: int = 500
    """Held-out evaluation sequences per seed (fresh contexts and fresh reference samples)."""
    epochs: int = 30
    """Training epochs (max_epoch of δ_epoch)."""
    batch_size: int = 64
    """Sequences per minibatch (per model)."""
    lr: float = 3e-3
    """Adam learning rate."""
    embed_dim: int = 32
    """Token embedding width of every model."""
    policy_hidden: int = 64
    """LSTM width H of the policy (both pre-experiments)."""
    ref_hidden: int = 72
    """LSTM width of the pre-experiment-1 reference (72 with 2 residual blocks ≈ 1.95× the policy)."""
    ref_blocks: int = 2
    """Residual FC blocks h ← h + W₂ relu(W₁ h) on top of the pre-experiment-1 reference LSTM."""
    ref2_hidden: int = 64
    """LSTM width of the pre-experiment-2 reference (3 layers; its FC head expands to 2× this width)."""
    ref_init_gain: float = 5.0
    """Multiplier of the references' weight-init range (uniform ±gain/√fan_in = PyTorch's default × gain).
    At gain 1 a random 3-layer LSTM ignores its input (context→next-token mutual information ≈ 0.001
    nats); at 5 it is 0.6–1.0 nats, so the reference's distribution depends on the context."""
    ref_entropy: float = 1.5
    """Mean next-token entropy (nats) the reference is scaled to on uniform-random sequences; in (0, log V)."""
    delta_start: float = 0.1
    """δ_epoch = delta_start + delta_span · epoch/epochs (seed Eq. 7: 0.1); >= 0."""
    delta_span: float = 0.2
    """Increase of δ over training (seed Eq. 7: 0.2, so δ ends at 0.3); delta_start + delta_span >= 0."""
    detach_mu: bool = True
    """Detach μ_t = KL(π_θ‖π_ref) inside the PA loss (docs/theory.md §2: a flag; default detached)."""
    eval_batch: int = 250
    """Sequences per no-grad forward pass (evaluation, reference logits); memory only, same numbers."""
    threads: int = 1
    """torch.set_num_threads; 1 is polite on shared cores."""
    device: str = "cpu"
    """Torch device ("cpu", "cuda" or "cuda:N"); bit-for-bit reproducibility is claimed on CPU only."""
    out: str = "results/lstm"
    """Output directory for summary.json, metrics.npz and the PNG plots."""
    progress: bool = True
    """Show progress bars (stderr, only on a terminal)."""

    def __post_init__(self):
        """Raise ValueError naming the bad value, the allowed range and the fix."""
        for name in ("seeds", "vocab_size", "context_len", "response_len", "n_train", "n_eval", "epochs",
                     "batch_size", "embed_dim", "policy_hidden", "ref_hidden", "ref2_hidden", "eval_batch",
                     "threads"):
            v = getattr(self, name)
            if v < 1:
                raise ValueError(f"--{name.replace('_', '-')} {v} must be a positive integer")
        if self.ref_blocks < 0:
            raise ValueError(f"--ref-blocks {self.ref_blocks} must be >= 0")
        if self.seeds < 2:
            raise ValueError(f"--seeds {self.seeds}: a 95% CI needs at least 2 seeds; pass --seeds 2 or more")
        if self.vocab_size < 2:
            raise ValueError(f"--vocab-size {self.vocab_size} must be >= 2")
        if self.batch_size > self.n_train:
            raise ValueError(f"--batch-size {self.batch_size} exceeds --n-train {self.n_train}; lower the batch size")
        for name in ("lr", "ref_init_gain"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"--{name.replace('_', '-')} {v} must be a finite positive number")
        if not (0 < self.ref_entropy < math.log(self.vocab_size)):
            raise ValueError(f"--ref-entropy {self.ref_entropy} must lie in (0, log V = "
                             f"{math.log(self.vocab_size):.3f}) nats")
        if not (math.isfinite(self.delta_start) and math.isfinite(self.delta_span)) or self.delta_start < 0 \
                or self.delta_start + self.delta_span < 0:
            raise ValueError(f"bad δ schedule: δ_epoch = {self.delta_start} + {self.delta_span}·epoch/epochs must be "
                             "finite and >= 0 at every epoch; use --delta-start >= 0 and "
                             "--delta-start + --delta-span >= 0")
        if not self.experiments or any(e not in (1, 2) for e in self.experiments):
            raise ValueError(f"--experiments {','.join(map(str, self.experiments))} must list 1 and/or 2, e.g. 1,2")
        if self.device != "cpu" and not (self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"--device {self.device!r} must be cpu, cuda or cuda:N")


PRESETS: dict[str, dict] = {
    "paper": {},
    "smoke": dict(seeds=3, n_train=256, n_eval=64, epochs=3, eval_batch=64),
}
GROUPS = {"exp1": ("ce", "ce_pa"), "exp2": ("csft", "csft_pa")}
GROUP_LABELS = {"ce": "CE", "ce_pa": "CE+PA", "csft": "CSFT", "csft_pa": "CSFT+PA"}
METRICS = ("kl", "kl_ref_policy", "prob_diff", "cosine", "pearson", "overlap", "kl_similarity", "argmax_agree")
HIGHER_IS_BETTER = {"kl": False, "kl_ref_policy": False, "prob_diff": False, "cosine": True, "pearson": True,
                    "overlap": True, "kl_similarity": True, "argmax_agree": True}
# The paper's numbers (seed §5.1 Table 2) and claims (§5.2 Figs. 2–4: CSFT+PA better on these metrics).
PAPER = {
    "exp1": {"values": {"ce": {"kl": 1.4575, "prob_diff": 0.0169}, "ce_pa": {"kl": 0.2562, "prob_diff": 0.0051}},
             "rel_change_pct": {"kl": -82.4, "prob_diff": -69.8}, "pa_better_on": ["kl", "prob_diff"]},
    "exp2": {"values": {}, "rel_change_pct": {},
             "pa_better_on": ["cosine", "pearson", "overlap", "kl_similarity", "kl"]},
}


# ----------------------------------------------------------------------------------------------
# data: uniform contexts, responses sampled from the reference (per-seed random streams)
# ----------------------------------------------------------------------------------------------
def stream_seed(base: int, exp: str, seed_index: int, stream: str) -> int:
    """Independent integer seed for one (experiment, seed, stream); stable across runs and seed counts."""
    tags = {"ref": 1, "policy": 2, "train": 3, "eval": 4, "order": 5, "calib": 6}
    return int(np.random.SeedSequence([base, int(exp[-1]), seed_index, tags[stream]]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------
# losses (a registry over theory.losses) and evaluation
# ----------------------------------------------------------------------------------------------
def loss_ce(logits, targets, ref_logits, mask, delta, detach_mu):
    nll = nll_loss(token_logp(logits, targets), mask)[0]
    return nll, {"loss/ce": float(nll.detach())}


def loss_csft(logits, targets, ref_logits, mask, delta, detach_mu):
    return csft_loss(token_logp(logits, targets), token_logp(ref_logits, targets), mask)


def _with_pa(base: Callable) -> Callable:
    def loss(logits, targets, ref_logits, mask, delta, detach_mu):
        lb, mb = base(logits, targets, ref_logits, mask, delta, detach_mu)
        lp, mp = pa_loss(logits, ref_logits, mask, detach_mu=detach_mu)
        return lb + delta * lp, {**mb, **mp, "loss/pa": float(lp.detach()), "pa/delta": delta}
    return loss


LOSSES = {"ce": loss_ce, "ce_pa": _with_pa(loss_ce), "csft": loss_csft, "csft_pa": _with_pa(loss_csft)}


def stacked_group_loss(group: str, logits: Tensor, targets: Tensor, ref_logits: Tensor, delta: float,
                       detach_mu: bool = True) -> tuple[Tensor, dict]:
    """Σ over the S stacked models of one group's per-model loss, so each model gets its own gradient.

    logits/ref_logits (S, B, T, V), targets (S, B, T). Every row has the same T response tokens, so the
    token mean over the flattened (S·B, T) batch is the mean of the S per-model token means; × S gives the sum.
    """
    s, b, t, v = logits.shape
    mask = torch.ones(s * b, t, dtype=logits.dtype, device=logits.device)
    loss, metrics = LOSSES[group](logits.reshape(s * b, t, v), targets.reshape(s * b, t),
                                  ref_logits.reshape(s * b, t, v), mask, delta, detach_mu)
    return s * loss, {**metrics, "loss/total": float(loss.detach())}


def training_loss(policy: StackedSeqModel, batch: Tensor, ref_logits: Tensor, groups: Sequence[str], delta: float,
                  args: Args) -> tuple[Tensor, dict[str, float]]:
    """The loss one training step differentiates: Σ_groups Σ_seeds of each model's own loss.

    batch (S, B, L) tokens, ref_logits (S, B, T, V) of the reference on the same batch; the policy holds
    G·S models laid out group-major (model g·S + s is group g, seed s) and every group sees the same batch.
    Returns (total, {group: mean over seeds of its loss}).
    """
    S = batch.shape[0]
    logits = response_logits(policy, batch.repeat(len(groups), 1, 1), args.context_len)
    logits = logits.view(len(groups), S, *logits.shape[1:])  # (G, S, B, T, V)
    targets = batch[:, :, args.context_len:]  # (S, B, T)
    total, per_group = 0.0, {}
    for gi, g in enumerate(groups):
        loss, m = stacked_group_loss(g, logits[gi], targets, ref_logits, delta, args.detach_mu)
        total = total + loss
        per_group[g] = m["loss/total"]
    return total, per_group


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


# ----------------------------------------------------------------------------------------------
# one pre-experiment: all groups × seeds in one stacked training loop
# ----------------------------------------------------------------------------------------------
def run_experiment(exp: str, args: Args, device) -> dict:
    groups, S = GROUPS[exp], args.seeds
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

    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    order_gens = [torch.Generator().manual_seed(seed_of(s, "order")) for s in range(S)]
    curves = {k: np.zeros((G, S, args.epochs + 1)) for k in METRICS}
    for k, v in evaluate(policy, eval_tokens, ref_eval_logits, G, args).items():
        curves[k][..., 0] = v
    steps = args.n_train // args.batch_size
    seed_idx = torch.arange(S, device=device)[:, None]
    train_loss = {g: np.zeros(args.epochs) for g in groups}
    bar = progress(range(1, args.epochs + 1), f"{exp} ({'/'.join(GROUP_LABELS[g] for g in groups)})",
                   args.progress)
    for epoch in bar:
        delta = pa_delta(epoch, args.epochs, args.delta_start, args.delta_span)
        perms = torch.stack([torch.randperm(args.n_train, generator=g) for g in order_gens]).to(device)  # (S, N)
        for step in range(steps):
            rows = perms[:, step * args.batch_size:(step + 1) * args.batch_size]  # (S, B)
            batch = train_tokens[seed_idx, rows]  # (S, B, L)
            ref_logits = ref_train_logits[seed_idx, rows]  # (S, B, T, V)
            total, per_group = training_loss(policy, batch, ref_logits, groups, delta, args)
            for g in groups:
                train_loss[g][epoch - 1] += per_group[g] / steps
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        for k, v in evaluate(policy, eval_tokens, ref_eval_logits, G, args).items():
            curves[k][..., epoch] = v
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({f"KL {GROUP_LABELS[g]}": f"{curves['kl'][gi, :, epoch].mean():.4f}"
                             for gi, g in enumerate(groups)})
    return {"groups": groups, "curves": curves, "train_loss": train_loss,
            "param_counts": {"policy": params_per_model(policy), "reference": params_per_model(ref),
                             "ratio": params_per_model(ref) / params_per_model(policy)},
            "ref_entropy": cond_entropy.cpu().numpy(), "ref_context_mi": context_mi.cpu().numpy(),
            "ref_logit_scale": ref.logit_scale.cpu().numpy()}


# ----------------------------------------------------------------------------------------------
# summary, table, plots
# ----------------------------------------------------------------------------------------------
ARCH = {"exp1": ("1-layer LSTM + 1 FC", "1-layer LSTM + {blocks} residual FC blocks"),
        "exp2": ("2-layer LSTM + width-preserving FC", "3-layer LSTM + dimension-expanding FC")}


def summarize(exp: str, res: dict) -> dict:
    """The summary.json entry of one pre-experiment (keys documented in the module docstring)."""
    base, pa = res["groups"]
    final = {g: {k: res["curves"][k][gi, :, -1] for k in METRICS} for gi, g in enumerate(res["groups"])}
    out = {"groups": list(res["groups"]), "param_counts": res["param_counts"],
           "reference": {"entropy_nats": ci_dict(res["ref_entropy"]), "context_mi_nats": ci_dict(res["ref_context_mi"]),
                         "logit_scale": res["ref_logit_scale"].tolist()},
           "results": {g: {f"eval/{k}": ci_dict(v) for k, v in final[g].items()} for g in res["groups"]},
           "train/final_loss": {g: float(res["train_loss"][g][-1]) for g in res["groups"]},
           "pa_minus_base": {}, "rel_change_pct": {}, "pa_better": {}, "vs_paper": {}}
    for k in METRICS:
        d = final[pa][k] - final[base][k]
        better = d > 0 if HIGHER_IS_BETTER[k] else d < 0
        ci = ci_dict(d)
        lo, hi = ci["mean"] - ci["ci95"], ci["mean"] + ci["ci95"]
        significant = lo > 0 or hi < 0
        out["pa_minus_base"][f"eval/{k}"] = {**ci, "frac_seeds_pa_better": float(better.mean())}
        mb = float(final[base][k].mean())
        out["rel_change_pct"][f"eval/{k}"] = 100 * (float(final[pa][k].mean()) - mb) / abs(mb) if mb != 0 else None
        pa_better_sig = significant and ((ci["mean"] > 0) == HIGHER_IS_BETTER[k])
        out["pa_better"][f"eval/{k}"] = "yes" if pa_better_sig else ("no, worse" if significant else "no difference")
        if k in PAPER[exp]["pa_better_on"]:
            out["vs_paper"][f"eval/{k}"] = ("agrees" if pa_better_sig else
                                            "opposite" if significant else "not reproduced (n.s.)")
    kl = out["pa_minus_base"]["eval/kl"]
    out["pa_reduces_kl"] = bool(kl["mean"] + kl["ci95"] < 0)
    r_base, r_pa = out["results"][base]["eval/kl"], out["results"][pa]["eval/kl"]
    verb = "reduces" if out["pa_reduces_kl"] else ("increases" if kl["mean"] - kl["ci95"] > 0 else "does not change")
    out["verdict"] = (f"{GROUP_LABELS[pa]} {verb} held-out KL(π_θ‖π_ref) relative to {GROUP_LABELS[base]}: "
                      f"{r_base['mean']:.4f} → {r_pa['mean']:.4f} ({out['rel_change_pct']['eval/kl']:+.1f}%; "
                      f"paired difference {fmt_ci(kl['mean'], kl['ci95'], 4)}, PA lower in "
                      f"{round(kl['frac_seeds_pa_better'] * kl['n'])}/{kl['n']} seeds)")
    return out


def print_table(exp: str, s: dict, args: Args) -> None:
    """Our mean ± 95% CI beside the paper's numbers (exp 1) or claimed direction (exp 2)."""
    base, pa = s["groups"]
    pc = s["param_counts"]
    arch_p, arch_r = (a.format(blocks=args.ref_blocks) for a in ARCH[exp])
    title = {"exp1": "Pre-experiment 1", "exp2": "Pre-experiment 2"}[exp]
    print(f"\n{title}: {GROUP_LABELS[base]} vs {GROUP_LABELS[pa]}; policy {arch_p} ({pc['policy']:,} params), "
          f"reference {arch_r} ({pc['reference']:,} params, {pc['ratio']:.2f}×); {args.seeds} seeds, "
          f"mean ± 95% CI; reference entropy {s['reference']['entropy_nats']['mean']:.3f} nats, "
          f"context MI {s['reference']['context_mi_nats']['mean']:.3f} nats")
    paper = PAPER[exp]
    rows = []
    for k in METRICS:
        key = f"eval/{k}"
        r = s["results"]
        d = s["pa_minus_base"][key]
        rel = s["rel_change_pct"][key]
        pv = paper["values"]
        row = [k + (" ↑" if HIGHER_IS_BETTER[k] else " ↓"), fmt_ci(r[base][key]["mean"], r[base][key]["ci95"], 4),
               fmt_ci(r[pa][key]["mean"], r[pa][key]["ci95"], 4), fmt_ci(d["mean"], d["ci95"], 4),
               "n/a" if rel is None else f"{rel:+.1f}%", s["pa_better"][key]]
        if exp == "exp1":
            row += [f"{pv[base][k]:.4f}" if k in pv.get(base, {}) else "—",
                    f"{pv[pa][k]:.4f}" if k in pv.get(pa, {}) else "—",
                    f"{paper['rel_change_pct'][k]:+.1f}%" if k in paper["rel_change_pct"] else "—"]
        else:
            row += ["PA better" if k in paper["pa_better_on"] else "—"]
        row += [s["vs_paper"].get(key, "—")]
        rows.append(row)
    headers = ["metric", GROUP_LABELS[base], GROUP_LABELS[pa], f"{GROUP_LABELS[pa]} − {GROUP_LABELS[base]} (paired)",
               "rel. change", "PA better?"]
    headers += ([f"paper {GROUP_LABELS[base]}", f"paper {GROUP_LABELS[pa]}", "paper rel."] if exp == "exp1"
                else ["paper (Figs. 2–4)"]) + ["vs paper"]
    print(format_table(headers, rows))
    print(s["verdict"])


def make_plots(out: Path, results: dict, args: Args) -> None:
    """kl_curves.png (held-out KL per epoch, mean ± 95% CI band) and metrics_bar.png (final metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toy._common import mean_ci_axis as mean_ci

    exps = list(results)
    fig, axes = plt.subplots(2, len(exps), figsize=(6 * len(exps), 7), squeeze=False)
    for col, exp in enumerate(exps):
        res = results[exp]
        kl = res["curves"]["kl"]  # (G, S, epochs + 1)
        x = np.arange(kl.shape[-1])
        ax = axes[0, col]
        for gi, g in enumerate(res["groups"]):
            m, h, _ = mean_ci(kl[gi], axis=0)
            ax.plot(x, m, label=GROUP_LABELS[g])
            ax.fill_between(x, m - h, m + h, alpha=0.25)
        ax.set(yscale="log", xlabel="epoch", ylabel="held-out KL(π_θ‖π_ref) (nats)",
               title=f"{exp}: {args.seeds} seeds, mean ± 95% CI")
        ax.legend()
        ax = axes[1, col]  # the paired difference: seeds share reference, data and initialisation
        m, h, _ = mean_ci(kl[1] - kl[0], axis=0)
        base, pa = (GROUP_LABELS[g] for g in res["groups"])
        ax.plot(x, m, color="C2")
        ax.fill_between(x, m - h, m + h, alpha=0.25, color="C2")
        ax.axhline(0, color="gray", lw=1)
        ax.set(xlabel="epoch", ylabel=f"KL({pa}) − KL({base}) (nats)", title=f"{exp}: paired difference, mean ± 95% CI")
        for a in axes[:, col]:
            a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "kl_curves.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(exps), len(METRICS), figsize=(2.4 * len(METRICS), 3 * len(exps)), squeeze=False)
    for row, exp in zip(axes, exps):
        res = results[exp]
        for ax, k in zip(row, METRICS):
            for gi, g in enumerate(res["groups"]):
                m, h, _ = mean_ci(res["curves"][k][gi, :, -1])
                ax.bar(gi, m, yerr=h, capsize=4, color=f"C{gi}")
            ax.set_xticks(range(len(res["groups"])), [GROUP_LABELS[g] for g in res["groups"]], fontsize=8)
            ax.set_title(f"{exp}: {k} {'↑' if HIGHER_IS_BETTER[k] else '↓'}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "metrics_bar.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> dict:
    args, preset = parse_args(Args, argv, presets=PRESETS, description=__doc__, prog="python -m toy.lstm")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results, runtime = {}, {}
    for e in sorted(set(args.experiments)):
        exp = f"exp{e}"
        t = time.perf_counter()
        results[exp] = run_experiment(exp, args, device)
        runtime[exp] = time.perf_counter() - t
    runtime["total"] = time.perf_counter() - t0
    summary = {"args": asdict(args), "preset": preset, "runtime_s": runtime, "torch_version": torch.__version__,
               "paper": PAPER, **{exp: summarize(exp, res) for exp, res in results.items()}}
    arrays = {}
    for exp, res in results.items():
        for gi, g in enumerate(res["groups"]):
            for k in METRICS:
                arrays[f"{exp}/{g}/final/{k}"] = res["curves"][k][gi, :, -1]
                arrays[f"{exp}/{g}/curve/{k}"] = res["curves"][k][gi]
            arrays[f"{exp}/{g}/train_loss"] = res["train_loss"][g]
        for k in ("ref_entropy", "ref_context_mi", "ref_logit_scale"):
            arrays[f"{exp}/{k}"] = res[k]
    np.savez_compressed(out / "metrics.npz", **arrays)
    write_json(out / "summary.json", summary)
    make_plots(out, results, args)
    for exp in results:
        print_table(exp, summary[exp], args)
    print(f"\nwrote {out}/summary.json, metrics.npz, kl_curves.png, metrics_bar.png in {runtime['total']:.1f} s")
    return summary


if __name__ == "__main__":
    main()

