"""The exact index kernels equal a brute-force scan, ties included (hypothesis, adversarial codes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.codes import indices_to_packed, pack_bits
from hashplug.hamming import hamming_distances
from hashplug.index import build_postings, dense_topk, sparse_topk, words_of


def brute(Q: np.ndarray, DB: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    D = hamming_distances(Q, DB)
    order = np.argsort(D, axis=1, kind="stable")[:, :limit]  # ties: lower position first
    return order, np.take_along_axis(D, order, axis=1)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300), m=st.sampled_from([1, 7, 8, 64, 65, 130]), nq=st.integers(1, 5),
    limit=st.integers(1, 40), density=st.sampled_from([0.0, 0.02, 0.5, 1.0]), seed=st.integers(0, 10**6),
    block=st.sampled_from([1, 7, 64, 32768]), threads=st.sampled_from([1, 2]),
)
def test_dense_topk_equals_brute_force(n, m, nq, limit, density, seed, block, threads):
    rng = np.random.default_rng(seed)
    DB = pack_bits(rng.random((n, m)) < density)
    if n > 3:
        DB[n // 2] = DB[0]  # duplicates
    Q = pack_bits(rng.random((nq, m)) < density)
    pos, dist = dense_topk(Q, words_of(DB), limit, threads=threads, block=block)
    want_pos, want_dist = brute(Q, DB, limit)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(dist, want_dist)


@pytest.mark.parametrize("kind", ["all-equal", "all-zero", "ties-at-cut"])
def test_dense_adversarial(kind):
    n, m = 500, 64
    if kind == "all-equal":
        DB = np.full((n, m // 8), 0xA5, np.uint8)
    elif kind == "all-zero":
        DB = np.zeros((n, m // 8), np.uint8)
    else:  # half the rows at distance 1, half at 2: the cut at limit falls inside a tie group
        DB = np.zeros((n, m // 8), np.uint8)
        DB[::2, 0] = 1
        DB[1::2, 0] = 3
    Q = np.zeros((1, m // 8), np.uint8)
    pos, dist = dense_topk(Q, words_of(DB), 10, block=37, threads=2)
    want_pos, want_dist = brute(Q, DB, 10)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(dist, want_dist)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200), m=st.integers(2, 60), k=st.integers(1, 6), nq=st.integers(1, 4),
    limit=st.integers(1, 30), varying=st.booleans(), seed=st.integers(0, 10**6),
)
def test_sparse_topk_equals_brute_force(n, m, k, nq, limit, varying, seed):
    rng = np.random.default_rng(seed)
    k = min(k, m)
    rows = []
    for _ in range(n):
        kk = int(rng.integers(0, k + 1)) if varying else k
        rows.append(np.sort(rng.choice(m, kk, replace=False)))
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    values = np.concatenate(rows) if offsets[-1] else np.zeros(0, np.int64)
    uo, postings, lengths = build_postings(offsets, values, m)
    queries = [np.sort(rng.choice(m, int(rng.integers(0, k + 1)) if varying else k, replace=False)) for _ in range(nq)]
    pos, dist = sparse_topk(queries, uo, postings, lengths, limit)
    DB = np.zeros((n, m), bool)
    for i, r in enumerate(rows):
        DB[i, r] = True
    Qb = np.zeros((nq, m), bool)
    for i, r in enumerate(queries):
        Qb[i, r] = True
    want_pos, want_dist = brute(pack_bits(Qb), pack_bits(DB), limit)
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(pos, want_pos)


def test_sparse_with_duplicates_and_no_overlap():
    m = 50
    codes = np.array([[0, 1, 2, 3]] * 5 + [[10, 11, 12, 13]] * 5)
    uo, postings, lengths = build_postings(np.arange(0, 41, 4), codes.ravel(), m)
    pos, dist = sparse_topk([np.array([0, 1, 2, 3]), np.array([40, 41, 42, 43])], uo, postings, lengths, 7)
    np.testing.assert_array_equal(pos[0], [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(dist[0], [0] * 5 + [8, 8])
    np.testing.assert_array_equal(pos[1], np.arange(7))  # nothing shared: every row at 8, lower first
    want = brute(indices_to_packed(np.array([[0, 1, 2, 3], [40, 41, 42, 43]]), m), indices_to_packed(codes, m), 7)
    np.testing.assert_array_equal(pos, want[0])
