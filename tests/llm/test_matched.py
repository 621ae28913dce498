"""The matched-KL reading (llm.matched) and its report table against hand-computed trajectories."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from llm import matched as M
from llm.report import alignment_match_table, matched_kl, matched_kl_table
from theory.dro import kl_dro_dual


def test_first_passage_interpolates_on_the_first_crossing_segment():
    kls = [0.0, 1.0, 3.0, 2.0, 5.0]  # not monotone: KL falls back to 2 after reaching 3
    vals = [1.0, 0.8, 0.6, 0.7, 0.2]
    got = M.first_passage(kls, vals, [0.5, 2.0, 3.0, 4.0, 6.0])
    # 0.5: between (0, 1) and (1, .8) -> 0.9; 2: between (1, .8) and (3, .6) -> 0.7 (not the later (2, .7));
    # 3: exactly reached at index 2 -> 0.6; 4: between (2, .7) and (5, .2) -> 0.7 - 2/3 * 0.5; 6: never reached
    assert got[:4] == pytest.approx([0.9, 0.7, 0.6, 0.7 - (2 / 3) * 0.5])
    assert got[4] is None


def test_grid_auto_uses_the_common_kl_and_a_seed_that_never_reaches_a_given_point_is_missing():
    a = ([0.0, 2.0, 4.0], [1.0, 0.6, 0.2])
    b = ([0.0, 1.0, 2.5], [1.0, 0.9, 0.8])  # reaches only 2.5
    assert M.common_kl([a[0], b[0]]) == 2.5
    assert M.kl_grid([a[0], b[0]]) == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    assert M.kl_grid([a[0], b[0]], given=[1, 3]) == [1.0, 3.0]
    rows = []
    for arm, seed, (k, v) in (("grpo", 0, a), ("frpo", 0, b), ("grpo", 1, b), ("frpo", 1, a)):
        rows += [{"arm": arm, "kind": "sft", "seed": seed, "step": 5 * i, "kl": ki, "m": vi}
                 for i, (ki, vi) in enumerate(zip(k, v))]
    reading = matched_kl(rows, ["grpo", "frpo"], ["sft"], "m", grid=[1.0, 3.0])["sft"]
    assert reading["values"]["grpo"][0] == pytest.approx([0.8, 0.4])
    assert reading["values"]["frpo"][0] == [pytest.approx(0.9), None]  # seed 0's FRPO run stops at KL 2.5
    table = matched_kl_table({"sft": reading}, ["grpo", "frpo"], "m")
    line3 = next(line for line in table.splitlines() if line.startswith("| 3 "))
    assert "(n=1)" in line3  # one seed per arm reaches KL 3
    line1 = next(line for line in table.splitlines() if line.startswith("| 1 "))
    # paired frpo − grpo at KL 1: seed 0: 0.9 − 0.8, seed 1: 0.8 − 0.9 -> mean 0, n = 2
    assert "0.000" in line1 and line1.count("(n=2)") == 3


def test_normalized_auc_against_a_hand_integral():
    # v falls linearly from 1 at KL 0 to 0.5 at KL 2: AUC/K up to 2 = 0.75; up to 1: (1 + .75)/2 = 0.875
    assert M.normalized_auc([0.0, 2.0], [1.0, 0.5], 2.0) == pytest.approx(0.75)
    assert M.normalized_auc([0.0, 2.0], [1.0, 0.5], 1.0) == pytest.approx(0.875)
    assert M.normalized_auc([0.0, 2.0], [1.0, 0.5], 3.0) is None


def test_bootstrap_band_stays_inside_zero_one_where_a_t_interval_does_not():
    from theory.stats import mean_ci

    x = [1.0, 1.0, 1.0, 0.2, 1.0, 1.0]
    t = mean_ci(x)
    assert t.mean + t.half_width > 1.0  # the Student-t interval leaves [0, 1]
    m, lo, hi = M.bootstrap_band(x)
    assert 0.0 <= lo <= m <= hi <= 1.0 and m == pytest.approx(np.mean(x))
    assert M.bootstrap_band([0.4]) == (0.4, 0.4, 0.4)
    assert all(math.isnan(v) for v in M.bootstrap_band([]))


def _one_prompt_worst_case(p: float, rho: float) -> float:
    """inf q s.t. KL((q, 1−q) ‖ (p, 1−p)) ≤ ρ, by root finding on the binary KL (independent of theory.dro)."""
    def kl(q):
        return sum(a * math.log(a / b) for a, b in ((q, p), (1 - q, 1 - p)) if a > 0)
    if kl(0.0) <= rho:
        return 0.0
    return brentq(lambda q: kl(q) - rho, 0.0, p, xtol=1e-14)


def test_dro_lower_bound_equals_kl_dro_dual_and_the_binary_root():
    rates = [0.98, 0.9, 0.999]
    rhos = [0.0, 0.05, 0.5, 1.0, 3.0, 20.0]
    got = M.dro_lower_bound(rates, rhos)
    r = np.tile([1.0, 0.0], (3, 1))
    pi = np.stack([rates, 1 - np.array(rates)], 1)
    assert got == pytest.approx([kl_dro_dual(r, pi, rho).value for rho in rhos], abs=1e-12)
    assert got[0] == pytest.approx(np.mean(rates)) and got[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b - 1e-12 for a, b in zip(got, got[1:]))  # worse with a larger budget
    one = M.dro_lower_bound([0.98], rhos)
    assert one == pytest.approx([_one_prompt_worst_case(0.98, rho) for rho in rhos], abs=1e-8)


def test_alignment_match_table_says_whether_arms_are_matched():
    rows = [{"stage": "aligned", "arm": a, "seed": s, "eval/kl_to_base": kl}
            for a, s, kl in (("grpo", 0, 1.0), ("grpo", 1, 1.2), ("frpo", 0, 1.1), ("frpo", 1, 1.25))]
    _, matched = alignment_match_table(rows, ["grpo", "frpo"])
    assert matched
    rows[2]["eval/kl_to_base"] = 2.0
    table, matched = alignment_match_table(rows, ["grpo", "frpo"])
    assert not matched and "| frpo |" in table


def test_first_passage_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="kls has 2 points"):
        M.first_passage([0, 1], [1.0], [0.5])
