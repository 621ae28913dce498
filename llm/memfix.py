"""The fixes the memory plan (:mod:`llm.memplan`) calls for, as functions the pipeline calls at one place each.

* :func:`chunked_sequence_kl` — the tracker's and the evaluation's KL(π‖π_ref) without all (N, T, V)
  logits at once: hidden states per row chunk, the LM head per block of response positions, ≈ 1 GB.
* :func:`attach_tracker_reference` — the downstream tracker's reference is the trainer's own frozen
  reference (TRL's for β > 0, CSFT's), else the aligned model loaded from disk (works under ZeRO-3 /
  FSDP, where a deep copy of the partitioned policy is unusable); with LoRA nothing (adapter disabled).
* :func:`remove_checkpoints` — ``<stage>/ckpt`` removed once the stage is DONE (``keep_checkpoints``).
* :func:`release_vllm` — the colocated vLLM engine of a finished GRPO/FRPO trainer shut down, so that
  the next trainer of the same process can start its own (tested with a stand-in engine only: vLLM is
  not installed here).

Each one is tested on tiny models (tests/llm/test_memplan.py); :func:`llm.memplan.code_facts` reads
whether the pipeline calls them.
"""
from __future__ import annotations

import gc
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

KL_BUDGET_BYTES = 1e9
# float32 bytes per (row, position, vocabulary entry) held at once by the exact KL of one block:
# policy and reference logits, their two log-softmaxes and two temporaries of Σ p (log p − log q)
_KL_BYTES = 24


def _head_and_backbone(model):
    """(backbone, lm_head) when the logits are exactly ``lm_head(backbone(...).last_hidden_state)``, else None.

    None too for an FSDP-wrapped model: only its own forward gathers the root unit's shards."""
    if hasattr(model, "_fsdp_wrapped_module") or type(model).__name__.startswith("FullyShardedDataParallel"):
        return None
    cfg = getattr(model, "config", None)
    text = cfg.get_text_config() if cfg is not None and hasattr(cfg, "get_text_config") else cfg
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier"):
        if getattr(text, attr, None) not in (None, 1.0):
            return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else None
    if head is None or backbone is None or not isinstance(head, torch.nn.Module):
        return None
    return backbone, head


def _response_hidden(model, ids, attn, prompt_len):
    """Hidden states (c, T, H) at the positions predicting ids[:, P:], or None (use full logits instead)."""
    parts = _head_and_backbone(model)
    if parts is None:
        return None
    backbone, head = parts
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0)  # left padding: positions from each row's first token
    hidden = backbone(input_ids=ids, attention_mask=attn, position_ids=pos).last_hidden_state
    return hidden[:, prompt_len - 1: -1], head


def _response_logits_full(model, ids, attn, prompt_len):
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0)
    logits = type(model).forward(model, input_ids=ids, attention_mask=attn, position_ids=pos).logits
    return logits[:, prompt_len - 1: -1]


@torch.no_grad()
def chunked_sequence_kl(model, reference: Callable[[], Any], seq: torch.Tensor, attn: torch.Tensor,
                        prompt_len: int, resp: torch.Tensor, resp_mask: torch.Tensor,
                        estimators: tuple[str, ...] = ("rb", "mc"),
                        budget_bytes: float = KL_BUDGET_BYTES) -> dict[str, list[float]]:
    """Per-sequence KL(π‖π_ref) estimates of ``theory.losses.sequence_kl_terms``, a block at a time.

    KL̂(y) = Σ_t m_t k_t with k_t the estimator's per-position term; the sum over positions is split
    into blocks of rows × positions whose float32 working set 24·rows·positions·V stays under
    ``budget_bytes`` (one row and one position at least). Same values as computing all (N, T, V) logits
    at once (up to float32 summation order). ``reference()``: a context manager yielding π_ref (as in
    ``llm.sampling.sample``); ``seq`` (N, P+T) = prompt + response, ``attn`` its mask, ``resp`` (N, T),
    ``resp_mask`` (N, T). Models with logit soft-capping or scaling get row chunks of full logits.
    Returns ``{estimator: [N floats]}``.
    """
    from theory.losses import sequence_kl_terms

    n, t = resp.shape
    vocab = int(model.get_output_embeddings().weight.shape[0]) if hasattr(model, "get_output_embeddings") \
        else int(model.config.vocab_size)
    per_pos = _KL_BYTES * vocab
    rows = max(1, min(n, int(budget_bytes // max(1, per_pos * t))))
    out: dict[str, list[float]] = {e: [] for e in estimators}
    for s in range(0, n, rows):
        sl = slice(s, s + rows)
        pol = _response_hidden(model, seq[sl], attn[sl], prompt_len)
        with reference() as ref:
            was = ref.training
            ref.eval()
            try:
                refh = _response_hidden(ref, seq[sl], attn[sl], prompt_len) if pol is not None else None
                if pol is None or refh is None:  # full logits of this row chunk
                    logits = _response_logits_full(model, seq[sl], attn[sl], prompt_len)
                    ref_logits = _response_logits_full(ref, seq[sl], attn[sl], prompt_len)
                    for e in estimators:
                        out[e] += sequence_kl_terms(logits, ref_logits, resp[sl], resp_mask[sl], e).tolist()
                    continue
                (h, head), (rh, rhead) = pol, refh
                width = max(1, int(budget_bytes // (per_pos * h.shape[0])))
                acc = {e: torch.zeros(h.shape[0], dtype=torch.float64, device=h.device) for e in estimators}
                for p in range(0, t, width):
                    blk = slice(p, p + width)
                    for e in estimators:
                        acc[e] += sequence_kl_terms(head(h[:, blk]), rhead(rh[:, blk]), resp[sl, blk],
                                                    resp_mask[sl, blk], e).double()
                for e in estimators:
                    out[e] += acc[e].tolist()
            finally:
                ref.train(was)
    return out


def attach_tracker_reference(trainer, tracker, aligned_path: str, device, dtype: str | None,
                             lora: bool) -> str:
    """Give the downstream ``tracker`` its π_ref without a deep copy; returns how ("none" when nothing to do).

    "shared": the trainer's frozen reference (``trainer.ref_model``: TRL's for β > 0, CSFT's), unwrapped
    from its DeepSpeed engine; "loaded": the aligned model from ``aligned_path`` on ``device`` (a full copy,
    correct under ZeRO-3 / FSDP and on resume, when the policy's weights are a checkpoint's); "lora": the
    tracker's own adapter-disabled base (nothing loaded). Call it after building the trainer, in place of
    setting the reference on resume.
    """
    if tracker is None:
        return "none"
    if lora:
        return "lora"
    ref = getattr(trainer, "ref_model", None)
    if ref is not None:
        if type(ref).__name__ == "DeepSpeedEngine":  # its module runs the (ZeRO-3: gathered) weights
            ref = ref.module
        how = "shared"  # an FSDP-wrapped reference stays wrapped: its forward gathers the shards
    else:
        from llm.trainkit import load_model

        ref = load_model(aligned_path, device, dtype)[0]
        how = "loaded"
    ref.eval().requires_grad_(False)
    tracker.ref_model, tracker.reference_mode = ref, "copy"
    return how


def remove_checkpoints(stage_dir: str | Path, keep: bool = False) -> float:
    """Delete ``<stage_dir>/ckpt`` of a DONE stage (main process) unless ``keep``; returns the GB freed."""
    ckpt = Path(stage_dir) / "ckpt"
    if keep or not ckpt.exists():
        return 0.0
    if not (Path(stage_dir) / "DONE.json").exists():
        raise ValueError(f"remove_checkpoints({stage_dir!r}): the stage is not DONE (no DONE.json); its "
                         "checkpoints are what a resumed run restarts from. Call it after the stage is finished.")
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    shutil.rmtree(ckpt)
    return size / 1e9


def release_vllm(trainer) -> bool:
    """Shut down a trainer's colocated vLLM engine and free its GPU memory; True when there was one.

    TRL keeps the engine in ``trainer.vllm_generation.llm``; it is never destroyed between trainers of one
    process, so the next GRPO/FRPO stage could not reserve its own share of the GPU.
    """
    gen = getattr(trainer, "vllm_generation", None)
    llm = getattr(gen, "llm", None)
    if llm is None:
        return False
    engine = getattr(llm, "llm_engine", None)
    for obj, name in ((engine, "shutdown"), (llm, "shutdown")):
        fn = getattr(obj, name, None) if obj is not None else None
        if callable(fn):
            fn()
            break
    gen.llm = None
    del llm, engine
    # Not vLLM's destroy_distributed_environment(): under TRL's colocate mode vLLM runs on the training
    # process group ("external_launcher"), which that call would destroy.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return True
