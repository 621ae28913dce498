"""The safety SFT warm start of a real model's base stage: weak guardrails, so that GRPO has a signal.

SmolLM2-135M-Instruct refuses none of the HarmBench behaviours (0/48 greedy): every group of GRPO
completions then earns the same safety reward, the group-relative advantages are all zero, and GRPO and
FRPO leave the model where it is. The warm start fine-tunes the base briefly (``base.sft_steps`` LoRA
steps) on refusal demonstrations for the *train* behaviours and answered benign look-alikes
(``base.sft_dataset``, e.g. ``refusals+lookalikes:train`` of :mod:`llm.textsets`), so that it refuses some
held-out behaviours and not others (the preset targets a held-out refusal rate between 0.2 and 0.7), as the
tiny world's pretrained base does. The loss is on the completion only (TRL's prompt-completion SFT).

Deviation: the FRPO paper starts from instruction-tuned 7B models that already refuse; the warm start is
this project's stand-in for that starting point on a model too small to have one.
"""
from __future__ import annotations

from pathlib import Path

from llm.config import RunConfig
from llm.runtime import Runtime


def safety_warmstart(cfg: RunConfig, base_path: str, seed: int, out: Path, dist, rt: Runtime) -> str:
    """SFT ``base_path`` on ``cfg.base.sft_dataset`` for ``cfg.base.sft_steps`` steps; the merged model at ``out``.

    ``out`` is ``<stage dir>/model``; checkpoints go to ``<stage dir>/ckpt`` (resumed when the stage is run
    again), a LoRA adapter (``base.sft_lora_r`` > 0, all linear layers, α = 2r) to ``<stage dir>/adapter``.
    ``rt``: the run's device and precision (llm.runtime).
    """
    from trl import SFTConfig, SFTTrainer

    from llm.data import dataset_rows
    from llm.trainkit import _lora, _resume_point, _to_dataset, free_memory, load_tokenizer, save_trained, trainer_args

    b = cfg.base
    stage_dir = Path(out).parent
    rows = dataset_rows(b.sft_dataset, None, need=("prompt", "completion"), key="base.sft_dataset")
    tok = load_tokenizer(base_path)
    # short sequences on small models: recomputing activations costs more than it saves
    common = trainer_args(cfg, rt, stage_dir, seed, steps=b.sft_steps, epochs=1.0, learning_rate=b.sft_learning_rate,
                          warmup_ratio=0.0, grad_accum=1, grad_ckpt=False, save_every=None)
    args = SFTConfig(per_device_train_batch_size=b.sft_batch_size, max_length=512, **common)
    trainer = SFTTrainer(model=base_path, args=args, train_dataset=_to_dataset(rows, ("prompt", "completion")),
                         processing_class=tok, peft_config=_lora(b.sft_lora_r, 0, [], 0.0))
    trainer.train(resume_from_checkpoint=_resume_point(stage_dir / "ckpt"))
    path = save_trained(trainer, tok, Path(out), base_path, rt, dist)
    del trainer
    free_memory()
    return str(path)
