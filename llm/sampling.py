"""One sampler and one sequence log-probability for every model call of the toolkit.

The tracking callback (:mod:`llm.callbacks`), the evaluation (:mod:`llm.evaluation`) and the tiny
world's evaluators (:mod:`llm.world_eval`) all draw completions and measure KL(π‖π_ref) here:

    texts, KL̂ = sample(model, tok, prompts, n=K, reference=ref)     # y ~ π(·|x), K per prompt

Sampling is *pure* ancestral sampling at temperature 1 unless told otherwise (no top-k / top-p /
repetition penalty from the model's generation_config: the KL estimators need y ~ π), seeded in a
forked RNG so that the caller's randomness is untouched, and batched over prompts with left padding.
The KL estimator's math lives in :func:`theory.losses.sequence_kl_terms` ("rb": the exact per-token KL
of the two next-token distributions summed along each sampled response — non-negative, low
variance; "mc": the sampled log-ratio).

Laptop CPU and GPU alike: the model's own device is used; under ``accelerate`` each process samples
its own shard of prompts (see :func:`llm.evaluation.evaluate`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from theory.losses import KL_ESTIMATORS

# Neutral sampling settings: explicit values so that nothing from the model's generation_config
# (top_k=50, repetition penalty, ...) distorts the samples away from π.
PURE_SAMPLING = dict(
    do_sample=True, num_beams=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
    epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
    min_new_tokens=0, guidance_scale=1.0, suppress_tokens=[], begin_suppress_tokens=[],
    use_cache=True,
)
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0,
              suppress_tokens=[], begin_suppress_tokens=[], use_cache=True)


def messages(prompt) -> list[dict]:
    """A prompt as a message list: a row dict (its "prompt"), a message list, or a user string."""
    if isinstance(prompt, dict):
        prompt = prompt["prompt"]
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt rendered with the chat template and a generation prompt.

    A string is one user message; a tokenizer without a chat template tokenizes the string as is.
    """
    if isinstance(prompt, str) and not getattr(tokenizer, "chat_template", None):
        return tokenizer(prompt, add_special_tokens=True)["input_ids"]
    text = tokenizer.apply_chat_template(messages(prompt), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def response_logits(model, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int, chunk: int = 16) -> torch.Tensor:
    """Next-token logits at the response positions: (N, T, V) for ``ids (N, P+T)``, float32 or wider.

    Position ids count from each row's first real token (left padding). The class forward, not
    ``model.forward``: accelerate replaces the instance's forward by a wrapper (fp32 output conversion /
    autocast) that policy and reference must skip alike, and whose closure in a deep copy still points at
    the original module. ``chunk`` sequences per forward pass bound the (chunk, P+T, V) logits in memory.
    """
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0)
    out = []
    for s in range(0, ids.shape[0], chunk):
        logits = type(model).forward(model, input_ids=ids[s:s + chunk], attention_mask=attn[s:s + chunk],
                                     position_ids=pos[s:s + chunk]).logits  # (c, P+T, V)
        out.append(logits[:, prompt_len - 1: -1].float())  # (c, T, V) predicts ids[:, P:]
    return torch.cat(out)


def sequence_logp(model, ids: torch.Tensor, attn: torch.Tensor, prompt_len: int, resp_mask: torch.Tensor,
                  chunk: int = 16) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over the response tokens of ``ids (N, P+T)``: shape (N,), float32."""
    logits = response_logits(model, ids, attn, prompt_len, chunk)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_len:, None])[..., 0]  # (N, T)
    return (logp * resp_mask).sum(-1)


@dataclass
class Samples:
    """Completions of :func:`sample`, prompt-major (prompt i's samples at i·n … i·n + n − 1)."""

    texts: list[str] = field(default_factory=list)
    prompt_index: list[int] = field(default_factory=list)
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    """Response token ids through the first EOS (included)."""
    kl: list[float] = field(default_factory=list)
    """Per-sample KL(π‖π_ref) estimates (empty without a reference), of estimator ``kl_estimator``."""
    kl_mc: list[float] = field(default_factory=list)
    """Per-sample sampled log-ratio (the plain Monte Carlo estimator), for comparison."""
    kl_estimator: str = "rb"

    def kl_mean_se(self) -> tuple[float, float]:
        """Mean of :attr:`kl` and its standard error std/√N (ddof 1; 0 for a single sample)."""
        return mean_se(self.kl)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, std/√N with ddof 1) of ``values``; (nan, nan) when empty, se 0 for one value."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = math.fsum(values) / n
    if n == 1:
        return m, 0.0
    var = math.fsum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


@contextmanager
def eval_mode(*models):
    """Put models in eval mode and restore each one's previous mode afterwards."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


Reference = Any  # a model, or a zero-argument callable returning a context manager that yields one


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[Any], *, n: int = 1, max_new_tokens: int = 8,
           temperature: float = 1.0, seed: int = 0, batch_size: int = 16, reference: Optional[Reference] = None,
           kl_estimator: str = "rb") -> Samples:
    """Draw ``n`` completions per prompt from ``model`` and, with ``reference``, each one's KL(π‖π_ref) term.

    Args:
        prompts: message lists, row dicts with a "prompt", or user strings.
        n: completions per prompt (temperature 0 = greedy: one per prompt).
        temperature: 1 = pure sampling from π (required for the KL estimate); 0 = greedy.
        seed: sampling seed, drawn in a forked RNG (the caller's RNG state is restored).
        batch_size: prompts per ``generate`` call.
        reference: π_ref as a model, or a callable returning a context manager yielding the model
            (e.g. ``lambda: policy.disable_adapter()``-style, for a PEFT model's base).
        kl_estimator: "rb" (exact per-token KL summed along the sample, default) or "mc".

    The KL terms are computed in blocks of rows × positions under a memory budget
    (:func:`llm.memfix.chunked_sequence_kl`), never all (N, T, V) logits of both models at once.
    """
    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"n={n}, batch_size={batch_size}, max_new_tokens={max_new_tokens} must all be >= 1")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator={kl_estimator!r} is not one of {KL_ESTIMATORS}")
    if not (temperature >= 0) or math.isinf(temperature):
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0 = greedy)")
    if reference is not None and temperature != 1.0:
        raise ValueError(f"the KL estimator needs samples from π (temperature 1), got temperature={temperature}")
    greedy = temperature == 0
    n = 1 if greedy else n
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(model, tokenizer)
    eos_t = torch.tensor(eos, device=device)
    mode = GREEDY if greedy else {**PURE_SAMPLING, "temperature": temperature}
    gen = GenerationConfig(max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=pad_id,
                           eos_token_id=eos if len(eos) > 1 else eos[0], **mode)
    if reference is None or isinstance(reference, torch.nn.Module):
        ref_ctx: Callable = lambda: nullcontext(reference)  # noqa: E731
    elif callable(reference):
        ref_ctx = reference
    else:
        raise ValueError(f"reference must be a model or a callable returning a context manager that yields "
                         f"one, got {type(reference).__name__}")
    out = Samples(kl_estimator=kl_estimator)
    prompts = list(prompts)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model):
        torch.manual_seed(seed)
        for s in range(0, len(prompts), batch_size):
            ids_list = [prompt_ids(tokenizer, p) for p in prompts[s: s + batch_size]]
            plen = max(len(p) for p in ids_list)
            ids = torch.tensor([[pad_id] * (plen - len(p)) + p for p in ids_list], device=device)  # (B, P)
            mask = torch.tensor([[0] * (plen - len(p)) + [1] * len(p) for p in ids_list], device=device)
            seq = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)  # (B·n, P+T)
            resp = seq[:, plen:]  # (B·n, T)
            is_eos = torch.isin(resp, eos_t).long()
            resp_mask = ((is_eos.cumsum(-1) - is_eos) == 0).to(mask.dtype)  # through the first EOS
            for i in range(seq.shape[0]):
                r_ids = resp[i][resp_mask[i].bool()].tolist()
                out.prompt_index.append(s + i // n)
                out.prompt_ids.append(ids_list[i // n])
                out.response_ids.append(r_ids)
                out.texts.append(tokenizer.decode(r_ids, skip_special_tokens=True))
            if reference is not None and resp.shape[1] > 0:
                attn = torch.cat([mask.repeat_interleave(n, dim=0), resp_mask], dim=-1)
                # blocks of rows × positions under a memory budget: never all (B·n, T, V) logits at once
                from llm.memfix import chunked_sequence_kl

                kl = chunked_sequence_kl(model, ref_ctx, seq, attn, plen, resp, resp_mask,
                                         tuple(dict.fromkeys((kl_estimator, "mc"))))
                out.kl += kl[kl_estimator]
                out.kl_mc += kl["mc"]
            elif reference is not None:
                out.kl += [0.0] * seq.shape[0]
                out.kl_mc += [0.0] * seq.shape[0]
    return out
