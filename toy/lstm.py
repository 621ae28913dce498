"""Pre-experiments 1 and 2 of CSFT+PA: does the PA loss pull an LSTM policy towards a different LSTM reference?

Commands (laptop CPU; this toy needs no GPU, ``--device cuda`` runs the same study on one GPU)::

    python -m toy.lstm --preset smoke              # < 60 s: 3 seeds, 3 epochs, tiny data, both pre-experiments
    python -m toy.lstm --preset paper              # the full study: 10 seeds, 30 epochs (≈ 10–35 min, see below)
    python -m toy.lstm --preset paper --seeds 5 --delta-start 1 --delta-span 2   # PA weight ×10
    python -m toy.lstm --preset paper --seeds 20 --out results/lstm20
    python -m toy.lstm --preset regimes            # the regimes study (toy/lstm_regimes.py): ≈ 8 min CPU, 1 core
    python -m toy.lstm --preset regimes_smoke      # the same study in seconds (the plumbing, not a result)
    python -m toy.lstm --help                      # every option, with its meaning

``--study regimes`` (the two ``regimes`` presets) runs a second study on the same models and data:
CE, CE+PA with μ_t detached and differentiated, and CE + c·KL(π_θ‖π_ref) controls, each in a data-rich and
a small-data regime, with and without early stopping; its setup, outputs and run time are documented in
``toy/lstm_regimes.py``. Everything below describes the default ``--study pre``.

Files: this module is the CLI (options, presets, ``main``) and re-exports the public names of
``toy/lstm_models.py`` (the stacked LSTMs, the reference's calibration and sampling, log-probs, metrics),
``toy/lstm_train.py`` (data streams, the loss registry, the stacked training loop, evaluation) and
``toy/lstm_report.py`` (summary.json entry, table, plots); ``toy/lstm_regimes.py`` is the regimes study.

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
from typing import Optional, Sequence

import numpy as np
import torch

from toy._common import parse_args, write_json
from toy.lstm_models import (HIGHER_IS_BETTER, METRICS, StackedLSTMLayer,  # noqa: F401  (re-exported for callers)
                             StackedSeqModel, build_models, calibrate_logit_scale, distribution_metrics,
                             params_per_model, response_logits, sample_sequences, token_logp)
from toy.lstm_report import PAPER, make_plots, print_table, summarize  # noqa: F401
from toy.lstm_train import (GROUP_LABELS, GROUPS, LOSSES, evaluate, evaluate_nll, group_label,  # noqa: F401
                            loss_for, run_experiment, stacked_group_loss, stream_seed, training_loss)


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
    """δ_epoch = delta_start + delta_span · epoch/epochs (CSFT+PA paper Eq. 7: 0.1); >= 0."""
    delta_span: float = 0.2
    """Increase of δ over training (paper Eq. 7: 0.2, so δ ends at 0.3); delta_start + delta_span >= 0."""
    detach_mu: bool = True
    """Detach μ_t = KL(π_θ‖π_ref) inside the PA loss (docs/theory.md §2: a flag; default detached)."""
    study: str = "pre"
    """What to run: "pre" (the pre-experiments, base vs base+PA) or "regimes" (``toy.lstm_regimes``: CE, CE+PA
    with μ detached and differentiated, and CE + c·KL controls, in a data-rich regime (--n-train, --epochs) and
    a small-data regime (--small-n-train, --small-epochs), with and without early stopping)."""
    small_n_train: int = 128
    """Training sequences per seed of the small-data regime (--study regimes only)."""
    small_epochs: int = 60
    """Epochs of the small-data regime (--study regimes only; max_epoch of its δ_epoch)."""
    val_frac: float = 0.25
    """Validation sequences for early stopping, as a fraction of each regime's training sequences (--study
    regimes only): fresh samples of π_ref drawn beside the training set, so both stopping rules see the
    same training data; in (0, 1]."""
    kl_coefs: tuple[float, ...] = (0.1, 0.3, 1.0)
    """Coefficients c of the control arms base + c·KL(π_θ‖π_ref), the KL exact over the vocabulary at every
    teacher-forced response position (--study regimes only); each finite and > 0."""
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
        if self.study not in STUDIES:
            raise ValueError(f"--study {self.study!r} must be one of {', '.join(STUDIES)}")
        if self.study == "regimes":
            self._check_regimes()

    def _check_regimes(self):
        for name in ("small_n_train", "small_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be a positive integer")
        if self.batch_size > self.small_n_train:
            raise ValueError(f"--batch-size {self.batch_size} exceeds --small-n-train {self.small_n_train}; "
                             "lower the batch size or raise --small-n-train")
        if not (0 < self.val_frac <= 1) or round(self.val_frac * min(self.n_train, self.small_n_train)) < 1:
            raise ValueError(f"--val-frac {self.val_frac} must lie in (0, 1] and leave at least 1 validation "
                             f"sequence in the smaller regime ({min(self.n_train, self.small_n_train)} sequences)")
        if not self.kl_coefs or any(not (c > 0 and math.isfinite(c)) for c in self.kl_coefs):
            raise ValueError(f"--kl-coefs {','.join(map(str, self.kl_coefs))} must be finite and > 0, e.g. 0.1,0.3,1")
        if not self.detach_mu:
            raise ValueError("--no-detach-mu: --study regimes runs PA with μ detached and differentiated side by "
                             "side (groups <base>_pa and <base>_pa_mugrad); drop the flag")


STUDIES = ("pre", "regimes")
PRESETS: dict[str, dict] = {
    "paper": {},
    "smoke": dict(seeds=3, n_train=256, n_eval=64, epochs=3, eval_batch=64),
    "regimes": dict(study="regimes", experiments=(1,), seeds=6, n_train=3000, epochs=12, small_n_train=128,
                    small_epochs=60, batch_size=32, n_eval=200, eval_batch=200),
    "regimes_smoke": dict(study="regimes", experiments=(1,), seeds=3, n_train=64, epochs=3, small_n_train=8,
                          small_epochs=80, batch_size=8, lr=0.01, policy_hidden=32, ref_hidden=32, response_len=12,
                          n_eval=32, eval_batch=32),
}


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> dict:
    args, preset = parse_args(Args, argv, presets=PRESETS, description=__doc__, prog="python -m toy.lstm")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.study == "regimes":
        from toy import lstm_regimes

        return lstm_regimes.run(args, preset, device, out)
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
