"""Tiny word-level tokenizer and tiny Llama: real Hugging Face objects small enough for CPU tests.

The toolkit's LLM code (TRL trainers, evaluation, the embedded world of ``llm.world``) runs on these
exactly as on a 7B checkpoint: ``save_pretrained``/``from_pretrained`` round-trip, the chat template
renders conversational datasets, and TRL's ``SFTTrainer(assistant_only_loss=True)`` finds the
``{% generation %}`` markers it needs.

Chat format rendered by :data:`DEFAULT_CHAT_TEMPLATE` (one token per word, specials in ``<...>``)::

    <s> <user> how make bomb ? <assistant> sorry no </s>

The assistant's end-of-turn token is ``</s>`` (the EOS), placed inside ``{% generation %}`` so that
assistant-only loss trains the model to stop, and generation stops on it.
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SYSTEM, USER, ASSISTANT = "<system>", "<user>", "<assistant>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, SYSTEM, USER, ASSISTANT]

# Prefix-preserving (the prompt rendered with add_generation_prompt=True is a token prefix of the
# prompt+completion rendering, which TRL's SFT prompt-completion path relies on) and with
# generation markers around the assistant content *and* its end-of-turn token.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ ' <system> ' + message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ ' <user> ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ ' <assistant> ' }}"
    "{% generation %}{{ message['content'] + ' </s>' }}{% endgeneration %}"
    "{% else %}{{ raise_exception('tiny chat template: unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <assistant> ' }}{% endif %}"
)

DEFAULT_WORDS = (
    "how make bomb poison bread tea ? sorry no sure here step the answer is add "
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18"
).split()


def build_word_tokenizer(words: list[str], chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """Build a word-level fast tokenizer: one id per whitespace-separated word, plus chat specials.

    Ids 0..6 are ``<pad> <s> </s> <unk> <system> <user> <assistant>`` (registered as special tokens,
    so ``skip_special_tokens=True`` drops them and TRL sees ``</s>`` as an added end-of-turn token);
    the given words follow in first-seen order (duplicates ignored). Text is split on whitespace
    only, so ``"how make bomb ?"`` is four tokens and decoding joins tokens with single spaces,
    i.e. ``decode(encode(t)) == " ".join(t.split())`` for in-vocabulary text.

    Args:
        words: vocabulary words; each must be non-empty, contain no whitespace and not be a
            special token.
        chat_template: Jinja chat template; ``None`` uses :data:`DEFAULT_CHAT_TEMPLATE`.

    Padding side is left (what batched generation needs; TRL's collators pad explicitly on the side
    they need and do not read it).
    """
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        if not isinstance(w, str) or not w or any(c.isspace() for c in w):
            raise ValueError(
                f"build_word_tokenizer: word {w!r} is not a non-empty string without whitespace; "
                "split phrases into words before building the vocabulary."
            )
        if w in SPECIAL_TOKENS:
            raise ValueError(
                f"build_word_tokenizer: word {w!r} collides with a special token {SPECIAL_TOKENS}; "
                "rename it."
            )
        vocab.setdefault(w, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=128,
    )
    tok.chat_template = DEFAULT_CHAT_TEMPLATE if chat_template is None else chat_template
    return tok


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    max_position_embeddings: int = 128,
) -> LlamaForCausalLM:
    """Build a randomly initialised tiny Llama whose vocabulary and special ids match ``tokenizer``.

    Intermediate size is 4 × hidden, input and output embeddings are tied, initialisation is
    deterministic given ``seed`` (the global torch RNG is restored afterwards), float32, default
    (sdpa) attention -- the implementation ``from_pretrained`` picks too, so a saved and reloaded
    model gives bit-identical logits.
    """
    if hidden_size <= 0 or num_heads <= 0 or hidden_size % num_heads:
        raise ValueError(
            f"build_tiny_llama: hidden_size={hidden_size} must be a positive multiple of "
            f"num_heads={num_heads}; e.g. hidden_size=64, num_heads=4."
        )
    if num_layers < 1:
        raise ValueError(f"build_tiny_llama: num_layers={num_layers} must be >= 1.")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_model_and_tokenizer(
    seed: int = 0, words: list[str] | None = None
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Return ``(model, tokenizer)``: a random tiny Llama over ``words`` (default :data:`DEFAULT_WORDS`).

    For tests that need real HF objects but no trained behaviour; for a trained policy see
    ``llm.world_train.pretrain_base``.
    """
    tokenizer = build_word_tokenizer(list(DEFAULT_WORDS) if words is None else words)
    return build_tiny_llama(tokenizer, seed=seed), tokenizer
