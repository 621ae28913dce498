"""GPU readiness check (run by benchmarks/gpu_check.sh): FRPO vs GRPO step time, tokens/s, peak memory vs the plan.

On one GPU, a randomly initialised model of Qwen2.5-1.5B's shape (llm.shapes; no download), bf16, LoRA r64 on every
projection, G=8, prompts of PROMPT tokens, completions of COMPLETION tokens (HF generate: the image has no vLLM):

  1. GRPO, FRPO (λ=0.5, advantage mode), GRPO again — WARMUP + STEPS steps each, same seed and data; the step time
     is the median over the timed steps, the FRPO/GRPO ratio uses the mean of the two GRPO medians (drift check);
     target ratio ≤ 1.02 (FRPO only replaces the advantages: O(B) work per step);
  2. tokens/s of each (completion tokens per step / step time) and the peak CUDA memory against
     llm.memplan's estimate of the same configuration (weights, LoRA + Adam, activations, TRL's head, generate KV);
  3. one CSFT+PA step (llm.csft, LoRA r64, 4 sequences of PROMPT + COMPLETION tokens): time and peak memory;
  4. with 2 GPUs, the same FRPO run under ``torchrun --nproc_per_node 2`` (2 steps): it completes and its step time.

``--cpu-smoke``: the same code on a tiny shape, float32, 1 + 1 steps on the CPU (what the test suite runs).
Writes one JSON object (``--out``, default benchmarks/gpu_check.json) and prints a summary.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm.shapes import KNOWN, Shape  # noqa: E402

GPU = dict(shape=KNOWN["Qwen/Qwen2.5-1.5B-Instruct"], prompt=128, completion=256, prompts_per_step=2, warmup=2,
           steps=6, lora_r=64, dtype=torch.bfloat16)
CPU = dict(shape=Shape("tiny", 64, 2, 256, 4, 4, 16, 0, True, source="tiny"), prompt=8, completion=4,
           prompts_per_step=1, warmup=1, steps=1, lora_r=4, dtype=torch.float32)
G = 8


def _tokenizer(vocab: int):
    from llm.tiny import build_word_tokenizer

    return build_word_tokenizer([f"w{i}" for i in range(max(vocab - 7, 32))])


def _model(shape: Shape, tok, dtype, device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                      num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                      num_key_value_heads=shape.kv_heads, tie_word_embeddings=shape.tied, max_position_embeddings=4096,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def _dataset(tok, n: int, prompt_tokens: int):
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(32, 32 + 512)]
    rows = [" ".join(words[j] for j in torch.randint(0, len(words), (prompt_tokens - 4,), generator=g).tolist())
            for _ in range(n)]
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})


def length_reward(completions, **kwargs):
    """Deterministic and varied within a group: the share of words w32..w63 in the completion."""
    out = []
    for c in completions:
        ws = c[0]["content"].split()
        out.append(sum(w[1:].isdigit() and 32 <= int(w[1:]) < 64 for w in ws) / max(1, len(ws)))
    return out


class _Timer:
    """TrainerCallback: wall time of every optimizer step (CUDA-synchronised)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.times.append(time.perf_counter() - timer.t0)

        self.times: list[float] = []
        self.callback = CB()


def _peak_reset(device) -> int:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return 0
    import psutil

    return psutil.Process().memory_info().rss


def _peak(device, base: int) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    import resource

    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 1e9


def run_rl(algo: str, p: dict, tok, device, out_dir: Path) -> dict:
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from llm.frpo import FRPOConfig, FRPOTrainer

    n_steps = p["warmup"] + p["steps"]
    rows = p["prompts_per_step"] * n_steps
    common = dict(output_dir=str(out_dir / algo), use_cpu=device.type == "cpu", report_to="none", save_strategy="no",
                  disable_tqdm=True, per_device_train_batch_size=p["prompts_per_step"] * G, num_generations=G,
                  max_completion_length=p["completion"], max_steps=n_steps, learning_rate=1e-5, logging_steps=1,
                  seed=0, bf16=p["dtype"] == torch.bfloat16, activation_checkpointing=True, beta=0.0,
                  temperature=1.0)
    args = (GRPOConfig(loss_type="grpo", scale_rewards="none", **common) if algo.startswith("grpo")
            else FRPOConfig(lam=0.5, **common))
    cls = GRPOTrainer if algo.startswith("grpo") else FRPOTrainer
    model = _model(p["shape"], tok, p["dtype"], device)
    timer = _Timer()
    base = _peak_reset(device)
    trainer = cls(model=model, reward_funcs=length_reward, args=args, train_dataset=_dataset(tok, rows, p["prompt"]),
                  processing_class=tok, callbacks=[timer.callback],
                  peft_config=LoraConfig(r=p["lora_r"], lora_alpha=p["lora_r"], target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    timed = timer.times[p["warmup"]:] or timer.times
    step = statistics.median(timed)
    out = {"algo": algo, "step_s": step, "step_times_s": timer.times, "wall_s": wall, "peak_gb": _peak(device, base),
           "completion_tokens_per_s": p["prompts_per_step"] * G * p["completion"] / step}
    if algo == "frpo":
        out["frpo_loss_batches"] = trainer.frpo_loss_batches
    del trainer, model
    return out


def run_csft_pa(p: dict, tok, device, out_dir: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig

    from llm.csft import CSFTConfig, CSFTTrainer

    words = [f"w{i}" for i in range(32, 32 + 512)]
    g = torch.Generator().manual_seed(1)
    pick = lambda n: " ".join(words[j] for j in torch.randint(0, 512, (n,), generator=g).tolist())  # noqa: E731
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": pick(p["prompt"] - 4)}] for _ in range(4)],
                              "completion": [[{"role": "assistant", "content": pick(p["completion"] - 2)}]
                                             for _ in range(4)]})
    args = CSFTConfig(output_dir=str(out_dir / "csft_pa"), use_cpu=device.type == "cpu", report_to="none",
                      save_strategy="no", disable_tqdm=True, per_device_train_batch_size=4, max_steps=1,
                      learning_rate=1e-5, bf16=p["dtype"] == torch.bfloat16, max_length=p["prompt"] + p["completion"],
                      pa=True, activation_checkpointing=True)
    model = _model(p["shape"], tok, p["dtype"], device)
    base = _peak_reset(device)
    timer = _Timer()
    trainer = CSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[timer.callback],
                          peft_config=LoraConfig(r=p["lora_r"], lora_alpha=p["lora_r"], target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    trainer.train()
    return {"step_s": timer.times[-1], "peak_gb": _peak(device, base), "loss": trainer.state.log_history[-1].get(
        "train_loss")}


def plan_estimate(p: dict, vocab: int) -> dict:
    """llm.memsizes' items for this configuration (one process, no DeepSpeed), GB."""
    from dataclasses import replace

    from llm import memsizes

    shape = replace(p["shape"], vocab=vocab)
    b = 2 if p["dtype"] == torch.bfloat16 else 4
    rows, tokens = p["prompts_per_step"] * G, p["prompt"] + p["completion"]
    lora = shape.lora_params(p["lora_r"], [])
    static = sum(memsizes.training_memory(shape, dtype_bytes=b, lora_params=lora,
                                          sharding=memsizes.Sharding("one"), deepspeed=False).values())
    train = memsizes.activation_bytes(shape, rows, tokens, b, True) + memsizes.lm_head_bytes(shape, rows, tokens, b, False)
    gen = rows * tokens * shape.kv_bytes_per_token(b)
    return {"static_gb": static / 1e9, "train_gb": train / 1e9, "generate_gb": gen / 1e9,
            "peak_gb": (static + max(train, gen)) / 1e9}


def two_process(p: dict, out_dir: Path) -> dict:
    """The FRPO run under torchrun with 2 processes (2 GPUs), 2 steps."""
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", __file__,
                          "--worker", "--out", str(out_dir / "two_proc.json")], capture_output=True, text=True,
                         timeout=300, cwd=str(REPO))
    if res.returncode != 0:
        return {"ok": False, "tail": (res.stdout + res.stderr)[-2000:]}
    return {"ok": True, **json.loads((out_dir / "two_proc.json").read_text())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shape on the CPU (the test suite's run)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "gpu_check.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1 if a.cpu_smoke else torch.get_num_threads())
    if not a.cpu_smoke and not torch.cuda.is_available():
        print("error: no CUDA device; use --cpu-smoke for the CPU path", file=sys.stderr)
        return 2
    p = dict(CPU if a.cpu_smoke else GPU)
    device = torch.device("cpu" if a.cpu_smoke else "cuda")
    out_dir = Path(a.out).with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(p["shape"].vocab or 64)
    if a.worker:  # one rank of the 2-process run
        p.update(warmup=1, steps=1)
        r = run_rl("frpo", p, tok, torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), out_dir)
        if int(os.environ.get("RANK", 0)) == 0:
            Path(a.out).write_text(json.dumps(r))
        return 0
    t0 = time.perf_counter()
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "shape": p["shape"].name, "vocab": len(tok),
                    "prompt_tokens": p["prompt"], "completion_tokens": p["completion"], "G": G,
                    "completions_per_step": p["prompts_per_step"] * G, "lora_r": p["lora_r"],
                    "dtype": str(p["dtype"]).replace("torch.", "")}
    runs = [run_rl(algo, p, tok, device, out_dir) for algo in ("grpo", "frpo", "grpo_again")]
    grpo = (runs[0]["step_s"] + runs[2]["step_s"]) / 2
    report["runs"] = runs
    report["frpo_over_grpo_step_time"] = runs[1]["step_s"] / grpo
    report["grpo_drift"] = runs[2]["step_s"] / runs[0]["step_s"]
    report["target_ratio"] = 1.02
    report["plan"] = plan_estimate(p, len(tok))
    report["peak_over_plan"] = runs[1]["peak_gb"] / report["plan"]["peak_gb"]
    report["csft_pa"] = run_csft_pa(p, tok, device, out_dir)
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 0
    report["two_process"] = two_process(p, out_dir) if n_gpu >= 2 else {"skipped": f"{n_gpu} GPU(s)"}
    report["total_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(f"[gpu_check] {report['device']}: step GRPO {runs[0]['step_s']:.3f}/{runs[2]['step_s']:.3f} s, FRPO "
          f"{runs[1]['step_s']:.3f} s, ratio {report['frpo_over_grpo_step_time']:.3f} (target <= 1.02); "
          f"FRPO {runs[1]['completion_tokens_per_s']:.0f} completion tokens/s; peak {runs[1]['peak_gb']:.2f} GB vs "
          f"plan {report['plan']['peak_gb']:.2f} GB; CSFT+PA step {report['csft_pa']['step_s']:.3f} s; "
          f"total {report['total_s']:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
