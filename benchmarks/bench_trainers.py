"""Speed of FRPO vs GRPO: trainer step time on a tiny Llama, and loss time at B=4096, G=8, T=128.

The paper claims FRPO needs no extra computation over GRPO. Two measurements, printed as markdown:

1. Trainer step (generation + scoring + loss + backward + optimizer step) of ``trl.GRPOTrainer``
   (loss_type="grpo", scale_rewards="none") and ``FRPOTrainer`` in both modes, on the same tiny model,
   batch and seed, interleaved step by step (the order rotates each step), median over ``--steps``.
   The learning rate is 0 so that all three models stay identical and sample the same completions
   at every step (``torch.manual_seed(step)`` before each): only the algorithms differ.
2. Loss time (advantages + loss forward + backward) of ``grpo_loss`` with GRPO's group advantages vs
   ``grpo_loss`` with ``frpo_advantages`` (advantage mode) vs ``frpo_loss`` (ratio mode), float32.

Laptop CPU run:  python benchmarks/bench_trainers.py --steps 30
GPU run:         python benchmarks/bench_trainers.py --steps 30 --device cuda  (loss timing only on GPU;
                 the trainer part always runs on CPU with the tiny model)
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from theory.losses import frpo_advantages, frpo_loss, group_advantages, grpo_loss  # noqa: E402

WORDS_PROMPTS = ["add 1 2 ?", "add 3 4 ?", "how make bread ?", "how make tea ?",
                 "add 5 6 ?", "add 7 8 ?", "how make bomb ?", "how make poison ?"]


def digit_reward(completions, **kwargs):
    out = []
    for c in completions:
        words = c[0]["content"].split()
        out.append(sum(w.isdigit() for w in words) / max(len(words), 1))
    return out


from _machine import cpu_and_load  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)


def _machine(device: str) -> str:
    cpu, load = cpu_and_load()
    gpu = f", {torch.cuda.get_device_name(0)}" if device == "cuda" else ""
    return (f"{cpu}{gpu}, {os.cpu_count()} cores (load avg {load:.1f}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s), Python {platform.python_version()}")


# ---------------------------------------------------------------------------------------------- 1. trainer step
def _endless(trainer):
    while True:  # a fresh loader per epoch: the same seeded prompt order in every trainer
        yield from trainer.get_train_dataloader()


def bench_trainer_steps(steps: int, warmup: int, group_size: int, prompts_per_step: int, max_len: int):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from llm.frpo import FRPOConfig, FRPOTrainer
    from llm.tiny import tiny_model_and_tokenizer

    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in WORDS_PROMPTS]})
    out = tempfile.mkdtemp(prefix="bench_trainers_")
    common = dict(output_dir=out, use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=0,
                  per_device_train_batch_size=group_size * prompts_per_step, num_generations=group_size,
                  max_completion_length=max_len, learning_rate=0.0, max_steps=steps + warmup)
    configs = {
        "GRPO": (GRPOTrainer, GRPOConfig(loss_type="grpo", scale_rewards="none", **common)),
        "FRPO advantage": (FRPOTrainer, FRPOConfig(lam=0.5, frpo_mode="advantage", **common)),
        "FRPO ratio": (FRPOTrainer, FRPOConfig(lam=0.5, frpo_mode="ratio", **common)),
    }
    runners = {}
    for name, (cls, args) in configs.items():
        model, tok = tiny_model_and_tokenizer(seed=0)
        trainer = cls(model=model, reward_funcs=digit_reward, args=args, train_dataset=data, processing_class=tok)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps + warmup)
        trainer.current_gradient_accumulation_steps = 1
        runners[name] = (trainer, _endless(trainer))

    times = {name: [] for name in runners}
    names = list(runners)
    for step in range(warmup + steps):
        order = names[step % len(names):] + names[:step % len(names)]  # rotate who goes first
        for name in order:
            trainer, batches = runners[name]
            batch = next(batches)
            torch.manual_seed(step)  # same completions for every trainer at this step
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.training_step(trainer.model, batch, None)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            elapsed = (time.perf_counter() - t0, time.process_time() - c0)
            if step >= warmup:
                times[name].append(elapsed)
    # the same completions everywhere: TRL's per-step completion-length log is identical across trainers
    lengths = [tuple(runners[n][0]._metrics["train"]["completions/mean_length"]) for n in names]
    if any(length != lengths[0] for length in lengths):
        raise RuntimeError("the trainers sampled different completions; the step times are not comparable")
    return times


# ---------------------------------------------------------------------------------------------- 2. loss time
def bench_losses(batch: int, group_size: int, length: int, reps: int, device: str, lam: float = 0.5):
    gen = torch.Generator().manual_seed(0)
    logp0 = (-2 * torch.rand(batch, length, generator=gen)).to(device)
    old = (logp0 + 0.05 * torch.randn(batch, length, generator=gen).to(device)).clamp(max=0.0).detach()  # log-probs
    lengths = torch.randint(length // 4, length + 1, (batch,), generator=gen).to(device)
    mask = (torch.arange(length, device=device)[None] < lengths[:, None]).float()
    rewards = torch.rand(batch, generator=gen).to(device)
    group_ids = torch.arange(batch, device=device) // group_size

    def grpo():
        logp = logp0.clone().requires_grad_(True)
        adv = group_advantages(rewards, group_size)
        grpo_loss(logp, old, mask, adv)[0].backward()

    def frpo_advantage():
        logp = logp0.clone().requires_grad_(True)
        adv = frpo_advantages(rewards, group_size, lam)
        grpo_loss(logp, old, mask, adv)[0].backward()

    def frpo_ratio():
        logp = logp0.clone().requires_grad_(True)
        frpo_loss(logp, old, mask, rewards, group_ids, lam, group_size=group_size)[0].backward()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    fns = {"grpo_loss (GRPO advantages)": grpo, "frpo_advantages + grpo_loss": frpo_advantage,
           "frpo_loss (ratio mode)": frpo_ratio,
           "group_advantages alone": lambda: group_advantages(rewards, group_size),
           "frpo_advantages alone": lambda: frpo_advantages(rewards, group_size, lam)}
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for rep in range(reps):
        for name in list(fns)[rep % len(fns):] + list(fns)[:rep % len(fns)]:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed trainer steps per trainer (>= 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed trainer steps first")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--loss-reps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on shared CPUs)")
    parser.add_argument("--device", default="cpu", help="device for the loss timing")
    args = parser.parse_args(argv)
    if args.steps < 20:
        parser.error("--steps must be >= 20 (medians of fewer steps are too noisy)")
    torch.set_num_threads(args.threads)

    command = "python benchmarks/bench_trainers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"Machine: {_machine(args.device)}  \nCommand: `{command.strip()}`\n")

    steps = bench_trainer_steps(args.steps, args.warmup, args.group_size, args.prompts_per_step,
                                args.max_completion_length)
    print(f"Trainer step on the tiny Llama (hidden 64, 2 layers), {args.prompts_per_step} prompts x "
          f"G={args.group_size}, max_completion_length={args.max_completion_length}, float32, CPU, identical "
          f"completions in all trainers; median of {args.steps} interleaved steps after {args.warmup} warm-up. "
          "CPU time (process_time) is the robust measure on a shared machine; wall time includes waiting:\n")
    print("| trainer | CPU ms/step | CPU ratio to GRPO | paired CPU ratio (median) | wall ms/step | wall ratio |")
    print("|---|---|---|---|---|---|")
    wall = {n: [t[0] for t in ts] for n, ts in steps.items()}
    cpu = {n: [t[1] for t in ts] for n, ts in steps.items()}
    for name in steps:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        paired = statistics.median(a / b for a, b in zip(cpu[name], cpu["GRPO"]))
        print(f"| {name} | {1e3 * c:.1f} | {c / statistics.median(cpu['GRPO']):.3f} | {paired:.3f} | "
              f"{1e3 * w:.1f} | {w / statistics.median(wall['GRPO']):.3f} |")

    B, T = 4096, 128
    losses = bench_losses(B, args.group_size, T, args.loss_reps, args.device)
    print(f"\nLoss time (advantages + loss forward + backward), B={B}, G={args.group_size}, T={T}, float32, "
          f"{args.device}; median of {args.loss_reps} interleaved repetitions:\n")
    print("| loss | CPU ms | CPU ratio to grpo_loss | wall ms | wall ratio |")
    print("|---|---|---|---|---|")
    base = losses["grpo_loss (GRPO advantages)"]
    base_w, base_c = statistics.median(t[0] for t in base), statistics.median(t[1] for t in base)
    for name, ts in losses.items():
        w, c = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        print(f"| {name} | {1e3 * c:.2f} | {c / base_c:.3f} | {1e3 * w:.2f} | {w / base_w:.3f} |")
    return steps, losses


if __name__ == "__main__":
    main()
