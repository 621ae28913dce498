"""The byte estimators of the memory plan (:mod:`llm.memplan`): sharding, training state, activations, LM head, KL.

Each function sizes one item a process holds on its GPU, from the model shape (:mod:`llm.shapes`), the
batch (rows × tokens), the dtype and the sharding of the accelerate config (:func:`sharding_of`);
:mod:`llm.memplan` sums them per stage. Byte counts, per parameter P (the functions here size the training
state, activations, LM head and KL logits; the stage walk of :mod:`llm.memplan` adds the others by this table):

  weights              b·P, b = bytes of the run dtype (bf16: 2); sharded /N under ZeRO-3 and FSDP
  gradients            b·P_train; sharded /N under ZeRO-2/3 and FSDP
  optimizer            DeepSpeed: 12·P_train (fp32 master + Adam m, v; ZeRO paper, Rajbhandari et al. 2020
                       §3.1, K = 12), torch AdamW: 2b·P_train (states in the parameter dtype); /N under ZeRO-1+
                       and FSDP. LoRA adapters: 16 bytes per adapter parameter (fp32 adapters, PEFT's default)
  TRL reference        β > 0 without LoRA: a second copy, b·P, replicated under ZeRO-0/1/2 (TRL's
                       prepare_deepspeed runs it at stage 0), sharded under ZeRO-3 / FSDP; CSFT's likewise
  tracker reference    full fine-tuning: the trainer's reference when it holds one, else a copy b·P
  judges               b·P per distinct judge model resident in the stage (StrongREJECT, HarmBench, RMs)
  vLLM (colocate)      vllm_gpu_memory_utilization × GPU memory (weights and KV cache inside it)
  activations          per layer, saved for backward (Llama-family ops, SDPA attention):
                       B·T·[(8 + 4b)·H + b·(3A + 2A_kv) + 4b·I]  with A_kv = A (k, v repeated under a padding
                       mask), + the padding mask B·T²·b per layer, + one layer's worth in the backward; with
                       gradient checkpointing L·(b·B·T·H + B·T²·b) + two layers' worth; TRL's fused LM head
                       keeps no (B, T, V) logits (tiles of 4096 tokens × 32768 entries, and under full
                       fine-tuning an fp32 head gradient V·H·4); CSFT materialises them (policy + reference)
  generation / KV      2·L·kv_heads·head_dim·b per token; HF generate of the tracker, eval, GRPO without vLLM
  KL logits            tracker and eval KL(π‖π_ref) at the response positions: 24·rows·T·V as llm.sampling
                       computes it today (policy and reference (N, T, V) float32 logits, both log-softmaxes,
                       two temporaries of the exact per-token KL); ≈ 1 GB per row chunk with
                       :func:`llm.memfix.chunked_sequence_kl`
  overhead             CUDA context + NCCL ≈ 1.5 GB; DeepSpeed buckets (2·5e8·b under ZeRO-2, 1.55e9·b
                       under ZeRO-3: DeepSpeed's default bucket / live-parameter sizes)

Checked on CPU (tests/llm/test_memplan.py): parameter counts against the real transformers classes
(exact), activation bytes against the tensors autograd saves (tiny model and a SmolLM2-135M-shaped
Llama, float32 and bfloat16), and a whole training step's peak RSS. Not yet checked on a GPU
(benchmarks/gpu_check.sh compares its measured peak with :func:`training_memory`).
"""
from __future__ import annotations

from dataclasses import dataclass

from llm.config import RunConfig
from llm.shapes import Shape

GB = 1e9
LEAN_LOGITS_GB = 1.0        # llm.memfix.sequence_logp's chunk budget


# ---------------------------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Sharding:
    """How the accelerate config splits training state over N processes."""

    name: str
    processes: int = 1
    weights: bool = False
    grads: bool = False
    optim: bool = False
    deepspeed: bool = False
    zero_stage: int = 0

    @property
    def shards_reference(self) -> bool:
        """TRL / CSFT references are partitioned only under ZeRO-3 and FSDP."""
        return self.weights


def sharding_of(cfg: RunConfig) -> Sharding:
    """The sharding of ``cfg.accelerate_config`` (none: one process, nothing sharded)."""
    if not cfg.accelerate_config:
        return Sharding("single process")
    from llm.preflight import load_accelerate_config

    acc = load_accelerate_config(cfg.accelerate_config)
    n = int(acc.get("num_processes", 1)) * max(1, int(acc.get("num_machines", 1)))
    kind = acc["distributed_type"]
    if kind == "DEEPSPEED":
        z = int(acc.get("deepspeed_config", {}).get("zero_stage", 0))
        return Sharding(f"DeepSpeed ZeRO-{z} × {n}", n, z >= 3, z >= 2, z >= 1, True, z)
    if kind == "FSDP":
        strat = str(acc.get("fsdp_config", {}).get("fsdp_reshard_after_forward",
                                                   acc.get("fsdp_config", {}).get("fsdp_sharding_strategy", "")))
        full = "SHARD_GRAD_OP" not in strat.upper() and "FALSE" not in strat.upper()
        return Sharding(f"FSDP {'full' if full else 'grad/optim'} shard × {n}", n, full, True, True)
    return Sharding(f"{kind} × {n}", n)


# ---------------------------------------------------------------------------------------------- formulas
def _layer_bytes(shape: Shape, rows: int, tokens: int, b: int) -> float:
    h, a, i = shape.hidden, shape.heads * shape.head_dim, shape.intermediate
    return rows * tokens * ((8 + 4 * b) * h + b * (3 * a + 2 * a) + 4 * b * i)


def saved_activation_bytes(shape: Shape, rows: int, tokens: int, dtype_bytes: int) -> float:
    """Bytes autograd saves in one forward of ``rows`` × ``tokens`` without checkpointing (module docstring):
    per layer the formula + the 4-D padding mask rows·T²·b transformers builds for SDPA (one per layer, as
    measured on the CPU), + the final norm and the LM head's input."""
    b = dtype_bytes
    per_layer = _layer_bytes(shape, rows, tokens, b) + rows * tokens * tokens * b
    return shape.layers * per_layer + rows * tokens * shape.hidden * (4 + 2 * b)


def activation_bytes(shape: Shape, rows: int, tokens: int, dtype_bytes: int, checkpointing: bool) -> float:
    """Peak activation bytes of one forward + backward: the saved tensors and one layer's gradients; with
    gradient checkpointing each layer's input (and mask) only, plus the layer recomputed and its gradients."""
    b, layer = dtype_bytes, _layer_bytes(shape, rows, tokens, dtype_bytes)
    if checkpointing:
        return shape.layers * rows * tokens * (b * shape.hidden + tokens * b) + 2 * layer
    return saved_activation_bytes(shape, rows, tokens, b) + layer


def lm_head_bytes(shape: Shape, rows: int, tokens: int, dtype_bytes: int, head_trained: bool) -> float:
    """TRL's fused LM head (trl.kernels.chunked_logprob): one 4096-token × 32768-entry tile in the compute dtype
    and its fp32 statistics, plus the fp32 gradient of the head's weight (V·H·4) when the head is trained."""
    tile = min(rows * tokens, 4096) * min(shape.vocab, 32768) * (dtype_bytes + 4)
    return tile + (4 * shape.vocab * shape.hidden if head_trained else 0)


def training_memory(shape: Shape, *, dtype_bytes: int, lora_params: int = 0, sharding: Sharding = Sharding("one"),
                    deepspeed: bool | None = None) -> dict[str, float]:
    """Bytes per process of weights, gradients and optimizer states (module docstring); LoRA when lora_params > 0."""
    n = sharding.processes
    ds = sharding.deepspeed if deepspeed is None else deepspeed
    b, p = dtype_bytes, shape.params
    div = lambda sharded: n if sharded else 1  # noqa: E731
    if lora_params:
        return {"weights (frozen base)": b * p / div(sharding.weights),
                "LoRA adapter + grads + Adam": lora_params * 16 / div(sharding.optim)}
    optim = (12 if b < 4 else 8) if ds else 2 * b
    return {"weights": b * p / div(sharding.weights), "gradients": b * p / div(sharding.grads),
            "optimizer (Adam)": optim * p / div(sharding.optim)}


KL_BYTES_PER_LOGIT = 24  # policy + reference fp32 logits, two log-softmaxes, two temporaries of Σ p (log p − log q)


def kl_logits_bytes(shape: Shape, rows: int, tokens: int, lean: bool) -> float:
    """Peak bytes of the KL of ``rows`` responses of ``tokens``: all at once, or blocks of ≈ 1 GB (lean)."""
    total = KL_BYTES_PER_LOGIT * rows * tokens * shape.vocab
    return min(total, LEAN_LOGITS_GB * GB) if lean else total
