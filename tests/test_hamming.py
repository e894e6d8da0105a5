"""Tests of hashplug.hamming: exact distances, top-R with the documented tie order, k-hot identity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.codes import indices_to_packed, pack_bits
from hashplug.hamming import (
    hamming_distances,
    hamming_rank,
    hamming_search,
    hamming_topk,
    overlap_from_indices,
    rank_distances,
)
from hashplug.validation import HashplugError


def naive_hamming(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Oracle: Python integer popcount of the XOR of whole codes."""
    out = np.zeros((len(A), len(B)), dtype=np.int64)
    for i, a in enumerate(A):
        ia = int.from_bytes(a.tobytes(), "big")
        for j, b in enumerate(B):
            out[i, j] = bin(ia ^ int.from_bytes(b.tobytes(), "big")).count("1")
    return out


def random_packed(rng: np.random.Generator, n: int, m: int, p: float = 0.5) -> np.ndarray:
    return pack_bits(rng.random((n, m)) < p)


def random_khot(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    return np.sort(np.argsort(rng.random((n, m)), axis=1)[:, :k], axis=1)


# ------------------------------------------------------------------------------------------------
# distances
# ------------------------------------------------------------------------------------------------


def test_worked_example():
    # m = 10 bits -> 2 bytes (6 padding bits)
    a = [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    b = [1, 1, 1, 0, 0, 0, 0, 0, 1, 0]  # differs from a at units 1, 3, 9 -> 3
    c = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # differs from a at its five ones -> 5; from b at its four -> 4
    P = pack_bits(np.array([a, b, c], dtype=bool))
    D = hamming_distances(P, P)
    assert D.dtype == np.int32
    np.testing.assert_array_equal(D, [[0, 3, 5], [3, 0, 4], [5, 4, 0]])


@pytest.mark.parametrize("m", [1, 7, 8, 9, 63, 64, 65, 127, 130, 640])
def test_matches_naive_popcount(m):
    rng = np.random.default_rng(m)
    A, B = random_packed(rng, 7, m), random_packed(rng, 11, m)
    D = hamming_distances(A, B)
    assert D.shape == (7, 11) and D.dtype == np.int32
    np.testing.assert_array_equal(D, naive_hamming(A, B))


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 100])
def test_chunk_size_does_not_change_result(chunk_size):
    rng = np.random.default_rng(0)
    A, B = random_packed(rng, 13, 200), random_packed(rng, 17, 200)
    np.testing.assert_array_equal(hamming_distances(A, B, chunk_size=chunk_size), naive_hamming(A, B))


def test_extreme_codes():
    m = 200  # all-ones vs all-zeros: every unit differs
    ones = pack_bits(np.ones((1, m), dtype=bool))
    zeros = pack_bits(np.zeros((1, m), dtype=bool))
    assert hamming_distances(ones, zeros)[0, 0] == m


def test_non_contiguous_input():
    rng = np.random.default_rng(3)
    A = random_packed(rng, 10, 96)
    B = np.asfortranarray(random_packed(rng, 9, 96))
    np.testing.assert_array_equal(hamming_distances(A[::2], B), naive_hamming(A[::2], B))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 150),
    na=st.integers(1, 6),
    nb=st.integers(1, 6),
)
def test_symmetry_and_zero_diagonal(seed, m, na, nb):
    rng = np.random.default_rng(seed)
    A, B = random_packed(rng, na, m), random_packed(rng, nb, m)
    np.testing.assert_array_equal(hamming_distances(A, B), hamming_distances(B, A).T)
    np.testing.assert_array_equal(np.diag(hamming_distances(A, A)), 0)
    np.testing.assert_array_equal(hamming_distances(A, B), naive_hamming(A, B))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), m=st.integers(2, 200), na=st.integers(1, 5), nb=st.integers(1, 5))
def test_khot_identity_distance_is_twice_k_minus_overlap(data, m, na, nb):
    k = data.draw(st.integers(1, m), label="k")
    rows = st.lists(st.integers(0, m - 1), min_size=k, max_size=k, unique=True).map(sorted)
    Qi = np.array(data.draw(st.lists(rows, min_size=na, max_size=na), label="Q"), dtype=np.int64)
    Di = np.array(data.draw(st.lists(rows, min_size=nb, max_size=nb), label="DB"), dtype=np.int64)
    D = hamming_distances(indices_to_packed(Qi, m), indices_to_packed(Di, m))
    overlap = np.array([[len(set(q) & set(d)) for d in Di] for q in Qi])
    np.testing.assert_array_equal(D, 2 * (k - overlap))
    np.testing.assert_array_equal(overlap_from_indices(Qi, Di, m), overlap)


def test_overlap_from_indices_worked_example():
    Q = np.array([[0, 3, 5]])
    DB = np.array([[0, 1, 5], [2, 4, 6], [0, 3, 5]])
    np.testing.assert_array_equal(overlap_from_indices(Q, DB, 7), [[2, 0, 3]])
    # d = 2 (k - overlap) = 2, 6, 0
    np.testing.assert_array_equal(
        hamming_distances(indices_to_packed(Q, 7), indices_to_packed(DB, 7)), [[2, 6, 0]]
    )


# ------------------------------------------------------------------------------------------------
# top-R and ranking
# ------------------------------------------------------------------------------------------------


def test_topk_tie_order_worked_example():
    # 4 units; query 0000. DB distances: [2, 0, 2, 1, 2, 0]
    DB = pack_bits(
        np.array(
            [[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=bool
        )
    )
    Q = pack_bits(np.zeros((1, 4), dtype=bool))
    # ascending distance, ties by lower index: 1 (0), 5 (0), 3 (1), 0 (2), 2 (2), 4 (2)
    i, d = hamming_search(Q, DB, 4)
    assert d.dtype == np.int32 and i.dtype == np.int64
    np.testing.assert_array_equal(i, [[1, 5, 3, 0]])  # R=4 cuts the distance-2 group: keep index 0
    np.testing.assert_array_equal(d, [[0, 0, 1, 2]])
    np.testing.assert_array_equal(hamming_rank(Q, DB), [[1, 5, 3, 0, 2, 4]])
    i, d = hamming_search(Q, DB, 5)
    np.testing.assert_array_equal(i, [[1, 5, 3, 0, 2]])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 80),
    nq=st.integers(1, 5),
    ndb=st.integers(1, 40),
    data=st.data(),
)
def test_topk_equals_stable_argsort_of_brute_force(seed, m, nq, ndb, data):
    rng = np.random.default_rng(seed)
    p = data.draw(st.sampled_from([0.02, 0.5]), label="p")  # sparse codes force many ties
    Q, DB = random_packed(rng, nq, m, p), random_packed(rng, ndb, m, p)
    R = data.draw(st.integers(1, ndb), label="R")
    chunk = data.draw(st.sampled_from([None, 1, 2]), label="chunk")
    brute = naive_hamming(Q, DB)
    order = np.argsort(brute, axis=1, kind="stable")
    i, d = hamming_search(Q, DB, R, chunk_size=chunk)
    np.testing.assert_array_equal(i, order[:, :R])
    np.testing.assert_array_equal(d, np.take_along_axis(brute, order[:, :R], axis=1))
    np.testing.assert_array_equal(hamming_rank(Q, DB, chunk_size=chunk), order)


def test_rank_distances_general_values():
    # float distances, negative values and a large integer range take the comparison-sort path
    d = np.array([[0.5, -1.0, 0.5, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0, 1.0]])
    np.testing.assert_array_equal(rank_distances(d), [[1, 4, 0, 2, 3], [4, 0, 1, 2, 3]])
    np.testing.assert_array_equal(rank_distances(d, R=2), [[1, 4], [4, 0]])
    big = np.array([[10**12, -5, 10**12, 7]], dtype=np.int64)
    np.testing.assert_array_equal(rank_distances(big), [[1, 3, 0, 2]])
    small = np.array([[3, 1, 3, 1]], dtype=np.int8)
    np.testing.assert_array_equal(rank_distances(small), [[1, 3, 0, 2]])


# ------------------------------------------------------------------------------------------------
# input errors
# ------------------------------------------------------------------------------------------------


def test_errors():
    P = pack_bits(np.ones((3, 16), dtype=bool))
    with pytest.raises(HashplugError, match="dtype uint8"):
        hamming_distances(P.astype(np.int64), P)
    with pytest.raises(HashplugError, match="dtype uint8"):
        hamming_distances(P, P.astype(bool))
    with pytest.raises(HashplugError, match="2 dimensions"):
        hamming_distances(P[0], P)
    with pytest.raises(HashplugError, match="empty batch"):
        hamming_distances(P[:0], P)
    with pytest.raises(HashplugError, match="empty batch"):
        hamming_search(P, P[:0], 1)
    with pytest.raises(HashplugError, match="0 bytes"):
        hamming_distances(np.zeros((2, 0), np.uint8), np.zeros((2, 0), np.uint8))
    with pytest.raises(HashplugError, match="2 bytes per code but B has 1"):
        hamming_distances(P, P[:, :1])
    with pytest.raises(HashplugError, match="None"):
        hamming_distances(None, P)
    with pytest.raises(HashplugError, match="limit=4 exceeds the 3 database items"):
        hamming_search(P, P, 4)
    with pytest.raises(HashplugError, match="limit must be >= 1"):
        hamming_search(P, P, 0)
    with pytest.raises(HashplugError, match="limit must be a positive int"):
        hamming_search(P, P, 1.5)
    with pytest.raises(HashplugError, match="limit is required"):
        hamming_search(P, P, None)
    # the deprecated 0.1.0 spelling still names its own keyword in its messages
    with pytest.warns(DeprecationWarning), pytest.raises(HashplugError, match="R=4 exceeds the 3 database items"):
        hamming_topk(P, P, 4)
    with pytest.raises(HashplugError, match="chunk_size"):
        hamming_distances(P, P, chunk_size=0)
    with pytest.raises(HashplugError, match="NaN"):
        rank_distances(np.array([[0.0, np.nan]]))
    with pytest.raises(HashplugError, match="strictly ascending"):
        overlap_from_indices(np.array([[2, 1]]), np.array([[0, 1]]), 4)
