"""Shared fixtures of the llm tests: ``tiny_llama``, the one place the tests get a random tiny Llama.

``tiny_llama(seed=0, words=None) -> (model, tokenizer)`` is a factory: every call builds **fresh** objects
with :func:`llm.tiny.tiny_model_and_tokenizer`, deterministic given ``seed`` (the global torch RNG is left as
it was). So one test can take a policy and, by a second call with the same seed, an independent copy of the
starting weights to use as the reference::

    def test_kl(tiny_llama):
        policy, tok = tiny_llama()      # trained or perturbed by the test
        reference, _ = tiny_llama()     # the starting weights, rebuilt independently
        other, _ = tiny_llama(seed=1)   # a different random model over the same vocabulary

Module helpers that build models take the factory as their first argument (``_trainer(tiny_llama, tmp_path)``).
The fixture is session-scoped because it holds no state (each call is fresh), so module-scoped fixtures can use
it too. ``tests/llm/test_tiny.py`` tests the constructor itself and calls it directly.
"""
from __future__ import annotations

import pytest

from llm.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="session")
def tiny_llama():
    """The factory ``tiny_llama(seed=0, words=None) -> (model, tokenizer)``: fresh random tiny Llama each call."""
    return tiny_model_and_tokenizer
