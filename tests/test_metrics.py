"""Tests of hashplug.metrics: mAP@R (BioHash eq. 12-13), tie-aware AP, precision@R, recall@R."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.codes import indices_to_packed
from hashplug.hamming import hamming_distances
from hashplug.metrics import (
    average_precision,
    map_from_codes,
    mean_average_precision,
    per_query_average_precision,
    precision_at_r,
    recall_at_r,
    relevance,
)
from hashplug.validation import HashplugError

# ------------------------------------------------------------------------------------------------
# oracles (plain Python)
# ------------------------------------------------------------------------------------------------


def ap_of_list(rel: list[bool]) -> float:
    """Eq. 12 for one ranked list: divide by the relevant items *in the list*."""
    hits, total = 0, 0.0
    for pos, r in enumerate(rel, start=1):
        if r:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def det_ap(d: list, rel: list[bool], R: int) -> float:
    order = sorted(range(len(d)), key=lambda j: (d[j], j))  # ties -> lower index
    return ap_of_list([rel[j] for j in order[:R]])


def tie_orders(d: list):
    """Every order consistent with ascending d: all permutations inside each group of equal distance."""
    groups = [[j for j in range(len(d)) if d[j] == v] for v in sorted(set(d))]
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [j for p in perms for j in p]


def tie_oracle(d: list, rel: list[bool], R: int, metric=ap_of_list) -> float:
    vals = [metric([rel[j] for j in order[:R]]) for order in tie_orders(d)]
    return sum(vals) / len(vals)


def prec_of_list(rel: list[bool]) -> float:
    return sum(rel) / len(rel)


# ------------------------------------------------------------------------------------------------
# worked examples
# ------------------------------------------------------------------------------------------------


def test_average_precision_worked_example():
    # ranking with relevances [1, 0, 1, 0, 1]: precision at the relevant ranks 1/1, 2/3, 3/5
    ap = average_precision(np.array([[1, 0, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=bool))
    assert ap.shape == (2,) and ap.dtype == np.float64
    assert ap[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert ap[1] == 0.0  # no relevant item -> AP 0
    # 0/1 integers are accepted
    assert average_precision(np.array([[0, 1]]))[0] == pytest.approx(1 / 2)


def test_map_same_as_worked_example_via_distances():
    d = np.arange(5.0)[None, :]
    labels = np.array([7, 0, 7, 0, 7])
    assert mean_average_precision(d, [7], labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_r_less_than_all_uses_paper_denominator():
    # ranked relevances [0, 1, 0, 0, 1, 1]; R = 3 keeps [0, 1, 0]: one relevant item retrieved.
    # eq. 12: (1/1) * (Precision(2) * 1) = 1/2.
    # (Dividing by all 3 relevant items in the database would give 1/6 instead.)
    d = np.arange(6)[None, :]
    db = np.array([0, 1, 0, 0, 1, 1])
    assert mean_average_precision(d, [1], db, R=3) == pytest.approx(1 / 2)
    # R = 2 -> [0, 1]: 1/2 again; R = 1 -> [0]: no relevant retrieved -> 0
    assert mean_average_precision(d, [1], db, R=2) == pytest.approx(1 / 2)
    assert mean_average_precision(d, [1], db, R=1) == 0.0
    # R = All: (1/2 + 2/5 + 3/6) / 3
    assert mean_average_precision(d, [1], db) == pytest.approx((1 / 2 + 2 / 5 + 3 / 6) / 3)


def test_mean_over_queries():
    d = np.array([[0, 1, 2], [2, 1, 0]])
    db = np.array([1, 0, 1])
    # query 0 (label 1): [1, 0, 1] -> (1 + 2/3)/2; query 1 (label 0): [1, 0, 1] reversed order -> item 1 at rank 2
    ap0, ap1 = (1 + 2 / 3) / 2, 1 / 2
    ap = per_query_average_precision(d, [1, 0], db)
    np.testing.assert_allclose(ap, [ap0, ap1])
    assert mean_average_precision(d, [1, 0], db) == pytest.approx((ap0 + ap1) / 2)


def test_tie_example_by_hand():
    # distances [0, 0, 1], relevance [0, 1, 1], R = All.
    # deterministic order 0, 1, 2 -> rel [0, 1, 1]: (1/2 + 2/3)/2 = 7/12
    # random order in the tie {0, 1}: [0, 1, 1] -> 7/12 or [1, 0, 1] -> (1 + 2/3)/2 = 5/6
    # expected: (7/12 + 5/6) / 2 = 17/24
    d = np.array([[0, 0, 1]])
    db = np.array([5, 1, 1])
    assert mean_average_precision(d, [1], db) == pytest.approx(7 / 12)
    assert mean_average_precision(d, [1], db, tie_aware=True) == pytest.approx(17 / 24)
    assert tie_oracle([0, 0, 1], [False, True, True], 3) == pytest.approx(17 / 24)


def test_tie_cut_by_r_by_hand():
    # distances [0, 1, 1, 1], relevance [1, 1, 0, 0], R = 3: rank 1 is relevant; ranks 2-3 are two of the
    # tie group {1, 2, 3} in random order (6 equally likely ordered pairs):
    #   (1, 2), (1, 3): [1, 1, 0] -> (1 + 1)/2 = 1
    #   (2, 1), (3, 1): [1, 0, 1] -> (1 + 2/3)/2 = 5/6
    #   (2, 3), (3, 2): [1, 0, 0] -> 1/1 = 1   (the paper's denominator is 1 here, not 2)
    # expected: (2 + 5/3 + 2) / 6 = 17/18.  (Ratio of expectations would give a different number.)
    d = np.array([[0, 1, 1, 1]])
    db = np.array([3, 3, 0, 0])
    assert mean_average_precision(d, [3], db, R=3, tie_aware=True) == pytest.approx(17 / 18)
    assert tie_oracle([0, 1, 1, 1], [True, True, False, False], 3) == pytest.approx(17 / 18)
    # deterministic: order 0, 1, 2 -> [1, 1, 0] -> 1
    assert mean_average_precision(d, [3], db, R=3) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# brute-force oracles
# ------------------------------------------------------------------------------------------------


def _random_case(rng: np.random.Generator, n: int, n_values: int, p_rel: float):
    d = rng.integers(0, n_values, size=n)
    rel = rng.random(n) < p_rel
    return d, rel


@pytest.mark.parametrize("seed", range(12))
def test_tie_aware_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    d, rel = _random_case(rng, n, int(rng.integers(1, 4)), float(rng.choice([0.3, 0.6])))
    dl, rl = d.tolist(), rel.tolist()
    db = np.where(rel, 1, 0)
    for R in range(1, n + 1):
        want = tie_oracle(dl, rl, R)
        for dist in (d[None, :], (d * 0.25)[None, :]):  # integer and float distance paths
            got = mean_average_precision(dist, [1], db, R=R, tie_aware=True)
            assert got == pytest.approx(want, abs=1e-12), (dl, rl, R)
        got_p = precision_at_r(d[None, :], [1], db, R, tie_aware=True)
        assert got_p == pytest.approx(tie_oracle(dl, rl, R, prec_of_list), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    d=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    data=st.data(),
)
def test_tie_aware_matches_enumeration_hypothesis(d, data):
    rel = data.draw(st.lists(st.booleans(), min_size=len(d), max_size=len(d)), label="rel")
    R = data.draw(st.integers(1, len(d)), label="R")
    db = np.array(rel, dtype=np.int64)
    got = mean_average_precision(np.array([d]), [1], db, R=R, tie_aware=True)
    assert got == pytest.approx(tie_oracle(d, rel, R), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nq=st.integers(1, 4), ndb=st.integers(1, 30), data=st.data())
def test_deterministic_matches_python_oracle(seed, nq, ndb, data):
    rng = np.random.default_rng(seed)
    n_values = data.draw(st.sampled_from([2, 4, 100]), label="n_values")
    dist = rng.integers(0, n_values, size=(nq, ndb))
    yq, ydb = rng.integers(0, 3, nq), rng.integers(0, 3, ndb)
    R = data.draw(st.one_of(st.none(), st.integers(1, ndb)), label="R")
    RR = ndb if R is None else R
    want = [det_ap(dist[i].tolist(), (ydb == yq[i]).tolist(), RR) for i in range(nq)]
    np.testing.assert_allclose(per_query_average_precision(dist, yq, ydb, R=R), want, atol=1e-12)
    np.testing.assert_allclose(
        per_query_average_precision(dist.astype(np.float32), yq, ydb, R=R, chunk_size=1), want, atol=1e-12
    )
    want_p = [
        sum(ydb[j] == yq[i] for j in sorted(range(ndb), key=lambda j: (dist[i, j], j))[:RR]) / RR
        for i in range(nq)
    ]
    assert precision_at_r(dist, yq, ydb, RR) == pytest.approx(float(np.mean(want_p)))


def test_tie_aware_equals_deterministic_without_ties():
    rng = np.random.default_rng(5)
    dist = rng.random((6, 50))  # all distinct
    yq, ydb = rng.integers(0, 4, 6), rng.integers(0, 4, 50)
    for R in (None, 1, 7, 50):
        a = per_query_average_precision(dist, yq, ydb, R=R)
        b = per_query_average_precision(dist, yq, ydb, R=R, tie_aware=True)
        np.testing.assert_allclose(a, b, atol=1e-12)


def _direct_expected_ap(groups: list[tuple[int, int]], R: int) -> float:
    """Independent check of the large-group arithmetic: the same expectation by explicit per-position sums and
    math.comb (no harmonic numbers, no log-factorials). ``groups`` = [(n_g, r_g), ...] in ascending distance.
    """
    N = P = 0
    A = 0.0
    for n, r in groups:
        L = min(n, R - N)
        if L <= 0:
            break

        def e_b(x: int, L: int = L, N: int = N, P: int = P) -> float:
            s = 0.0
            for j in range(1, L + 1):
                before = (j - 1) * (x - 1) / (L - 1) if L > 1 else 0.0
                s += (x / L) * (P + 1 + before) / (N + j)
            return s

        if L < n:  # cut group: hypergeometric number of relevant retrieved
            tot = 0.0
            for x in range(max(0, L - (n - r)), min(L, r) + 1):
                px = math.comb(r, x) * math.comb(n - r, L - x) / math.comb(n, L)
                if P + x:
                    tot += px * (A + e_b(x)) / (P + x)
            return tot
        A += e_b(r)
        N, P = N + n, P + r
    return A / P if P else 0.0


@pytest.mark.parametrize("R", [1, 150, 333, 520, 700, 900])
def test_tie_aware_large_groups_against_direct_sums(R):
    # three tie groups: (n, r) = (120, 30), (400, 90), (380, 200); R cuts the second or third group or
    # ends exactly at a group boundary (R = 520, R = 900 = All)
    groups = [(120, 30), (400, 90), (380, 200)]
    d, rel = [], []
    rng = np.random.default_rng(R)
    for v, (n, r) in enumerate(groups):
        flags = np.zeros(n, dtype=bool)
        flags[rng.choice(n, r, replace=False)] = True
        d += [v * 2] * n
        rel += flags.tolist()
    perm = rng.permutation(len(d))  # the result cannot depend on the database order
    d, db = np.array(d)[perm][None, :], np.array(rel, dtype=np.int64)[perm]
    got = mean_average_precision(d, [1], db, R=R, tie_aware=True)
    assert got == pytest.approx(_direct_expected_ap(groups, R), rel=1e-9)


def test_boundary_exactly_at_group_end():
    d = np.array([[0, 0, 1, 1]])
    db = np.array([1, 0, 1, 0])
    # R = 2 ends the first group: orders [1, 0] -> 1, [0, 1] -> 1/2 -> 3/4
    assert mean_average_precision(d, [1], db, R=2, tie_aware=True) == pytest.approx(0.75)
    assert tie_oracle([0, 0, 1, 1], [True, False, True, False], 2) == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------------
# labels, codes, chunking
# ------------------------------------------------------------------------------------------------


def test_relevance_single_and_multi_label():
    np.testing.assert_array_equal(relevance([1, 2], [2, 1, 1]), [[False, True, True], [True, False, False]])
    q = np.array([[1, 0, 1], [0, 0, 0]])
    db = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(relevance(q, db), [[True, False, True], [False, False, False]])


def test_multi_label_map():
    # query shares a class with items 0 and 2; distances rank them 2, 1, 0 -> rel [1, 0, 1]
    d = np.array([[2.0, 1.0, 0.0]])
    q = np.array([[1, 0, 1]])
    db = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 0]])
    assert mean_average_precision(d, q, db) == pytest.approx((1 + 2 / 3) / 2)
    assert mean_average_precision(d, q.astype(bool), db.astype(bool), R=2) == pytest.approx(1.0)


@pytest.mark.parametrize("tie_aware", [False, True])
@pytest.mark.parametrize("R", [None, 1, 37, 300])
def test_map_from_codes_equals_distance_matrix_path(tie_aware, R):
    rng = np.random.default_rng(11)
    m, k = 48, 3
    idx = lambda n: np.sort(np.argsort(rng.random((n, m)), axis=1)[:, :k], axis=1)  # noqa: E731
    Q, DB = indices_to_packed(idx(25), m), indices_to_packed(idx(300), m)
    yq, ydb = rng.integers(0, 4, 25), rng.integers(0, 4, 300)
    want = mean_average_precision(hamming_distances(Q, DB), yq, ydb, R=R, tie_aware=tie_aware)
    assert map_from_codes(Q, DB, yq, ydb, R=R, tie_aware=tie_aware) == pytest.approx(want, abs=1e-12)
    got = map_from_codes(Q, DB, yq, ydb, R=R, tie_aware=tie_aware, chunk_size=4)
    assert got == pytest.approx(want, abs=1e-12)
    for chunk in (1, 7):
        got = mean_average_precision(
            hamming_distances(Q, DB), yq, ydb, R=R, tie_aware=tie_aware, chunk_size=chunk
        )
        assert got == pytest.approx(want, abs=1e-12)


def test_tie_aware_changes_value_when_ties_matter():
    # all items tied; deterministic order puts the relevant item last; expected AP averages its position
    d = np.zeros((1, 4))
    db = np.array([0, 0, 0, 1])
    assert mean_average_precision(d, [1], db) == pytest.approx(1 / 4)
    assert mean_average_precision(d, [1], db, tie_aware=True) == pytest.approx(
        (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4
    )


# ------------------------------------------------------------------------------------------------
# recall@R
# ------------------------------------------------------------------------------------------------


def test_recall_at_r_worked_example():
    retrieved = np.array([[3, 1, 4, 5], [9, 8, 7, 6]])
    true = np.array([[1, 2, 3, 4], [6, 0, 1, 2]])
    # R = 4: row 0 finds {1, 3, 4} of {1, 2, 3, 4} -> 3/4; row 1 finds {6} -> 1/4
    assert recall_at_r(retrieved, true) == pytest.approx((3 / 4 + 1 / 4) / 2)
    # R = 2: row 0 {3, 1} vs {1, 2} -> 1/2; row 1 {9, 8} vs {6, 0} -> 0
    assert recall_at_r(retrieved, true, R=2) == pytest.approx(1 / 4)
    # duplicates in the retrieved list count once; fewer retrieved columns are misses
    assert recall_at_r(np.array([[1, 1]]), np.array([[1, 2]])) == pytest.approx(1 / 2)
    assert recall_at_r(np.array([[2]]), np.array([[1, 2]])) == pytest.approx(1 / 2)


# ------------------------------------------------------------------------------------------------
# input errors
# ------------------------------------------------------------------------------------------------


def test_errors():
    d = np.zeros((2, 3))
    with pytest.raises(HashplugError, match="2 dimensions"):
        mean_average_precision(np.zeros(3), [0], [0, 1, 2])
    with pytest.raises(HashplugError, match="NaN"):
        mean_average_precision(np.array([[0.0, np.nan]]), [0], [0, 1])
    with pytest.raises(HashplugError, match="2 query rows but q_labels has 1"):
        mean_average_precision(d, [0], [0, 1, 2])
    with pytest.raises(HashplugError, match="3 database items but db_labels has 2"):
        mean_average_precision(d, [0, 1], [0, 1])
    with pytest.raises(HashplugError, match="R=4 exceeds the 3 database items"):
        mean_average_precision(d, [0, 1], [0, 1, 2], R=4)
    with pytest.raises(HashplugError, match="R must be >= 1"):
        mean_average_precision(d, [0, 1], [0, 1, 2], R=0)
    with pytest.raises(HashplugError, match="integer class labels"):
        mean_average_precision(d, [0.5, 1.0], [0, 1, 2])
    with pytest.raises(HashplugError, match="1-D integer class labels for both"):
        mean_average_precision(d, [0, 1], np.eye(3, dtype=int))
    with pytest.raises(HashplugError, match="0/1 multi-label"):
        relevance(np.array([[2, 0]]), np.array([[1, 0]]))
    with pytest.raises(HashplugError, match="2 classes but db_labels has 3"):
        relevance(np.array([[1, 0]]), np.eye(3, dtype=int))
    with pytest.raises(HashplugError, match="chunk_size"):
        mean_average_precision(d, [0, 1], [0, 1, 2], chunk_size=0)
    with pytest.raises(HashplugError, match="limit is required"):  # 0.2.0: the parameter is limit (was R)
        precision_at_r(d, [0, 1], [0, 1, 2], None)
    with pytest.raises(HashplugError, match="boolean or 0/1"):
        average_precision(np.array([[0, 2]]))
    with pytest.raises(HashplugError, match="empty batch"):
        average_precision(np.zeros((0, 3), dtype=bool))
    P = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(HashplugError, match="dtype uint8"):
        map_from_codes(P.astype(np.float32), P, [0, 1], [0, 1])
    with pytest.raises(HashplugError, match="the codes has 2 query rows but q_labels has 3"):
        map_from_codes(P, P, [0, 1, 2], [0, 1])
    with pytest.raises(HashplugError, match="repeated index"):
        recall_at_r(np.array([[1, 2]]), np.array([[1, 1]]))
    with pytest.raises(HashplugError, match=r"R must be an int in \[1, 2\]"):
        recall_at_r(np.array([[1, 2]]), np.array([[1, 2]]), R=3)
    with pytest.raises(HashplugError, match="integer indices"):
        recall_at_r(np.array([[1.0, 2.0]]), np.array([[1, 2]]))
    with pytest.raises(HashplugError, match="query rows"):
        recall_at_r(np.array([[1, 2]]), np.array([[1, 2], [3, 4]]))


def test_mutual_information_from_distances_worked_example():
    from hashplug.metrics import mutual_information_from_distances

    # query 0: relevant items at 0, 0; others at 2, 2 -> separated: I = H(C) = log 2 (priors 1/2)
    # query 1: relevant at 1, 2; others at 1, 2 -> identical distributions: I = 0
    # query 2: no relevant item -> 0
    D = np.array([[0, 0, 2, 2], [1, 2, 1, 2], [3, 3, 3, 3]])
    ydb = np.array([0, 0, 1, 1])
    mi = mutual_information_from_distances(D, np.array([0, 0, 9]), ydb, 3)
    np.testing.assert_allclose(mi[0], np.log(2))
    # query 1 with labels making items 0 and 2 relevant: relevant at {1, 1}, others at {2, 2}: separated
    D1 = np.array([[1, 2, 1, 2]])
    assert mutual_information_from_distances(D1, np.array([0]), np.array([0, 1, 0, 1]), 3)[0] == pytest.approx(np.log(2))
    assert mutual_information_from_distances(D1, np.array([0]), np.array([0, 0, 1, 1]), 3)[0] == pytest.approx(0.0)
    assert mi[1] == 0.0 and mi[2] == 0.0  # query 1 (label 0): relevant at {1, 2}, others at {1, 2}
    with pytest.raises(HashplugError, match=r"distances must lie in \[0, n_bits=3\]"):
        mutual_information_from_distances(np.array([[4]]), np.array([0]), np.array([0]), 3)
