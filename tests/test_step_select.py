"""Selection step: trust-level classification and capped, seeded candidate picking."""

from __future__ import annotations

import time

import numpy as np
import pytest

from firegen.workflows.steps.select import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    DeviationWeightedPolicy,
    RandomPolicy,
    SelectionPolicy,
    candidate_indices,
    classify,
    counts,
    ratios,
    seed_from,
    select_candidates,
    select_indices,
)

LO, HI = 0.15, 0.35


# -- classify ---------------------------------------------------------------------------------


def test_force_levels_and_exact_boundaries():
    below_lo = np.nextafter(LO, -np.inf)
    below_hi = np.nextafter(HI, -np.inf)
    devi = np.array([0.0, below_lo, LO, 0.2, below_hi, HI, 1.0, np.inf])
    codes = classify(devi, LO, HI)
    assert codes.dtype == np.int8
    assert codes.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]  # lo is candidate, hi is failed


def test_nan_deviation_is_failed():
    codes = classify(np.array([np.nan, 0.01, np.nan]), LO, HI)
    assert codes.tolist() == [FAILED, ACCURATE, FAILED]
    codes = classify([0.01, 0.01], LO, HI, max_devi_v=[np.nan, 0.0], v_lo=0.1, v_hi=0.2)
    assert codes.tolist() == [FAILED, ACCURATE]
    codes = classify([0.01, 0.01], LO, HI, max_devi_v=[np.nan, 0.0], v_lo=0.1, v_hi=0.2,
                     rule="dpgen")
    assert codes.tolist() == [FAILED, ACCURATE]


def test_equal_levels_mean_no_candidates():
    assert classify([0.1, 0.2, 0.3], 0.2, 0.2).tolist() == [0, 2, 2]


def test_keeps_shape():
    devi = np.array([[0.1, 0.2], [0.4, 0.0]])
    assert classify(devi, LO, HI).tolist() == [[0, 1], [2, 0]]


# f and v codes on their own:   a = accurate, c = candidate, f = failed
F = {"a": 0.05, "c": 0.2, "f": 0.5}
V_LO, V_HI = 1.0, 2.0
V = {"a": 0.5, "c": 1.5, "f": 3.0}
# (f, v) -> dpgen2 (strict) result, DP-GEN 0.14 result
TABLE = {
    ("a", "a"): (ACCURATE, ACCURATE),
    ("a", "c"): (CANDIDATE, CANDIDATE),
    ("c", "a"): (CANDIDATE, CANDIDATE),
    ("c", "c"): (CANDIDATE, CANDIDATE),
    ("a", "f"): (FAILED, FAILED),
    ("f", "a"): (FAILED, FAILED),
    ("f", "f"): (FAILED, FAILED),
    ("c", "f"): (FAILED, CANDIDATE),  # the two rules differ only here
    ("f", "c"): (FAILED, CANDIDATE),
}


@pytest.mark.parametrize("rule,col", [("dpgen2", 0), ("dpgen", 1)])
def test_virial_rule_table(rule, col):
    keys = list(TABLE)
    f = np.array([F[a] for a, _ in keys])
    v = np.array([V[b] for _, b in keys])
    codes = classify(f, LO, HI, max_devi_v=v, v_lo=V_LO, v_hi=V_HI, rule=rule)
    assert codes.tolist() == [TABLE[k][col] for k in keys]


def test_virial_boundaries():
    f = np.full(4, 0.0)
    v = np.array([np.nextafter(V_LO, 0), V_LO, np.nextafter(V_HI, 0), V_HI])
    assert classify(f, LO, HI, v, V_LO, V_HI).tolist() == [0, 1, 1, 2]


def test_bad_levels_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="f_lo=0.4 is above f_hi=0.2"):
        classify([0.1], 0.4, 0.2)
    with pytest.raises(ValueError, match="NaN"):
        classify([0.1], np.nan, 0.2)
    with pytest.raises(ValueError, match="shape"):
        classify([0.1, 0.2], LO, HI, max_devi_v=[0.1], v_lo=0.1, v_hi=0.2)
    with pytest.raises(ValueError, match="v_lo and v_hi"):
        classify([0.1], LO, HI, max_devi_v=[0.1])
    with pytest.raises(ValueError, match="no max_devi_v"):
        classify([0.1], LO, HI, v_lo=0.1, v_hi=0.2)
    with pytest.raises(ValueError, match="rule"):
        classify([0.1], LO, HI, rule="dpgen3")


def test_counts_and_ratios():
    codes = classify([0.0, 0.1, 0.2, 0.3, 0.4, np.nan, 0.15, 0.35], LO, HI)
    c = counts(codes)
    assert c == {"accurate": 2, "candidate": 3, "failed": 3, "total": 8}
    r = ratios(codes)
    assert r == {"accurate": 2 / 8, "candidate": 3 / 8, "failed": 3 / 8}
    assert ratios(c) == r
    assert counts(np.array([], dtype=np.int8)) == {"accurate": 0, "candidate": 0, "failed": 0,
                                                   "total": 0}
    assert ratios([]) == {"accurate": 0.0, "candidate": 0.0, "failed": 0.0}
    assert candidate_indices(codes).tolist() == [2, 3, 6]
    with pytest.raises(ValueError):
        counts([0, 3])


# -- select ---------------------------------------------------------------------------------


def test_cap_respected_and_reproducible():
    keys = [f"conf-{i}" for i in range(1000)]
    a = select_candidates(keys, 50, seed=7)
    b = select_candidates(keys, 50, seed=7)
    assert a == b
    assert len(a) == 50 and len(set(a)) == 50 and set(a) <= set(keys)
    assert a == sorted(a, key=keys.index)  # picked keys keep the input order


def test_different_seeds_differ():
    keys = list(range(1000))
    picks = {tuple(select_candidates(keys, 50, seed=s)) for s in range(5)}
    assert len(picks) == 5


def test_max_n_at_or_above_candidates_returns_all():
    keys = [("traj0", 3), ("traj1", 9), ("traj0", 1)]
    assert select_candidates(keys, 3, seed=1) == keys
    assert select_candidates(keys, 100, seed=1) == keys
    assert select_candidates(keys, 0, seed=1) == []
    assert select_candidates([], 5, seed=1) == []
    with pytest.raises(ValueError, match="max_n"):
        select_candidates(keys, -1, seed=1)


def test_uniform_random_is_unbiased():
    n, k, reps = 20, 5, 4000
    hits = np.zeros(n)
    for s in range(reps):
        hits[select_indices(n, k, seed=s)] += 1
    expected = reps * k / n
    assert np.abs(hits - expected).max() < 5 * np.sqrt(expected)


def test_deviation_weighted_favours_uncertain_frames():
    devi = np.concatenate([np.full(500, 0.16), np.full(500, 0.34)])
    keys = list(range(1000))
    picked = select_candidates(keys, 100, seed=3, weights=devi)
    assert select_candidates(keys, 100, seed=3, weights=devi) == picked
    high = sum(1 for i in picked if i >= 500)
    # P(high) per draw starts at 0.34/0.50 = 0.68; uniform would give ~50
    assert 58 <= high <= 80
    # exact marginal check on a small case: first draw probability ~ weight
    w = np.array([1.0, 2.0, 7.0])
    first = np.zeros(3)
    for s in range(6000):
        first[select_indices(3, 1, seed=s, weights=w)] += 1
    np.testing.assert_allclose(first / first.sum(), w / w.sum(), atol=0.02)


def test_weighted_power_and_zero_weights():
    w = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    # zero weights come last: with max_n = 2 the two positive ones are always picked
    for s in range(20):
        assert select_indices(5, 2, seed=s, weights=w).tolist() == [2, 3]
    idx = select_indices(5, 3, seed=1, weights=w)
    assert set(idx.tolist()) >= {2, 3} and len(idx) == 3
    sharp = DeviationWeightedPolicy(power=4.0)
    devi = np.array([0.16] * 50 + [0.34] * 50)
    high = (select_indices(100, 20, seed=2, weights=devi, policy=sharp) >= 50).sum()
    assert high >= 17
    with pytest.raises(ValueError):
        DeviationWeightedPolicy(power=0)


def test_bad_weights_and_policies():
    with pytest.raises(ValueError, match="weights"):
        select_candidates([1, 2, 3], 1, seed=0, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        select_candidates([1, 2, 3], 1, seed=0, weights=[1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="2 weights for 3"):
        select_candidates([1, 2, 3], 1, seed=0, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="takes no weights"):
        select_candidates([1, 2, 3], 1, seed=0, weights=[1, 1, 1], policy="random")
    with pytest.raises(ValueError, match="needs weights"):
        select_candidates([1, 2, 3], 1, seed=0, policy="deviation")
    with pytest.raises(ValueError, match="unknown selection policy"):
        select_candidates([1, 2, 3], 1, seed=0, policy="diversity")


def test_custom_policy_protocol():
    class FirstN:
        name = "first"

        def select_indices(self, n, max_n, rng, weights=None):
            return np.arange(max_n)[::-1]

    class Broken:
        name = "broken"

        def select_indices(self, n, max_n, rng, weights=None):
            return np.zeros(max_n, dtype=int)  # duplicates

    assert isinstance(FirstN(), SelectionPolicy) and isinstance(RandomPolicy(), SelectionPolicy)
    assert select_candidates(list("abcdef"), 3, seed=0, policy=FirstN()) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="invalid indices"):
        select_candidates(list("abcdef"), 3, seed=0, policy=Broken())


def test_seed_from_is_stable():
    assert seed_from("cu-campaign", 3, "sys0") == seed_from("cu-campaign", 3, "sys0")
    assert seed_from("cu-campaign", 3, "sys0") != seed_from("cu-campaign", 4, "sys0")
    assert 0 <= seed_from("x") < 2**63
    assert seed_from("a", 1) == seed_from("a", "1")  # parts are joined as text
    # pinned: unlike hash(), the value must not change between processes or releases
    assert seed_from("cu", 0) == 5869612769696046715


def test_million_frames_classify_and_select_fast():
    rng = np.random.default_rng(0)
    f = rng.gamma(2.0, 0.1, size=1_000_000)
    v = rng.gamma(2.0, 0.5, size=1_000_000)
    f[::1000] = np.nan
    t0 = time.perf_counter()
    codes = classify(f, LO, HI, max_devi_v=v, v_lo=1.0, v_hi=2.0)
    c = counts(codes)
    cand = candidate_indices(codes)
    picked = select_indices(cand.size, 1000, seed=1)
    picked_w = select_indices(cand.size, 1000, seed=1, weights=f[cand])
    keys = select_candidates(cand, 1000, seed=1)
    elapsed = time.perf_counter() - t0
    assert c["total"] == 1_000_000 and c["failed"] >= 1000
    assert len(picked) == len(picked_w) == len(keys) == 1000
    assert elapsed < 1.0, f"classify + select of 10^6 frames took {elapsed:.3f} s"
