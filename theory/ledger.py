"""The claims-ledger framework: registry, runner, mutation sweep, table. The checks live in
theory/claims_*.py; the command is ``python -m theory.claims``.

Each row: the paper and equation, its origin (``paper``: a statement one of the three papers makes;
``toolkit``: our own derivation, correction or extrapolation), what it claims, the verdict, the
measured error or the counterexample, and the check's runtime. A claim is registered with the verdict
we *expect* after checking it here (e.g. Theorem 4.2 of the CSFT+PA paper is expected to be refuted);
the command exits 1 if any check disagrees with its expectation, so a regression in the math (or a
claim that stops reproducing) fails CI.

Verdicts: ``verified`` / ``refuted`` (the claim held / did not), ``not checkable`` (a 7B result, or a
statement no finite computation decides), ``inconsistent`` (the check's own premise or closed form
failed: e.g. a counterexample whose numbers do not match the formula that predicts them — the check or
the code is wrong), ``error`` (the check raised).

Every checkable claim names the functions it checks (``checks``: "module.function") and the
deliberately broken versions of them it must catch (``mutants``: names from
``theory.claims_mutations`` and ``theory.claims_mutations_math``). ``python -m theory.claims --mutants``
swaps each one in and reports whether the row's verdict changes; ``tests/theory/test_ledger_mutations.py``
fails if one does not.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np
import torch


VERIFIED, REFUTED, NOT_CHECKABLE = "verified", "refuted", "not checkable"
INCONSISTENT, ERROR = "inconsistent", "error"
ORIGINS = ("paper", "toolkit")


@dataclass
class Outcome:
    """What a check measured: whether the claim held, the worst error, and a short description.

    ``consistent=False`` says the check's premise or its independent closed form failed (the verdict
    becomes ``inconsistent`` whatever ``holds`` says).
    """

    holds: Optional[bool]  # None: not checkable
    measured: str
    error: Optional[float] = None
    consistent: bool = True


@dataclass
class Claim:
    id: str
    paper: str
    where: str
    statement: str
    expect: str
    origin: str
    checks: tuple[str, ...]
    mutants: tuple[str, ...]
    note: str
    check: Callable[[], Outcome] = field(repr=False)


@dataclass
class Row:
    id: str
    paper: str
    origin: str
    where: str
    statement: str
    verdict: str
    expected: str
    ok: bool
    measured: str
    error: Optional[float]
    seconds: float
    note: str = ""


REGISTRY: list[Claim] = []


def claim(id: str, paper: str, where: str, statement: str, *, origin: str, checks: tuple = (),
          mutants: tuple = (), note: str = "", expect: str = VERIFIED):
    """Register a check. The function returns an ``Outcome``; ``expect`` is the verdict we stand by.

    ``origin`` is "paper" or "toolkit"; ``checks`` the "module.function" names under test;
    ``mutants`` the names of the broken versions (``theory.claims_mutations``) the check must catch.
    """
    if origin not in ORIGINS:
        raise ValueError(f"origin={origin!r} for claim {id!r} is not one of {ORIGINS}; say whether a paper "
                         "makes the claim ('paper') or the toolkit does ('toolkit')")
    if expect not in (VERIFIED, REFUTED, NOT_CHECKABLE):
        raise ValueError(f"expect={expect!r} for claim {id!r} must be verified, refuted or not checkable")

    def deco(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
        REGISTRY.append(Claim(id, paper, where, statement, expect, origin, tuple(checks), tuple(mutants),
                              note, fn))
        return fn

    return deco


def run_claim(c: Claim) -> Row:
    t0 = time.perf_counter()
    try:
        out = c.check()
    except Exception as exc:  # a crashing check is a failed check, reported in its row
        out, verdict = Outcome(False, f"check raised {type(exc).__name__}: {exc}", None), ERROR
    else:
        if out.holds is None:
            verdict = NOT_CHECKABLE
        elif not out.consistent:
            verdict = INCONSISTENT
        else:
            verdict = VERIFIED if out.holds else REFUTED
    dt = time.perf_counter() - t0
    return Row(c.id, c.paper, c.origin, c.where, c.statement, verdict, c.expect, verdict == c.expect,
               out.measured, out.error, dt, c.note)


# ---------------------------------------------------------------------------------------------
# mutations: deliberately broken versions of the checked functions (defined in claims_mutations*)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    name: str  # "frpo_advantages.sign"
    target: str  # "theory.losses.frpo_advantages": the attribute swapped out
    what: str  # one line: what is broken
    make: Callable[[Callable], Callable] = field(repr=False)  # original function -> broken one


MUTATIONS: dict[str, Mutation] = {}


def mutation(name: str, target: str, what: str):
    """Register ``make(original) -> broken`` as the mutation ``name`` of ``target``."""

    def deco(make: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
        if name in MUTATIONS:
            raise ValueError(f"mutation {name!r} is registered twice")
        MUTATIONS[name] = Mutation(name, target, what, make)
        return make

    return deco


def resolve(target: str):
    """``"theory.losses.frpo_advantages"`` -> (the module object, ``"frpo_advantages"``)."""
    module, _, attr = target.rpartition(".")
    return importlib.import_module(module), attr


@contextlib.contextmanager
def mutated(name: str) -> Iterator[Mutation]:
    """Swap the broken version of a function in for the duration of the block, then restore it."""
    _load_all_checks()
    m = MUTATIONS[name]
    module, attr = resolve(m.target)
    had_own = attr in vars(module)  # a lazily re-exported name lives in another module
    original = getattr(module, attr)
    setattr(module, attr, m.make(original))
    try:
        yield m
    finally:
        if had_own:
            setattr(module, attr, original)
        else:
            delattr(module, attr)


@dataclass
class MutantRow:
    claim: str
    mutant: str
    what: str
    verdict: str  # the row's verdict with the mutant swapped in
    expected: str  # the row's verdict on the real code
    caught: bool  # the verdict changed and the check did not crash


def mutation_sweep(only: Optional[list[str]] = None) -> list[MutantRow]:
    """Run every checkable claim under each of its declared mutants; one row per (claim, mutant).

    A claim that declares no mutant gets one row with mutant "(none)" and caught=False.
    """
    out = []
    for c in _select(only):
        if c.expect == NOT_CHECKABLE:
            continue
        if not c.mutants:
            out.append(MutantRow(c.id, "(none)", "no mutant declared", "-", c.expect, False))
        for name in c.mutants:
            with mutated(name) as m:
                row = run_claim(c)
            out.append(MutantRow(c.id, name, m.what, row.verdict, c.expect,
                                 row.verdict not in (c.expect, ERROR)))
    return out


# ---------------------------------------------------------------------------------------------
# helpers shared by the check modules (randomness is seeded: the ledger is deterministic)
# ---------------------------------------------------------------------------------------------
def worst_of(*values) -> float:
    """The largest value, NaN-propagating: Python's max() drops a NaN that is not first, and a NaN must fail."""
    return float(np.max(np.asarray(values, dtype=np.float64)))


def least_of(*values) -> float:
    """The smallest value, NaN-propagating (see ``worst_of``)."""
    return float(np.min(np.asarray(values, dtype=np.float64)))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


FRPO = "FRPO"
CSFT = "CSFT+PA"
RLVR = "RLVR drift"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
CHECK_MODULES = ("theory.claims_frpo", "theory.claims_frpo_dro", "theory.claims_frpo_jackknife", "theory.claims_csft",
                 "theory.claims_rlvr", "theory.claims_mutations", "theory.claims_mutations_math")


def _load_all_checks() -> None:
    """Import the modules whose checks and mutations register themselves (small files, one topic each)."""
    for name in CHECK_MODULES:
        importlib.import_module(name)


def _select(only: Optional[list[str]]) -> list[Claim]:
    _load_all_checks()
    if not only:
        return list(REGISTRY)
    unknown = sorted(set(only) - {c.id for c in REGISTRY})
    if unknown:
        raise ValueError(f"unknown claim ids {unknown}; valid ids: {', '.join(c.id for c in REGISTRY)}")
    return [c for c in REGISTRY if c.id in set(only)]


def run_all(only: Optional[list[str]] = None) -> list[Row]:
    """Run every registered check (or those in ``only``) and return the rows."""
    return [run_claim(c) for c in _select(only)]


def summary(rows: list[Row]) -> str:
    """One line per origin: checks that can fail (verified/refuted), then the not-checkable ones."""
    parts = []
    for origin in ORIGINS:
        rs = [r for r in rows if r.origin == origin and r.expected != NOT_CHECKABLE]
        if rs:
            parts.append(f"{origin}: {len(rs)} checks, {sum(r.verdict == VERIFIED for r in rs)} verified, "
                         f"{sum(r.verdict == REFUTED for r in rs)} refuted")
    nc = sum(r.expected == NOT_CHECKABLE for r in rows)
    bad = [r for r in rows if r.verdict in (INCONSISTENT, ERROR)]
    extra = f"; {len(bad)} inconsistent/error" if bad else ""
    return (f"{'; '.join(parts)}{extra}; {nc} not checkable (not counted); "
            f"{sum(r.ok for r in rows)}/{len(rows)} as expected; {sum(r.seconds for r in rows):.1f}s")


def format_table(rows: list[Row]) -> str:
    head = f"{'claim':36} {'origin':7} {'where':26} {'verdict':14} {'time':>7}  measured"
    lines = [head, "-" * len(head)]
    for r in rows:
        flag = "" if r.ok else f"  <-- expected {r.expected}"
        lines.append(f"{r.id:36} {r.origin:7} {r.where[:26]:26} {r.verdict:14} {r.seconds:6.2f}s  "
                     f"{r.measured}{flag}")
        if r.note:
            lines.append(f"{'':36} note: {r.note}")
    lines += ["-" * len(head), summary(rows)]
    return "\n".join(lines)


def format_mutants(rows: list[MutantRow]) -> str:
    lines = [f"{'claim':36} {'mutant':44} {'verdict':14} caught"]
    for r in rows:
        lines.append(f"{r.claim:36} {r.mutant:44} {r.verdict:14} {'yes' if r.caught else 'NO'}  ({r.what})")
    claims = sorted({r.claim for r in rows})
    covered = sorted({r.claim for r in rows if r.caught})
    survived = [c for c in claims if not all(r.caught for r in rows if r.claim == c)]
    lines.append(f"{len(covered)}/{len(claims)} checkable claims flip under at least one mutant; "
                 f"{sum(r.caught for r in rows)}/{len(rows)} mutants caught"
                 + (f"; not caught in: {', '.join(survived)}" if survived else ""))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m theory.claims", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--only", default="", help="comma-separated claim ids to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the claim ids and exit")
    p.add_argument("--mutants", action="store_true",
                   help="run each claim under its deliberately broken functions; exit 1 unless every one flips it")
    args = p.parse_args(argv)
    if args.list:
        _load_all_checks()
        for c in REGISTRY:
            print(f"{c.id:36} {c.origin:7} {c.paper:10} {c.where:28} {c.statement}")
        return 0
    only = [s for s in args.only.split(",") if s]
    try:
        if args.mutants:
            mrows = mutation_sweep(only or None)
        else:
            rows = run_all(only or None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mutants:
        print(json.dumps([asdict(r) for r in mrows], indent=2) if args.json else format_mutants(mrows))
        return 0 if all(r.caught for r in mrows) else 1
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json else format_table(rows))
    return 0 if all(r.ok for r in rows) else 1
