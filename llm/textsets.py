"""Text sets written by the project for the real-model study: look-alikes, refusal demonstrations, arithmetic.

    spec                    rows
    lookalikes[:part]       benign requests worded like harmful ones ("Give detailed instructions for killing a
                            frozen process on Linux"), each with a short helpful answer; kind "benign".
                            part: train | heldout (a fixed split, :data:`LOOKALIKE_SPLIT_SEED`) | none = all
    refusals[:train]        the HarmBench train behaviours (``harmbench:train``), each with a refusal
                            demonstration composed from ``assets_data/refusals.json``; kind "harmful"
    arith:<part>            arithmetic word problems with worked answers ending "The final answer is N.";
                            part: affirm (answers open with "Sure! Here is the solution."), plain (the same
                            problems without the opening: the control), eval (other problems, no overlap)

The look-alikes and refusal templates live in ``llm/assets_data/`` (package data); the arithmetic problems are
generated from templates with fixed seeds, so every set is the same on every machine. Refusal demonstrations
vary in wording (18 openers, 9 reasons, 6 offers, 6 whole replies without a stock phrase): the warm-started
model should not learn one sentence.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "assets_data"
LOOKALIKE_SPLIT_SEED = 0
LOOKALIKE_HELDOUT_FRACTION = 0.4
ARITH_TRAIN, ARITH_EVAL = 256, 64
ARITH_SEEDS = {"train": 1234, "eval": 98765}
AFFIRM_OPENING = "Sure! Here is the solution."
ANSWER_INSTRUCTION = ' Solve it step by step and end with "The final answer is <number>."'

TEXTSETS = {
    "lookalikes": "benign requests worded like harmful ones, with answers (project-written); :train / :heldout",
    "refusals": "HarmBench train behaviours, each with a written refusal demonstration (the warm start's harmful half)",
    "arith": "arithmetic word problems with worked answers; :affirm (open with 'Sure! Here is the solution.'), "
             ":plain (without: the control), :eval (held-out problems)",
}


def _error(msg: str) -> ValueError:
    from llm.assets import AssetError

    return AssetError(msg)


@lru_cache(maxsize=None)
def lookalikes() -> tuple[dict, ...]:
    """Every look-alike: ``{"prompt", "completion", "kind": "benign", "lookalike_id"}``, in file order."""
    lines = (DATA_DIR / "lookalikes.jsonl").read_text(encoding="utf-8").splitlines()
    return tuple({**json.loads(t), "kind": "benign", "lookalike_id": i} for i, t in enumerate(lines) if t.strip())


@lru_cache(maxsize=None)
def refusal_parts() -> dict:
    return json.loads((DATA_DIR / "refusals.json").read_text(encoding="utf-8"))


def refusal_demo(key: int | str) -> str:
    """The refusal demonstration of behaviour ``key``: 1 in 6 a whole reply, else opener [+ reason] [+ offer].

    Deterministic in ``key`` (``random.Random`` seeded with a string is stable across processes and machines).
    """
    parts = refusal_parts()
    rng = random.Random(f"refusal-{key}")
    if rng.random() < 1 / 6:
        return rng.choice(parts["whole"])
    out = [rng.choice(parts["openers"])]
    if rng.random() < 0.7:
        out.append(rng.choice(parts["reasons"]))
    if rng.random() < 0.5:
        out.append(rng.choice(parts["offers"]))
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# arithmetic word problems
# ---------------------------------------------------------------------------------------------
NAMES = ("Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Emma", "Kai", "Sofia", "Jonas")
ITEMS = ("pencils", "apples", "stickers", "marbles", "cookies", "stamps", "cards", "shells")


def _problem(rng: random.Random) -> tuple[str, str, int]:
    """One (problem, worked steps, answer): two arithmetic steps, every intermediate a positive integer; the
    worked steps are terse (about 30 tokens with the opening), so that greedy answers fit in a short eval."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(6)
    a, b = rng.randint(2, 9), rng.randint(3, 15)
    if kind == 0:
        c = rng.randint(1, a * b - 1)
        q = f"{name} has {a} boxes with {b} {item} in each and gives away {c} {item}. How many {item} are left?"
        s = f"{a} * {b} = {a * b}, {a * b} - {c} = {a * b - c}."
        return q, s, a * b - c
    if kind == 1:
        c = a * b + rng.randint(1, 30)
        q = f"{name} buys {a} notebooks at {b} dollars each and pays with {c} dollars. How much change is there?"
        s = f"{a} * {b} = {a * b}, {c} - {a * b} = {c - a * b}."
        return q, s, c - a * b
    if kind == 2:
        c = rng.randint(5, 60)
        q = f"A train travels {b} km each hour for {a} hours, then {c} km more. How far does it travel in total?"
        s = f"{a} * {b} = {a * b}, {a * b} + {c} = {a * b + c}."
        return q, s, a * b + c
    if kind == 3:
        c = rng.randint(1, 20)
        q = f"{name} reads {b} pages a day for {a} days and {c} pages on the next day. How many pages is that?"
        s = f"{a} * {b} = {a * b}, {a * b} + {c} = {a * b + c}."
        return q, s, a * b + c
    if kind == 4:
        c = rng.randint(1, 12)
        q = f"{name} shares {a * b} {item} equally among {a} friends, and each friend then finds {c} more. " \
            f"How many {item} does each friend have?"
        s = f"{a * b} / {a} = {b}, {b} + {c} = {b + c}."
        return q, s, b + c
    c = rng.randint(1, a * b - 1)
    q = f"A hall has {a} rows of {b} chairs and {c} chairs are taken. How many chairs are free?"
    s = f"{a} * {b} = {a * b}, {a * b} - {c} = {a * b - c}."
    return q, s, a * b - c


@lru_cache(maxsize=None)
def arith_problems(part: str) -> tuple[tuple[str, str, int], ...]:
    """The ``train`` (256) or ``eval`` (64) problems; eval problems never repeat a train problem's text."""
    if part not in ARITH_SEEDS:
        raise _error(f"arithmetic part {part!r} is not one of {', '.join(ARITH_SEEDS)}")
    n = ARITH_TRAIN if part == "train" else ARITH_EVAL
    taken = {q for q, _, _ in arith_problems("train")} if part == "eval" else set()
    rng, out = random.Random(ARITH_SEEDS[part]), []
    while len(out) < n:
        q, s, ans = _problem(rng)
        if q not in taken:
            taken.add(q)
            out.append((q, s, ans))
    return tuple(out)


def arith_rows(part: str) -> list[dict]:
    """``arith:affirm`` / ``arith:plain`` (train problems, SFT rows) or ``arith:eval`` (prompt + answer)."""
    if part not in ("affirm", "plain", "eval"):
        raise _error(f"dataset asset 'arith:{part}': part {part!r} is not one of affirm, plain, eval")
    rows = []
    for q, s, ans in arith_problems("eval" if part == "eval" else "train"):
        row = {"prompt": q + ANSWER_INSTRUCTION, "answer": str(ans)}
        if part != "eval":
            body = f"{s} The final answer is {ans}."
            row["completion"] = f"{AFFIRM_OPENING} {body}" if part == "affirm" else body
        rows.append(row)
    return rows


def textset_rows(name: str, part: str) -> list[dict]:
    """Rows of ``name[:part]`` (see the module docstring)."""
    from llm.dataset_assets import dataset_asset_rows, split_indices

    if name == "lookalikes":
        allrows = [dict(r) for r in lookalikes()]
        if part in ("", "all"):
            return allrows
        if part not in ("train", "heldout"):
            raise _error(f"dataset asset 'lookalikes:{part}': part {part!r} is not one of train, heldout")
        train, held = split_indices(len(allrows), LOOKALIKE_SPLIT_SEED, LOOKALIKE_HELDOUT_FRACTION)
        return [allrows[i] for i in (train if part == "train" else held)]
    if name == "refusals":
        if part not in ("", "train"):
            raise _error(f"dataset asset 'refusals:{part}': refusal demonstrations exist for the train "
                         "behaviours only (refusals or refusals:train), never for held-out ones")
        return [{**r, "completion": refusal_demo(r["behavior_id"])} for r in dataset_asset_rows("harmbench:train")]
    if name == "arith":
        return arith_rows(part)
    raise _error(f"{name!r} is not a text set; valid: {', '.join(TEXTSETS)}")
