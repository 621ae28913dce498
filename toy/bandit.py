"""FRPO vs GRPO on a contextual softmax bandit with a sharp and a flat high-reward solution.

    python -m toy.bandit --preset smoke                  # < 60 s on a laptop CPU
    python -m toy.bandit --preset paper                  # 64 seeds × 8 λ × 3 downstream stages + ablations + KL-matched arms
    python -m toy.bandit --preset paper --lams 0.1,0.5,2,inf --seeds 4 --group-size 8 --out results/bandit
CPU only; there is no multi-GPU path (the whole sweep is one batched float64 program of a few MB).
Code: this file (arguments, sweep rows, stages, main); ``toy.bandit_env`` (environment, policy, losses);
``toy.bandit_report`` (summaries, tables); ``toy.bandit_plots`` (PNGs); ``toy.calibrate`` (the
bisection of the KL-matched arms); ``toy.rlvr_paths`` (part 4). Names used elsewhere are re-exported
here. The file is past 400 lines because this docstring (the documented outputs) and the argument
dataclass (the CLI's help) are ~230 of them.

Environment (per seed and context x; K arms on a line). Rewards in [0, 1]: a *sharp peak* (one arm,
r = 1) whose two neighbours on each side are catastrophic (r = 0, the "pit"), a *plateau* of 7 arms
at r = h_x ~ U(--plateau-reward), a background r = b_x ~ U(--background-reward). The policy is
linear-softmax, π_θ(a|x) ∝ exp(θ·φ(x, a)), θ shared by all contexts, φ = [RBF of width σ at the
peak, RBF at the plateau centre, 6 coarse RBFs of the absolute position]. σ (--feature-width) is the
policy's resolution: mass put on the peak leaks into the pit, so the peak is a high-mean,
high-variance ("sharp") solution and the plateau a lower, flat one. π_ref = π_{θ_ref} leans toward
the peak (--ref-bump). The downstream task sits --task-offset arms from the peak, away from the
plateau (the pit lies between the peak and the task).

Stages. (1) Training as GRPO does it: G arms per context from π_θ, rewards, one on-policy update per
batch (ratio ≡ 1, so the PPO clip is inactive), Adam. Each sweep row ("config": λ, jackknife,
baseline, β) has its own θ: parameters are (S, V, d) for S seeds × V configs, and one forward and one
sampling call cover the whole sweep. λ (and β) differ per row, so the functions of
``theory.losses`` are called once per config, each call vectorized over seeds × contexts × G with
rows in contiguous groups of G: GRPO (λ = inf) = ``group_advantages`` + ``grpo_loss``; FRPO =
``frpo_advantages`` + ``grpo_loss`` (--form advantage) or ``frpo_loss`` (--form ratio); both add
β·``kl_k3`` to π_ref. (2) Downstream from every trained π (Q starts at π; the same data for every
config of a seed): (a) SFT on samples of a target concentrated on the task arm, (b) GRPO on a second
reward r₂ (a bump at the task), (c) the exact worst case in the average-KL ball,
``theory.risk.kl_dro_dual``, over a ρ grid. Along (a)/(b) we log (KL(Q‖π), E_Q r), the landscape of
FRPO Fig. 2; "reward at matched KL" interpolates it at --kl-levels. (3) Ablations as extra configs:
no baseline (App. D, Fig. 9), no jackknife (App. E, Fig. 10), β sweep (App. B.3, Fig. 8). KL-matched
arms (--matched, group "matched"): at β = --beta FRPO ends farther from π_ref than GRPO, so for each
finite λ β is calibrated per seed (``calibrate_matched``: bisection on log β, seeds × λ one batch)
until FRPO's final KL(π‖π_ref) equals GRPO's within --match-rtol, as FRPO tunes β per arm; these
arms then go through stage (2) like the others (the same SFT data; calls of their own, so the other
arms' numbers do not depend on --matched).
(4) RLVR path model (``toy.rlvr_paths``; docs/theory.md, RLVR safety drift): exact KL-regularized
(natural) policy gradient on path distributions vs ``theory.rlvr.gibbs_tilt``, the same with GRPO's
on-policy k3 gradient, safety drift along training vs the χ² bound, and the zero-correlation
counterexample.

Outputs in --out: summary.json, metrics.npz, tables.md (the README block), landscape.png, ablation_baseline.png,
ablation_jackknife.png, ablation_kl_budget.png, rlvr.png, and tables on stdout (mean ± 95%
t-interval over seeds). Every "ci" is {"mean", "ci95" (half-width; null when n < 2), "n" (seeds
with a value)}; κ runs over --kl-levels, written with "%g".

summary.json keys
  args, preset          resolved arguments; preset name or null
  runtime_s             wall seconds: train, match, downstream, worst_case, rlvr, total
  configs               [{name, group, lam, jackknife, baseline, beta}]; group ∈ main, no_jackknife,
                        no_baseline, kl_budget, matched; lam "inf" = GRPO; beta a list (one per seed)
                        for the matched arms
  kl_levels             the κ values
  reference             {"reward", "entropy"}: ci of E_{π_ref} r and of H(π_ref)/log K
  results[name]         ci of: "train/reward" (E_π r after training), "train/kl_ref" (exact
                        KL(π‖π_ref), mean over contexts), "train/entropy" (H(π)/log K),
                        "sft/reward@kl=κ", "pg/reward@kl=κ" (E_Q r where KL(Q‖π) first reaches κ,
                        interpolated; a seed that never reaches κ is left out of n),
                        "worst/reward@kl=κ" (kl_dro_dual value at ρ = κ), "sft/kl_final",
                        "pg/kl_final" (KL(Q‖π) at the end), "sft/task_kl_final" (KL(target‖Q) at the
                        end), "pg/task_reward_final" (E_Q r₂ at the end)
  vs_grpo[name]         paired (same seed) config − GRPO of the "train/…" and "…@kl=κ" keys (main
                        sweep; present when inf is in --lams)
  vs_grpo_matched[name] the same for the KL-matched arms ("frpo_lamλ_matched"); here and in their
                        results, seeds whose match misses by more than --match-rtol are left out (n)
  matching              rtol, beta_range, max_iter, evals (training runs of the matched arms), seeds,
                        target_kl_ref (ci of GRPO's KL); arms[name]: lam, n_matched, n_bracketed,
                        rel_err_max (largest |KL/KL_grpo − 1| among the matched seeds), beta_median,
                        beta_min, beta_max, kl_ref (ci)
  ablations.no_baseline[name]  "train/reward", "train/entropy" (ci), "collapsed_frac" (fraction of
                        seeds whose final entropy is above π_ref's and reward below π_ref's),
                        "minus_with_baseline" (paired differences vs the same λ with the baseline)
  ablations.jackknife[λ]       paired differences jackknife − no jackknife ("train/…", "…@kl=κ")
  ablations.kl_budget[name]    beta, lam and the ci of "train/…" and "…@kl=κ" (no entropy)
  rlvr                  gibbs_tv {exact, grpo_k3: max over prompts and β of TV(π_T, gibbs_tilt),
                        grpo_k3_per_beta, betas, steps}; drift_over_bound_max (max over training
                        of |ΔS_t| / √(Var_ref(s)·χ²(π_t‖π_ref))); drift_bound_violations (count above
                        the bound beyond round-off); drift_final_abs_err (|ΔS_T − exact_drift|);
                        counterexample {cov_sg, delta_s_trained, delta_s_exact, chi2_bound, beta}
metrics.npz: configs (V,), steps_train, train_reward, train_kl_ref, train_entropy (S, V, T);
steps_sft, sft_kl, sft_reward, sft_task; steps_pg, pg_kl, pg_reward, pg_task (S, V, T); rhos (R,),
worst_value (S, V, R); ref_reward, ref_entropy (S,); rlvr_betas, rlvr_steps, rlvr_tv_exact,
rlvr_tv_grpo_k3, rlvr_drift, rlvr_bound (T, B, P); rlvr_ce_betas, rlvr_ce_drift; with matched arms
(the last L configs) match_target (S,) (GRPO's KL), match_beta, match_kl, match_rel_err,
match_bracketed (S, L), match_evals.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from theory.losses import SCALES
from theory.risk import kl_dro_dual
from toy._common import parse_args, progress, write_json
from toy.bandit_env import (DT, N_GLOBAL, PIT, PLATEAU_GAP, PLATEAU_HALF, Bandit, exact_stats, kl_rows,  # noqa: F401
                            log_policy, make_bandit, pg_loss, sample, sft_loss, train_loss)  # (re-exported)
from toy.calibrate import bisect_log
from toy.bandit_plots import make_plots
from toy.bandit_report import (lam_name, markdown_tables, per_seed_metrics, print_table, reward_at_kl,  # noqa: F401
                               summarize)  # (re-exported)
from toy.rlvr_paths import RLVR_BETAS, rlvr_study, train_paths  # noqa: F401  (re-exported)

Tensor = torch.Tensor


@dataclass
class BanditArgs:
    seed: int = 0
    """Base random seed; environments, samples and downstream data derive from it (same seed → same numbers)."""
    seeds: int = 64
    """S, independent seeds (a batch dimension; each seed draws its own environment)."""
    lams: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 10.0, math.inf)
    """λ grid (a batch dimension), comma-separated; inf = GRPO (group_advantages + grpo_loss)."""
    arms: int = 32
    """K, arms per context (>= task_offset + 11: room for the task, the peak, its pit and the plateau)."""
    contexts: int = 8
    """C, contexts (prompts) sharing the parameters θ through their features."""
    feature_width: float = 1.5
    """σ of the RBF features in arm spacings: wider = coarser policy = more leakage into the pit."""
    task_offset: int = 4
    """Arms from the sharp peak to the downstream task (SFT target / second reward), on the side away
    from the plateau: small = the downstream task is related to the peak's behaviour (its pit lies between)."""
    plateau_reward: tuple[float, ...] = (0.7, 0.8)
    """Range (low,high) of the plateau reward h_x, drawn per context (the peak is 1, its pit 0)."""
    background_reward: tuple[float, ...] = (0.2, 0.35)
    """Range (low,high) of the background reward b_x, drawn per context."""
    ref_bump: float = 3.0
    """Logit bump of π_ref on the peak feature (the reference leans toward the sharp solution)."""
    group_size: int = 8
    """G, arms sampled per context per step (a GRPO group)."""
    train_steps: int = 300
    """Training steps (one on-policy update per sampled batch)."""
    lr: float = 0.05
    """Adam learning rate of training."""
    beta: float = 0.02
    """β, coefficient of the k3 KL to π_ref in the training loss (FRPO Eq. 2.2, 4.1)."""
    scale: str = "max1"
    """FRPO objective scale s(λ): lambda | one | max1 (see theory.losses.frpo_scale)."""
    jackknife: bool = True
    """Jackknife log Z̃ (FRPO Eq. 4.3, App. E) in the main sweep."""
    baseline: bool = True
    """Baseline term λ·mean(c) (FRPO Eq. 4.2, App. D) in the main sweep."""
    form: str = "advantage"
    """FRPO form: advantage (frpo_advantages + grpo_loss) or ratio (frpo_loss); same gradient on-policy."""
    ablations: bool = True
    """Add the ablation configs: no jackknife and no baseline at every finite λ, and the β sweep."""
    ablation_lam: float = 0.2
    """λ of FRPO in the β (KL budget) sweep."""
    kl_betas: tuple[float, ...] = (0.005, 0.02, 0.08, 0.32)
    """β values of the KL-budget ablation (FRPO at --ablation-lam and GRPO)."""
    sft_steps: int = 1000
    """Downstream SFT steps (Adam, constant lr, so that KL(Q‖π) grows steadily as in Fig. 2 right; enough
    that the KL-matched arms, which move more slowly, reach the largest --kl-levels)."""
    sft_lr: float = 0.03
    """Adam learning rate of downstream SFT."""
    sft_batch: int = 8
    """Target samples per context per SFT step."""
    pg_steps: int = 300
    """Downstream policy-gradient (GRPO on the second reward) steps."""
    pg_lr: float = 0.05
    """Adam learning rate of downstream policy gradient."""
    rhos: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    """ρ grid of the exact worst case (kl_dro_dual); --kl-levels are added to it."""
    kl_levels: tuple[float, ...] = (0.1, 0.3, 1.0, 2.0)
    """KL(Q‖π) values at which rewards are compared ("matched KL")."""
    log_every: int = 4
    """Log exact metrics every this many steps (training and downstream)."""
    matched: bool = True
    """Add the KL-matched FRPO arms: for each finite λ of --lams, β calibrated per seed (bisection on log β,
    seeds × λ as one batch) so that FRPO's final KL(π‖π_ref) equals GRPO's (skipped without inf in --lams)."""
    match_rtol: float = 0.05
    """Tolerance of the match, |KL_FRPO / KL_GRPO − 1| <= this; a seed outside it is left out of the matched
    arm's statistics (reported as n)."""
    match_iters: int = 18
    """Most bisection steps; each one trains every matched arm once (stops earlier when all seeds match)."""
    match_beta_range: tuple[float, ...] = (1e-3, 100.0)
    """Range (low,high) of β searched by the bisection."""
    rlvr_steps: int = 1000
    """Steps of the RLVR path-model natural policy gradient (0 skips the RLVR study)."""
    threads: int = 1
    """torch CPU threads; 1 is fastest for these tiny tensors (2 threads on a busy 2-core box: 12× slower)."""
    progress: bool = True
    """Show progress bars (on stderr, only when it is a terminal)."""
    out: str = "results/bandit"
    """Output directory."""

    def __post_init__(self):
        self.lams, self.kl_betas = tuple(map(float, self.lams)), tuple(map(float, self.kl_betas))
        self.rhos, self.kl_levels = tuple(map(float, self.rhos)), tuple(map(float, self.kl_levels))
        self.plateau_reward, self.background_reward = tuple(map(float, self.plateau_reward)), tuple(map(float, self.background_reward))
        self.match_beta_range = tuple(map(float, self.match_beta_range))
        bad = [x for x in self.lams + (self.ablation_lam,) if not (x > 0)]  # also catches NaN
        if bad:
            raise ValueError(f"λ must be > 0 (inf = GRPO), got {bad[0]}; e.g. --lams 0.1,0.5,2,inf")
        if len(set(self.lams)) != len(self.lams):
            raise ValueError(f"--lams has repeated values {self.lams}; give each λ once")
        if self.task_offset <= PIT:
            raise ValueError(f"--task-offset={self.task_offset} must be > {PIT} (the task must lie outside the pit)")
        need = self.task_offset + PLATEAU_GAP + PLATEAU_HALF + 1
        if self.arms < need:
            raise ValueError(f"--arms={self.arms} is too small: the layout (task, peak, pit, plateau) needs "
                             f"K >= {need} with --task-offset={self.task_offset}")
        if self.group_size < 2:
            raise ValueError(f"--group-size={self.group_size} must be >= 2: the jackknife and the group baseline "
                             "need at least 2 samples per context")
        for name in ("seeds", "contexts", "train_steps", "sft_steps", "pg_steps", "sft_batch", "log_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)} must be >= 1")
        if len(self.match_beta_range) != 2 or not 0 < self.match_beta_range[0] < self.match_beta_range[1] < math.inf:
            raise ValueError(f"--match-beta-range={','.join(map(str, self.match_beta_range))} must be two numbers "
                             "0 < low < high < inf, e.g. 0.001,100")
        if not (self.match_rtol > 0 and math.isfinite(self.match_rtol)) or self.match_iters < 0:
            raise ValueError(f"--match-rtol={self.match_rtol} must be a finite number > 0 and "
                             f"--match-iters={self.match_iters} >= 0")
        if self.rlvr_steps < 0:
            raise ValueError(f"--rlvr-steps={self.rlvr_steps} must be >= 0 (0 skips the RLVR study)")
        for name in ("lr", "sft_lr", "pg_lr", "feature_width"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)} must be a finite number > 0")
        if not (self.beta >= 0 and math.isfinite(self.beta)) or not all(b >= 0 and math.isfinite(b) for b in self.kl_betas):
            raise ValueError(f"β must be finite and >= 0, got --beta={self.beta} --kl-betas={self.kl_betas}")
        if not all(r >= 0 for r in self.rhos) or not all(k > 0 and math.isfinite(k) for k in self.kl_levels):
            raise ValueError("--rhos must be >= 0 and --kl-levels finite and > 0")
        for name in ("plateau_reward", "background_reward"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] < 1:
                raise ValueError(f"--{name.replace('_', '-')}={','.join(map(str, lo_hi))} must be two numbers "
                                 "0 < low <= high < 1 (the peak's reward is 1 and its pit's 0)")
        if self.scale not in SCALES:
            raise ValueError(f"--scale={self.scale!r} must be one of {', '.join(SCALES)}")
        if self.form not in ("advantage", "ratio"):
            raise ValueError(f"--form={self.form!r} must be 'advantage' or 'ratio'")


PRESETS = {
    "smoke": dict(seeds=2, lams=(0.2, 2.0, math.inf), arms=16, contexts=4, train_steps=60, sft_steps=40,
                  pg_steps=40, kl_betas=(0.02, 0.32), rhos=(0.1, 1.0), kl_levels=(0.02, 0.1), rlvr_steps=300,
                  match_iters=8),
    "paper": {},  # the defaults: 64 seeds, every λ, ablations, KL-matched arms, RLVR study
}


# ----------------------------------------------------------------------------------------------
# sweep rows
# ----------------------------------------------------------------------------------------------
class Config(NamedTuple):
    """One row of the sweep (its own θ for every seed)."""

    name: str
    group: str  # main | no_jackknife | no_baseline | kl_budget | matched
    lam: float  # inf = GRPO
    jackknife: bool
    baseline: bool
    beta: Union[float, tuple[float, ...]]  # one β per seed for a KL-matched arm


def build_configs(a: BanditArgs) -> list[Config]:
    """The sweep rows: the λ grid ("main"), then the ablations (no jackknife, no baseline, β sweep)."""
    cfgs = [Config(lam_name(l), "main", l, a.jackknife, a.baseline, a.beta) for l in a.lams]
    if a.ablations:
        finite = [l for l in a.lams if math.isfinite(l)]
        if a.jackknife:
            cfgs += [Config(lam_name(l) + "_nojk", "no_jackknife", l, False, a.baseline, a.beta) for l in finite]
        if a.baseline:
            cfgs += [Config(lam_name(l) + "_nobase", "no_baseline", l, a.jackknife, False, a.beta) for l in finite]
        for b in a.kl_betas:
            cfgs += [Config(f"{lam_name(l)}_beta{b:g}", "kl_budget", l, a.jackknife, a.baseline, b)
                     for l in (a.ablation_lam, math.inf)]
    return cfgs


# ----------------------------------------------------------------------------------------------
# stages
# ----------------------------------------------------------------------------------------------
def train(env: Bandit, configs: Sequence[Config], a: BanditArgs, gen: torch.Generator, desc: str = "train"):
    """(1) GRPO/FRPO training of every (seed, config) from θ_ref; returns θ (S, V, d) and exact metrics (S, V, T)."""
    S, V = a.seeds, len(configs)
    theta = env.theta_ref.expand(S, V, -1).clone().requires_grad_(True)  # (S, V, d)
    ref_logp = log_policy(env.theta_ref.expand(S, 1, -1), env.phi)      # (S, 1, C, K)
    opt = torch.optim.Adam([theta], lr=a.lr)
    log = {"steps": [], "reward": [], "kl_ref": [], "entropy": []}
    for t in progress(range(a.train_steps + 1), desc, a.progress):
        logp = log_policy(theta, env.phi)
        if t % a.log_every == 0 or t == a.train_steps:
            for key, val in zip(("reward", "kl_ref", "entropy"), exact_stats(logp, ref_logp, env.reward)):
                log[key].append(val)
            log["steps"].append(t)
        if t == a.train_steps:
            break
        loss = train_loss(logp, ref_logp, env.reward.unsqueeze(1), sample(logp, a.group_size, gen), configs, a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return theta.detach(), {k: np.stack(v, -1) if k != "steps" else np.array(v) for k, v in log.items()}


def calibrate_matched(env: Bandit, configs: Sequence[Config], a: BanditArgs, target: np.ndarray,
                      gen: Callable[[], torch.Generator]):
    """KL-matched FRPO arms: per finite λ of the main sweep and per seed, the β whose trained policy has
    KL(π‖π_ref) = ``target`` (S,) (GRPO's, exact, mean over contexts) within --match-rtol.

    Bisection on log β over --match-beta-range (``toy.calibrate.bisect_log``) with seeds × λ as one
    batch: each step trains every matched arm once from θ_ref with the same random numbers (``gen()``
    is a fresh generator of one seed; each (seed, arm) θ has its own gradient and its own samples), so
    the final KL is a deterministic function of β per (seed, λ). The arms are then trained once more
    at the calibrated β, reproducing the calibration's numbers. Returns (configs, θ (S, L, d), the
    training log, the ``Bisection``). Deviation: FRPO tunes one β per arm by hand (App. B.3); here β
    is solved for per seed so that every pair (FRPO, GRPO) of a seed is matched.
    """
    lams = [c.lam for c in configs if c.group == "main" and math.isfinite(c.lam)]

    def arms(beta: np.ndarray) -> list[Config]:
        return [Config(lam_name(lam) + "_matched", "matched", lam, a.jackknife, a.baseline,
                       tuple(float(b) for b in beta[:, j])) for j, lam in enumerate(lams)]

    def final_kl(beta: np.ndarray) -> np.ndarray:
        return train(env, arms(beta), a, gen(), desc="match β")[1]["kl_ref"][..., -1]

    goal = np.repeat(np.asarray(target, dtype=np.float64)[:, None], len(lams), 1)
    cal = bisect_log(final_kl, goal, *a.match_beta_range, rtol=a.match_rtol, max_iter=a.match_iters)
    matched = arms(cal.x)
    theta, log = train(env, matched, a, gen(), desc="matched")
    return matched, theta, log, cal


def downstream(env: Bandit, theta0: Tensor, a: BanditArgs, stage: str, gen: torch.Generator):
    """(a) stage="sft" or (b) stage="pg" from every trained θ; logs KL(Q‖π), E_Q r and the task metric."""
    theta = theta0.clone().requires_grad_(True)
    base = log_policy(theta0, env.phi).exp()
    steps, lr = (a.sft_steps, a.sft_lr) if stage == "sft" else (a.pg_steps, a.pg_lr)
    opt = torch.optim.Adam([theta], lr=lr)
    log = {"steps": [], "kl": [], "reward": [], "task": []}
    for t in progress(range(steps + 1), stage, a.progress):
        logp = log_policy(theta, env.phi)
        if t % a.log_every == 0 or t == steps:
            q = logp.detach().exp()
            log["steps"].append(t)
            log["kl"].append(kl_rows(q, base))
            log["reward"].append((q * env.reward.unsqueeze(1)).sum(-1).mean(-1).numpy())
            task = (kl_rows(env.sft_target.unsqueeze(1).expand_as(q), q) if stage == "sft"
                    else (q * env.reward2.unsqueeze(1)).sum(-1).mean(-1).numpy())
            log["task"].append(task)
        if t == steps:
            break
        if stage == "sft":  # same data for every config of a seed (common random numbers)
            data = sample(env.sft_target.log().unsqueeze(1), a.sft_batch, gen)  # (S, 1, C, n)
            loss = sft_loss(logp, data)
        else:
            loss = pg_loss(logp, env.reward2, sample(logp, a.group_size, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: np.stack(v, -1) if k != "steps" else np.array(v) for k, v in log.items()}


def worst_case(env: Bandit, theta: Tensor, rhos: Sequence[float], a: BanditArgs) -> np.ndarray:
    """(c) inf {E_x E_Q r : E_x KL(Q‖π) ≤ ρ} by theory.risk.kl_dro_dual → (S, V, R)."""
    p = log_policy(theta, env.phi).exp().numpy()
    r = env.reward.numpy()
    S, V = p.shape[:2]
    out = np.empty((S, V, len(rhos)))
    for s in progress(range(S), "worst case", a.progress):
        for v in range(V):
            for i, rho in enumerate(rhos):
                out[s, v, i] = kl_dro_dual(r[s], p[s, v], rho).value
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    a, preset = parse_args(BanditArgs, argv, presets=PRESETS, description=__doc__, prog="python -m toy.bandit",
                           choices={"scale": SCALES, "form": ("advantage", "ratio")})
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = build_configs(a)
    gen = lambda stage: torch.Generator().manual_seed(a.seed * 1000 + stage)  # noqa: E731
    times = {}
    t0 = time.perf_counter()
    env = make_bandit(a, gen(0))
    theta, tr = train(env, configs, a, gen(1))
    times["train"] = time.perf_counter() - t0
    m = {"steps_train": tr["steps"], **{f"train_{k}": v for k, v in tr.items() if k != "steps"}}
    matched, theta_m = [], None
    names = [c.name for c in configs]
    if a.matched and "grpo" in names and any(c.group == "main" and math.isfinite(c.lam) for c in configs):
        t_m = time.perf_counter()
        target = m["train_kl_ref"][:, names.index("grpo"), -1]
        matched, theta_m, tr_m, cal = calibrate_matched(env, configs, a, target, lambda: gen(5))
        for k in ("reward", "kl_ref", "entropy"):
            m[f"train_{k}"] = np.concatenate([m[f"train_{k}"], tr_m[k]], 1)
        m.update(match_target=target, match_beta=cal.x, match_kl=cal.value, match_rel_err=cal.rel_err,
                 match_bracketed=cal.bracketed, match_evals=np.array(cal.evals))
        times["match"] = time.perf_counter() - t_m
    m["configs"] = np.array([c.name for c in configs + matched])
    ref = log_policy(env.theta_ref.expand(a.seeds, 1, -1), env.phi)
    r0, _, h0 = exact_stats(ref, ref, env.reward)
    m["ref_reward"], m["ref_entropy"] = r0[:, 0], h0[:, 0]
    parts = [theta] + ([theta_m] if matched else [])  # calls of their own: the other arms do not depend on --matched
    t1 = time.perf_counter()
    for i, stage in enumerate(("sft", "pg")):
        ds = [downstream(env, th, a, stage, gen(2 + i)) for th in parts]  # the same SFT data for every part
        m[f"steps_{stage}"] = ds[0]["steps"]
        m.update({f"{stage}_{k}": np.concatenate([d[k] for d in ds], 1) for k in ds[0] if k != "steps"})
    times["downstream"] = time.perf_counter() - t1
    configs = list(configs) + matched
    t2 = time.perf_counter()
    m["rhos"] = np.array(sorted(set(a.rhos) | set(a.kl_levels) | {0.0}))
    m["worst_value"] = np.concatenate([worst_case(env, th, m["rhos"], a) for th in parts], 1)
    times["worst_case"] = time.perf_counter() - t2
    summary = {"args": asdict(a), "preset": preset, "configs": [c._asdict() for c in configs],
               "kl_levels": list(a.kl_levels)}
    summary.update(summarize(m, configs, a))
    if a.rlvr_steps > 0:
        t3 = time.perf_counter()
        summary["rlvr"], arrays = rlvr_study(a.rlvr_steps, gen(4))
        m.update(arrays)
        times["rlvr"] = time.perf_counter() - t3
    times["total"] = time.perf_counter() - t0
    summary["runtime_s"] = times
    np.savez_compressed(out / "metrics.npz", **m)
    write_json(out / "summary.json", summary)
    make_plots(out, m, configs, summary, a)
    (out / "tables.md").write_text(markdown_tables(summary, a, a.ablation_lam if a.ablation_lam in a.lams else
                                                   next((x for x in a.lams if math.isfinite(x)), math.inf)))
    print_table(summary, configs, a)
    print(f"\nwrote {out}/summary.json, metrics.npz, tables.md and PNGs in {times['total']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
