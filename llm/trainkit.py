"""The plumbing every trainer stage shares: loading and saving models, checkpoints, the config → TRL mapping.

Used by :mod:`llm.stages` (base, align, downstream) and :mod:`llm.warmstart` (the real base's safety SFT),
and by :mod:`llm.memfix` to load a tracker's reference; it imports none of them, so the stage modules
depend on it and never on each other. A stage saves through :func:`save_trained`: every process calls
``trainer.save_model`` (collective under ZeRO-3 / FSDP), the main process merges a LoRA adapter into its
base and renames ``model.tmp`` to ``model``.
"""
from __future__ import annotations

import gc
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from llm.config import ConfigError, RunConfig
from llm.runtime import Runtime


# ---------------------------------------------------------------------------------------------
# saving, loading (the device and precision: llm.runtime.Runtime, resolved once by llm.run)
# ---------------------------------------------------------------------------------------------
def free_memory() -> None:
    """Return the GPU memory of a finished stage's trainer / eval models (a full gc costs ~0.5 s: GPU only)."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def save_model_atomic(model, tokenizer, out: Path) -> Path:
    """save_pretrained into ``out.tmp`` then rename to ``out``: a half-saved model is never at ``out``."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _local(path: str | Path) -> bool:
    return Path(path).exists()


def load_tokenizer(path: str | Path):
    """Tokenizer by local path or hub id, with a pad token and left padding (batched generation)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=_local(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: Optional[str] = None):
    """Load a causal LM and its tokenizer by local path or hub id (local paths never touch the network)."""
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(path)
    kw = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=_local(path), **kw)
    return model.to(device).eval(), tok


def save_trained(trainer, tok, out: Path, base_path: str, rt: Runtime, dist) -> Path:
    """Save a trained stage model as a full model at ``out`` (see the module docstring); returns ``out``.

    Every process calls ``trainer.save_model`` (collective under ZeRO-3 / FSDP; only the main process
    writes); the main process merges a LoRA adapter into ``base_path`` and renames; barriers around.
    """
    tmp = out.with_name(out.name + ".tmp")
    if dist.is_main and tmp.exists():
        shutil.rmtree(tmp)
    dist.barrier()
    trainer.save_model(str(tmp))
    dist.barrier()
    if dist.is_main:
        if (tmp / "adapter_config.json").exists():
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            adapter = out.with_name("adapter")
            if adapter.exists():
                shutil.rmtree(adapter)
            os.replace(tmp, adapter)
            base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=_local(base_path),
                                                        dtype=rt.torch_dtype)
            merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
            save_model_atomic(merged, tok, out)
            del base, merged
        else:
            tok.save_pretrained(tmp)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
    dist.barrier()
    return out


def _resume_point(ckpt_dir: Path) -> Optional[str]:
    ckpt = last_checkpoint(ckpt_dir)
    if ckpt is not None:
        print(f"[llm.run] resume from {ckpt}", flush=True)
    return ckpt


def last_checkpoint(ckpt_dir: Path) -> Optional[str]:
    """The newest complete ``checkpoint-N`` under ``ckpt_dir`` (one whose trainer_state.json parses), or None."""
    if not ckpt_dir.exists():
        return None
    cands = []
    for p in ckpt_dir.glob("checkpoint-*"):
        try:
            step = int(p.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if _complete_state(p / "trainer_state.json"):
            cands.append((step, p))
    return str(max(cands)[1]) if cands else None


def _complete_state(path: Path) -> bool:
    """A checkpoint counts once its trainer_state.json (written last) parses: a kill during the write leaves a
    truncated file, and resuming from it would fail."""
    import json

    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _to_dataset(rows: list[dict], columns: tuple[str, ...]):
    """A datasets.Dataset of ``columns`` (those present in any row; missing values None)."""
    from datasets import Dataset

    keep = [c for c in columns if any(c in r for r in rows)]
    return Dataset.from_list([{c: r.get(c) for c in keep} for r in rows])


# ---------------------------------------------------------------------------------------------
# config → TRL mapping
# ---------------------------------------------------------------------------------------------
def _lora(r: int, alpha: int, targets: list[str], dropout: float):
    if r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha or 2 * r, target_modules=list(targets) or "all-linear",
                      lora_dropout=dropout, task_type="CAUSAL_LM")


def _vllm_args(cfg: RunConfig, rt: Runtime) -> dict:
    if not cfg.use_vllm:
        return {}
    if rt.use_cpu:
        raise ConfigError("use_vllm=true needs a GPU (vLLM does not run on the CPU); set use_vllm=false, or "
                          "--dry-run, which turns it off")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm=true but vllm is not installed; `pip install -e .[vllm]` or set use_vllm=false")
    return dict(use_vllm=True, vllm_mode=cfg.vllm_mode, vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)


def trainer_args(cfg: RunConfig, rt: Runtime, stage_dir: Path, seed: int, *, steps: int, epochs: float, learning_rate: float,
                 warmup_ratio: float, grad_accum: int, grad_ckpt: bool, save_every: Optional[int]) -> dict:
    """The TrainingArguments shared by every trainer stage (steps or epochs, schedule, saving, precision)."""
    if steps > 0:
        length = dict(max_steps=steps)
        save_steps: float = save_every or max(1, steps // 4)
        logging_steps: float = max(1, steps // 10)
    else:
        length = dict(num_train_epochs=epochs)
        save_steps = save_every or 0.25  # < 1: a fraction of the stage's steps
        logging_steps = 10
    return dict(
        output_dir=str(stage_dir / "ckpt"), use_cpu=rt.use_cpu, report_to=cfg.report_to, seed=seed,
        learning_rate=learning_rate, warmup_steps=warmup_ratio,
        lr_scheduler_type="constant_with_warmup" if warmup_ratio > 0 else "constant",
        gradient_accumulation_steps=grad_accum, activation_checkpointing=grad_ckpt, logging_steps=logging_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=1, disable_tqdm=False, bf16=rt.bf16,
        model_init_kwargs={"dtype": rt.dtype}, **length,
    )
