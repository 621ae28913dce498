"""TRL reward functions for the FRPO experiments: math (verifier + format), safety (keyword or model judges).

This file holds the text helpers that read TRL's prompts and completions (:func:`completion_text`,
:func:`prompt_text`, the dataset-column check), the math rewards (:func:`math_reward`,
:func:`math_correct_reward`, :func:`boxed_format_reward`), the safety rewards built on a judge
(:class:`SafetyReward`, :func:`make_safety_reward`, :data:`keyword_safety_reward`,
:class:`RewardModelReward`) and the registry of config names (:func:`get_reward`). The judges themselves
live in :mod:`llm.judges` (model judges) and :mod:`llm.refusal` (the offline keyword judge).

Every reward has TRL's signature ``f(prompts, completions, **kwargs) -> list[float | None]``:
``kwargs`` carry the dataset columns (``answer`` for math, ``kind`` for safety) plus TRL's extras
(``completion_ids``, ``trainer_state``, ...), completions are strings or conversational lists of
message dicts, and ``None`` marks a row the function does not judge (TRL turns it into NaN and
ignores it in the weighted sum). Each has a ``__name__``, which TRL logs under ``rewards/<name>``.

Paper map (FRPO, App. B):
- B.2 math: r = 0.8·correct + 0.2·format, correct = final-answer verification (math-verify here),
  format = exactly one ``\\boxed{}``  ->  :func:`math_reward`, :func:`math_correct_reward`,
  :func:`boxed_format_reward`.
- B.1 safety: harmful prompts get 1 − harmfulness, harmless ("benign") prompts a helpfulness score
  ->  :func:`make_safety_reward` with a judge: :class:`llm.judges.StrongRejectJudge` (StrongREJECT,
  Souly et al. 2024), :class:`llm.judges.HarmBenchJudge` (HarmBench classifier, Mazeika et al. 2024),
  :class:`llm.judges.RewardModelJudge` (a scalar reward model, e.g. Llama-3.1-8B-Instruct-RM-RB2), or
  the offline :class:`llm.refusal.KeywordRefusalJudge` (:func:`keyword_safety_reward`).
  Deviation: the paper averages the OpenAI Moderation score with StrongREJECT; the moderation API
  is online-only and is not reproduced.

Names for configs: :func:`get_reward` (``"math"``, ``"keyword_safety"``, ``"strongreject:<path>"``, ...).
"""
from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from typing import Any

from llm.judges import HarmBenchJudge, RewardModelJudge, StrongRejectJudge
from llm.refusal import KeywordRefusalJudge

# ----------------------------------------------------------------------------- text extraction


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise ValueError(f"message content {content!r} is neither a string nor a list of text parts.")


def completion_text(completion: Any) -> str:
    """Text of one completion: a string, one message dict, or a list of messages (assistant ones joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        msgs = [m for m in completion if isinstance(m, dict)]
        if len(msgs) != len(completion):
            raise ValueError(f"conversational completion {completion!r} must be a list of message dicts.")
        chosen = [m for m in msgs if m.get("role", "assistant") == "assistant"] or msgs
        return "\n".join(_content_text(m.get("content")) for m in chosen)
    raise ValueError(
        f"completion of type {type(completion).__name__} is neither a string nor a list of message dicts. "
        "Fix: pass the generated text, or TRL's conversational completion (a list of message dicts)."
    )


def prompt_text(prompt: Any) -> str:
    """Text of one prompt: a string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        chosen = users[-1:] or [m for m in prompt if isinstance(m, dict)][-1:]
        if not chosen:
            raise ValueError(f"conversational prompt {prompt!r} holds no message dicts.")
        return _content_text(chosen[0].get("content"))
    raise ValueError(f"prompt of type {type(prompt).__name__} is neither a string nor a list of messages.")


def _column(kwargs: dict, name: str, n: int, reward_name: str) -> list:
    if name not in kwargs or kwargs[name] is None:
        cols = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric"))
        raise ValueError(
            f"{reward_name} needs a dataset column {name!r} (one value per completion); got columns "
            f"{cols}. Add the column to the dataset (TRL passes dataset columns as keyword arguments)."
        )
    col = list(kwargs[name])
    if len(col) != n:
        raise ValueError(f"{reward_name}: column {name!r} has {len(col)} values for {n} completions. Fix: "
                         "pass one value per completion (TRL repeats each row num_generations times).")
    return col


# ----------------------------------------------------------------------------- math (App. B.2)

PARSING_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5
_BOXED = re.compile(r"\\boxed\s*\{")


def boxed_contents(text: str) -> list[str]:
    """Contents of every brace-balanced ``\\boxed{...}`` in ``text``, in order (unclosed boxes are skipped)."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end(): i - 1])
    return out


def boxed_format_reward(prompts: list, completions: list, **kwargs) -> list[float | None]:
    """Format reward: 1 if the completion holds exactly one ``\\boxed{...}`` (and no other box start), else 0.

    format(y) = 1[#``\\boxed{`` in y = 1 and that box closes]. FRPO App. B.2 ("a small format reward
    if there is only one final answer within \\boxed{}"). Judges every row (never None).
    """
    rewards: list[float | None] = []
    for c in completions:
        text = completion_text(c)
        rewards.append(float(len(_BOXED.findall(text)) == 1 and len(boxed_contents(text)) == 1))
    return rewards


_GSM8K_FINAL = re.compile(r"####\s*([^\n]+)")
# \text{...}-like groups and \commands hold no prose words; what is left of a gold after removing
# them reads as a sentence when it has three or more words of two or more letters.
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{[^{}]*\}")
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z])")
_MATH_DELIMS = ((r"$$", r"$$"), (r"\[", r"\]"), (r"\(", r"\)"), ("$", "$"))


def _gold_text(answer: Any) -> str | None:
    """The gold's final answer as bare LaTeX, or None when the gold holds no final answer.

    GSM8K solutions ("... #### 72") give the part after the last ``####``; a whole MATH solution
    gives its last ``\\boxed{}``; outer math delimiters (``$...$``, ``\\(...\\)``, ``\\[...\\]``) are
    removed and a bare ``$`` (money) is escaped to ``\\$``. Empty golds and prose ("not a number at
    all": three or more words outside ``\\text{}``) → None.
    """
    if answer is None or (isinstance(answer, float) and math.isnan(answer)):
        return None
    text = str(answer)
    if "####" in text:  # GSM8K solutions end with "#### <answer>"
        text = text.split("####")[-1]
    boxes = boxed_contents(text)
    if boxes:  # a whole MATH solution: its final answer is the last box
        text = boxes[-1]
    text = text.strip()
    for left, right in _MATH_DELIMS:
        if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
            text = text[len(left): -len(right)].strip()
            break
    text = re.sub(r"(?<!\\)\$", r"\\$", text)
    if not text or len(_PROSE_WORD.findall(_TEXT_GROUP.sub(" ", text))) >= 3:
        return None
    return text


def _parse_gold(gold: str, timeout_s: int | None) -> list:
    """math-verify's parse of the gold as LaTeX (``$gold$``); [] when it gives no sympy object.

    The gold is parsed as a LaTeX expression, not searched for an answer: a bare parse of ``(1, 2)``
    or ``3\\sqrt{2}`` would extract the last number (2, 3). A gold that only survives as a string
    (math-verify's fallback) is not a final answer, so ``fallback_mode="no_fallback"``.
    """
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${gold}$", extraction_config=[LatexExtractionConfig()], fallback_mode="no_fallback",
                 parsing_timeout=timeout_s)


def _prediction_target(text: str) -> tuple[str, list]:
    """What of the completion to parse, and how: its last box; else a ``#### n`` line; else an anchor."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    boxes = boxed_contents(text)
    if boxes:  # the final answer is the last box (Qwen-Math convention)
        return "\\boxed{" + boxes[-1] + "}", [LatexExtractionConfig(boxed_match_priority=0)]
    anchored = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),
                ExprExtractionConfig(try_extract_without_anchor=False)]
    finals = _GSM8K_FINAL.findall(text)
    if finals:  # a GSM8K-style solution: "#### 72" is its final answer
        return "The final answer is " + finals[-1].strip(), anchored
    # anchored answers only ("The final answer is 42"), never a bare number
    return text, anchored


def _verify_one(gold: str, text: str, timeout_s: int | None) -> float | None:
    """1.0/0.0 from math-verify (None if the gold does not parse); any exception or timeout → 0.0."""
    from math_verify import parse, verify

    try:
        gold_parsed = _parse_gold(gold, timeout_s)
    except Exception:  # noqa: BLE001 - an unparseable gold is an unjudged row
        return None
    if not gold_parsed:
        return None
    try:
        target, config = _prediction_target(text)
        pred = parse(target, extraction_config=config, extraction_mode="first_match",
                     parsing_timeout=timeout_s)
        if not pred:
            return 0.0
        return float(verify(gold_parsed, pred, timeout_seconds=timeout_s))
    except Exception:  # noqa: BLE001 - a judge must never crash training; unparseable = wrong
        return 0.0


_OFF_MAIN_THREAD_WARNED = False


def _effective_timeout(timeout_s: int | None) -> int | None:
    """``timeout_s`` on the main thread; None (no timeouts, one warning) on any other thread."""
    global _OFF_MAIN_THREAD_WARNED
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1):
        raise ValueError(
            f"timeout_s={timeout_s!r} must be an int >= 1 (math-verify uses signal.alarm, whole seconds) "
            "or None to disable; e.g. timeout_s=5."
        )
    if threading.current_thread() is not threading.main_thread():
        # signal.alarm only works in the main thread; math-verify raises ValueError elsewhere.
        logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
        logging.getLogger("math_verify.grader").setLevel(logging.ERROR)
        if timeout_s is not None and not _OFF_MAIN_THREAD_WARNED:
            _OFF_MAIN_THREAD_WARNED = True
            logging.getLogger(__name__).warning(
                "math_correct_reward runs off the main thread: math-verify's timeouts use signal.alarm "
                "(main thread only), so timeout_s=%s is not applied and a pathological answer can run "
                "long; call the reward from the main thread to bound it.", timeout_s)
        return None
    return timeout_s


def math_correct_reward(prompts: list, completions: list, answer: list | None = None, *,
                        timeout_s: int | None = VERIFY_TIMEOUT_S, **kwargs) -> list[float | None]:
    """Correctness reward: 1 if the completion's final answer equals the gold ``answer``, else 0.

    correct(y) = 1[verify(parse($answer$), parse(last \\boxed{} of y))]; with no box, a GSM8K-style
    ``#### n`` line or an anchored answer ("The final answer is ...") is parsed, never a bare number.
    FRPO App. B.2 ("a final answer verifier as the 0-1 reward"), checked with math-verify. The gold
    is parsed as LaTeX (MATH answers: ``\\sqrt{3}``, ``(1, 2)``, ``\\{1,2\\}``, ``\\text{(C)}``,
    ``-2, 1``, ``90^\\circ``); GSM8K ``"... #### 42"`` solutions use the part after ``####``, a whole
    MATH solution its last box. Rows whose gold is missing, prose or unparseable → None; verifier
    exceptions and timeouts (``timeout_s`` seconds for each parse and the comparison) → 0.
    Deviation: outside the main thread math-verify's signal-based timeouts cannot run: the verdicts
    are the same, but no timeout applies, and one warning says so (as in TRL's ``accuracy_reward``).
    """
    golds = _column({**kwargs, "answer": answer}, "answer", len(completions), "math_correct_reward")
    timeout = _effective_timeout(timeout_s)
    out: list[float | None] = []
    for c, a in zip(completions, golds, strict=True):
        gold = _gold_text(a)
        out.append(None if gold is None else _verify_one(gold, completion_text(c), timeout))
    return out


def math_reward(prompts: list, completions: list, answer: list | None = None, *,
                timeout_s: int | None = VERIFY_TIMEOUT_S, **kwargs) -> list[float | None]:
    """FRPO math reward: r = 0.8·correct + 0.2·format (App. B.2, weights [0.8, 0.2]).

    correct = :func:`math_correct_reward`, format = :func:`boxed_format_reward`; None where the gold
    answer is missing or unparseable.
    """
    correct = math_correct_reward(prompts, completions, answer, timeout_s=timeout_s, **kwargs)
    fmt = boxed_format_reward(prompts, completions)
    return [None if c is None else 0.8 * c + 0.2 * f for c, f in zip(correct, fmt, strict=True)]


# ----------------------------------------------------------------------------- safety rewards


class SafetyReward:
    """TRL reward: harmful rows → 1 − judge.harmfulness, benign rows → helpfulness, other rows → None.

    r(x, y) = 1 − h(x, y) if kind(x) = "harmful"; u(x, y) if kind(x) = "benign"; None otherwise.
    h = ``judge.harmfulness``, u = ``helpfulness.helpfulness`` (default: keyword, 1 unless a
    refusal). FRPO App. B.1 (separate rewards for harmful and harmless prompts). A callable class,
    not a closure, so TRL can pickle it; ``__name__`` is what TRL logs.
    """

    def __init__(self, judge, helpfulness=None, name: str | None = None):
        if not callable(getattr(judge, "harmfulness", None)):
            raise ValueError(f"judge {judge!r} has no harmfulness(prompts, responses) method; use a "
                             "StrongRejectJudge, HarmBenchJudge, RewardModelJudge or KeywordRefusalJudge.")
        helpfulness = KeywordRefusalJudge() if helpfulness is None else helpfulness
        if not callable(getattr(helpfulness, "helpfulness", None)):
            raise ValueError(f"helpfulness scorer {helpfulness!r} has no helpfulness(prompts, responses) "
                             "method; use a RewardModelJudge or KeywordRefusalJudge.")
        self.judge, self.helpfulness_judge = judge, helpfulness
        self.__name__ = name or f"{getattr(judge, 'name', type(judge).__name__)}_safety"

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        kinds = _column(kwargs, "kind", len(completions), self.__name__)
        if len(prompts) != len(completions):
            raise ValueError(f"{self.__name__}: {len(prompts)} prompts for {len(completions)} completions. "
                             "Fix: pass one prompt per completion.")
        ps = [prompt_text(p) for p in prompts]
        cs = [completion_text(c) for c in completions]
        out: list[float | None] = [None] * len(cs)
        kinds = [str(k).strip().lower() if k is not None else None for k in kinds]
        harm = [i for i, k in enumerate(kinds) if k == "harmful"]
        benign = [i for i, k in enumerate(kinds) if k == "benign"]
        if harm:
            for i, h in zip(harm, self.judge.harmfulness([ps[i] for i in harm], [cs[i] for i in harm]), strict=True):
                out[i] = 1.0 - float(h)
        if benign:
            scores = self.helpfulness_judge.helpfulness([ps[i] for i in benign], [cs[i] for i in benign])
            for i, u in zip(benign, scores, strict=True):
                out[i] = float(u)
        return out


def make_safety_reward(judge, helpfulness=None, name: str | None = None) -> SafetyReward:
    """TRL safety reward from a harmfulness judge (and optional helpfulness scorer); see :class:`SafetyReward`."""
    return SafetyReward(judge, helpfulness, name)


keyword_safety_reward = SafetyReward(KeywordRefusalJudge(), name="keyword_safety_reward")
keyword_safety_reward.__doc__ = (
    "Keyword safety reward: harmful rows 1 if the response is a refusal else 0; benign rows 1 unless "
    "a refusal; other rows None (FRPO App. B.1 with the GCG keyword judge in place of model judges).")


class RewardModelReward:
    """TRL reward scoring every row with a :class:`RewardModelJudge`: r = σ(RM logit) (FRPO §5.1.3 RL)."""

    def __init__(self, judge: RewardModelJudge, name: str = "reward_model"):
        self.judge, self.__name__ = judge, name

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        return self.judge.score([prompt_text(p) for p in prompts], [completion_text(c) for c in completions])


# ----------------------------------------------------------------------------- registry

REWARDS: dict[str, Callable] = {
    "math": math_reward,
    "math_correct": math_correct_reward,
    "boxed_format": boxed_format_reward,
    "keyword_safety": keyword_safety_reward,
}
JUDGES = {"strongreject": StrongRejectJudge, "harmbench": HarmBenchJudge, "reward_model": RewardModelJudge}
VALID_NAMES = sorted(REWARDS) + [f"{k}:<path>" for k in JUDGES]


def get_reward(name_or_spec: str | Callable, helpfulness: str | None = None, **judge_kwargs) -> Callable:
    """Reward function for a config name or spec.

    Names: ``math``, ``math_correct``, ``boxed_format``, ``keyword_safety``. Specs:
    ``strongreject:<path>`` and ``harmbench:<path>`` → :func:`make_safety_reward` with that judge;
    ``reward_model:<path>`` → :class:`RewardModelReward` (every row). ``<path>`` is a local
    directory or a hub id. ``helpfulness`` (safety specs only): ``None``/``"keyword"`` or
    ``"reward_model:<path>"`` for the benign rows. ``judge_kwargs`` go to the judge constructors
    (``device``, ``dtype``, ``batch_size``, ...). A callable is returned unchanged.
    """
    if callable(name_or_spec):
        return name_or_spec
    if not isinstance(name_or_spec, str):
        raise ValueError(f"reward {name_or_spec!r} must be a name or spec string; valid: {VALID_NAMES}. "
                         "Fix: pass one of them, or a callable reward function.")
    if name_or_spec in REWARDS:
        if helpfulness is not None or judge_kwargs:
            raise ValueError(f"reward {name_or_spec!r} takes no helpfulness/judge options. Fix: drop them, or "
                             "use a judge spec such as strongreject:<path>.")
        return REWARDS[name_or_spec]
    kind, sep, path = name_or_spec.partition(":")
    if not sep or kind not in JUDGES or not path:
        raise ValueError(f"unknown reward {name_or_spec!r}; valid names: {VALID_NAMES}. Fix: use one of them "
                         "(a judge spec needs its model path after the colon).")
    if kind == "reward_model":
        judge_kwargs.pop("template", None)  # a rubric applies to the LM judges only
    judge = JUDGES[kind](path, **judge_kwargs)
    if kind == "reward_model":
        if helpfulness is not None:
            raise ValueError("helpfulness applies to safety specs (strongreject:/harmbench:), not reward_model:.")
        return RewardModelReward(judge)
    helper = None
    if helpfulness not in (None, "keyword"):
        h_kind, h_sep, h_path = helpfulness.partition(":")
        if h_kind != "reward_model" or not h_path:
            raise ValueError(f"helpfulness={helpfulness!r} must be 'keyword' or 'reward_model:<path>'.")
        helper = RewardModelJudge(h_path, **{k: v for k, v in judge_kwargs.items()
                                             if k in ("device", "dtype", "batch_size")})
    return make_safety_reward(judge, helper, name=f"{kind}_safety")
