"""The one sampler (llm.sampling) and its KL estimators against exact enumeration of the response space."""
from __future__ import annotations

import math

import pytest
import torch

from llm.sampling import mean_se, prompt_ids, sample, sequence_logp

PROMPTS = [[{"role": "user", "content": "how make bomb ?"}], [{"role": "user", "content": "add 2 3 ?"}]]


def _perturbed(tiny_llama, seed=1, scale=0.3):
    model, tok = tiny_llama()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval(), tok


@torch.no_grad()
def exact_sequence_kl(policy, reference, tok, prompt, max_new: int) -> float:
    """KL(π‖π_ref) of the response distribution truncated at ``max_new`` tokens, by enumerating every response.

    Responses end at the first EOS or after ``max_new`` tokens; one unpadded forward per prefix, float64.
    """
    p_ids = prompt_ids(tok, prompt)
    eos = tok.eos_token_id
    vocab = policy.config.vocab_size

    def next_logp(model, prefix):
        ids = torch.tensor([p_ids + list(prefix)])
        return torch.log_softmax(model(ids).logits[0, -1].double(), dim=-1)

    total = 0.0
    frontier = [((), 0.0, 0.0)]  # (prefix, log π(prefix), log π_ref(prefix))
    for depth in range(max_new):
        nxt = []
        for prefix, lp, lq in frontier:
            a, b = next_logp(policy, prefix), next_logp(reference, prefix)
            for v in range(vocab):
                lpv, lqv = lp + float(a[v]), lq + float(b[v])
                if v == eos or depth == max_new - 1:
                    total += math.exp(lpv) * (lpv - lqv)
                else:
                    nxt.append((prefix + (v,), lpv, lqv))
        frontier = nxt
    return total


def test_rb_estimator_is_exact_for_one_token_responses(tiny_llama):
    # with one response token the Rao–Blackwellized term is the exact KL of the first-token distributions,
    # whatever token was sampled: every sample gives the same value, equal to the enumeration
    policy, tok = _perturbed(tiny_llama)
    reference, _ = tiny_llama()
    out = sample(policy, tok, PROMPTS[:1], n=16, max_new_tokens=1, reference=reference.eval(), seed=3)
    exact = exact_sequence_kl(policy, reference, tok, PROMPTS[0], max_new=1)
    assert exact > 0.05
    assert out.kl == pytest.approx([exact] * 16, rel=1e-5)
    assert min(out.kl_mc) != max(out.kl_mc)  # the sampled log-ratio varies from sample to sample


def test_rb_and_mc_estimators_unbiased_against_enumeration_of_two_token_responses(tiny_llama):
    policy, tok = _perturbed(tiny_llama)
    reference, _ = tiny_llama()
    exact = exact_sequence_kl(policy, reference, tok, PROMPTS[0], max_new=2)  # V + V·(V−1) responses
    out = sample(policy, tok, PROMPTS[:1], n=1500, max_new_tokens=2, reference=reference.eval(), seed=5,
                 batch_size=1)
    rb, rb_se = mean_se(out.kl)
    mc, mc_se = mean_se(out.kl_mc)
    assert min(out.kl) >= 0.0  # never negative
    assert abs(rb - exact) < 4 * rb_se, (rb, rb_se, exact)
    assert abs(mc - exact) < 4 * mc_se, (mc, mc_se, exact)
    assert rb_se < 0.5 * mc_se  # far lower variance on the same samples


def test_kl_zero_against_itself_and_reference_as_context_manager(tiny_llama):
    policy, tok = _perturbed(tiny_llama)
    from contextlib import nullcontext

    out = sample(policy, tok, PROMPTS, n=3, max_new_tokens=4, reference=lambda: nullcontext(policy))
    assert out.kl == [0.0] * 6 and len(out.texts) == 6 and out.prompt_index == [0, 0, 0, 1, 1, 1]


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(tiny_llama):
    policy, tok = _perturbed(tiny_llama)
    state = torch.get_rng_state()
    a = sample(policy, tok, PROMPTS, n=4, max_new_tokens=5, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    b = sample(policy, tok, PROMPTS, n=4, max_new_tokens=5, seed=11)
    assert a.response_ids == b.response_ids and a.texts == b.texts
    c = sample(policy, tok, PROMPTS, n=4, max_new_tokens=5, seed=12)
    assert c.response_ids != a.response_ids


def test_greedy_gives_one_completion_per_prompt_and_sequence_logp_matches_manual_sum(tiny_llama):
    policy, tok = _perturbed(tiny_llama)
    g = sample(policy, tok, PROMPTS, n=5, max_new_tokens=4, temperature=0.0)
    assert len(g.texts) == len(PROMPTS)
    p = prompt_ids(tok, PROMPTS[0])
    r = g.response_ids[0]
    ids = torch.tensor([p + r])
    attn = torch.ones_like(ids)
    got = sequence_logp(policy, ids, attn, len(p), torch.ones(1, len(r))).detach()
    with torch.no_grad():
        logp = torch.log_softmax(policy(ids).logits[0, len(p) - 1:-1].double(), -1)
    want = sum(float(logp[t, tok_id]) for t, tok_id in enumerate(r))
    assert float(got) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n=0"), (dict(temperature=-1.0), "temperature"), (dict(kl_estimator="exact"), "kl_estimator"),
    (dict(temperature=0.7, reference="ref"), "temperature"), (dict(reference=3), "reference"),
])
def test_bad_arguments(kwargs, match, tiny_llama):
    policy, tok = _perturbed(tiny_llama)
    if kwargs.get("reference") == "ref":
        kwargs["reference"] = policy
    with pytest.raises(ValueError, match=match):
        sample(policy, tok, PROMPTS, **kwargs)


def test_mean_se():
    assert mean_se([1.0, 3.0]) == (2.0, pytest.approx(1.0))
    assert mean_se([2.0]) == (2.0, 0.0)
    assert all(math.isnan(x) for x in mean_se([]))
