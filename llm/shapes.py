"""Model shapes for the memory plan: parameter counts, LoRA sizes and KV-cache bytes from a model config.

A shape comes from the model's own ``config.json`` when a local directory exists (``AutoConfig``, no
network), else from :data:`KNOWN`, a table of the hub models the recipes name, transcribed from their
published ``config.json`` files (hidden size, layers, MLP width, heads, KV heads, head dim, vocabulary,
tied embeddings, q/k/v bias). Each shape says where it came from (``source``), and the plan prints it.

Parameter count of a Llama-family decoder (Llama, Mistral, Qwen2, Gemma):

    P = V·H·(1 if tied else 2) + L·(H·A + 2·H·K + A·H + 3·H·I + 2·H + bias·(A + 2K)) + H

with H = hidden size, L = layers, I = MLP width, A = heads·head_dim, K = kv_heads·head_dim, V = vocabulary.
A sequence-classification reward model replaces the LM head by a ``score`` row (H·1). The tests check P
against ``numel()`` of the real transformers classes built on the meta device for every table entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

# LoRA target name -> (in features, out features) as functions of the shape
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """A decoder's sizes (symbols of the module docstring) and where they were read."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    score_head: bool = False
    source: str = ""

    def linear(self, module: str) -> tuple[int, int]:
        h, a, k, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, a), "k_proj": (h, k), "v_proj": (h, k), "o_proj": (a, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}[module]

    @property
    def params(self) -> int:
        h, a, k = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = sum(i * o for i, o in (self.linear(m) for m in _LINEARS)) + 2 * h
        per_layer += (a + 2 * k) if self.qkv_bias else 0
        head = h if self.score_head else (0 if self.tied else self.vocab * h)
        return self.vocab * h + self.layers * per_layer + h + head

    def lora_params(self, r: int, targets: list[str] | tuple[str, ...]) -> int:
        """r·(in + out) per adapted linear per layer; empty targets = "all-linear" (every projection)."""
        mods = [m for m in (targets or _LINEARS)]
        unknown = [m for m in mods if m not in _LINEARS]
        if unknown:
            raise ValueError(f"lora_target_modules {unknown} are not projections of a Llama-family decoder; "
                             f"known: {list(_LINEARS)}")
        return self.layers * sum(r * sum(self.linear(m)) for m in mods)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Bytes of the KV cache per token: 2 (K and V) · L · kv_heads · head_dim · dtype bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def _s(name, h, layers, inter, heads, kv, vocab, tied, head_dim=None, bias=False, score=False) -> Shape:
    return Shape(name, h, layers, inter, heads, kv, head_dim or h // heads, vocab, tied, bias, score,
                 source=f"table: {name} config.json as published on the hub")


# The recipes' models and judges, from their published config.json files.
KNOWN: dict[str, Shape] = {s.name: s for s in (
    _s("Qwen/Qwen2.5-7B-Instruct", 3584, 28, 18944, 28, 4, 152064, False, bias=True),
    _s("Qwen/Qwen2.5-7B", 3584, 28, 18944, 28, 4, 152064, False, bias=True),
    _s("Qwen/Qwen2.5-Math-7B", 3584, 28, 18944, 28, 4, 152064, False, bias=True),
    _s("Qwen/Qwen2.5-1.5B-Instruct", 1536, 28, 8960, 12, 2, 151936, True, bias=True),
    _s("Qwen/Qwen2.5-1.5B", 1536, 28, 8960, 12, 2, 151936, True, bias=True),
    _s("mistralai/Mistral-7B-Instruct-v0.1", 4096, 32, 14336, 32, 8, 32000, False),
    _s("mistralai/Mistral-7B-v0.1", 4096, 32, 14336, 32, 8, 32000, False),
    _s("meta-llama/Llama-2-7b-chat-hf", 4096, 32, 11008, 32, 32, 32000, False),
    _s("meta-llama/Llama-2-7b-hf", 4096, 32, 11008, 32, 32, 32000, False),
    _s("meta-llama/Llama-2-13b-hf", 5120, 40, 13824, 40, 40, 32000, False),
    _s("meta-llama/Llama-3.1-8B-Instruct", 4096, 32, 14336, 32, 8, 128256, False),
    _s("meta-llama/Llama-3.1-8B", 4096, 32, 14336, 32, 8, 128256, False),
    _s("google/gemma-2b", 2048, 18, 16384, 8, 1, 256000, True, head_dim=256),
    _s("HuggingFaceTB/SmolLM2-135M-Instruct", 576, 30, 1536, 9, 3, 49152, True),
    _s("HuggingFaceTB/SmolLM2-135M", 576, 30, 1536, 9, 3, 49152, True),
    # judges: the StrongREJECT judge is a LoRA adapter on gemma-2b (its adapter is a few MB, not counted);
    # the RM-RB2 reward model is Llama-3.1-8B-Instruct with a one-logit score head; HarmBench's classifier
    # is a Llama-2-13B fine-tune.
    replace(_s("qylu4156/strongreject-15k-v1", 2048, 18, 16384, 8, 1, 256000, True, head_dim=256),
            source="table: LoRA adapter on google/gemma-2b (the base's config.json as published)"),
    _s("allenai/Llama-3.1-8B-Instruct-RM-RB2", 4096, 32, 14336, 32, 8, 128256, False, score=True),
    _s("cais/HarmBench-Llama-2-13b-cls", 5120, 40, 13824, 40, 40, 32000, False),
)}


def _known_by_basename(name: str) -> Shape | None:
    base = Path(name.rstrip("/")).name.lower()
    for key, shape in KNOWN.items():
        if key.split("/")[-1].lower() == base:
            return replace(shape, source=f"{shape.source} (matched by the directory name {base!r})")
    return None


def _from_config(name: str, cfg: dict, source: str, score: bool) -> Shape:
    text = cfg.get("text_config", cfg)
    try:
        h, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
        return Shape(name, h, int(text["num_hidden_layers"]), int(text["intermediate_size"]), heads,
                     int(text.get("num_key_value_heads") or heads), int(text.get("head_dim") or h // heads),
                     int(text["vocab_size"]), bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings",
                                                                                         False))),
                     qkv_bias=bool(text.get("attention_bias", text.get("model_type", "") == "qwen2")),
                     score_head=score, source=source)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model config of {name!r} ({source}) lacks a Llama-family size field: {exc}") from None


def model_shape(name_or_path: str, *, score_head: bool = False) -> Shape:
    """The shape of a local model directory (its config.json; an adapter directory: its base) or a known hub id.

    ``score_head``: a sequence-classification reward model (one-logit head instead of the LM head).
    Raises ValueError naming the model when neither a local config nor a table entry exists.
    """
    p = Path(name_or_path).expanduser()
    if (p / "config.json").exists():
        cfg = json.loads((p / "config.json").read_text())
        archs = " ".join(cfg.get("architectures") or [])
        return _from_config(name_or_path, cfg, f"AutoConfig: {p / 'config.json'}",
                            score_head or "SequenceClassification" in archs)
    if (p / "adapter_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path", "")
        shape = model_shape(base, score_head=score_head)
        return replace(shape, name=name_or_path, source=f"adapter {p} on {base}: {shape.source}")
    if name_or_path in KNOWN:
        shape = KNOWN[name_or_path]
    else:
        shape = _known_by_basename(name_or_path)
    if shape is None:
        from llm.assets import MODELS, is_asset_spec, unknown_asset

        if is_asset_spec(name_or_path) and name_or_path not in MODELS:  # a mistyped asset name, not a hub id
            raise unknown_asset(name_or_path, "model")
        raise ValueError(f"model {name_or_path!r}: no local config.json and not in the table of known models "
                         f"({', '.join(sorted(KNOWN))}); pass a local directory or add its shape to "
                         "llm.shapes.KNOWN")
    return replace(shape, score_head=shape.score_head or score_head)


def tiny_world_shape(hidden: int, layers: int, vocab: int = 256) -> Shape:
    """The tiny world's Llama (llm.tiny.build_tiny_llama: 4 heads, MLP 4·hidden, tied); vocabulary approximated."""
    return Shape("tiny-world", hidden, layers, 4 * hidden, 4, 4, hidden // 4, vocab, True,
                 source=f"llm.tiny.build_tiny_llama defaults, vocabulary approximated as {vocab}")
