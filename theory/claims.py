"""The claims ledger: one numerical check per claim of the three papers (and of the toolkit's own derivations).

    python -m theory.claims            # the table (exit 1 if a check disagrees with its expected verdict)
    python -m theory.claims --json     # machine-readable rows
    python -m theory.claims --only frpo.lemma31_kl,rlvr.thm1_gibbs
    python -m theory.claims --list     # the claim ids
    python -m theory.claims --mutants  # swap in each row's broken functions; exit 1 unless every one flips it

The framework is ``theory.ledger``; the checks are ``theory.claims_frpo`` (surrogate, advantages,
baseline), ``theory.claims_frpo_dro`` (Lemma 3.1, Remarks 3.2/3.3, entropic risk),
``theory.claims_frpo_jackknife`` (App. E), ``theory.claims_csft`` and ``theory.claims_rlvr``; the broken
versions the mutation check swaps in are ``theory.claims_mutations`` (losses) and
``theory.claims_mutations_math`` (the rest).
"""
from __future__ import annotations

import sys

from theory.ledger import main, run_all  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
