"""Table test of the math verifier (llm.rewards.math_correct_reward) on MATH- and GSM8K-style golds.

Each row is (gold, completion, expected verdict): 1.0 correct, 0.0 wrong, None unjudged (the gold is
not a final answer). The verdicts are written by hand from the mathematics, not read off the
verifier: a MATH gold is LaTeX (``\\sqrt{3}``, ``(1, 2)``, ``\\text{(C)}``), a GSM8K gold is a
solution ending in ``#### n`` or a plain integer with thousands commas. The wrong answers include
ones that share a number with the gold (``\\boxed{3}`` against ``3\\sqrt{2}``), which a verifier that
reads the gold's last number scores as correct.
"""
from __future__ import annotations

import threading

import pytest

from llm.rewards import math_correct_reward, math_reward

GSM8K_SOLUTION = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                  "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")

CASES = [  # (id, gold, completion, expected)
    # fractions
    ("frac", r"\frac{1}{2}", r"so \boxed{\frac{1}{2}}", 1.0),
    ("dfrac-gold", r"\dfrac{1}{2}", r"\boxed{\frac{1}{2}}", 1.0),
    ("dfrac-vs-decimal", r"\dfrac{1}{2}", r"\boxed{0.5}", 1.0),
    ("frac-shorthand", r"\frac{1}{2}", r"\boxed{\frac12}", 1.0),
    ("frac-inverted", r"\dfrac{1}{2}", r"\boxed{2}", 0.0),
    ("frac-numerator-only", r"\frac{3}{4}", r"\boxed{3}", 0.0),
    ("frac-rounded-decimal", r"\frac{1}{3}", r"\boxed{0.33}", 0.0),
    ("frac-pi", r"\frac{\pi}{3}", r"\boxed{\pi/3}", 1.0),
    # radicals
    ("sqrt", r"\sqrt{3}", r"\boxed{\sqrt{3}}", 1.0),
    ("sqrt-shorthand", r"\sqrt{3}", r"\boxed{\sqrt3}", 1.0),
    ("sqrt-squared-wrong", r"\sqrt{3}", r"\boxed{3}", 0.0),
    ("coef-radical", r"3\sqrt{2}", r"\boxed{3\sqrt{2}}", 1.0),
    ("coef-radical-shares-3", r"3\sqrt{2}", r"\boxed{3}", 0.0),
    ("coef-radical-shares-2", r"3\sqrt{2}", r"\boxed{2}", 0.0),
    ("radical-unsimplified", r"10\sqrt{3}", r"\boxed{\sqrt{300}}", 1.0),
    # polynomials / expressions
    ("poly", "x^2+1", r"\boxed{1+x^2}", 1.0),
    ("poly-sign", "x^2+1", r"\boxed{x^2-1}", 0.0),
    ("poly-constant-only", "x^2+1", r"\boxed{1}", 0.0),
    ("complex", "2+3i", r"\boxed{3i+2}", 1.0),
    # tuples and intervals
    ("tuple", "(1, 2)", r"\boxed{(1,2)}", 1.0),
    ("tuple-last-number", "(1, 2)", r"\boxed{2}", 0.0),
    ("tuple-swapped", "(1, 2)", r"\boxed{(2,1)}", 0.0),
    ("polar-point", r"\left( 3, \frac{\pi}{2} \right)", r"\boxed{(3, \frac{\pi}{2})}", 1.0),
    ("interval-half-open", "[2, 5)", r"\boxed{[2,5)}", 1.0),
    ("interval-wrong-bracket", "[2, 5)", r"\boxed{(2,5)}", 0.0),
    ("interval-infinite", r"(-\infty, 3]", r"\boxed{(-\infty,3]}", 1.0),
    ("interval-endpoint", r"(-\infty, 3]", r"\boxed{3}", 0.0),
    # sets and lists of solutions
    ("set", r"\{1,2\}", r"\boxed{\{2,1\}}", 1.0),
    ("set-one-element", r"\{1,2\}", r"\boxed{2}", 0.0),
    ("roots-list", "-2, 1", r"\boxed{1, -2}", 1.0),
    ("roots-last-number", "-2, 1", r"\boxed{1}", 0.0),
    ("roots-one-root", "-2, 1", r"\boxed{-2}", 0.0),
    # vectors / matrices
    ("vector", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", 1.0),
    ("vector-wrong", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\boxed{\begin{pmatrix}2\\1\end{pmatrix}}", 0.0),
    # multiple choice and words
    ("choice-letter", r"\text{(C)}", r"\boxed{C}", 1.0),
    ("choice-parenthesised", r"\text{(C)}", r"\boxed{(C)}", 1.0),
    ("choice-text", r"\text{(C)}", r"\boxed{\text{(C)}}", 1.0),
    ("choice-wrong", r"\text{(C)}", r"\boxed{D}", 0.0),
    ("word", r"\text{even}", r"\boxed{\text{even}}", 1.0),
    ("word-wrong", r"\text{even}", r"\boxed{\text{odd}}", 0.0),
    # units, degrees, money, percent
    ("units-gold", r"5\text{ cm}", r"\boxed{5}", 1.0),
    ("units-both", r"5\text{ cm}", r"\boxed{5\text{ cm}}", 1.0),
    ("units-wrong-number", r"5\text{ cm}", r"\boxed{6\text{ cm}}", 0.0),
    ("degrees-gold", r"90^\circ", r"\boxed{90}", 1.0),
    ("degrees-completion", "90", r"\boxed{90^{\circ}}", 1.0),
    ("degrees-vs-other-angle", r"90^\circ", r"\boxed{45^\circ}", 0.0),
    ("money", r"\$18", r"\boxed{18}", 1.0),
    ("money-completion", "18", r"\boxed{\$18}", 1.0),
    ("money-bare-dollar-gold", "$18", r"\boxed{18}", 1.0),
    ("money-bare-dollar-wrong", "$18", r"\boxed{1.8}", 0.0),
    # equations
    ("equation-gold", "y = 2x + 3", r"\boxed{2x+3}", 1.0),
    ("equation-completion", "2x+3", r"\boxed{y=2x+3}", 1.0),
    # GSM8K golds: #### solutions, plain integers, thousands commas
    ("gsm8k-solution", GSM8K_SOLUTION, r"\boxed{72}", 1.0),
    ("gsm8k-solution-intermediate", GSM8K_SOLUTION, r"\boxed{24}", 0.0),
    ("gsm8k-solution-shares-digit", GSM8K_SOLUTION, r"\boxed{7}", 0.0),
    ("gsm8k-commas-gold", "1,000", r"\boxed{1000}", 1.0),
    ("gsm8k-commas-both", "#### 1,200", r"\boxed{1,200}", 1.0),
    ("gsm8k-commas-wrong", "1,000", r"\boxed{100}", 0.0),
    ("gsm8k-negative", "-3", r"\boxed{-3}", 1.0),
    ("gsm8k-completion-hashes", "72", "48/2 = 24 in May, 48+24 = 72.\n#### 72", 1.0),
    ("gsm8k-completion-hashes-wrong", "72", "48/2 = 24 in May.\n#### 24", 0.0),
    # unboxed answers: anchored phrases count, a bare trailing number does not
    ("unboxed-anchored", r"3\sqrt{2}", r"The final answer is $3\sqrt{2}$", 1.0),
    ("unboxed-anchored-wrong", r"3\sqrt{2}", r"The final answer is $3$", 0.0),
    ("unboxed-bare-number", "42", "so it is 42", 0.0),
    # several boxes: the last one is the final answer
    ("boxes-last-right", r"\frac{1}{2}", r"first \boxed{2}, then \boxed{\frac{1}{2}}", 1.0),
    ("boxes-last-wrong", r"\frac{1}{2}", r"\boxed{\frac{1}{2}} or rather \boxed{2}", 0.0),
    # golds handed over with their delimiters, or as a whole MATH solution
    ("gold-dollars", r"$\sqrt{3}$", r"\boxed{\sqrt{3}}", 1.0),
    ("gold-solution-boxed", r"Thus $x = \boxed{3\sqrt{2}}$.", r"\boxed{\sqrt{18}}", 1.0),
    ("gold-solution-boxed-wrong", r"Thus $x = \boxed{3\sqrt{2}}$.", r"\boxed{3}", 0.0),
    # golds that are not final answers are unjudged
    ("gold-prose", "not a number at all", r"\boxed{1}", None),
    ("gold-empty", "  ", r"\boxed{1}", None),
    ("gold-none", None, r"\boxed{1}", None),
    ("gold-unbalanced", r"\frac{1}{", r"\boxed{1}", None),
]


def _ids():
    return [c[0] for c in CASES]


def test_table_has_the_required_breadth():
    assert len(CASES) >= 40
    assert len(set(_ids())) == len(CASES)
    verdicts = [c[3] for c in CASES]
    assert verdicts.count(1.0) >= 20 and verdicts.count(0.0) >= 20


@pytest.mark.parametrize(("gold", "completion", "expected"), [c[1:] for c in CASES], ids=_ids())
def test_verdict(gold, completion, expected):
    assert math_correct_reward(None, [completion], answer=[gold]) == [expected]


def test_batch_equals_rows_and_math_reward_weights():
    golds = [c[1] for c in CASES]
    completions = [c[2] for c in CASES]
    assert math_correct_reward(None, completions, answer=golds) == [c[3] for c in CASES]
    total = math_reward(None, completions, answer=golds)
    for (_, _, comp, exp), t in zip(CASES, total, strict=True):
        if exp is None:
            assert t is None
        else:  # 0.8·correct + 0.2·format, format = exactly one closed box
            fmt = float(comp.count(r"\boxed{") == 1)
            assert t == pytest.approx(0.8 * exp + 0.2 * fmt, abs=1e-12)


def test_same_verdicts_off_the_main_thread():
    # Off the main thread math-verify's signal.alarm timeouts cannot run; the verifier runs without
    # them and must give the same verdicts.
    golds = [c[1] for c in CASES]
    completions = [c[2] for c in CASES]
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=math_correct_reward(None, completions, answer=golds)))
    worker.start()
    worker.join(120)
    assert not worker.is_alive()
    assert result["r"] == [c[3] for c in CASES]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
def test_bad_timeout_is_one_value_error(bad):
    with pytest.raises(ValueError, match=r"timeout_s=.*must be an int >= 1"):
        math_correct_reward(None, [r"\boxed{1}"], answer=["1"], timeout_s=bad)


def test_off_main_thread_says_timeouts_are_off(caplog):
    import llm.rewards as R

    R._OFF_MAIN_THREAD_WARNED = False
    worker = threading.Thread(target=lambda: math_correct_reward(None, [r"\boxed{1}"], answer=["1"]))
    with caplog.at_level("WARNING", logger="llm.rewards"):
        worker.start()
        worker.join(60)
    assert any("main thread" in r.getMessage() and "timeout" in r.getMessage() for r in caplog.records)
