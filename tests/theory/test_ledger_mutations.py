"""Mutation check of the claims ledger: every checkable row must change its verdict when a deliberately
broken version of a function it checks (theory/claims_mutations.py) is swapped in with monkeypatch.

A row that survives all of its mutants is a check that cannot fail: rewrite or remove it. The sweep
runs each (row, mutant) pair as its own test (~10 s in all on one core).
"""
from __future__ import annotations

import pytest

from theory.ledger import (ERROR, MUTATIONS, NOT_CHECKABLE, REGISTRY, Outcome, _load_all_checks, claim, main,
                           resolve, run_all, run_claim)

_load_all_checks()
CLAIMS = {c.id: c for c in REGISTRY}
CHECKABLE = [c for c in REGISTRY if c.expect != NOT_CHECKABLE]
PAIRS = [(c.id, m) for c in CHECKABLE for m in c.mutants]


@pytest.fixture(scope="module")
def unmutated():
    """The rows on the real code, once: a mutant only counts as caught if the real row is as expected."""
    return {r.id: r for r in run_all([c.id for c in CHECKABLE])}


def test_every_checkable_row_declares_its_functions_and_mutants():
    assert len(CHECKABLE) >= 30
    for c in REGISTRY:
        if c.expect == NOT_CHECKABLE:
            assert not c.checks and not c.mutants, c.id
            continue
        assert c.checks, f"{c.id} names no function it checks"
        assert c.mutants, f"{c.id} has no mutant: nothing shows it can fail"
        for name in c.mutants:
            assert name in MUTATIONS, f"{c.id}: unknown mutant {name!r}"
            target = MUTATIONS[name].target
            assert target in c.checks, f"{c.id}: {name} breaks {target}, not a function the row checks"
        for target in c.checks:
            module, attr = resolve(target)
            assert callable(getattr(module, attr)), target
            assert any(MUTATIONS[m].target == target for m in c.mutants), f"{c.id}: no mutant of {target}"


def test_every_mutation_is_used_by_a_row():
    used = {m for c in REGISTRY for m in c.mutants}
    assert set(MUTATIONS) == used, sorted(set(MUTATIONS) - used)


@pytest.mark.parametrize("claim_id,mutant", PAIRS, ids=[f"{c}:{m}" for c, m in PAIRS])
def test_mutant_changes_the_rows_verdict(monkeypatch, unmutated, claim_id, mutant):
    c = CLAIMS[claim_id]
    assert unmutated[claim_id].ok, unmutated[claim_id]
    m = MUTATIONS[mutant]
    module, attr = resolve(m.target)
    monkeypatch.setattr(module, attr, m.make(getattr(module, attr)))
    row = run_claim(c)
    assert row.verdict != c.expect, f"{claim_id} survives {mutant} ({m.what}): {row.measured}"
    assert row.verdict != ERROR, f"{mutant} crashed the check instead of being caught: {row.measured}"


def test_cli_mutation_sweep_reports_exits_zero_and_restores_the_functions(capsys):
    from theory import losses, rlvr

    originals = rlvr.pinsker_bound, losses.frpo_advantages
    assert main(["--mutants", "--only", "rlvr.pinsker,frpo.no_baseline_sign_jackknife"]) == 0
    out = capsys.readouterr().out
    assert "pinsker_bound.no_half" in out and "2/2 checkable claims flip" in out and "4/4 mutants caught" in out
    assert (rlvr.pinsker_bound, losses.frpo_advantages) == originals


def test_cli_mutation_sweep_fails_for_a_row_without_mutants(capsys):
    n = len(REGISTRY)
    try:
        @claim("test.no_mutants", "TEST", "-", "a check nothing can break", origin="toolkit")
        def _always():
            return Outcome(True, "constant", None)

        assert main(["--mutants", "--only", "test.no_mutants"]) == 1
        assert "(none)" in capsys.readouterr().out
    finally:
        del REGISTRY[n:]
