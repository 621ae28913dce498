"""The tiny world's training loops: completion tokenisation, a plain-torch SFT loop, base pretraining.

:func:`pretrain_base` trains the weakly aligned base policy of :mod:`llm.world` on its
``base_corpus``; :func:`train_sft` is the same loop for downstream SFT (completion-only loss
:func:`completion_nll` on rows tokenised by :func:`encode_completions`). Plain torch, no TRL:
deterministic given the seed and the model's initial weights. The design and the measured base:
``docs/tiny_world.md``.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from llm.tiny import build_tiny_llama
from llm.world import KINDS, World


def encode_completions(tokenizer, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise prompt+completion rows, right-padded: ``input_ids (N, L)`` and ``loss_mask (N, L)``.

    ``loss_mask[i, t] = 1`` where token t belongs to the completion (including its ``</s>``), i.e.
    the positions whose next-token prediction from t-1 is trained. Right padding with a causal
    model needs no attention mask: padding only follows the real tokens.
    """
    seqs, masks, cache = [], [], {}
    for r in rows:
        key = repr((r["prompt"], r["completion"]))  # the base corpus repeats rows; render each once
        if key not in cache:
            p = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
            full = tokenizer.apply_chat_template(r["prompt"] + r["completion"], return_dict=True)["input_ids"]
            if full[: len(p)] != p:
                raise ValueError(
                    f"chat template is not prefix-preserving for row {r['prompt']!r}: the prompt rendered with "
                    "add_generation_prompt=True must be a token prefix of prompt+completion; use llm.tiny's template."
                )
            cache[key] = (full, [0] * len(p) + [1] * (len(full) - len(p)))
        seqs.append(cache[key][0])
        masks.append(cache[key][1])
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)  # (N, L)
    mask = torch.zeros((len(seqs), width), dtype=torch.float32)  # (N, L)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, mask


def completion_nll(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per completion token: Σ_t mask·(−log π(y_t|y_<t)) / Σ mask."""
    logits = model(input_ids=ids).logits[:, :-1]  # (B, L-1, V)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # (B, L-1)
    m = mask[:, 1:]
    return -(logp * m).sum() / m.sum().clamp_min(1.0)


def train_sft(
    model,
    tokenizer,
    rows: list[dict],
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    weights: list[float] | None = None,
    progress: bool = True,
    desc: str = "sft",
    on_step: Callable[[int, list[float]], None] | None = None,
    num_threads: int | None = 1,
) -> list[float]:
    """Plain-torch completion-only SFT (AdamW, constant lr) in place; returns the per-step losses.

    Each step draws ``batch_size`` rows with replacement (probabilities ∝ ``weights``, uniform if
    None) from a ``torch.Generator`` seeded with ``seed``, so the run is deterministic given the
    seed and the model's initial weights. Loss = :func:`completion_nll`. ``on_step(step, losses)``
    (if given) is called after every optimizer step, ``step`` counting from 1 -- e.g. to evaluate
    refusal and KL along the run; the model is in train mode then (the tiny Llama has no dropout).
    ``num_threads``: torch intra-op threads during the loop (restored afterwards). 1 is the fastest
    for the tiny model and avoids OpenMP oversubscription, which on a shared 2-core machine made 30
    steps take 61 s with 2 threads instead of 2 s with 1; None keeps torch's setting.
    """
    if steps < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"train_sft: steps={steps} (>= 0), batch_size={batch_size} (>= 1), lr={lr} (> 0) required.")
    ids, mask = encode_completions(tokenizer, rows)
    w = torch.ones(len(rows)) if weights is None else torch.as_tensor(weights, dtype=torch.float)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    with _threads(num_threads):
        for _ in bar:
            model.train()
            idx = torch.multinomial(w, batch_size, replacement=True, generator=gen)  # (B,)
            bmask = mask[idx]
            width = int(bmask.nonzero()[:, 1].max()) + 1  # trim trailing padding columns
            loss = completion_nll(model, ids[idx, :width], bmask[:, :width])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), losses)
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    model.eval()
    return losses


@contextlib.contextmanager
def _threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def pretrain_base(
    world: World,
    seed: int = 0,
    steps: int = 1500,
    *,
    lr: float = 3e-3,
    batch_size: int = 64,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    progress: bool = True,
    num_threads: int | None = 1,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Train the weakly aligned base policy on ``world.base_corpus``; returns ``(model, tokenizer)``.

    Starts from ``build_tiny_llama(world.tokenizer(), seed=seed)`` and runs :func:`train_sft` with
    kinds sampled by ``world.cfg.mixture``. Harmful prompts are refused in
    ``base_refusal_fraction`` of their examples, so the base refuses only part of harmful requests
    (weak guardrails), answers benign look-alikes, arithmetic and instructions.

    Measured (default world, seeds 0/1/2, 1500 steps): held-out refusal probability 0.54/0.64/0.60,
    over-refusal < 0.001, math_eval accuracy 1.0/0.95/1.0; with ``base_refusal_fraction=0.9``:
    0.92/0.89. Cost: 32 s of CPU time on one thread (68-141 s wall on a shared, loaded 2-core box).
    Downstream SFT on ``sft_math_affirm`` (lr 1e-3, batch 32) then drops held-out refusal to
    0.04/0.15/0.03 in 50 steps, while ``sft_math_plain`` leaves it at 0.52/0.66/0.63.
    """
    tok = world.tokenizer()
    model = build_tiny_llama(tok, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, seed=seed)
    mix = dict(world.cfg.mixture)
    counts = {k: sum(r["kind"] == k for r in world.base_corpus) for k in KINDS}
    weights = [mix[r["kind"]] / counts[r["kind"]] for r in world.base_corpus]
    train_sft(model, tok, world.base_corpus, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
              weights=weights, progress=progress, desc="pretrain base", num_threads=num_threads)
    return model, tok
