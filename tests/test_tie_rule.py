"""One popcount kernel and one row tie rule, and the kernels that must inline them held to them.

:func:`hashplug.hamming.popcount_into` is the numpy popcount every numpy kernel calls; ``hashplug.ranking`` owns
the row rule (smaller distance first, the lower row among equal distances). The compiled (numba) kernels
inline both for speed (``_numba.compiled_popcount64``, keys ``distance * n + position``), so they are checked
here against the numpy kernel and :func:`hashplug.ranking.topk_rows` on inputs full of ties.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.codes import pack_bits
from hashplug.hamming import popcount_into, words_of
from hashplug.index import build_postings, dense_topk, sparse_topk
from hashplug.ranking import order_rows, row_keys, rows_of_keys, smallest_keys, topk_rows, topk_small

sys.path.insert(0, str(Path(__file__).parent))
from _index_helpers import kernel_settings  # noqa: E402


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


#: The dense backends drawn by the property test: those installed. (An ``importorskip`` inside a hypothesis
#: test skipped the whole test at the first example that drew a missing backend, leaving the others untested.)
DENSE_BACKENDS = ["numpy", *(["numba", "numba-tiled", "mih"] if _importable("numba") else []),
                  *(["faiss"] if _importable("faiss") else [])]


def _tied_codes(rng, n, m, levels):
    """n codes of m bits drawn from ``levels`` distinct codes, each with at most one extra flipped bit: many
    rows at equal distances from any query."""
    base = rng.random((levels, m)) < 0.5
    bits = base[rng.integers(0, levels, n)]
    flip = rng.random(n) < 0.3
    bits[flip, rng.integers(0, m, int(flip.sum()))] ^= True
    return pack_bits(bits)


def _rule(Q, DB, limit):
    """The rule from ranking.py on the full distance matrix (bits unpacked: no popcount involved)."""
    qb = np.unpackbits(Q, axis=1).astype(np.int32)
    db = np.unpackbits(DB, axis=1).astype(np.int32)
    D = qb @ (1 - db).T + (1 - qb) @ db.T
    idx = topk_rows(D, min(limit, DB.shape[0]))
    return idx.astype(np.int64), np.take_along_axis(D, idx, axis=1).astype(np.int32)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400), m=st.sampled_from([8, 31, 64, 100, 128, 256, 300]), nq=st.integers(1, 5),
    limit=st.integers(1, 60), levels=st.integers(1, 4), seed=st.integers(0, 2**16),
    backend=st.sampled_from(DENSE_BACKENDS), threads=st.sampled_from([1, 3]),
    chunk=st.sampled_from([2, None]),
)
def test_dense_kernels_follow_the_row_rule_on_ties(n, m, nq, limit, levels, seed, backend, threads, chunk):
    """Every dense kernel, the compiled one on both of its paths: row by row per query, and tiled (each row
    against every query of the chunk in one vectorised loop; forced here by ``TILE_QUERIES = 1``)."""
    rng = np.random.default_rng(seed)
    DB = _tied_codes(rng, n, m, levels)
    Q = np.concatenate([_tied_codes(rng, nq, m, levels), DB[: min(2, n)]])
    # split even these small databases over the threads; "numba-tiled" forces the query-tiled path
    with kernel_settings(PARALLEL_WORDS=64, **({"TILE_QUERIES": 1} if backend == "numba-tiled" else {})):
        pos, dist = dense_topk(Q, words_of(DB), limit, threads=threads, block=37, query_chunk=chunk,
                               backend=backend.removesuffix("-tiled"))
    want_pos, want_dist = _rule(Q, DB, limit)
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(pos, want_pos)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), m=st.sampled_from([16, 40, 96]), k=st.integers(1, 6), limit=st.integers(1, 50),
       varying=st.booleans(), seed=st.integers(0, 2**16),
       method=st.sampled_from(["postings", "count", "count-numpy"]), threads=st.sampled_from([1, 3]))
def test_sparse_kernel_follows_the_row_rule_on_ties(n, m, k, limit, varying, seed, method, threads):
    """Both k-hot methods: candidates from the postings, and counting every row's overlap (compiled, its rows
    split over threads, or numpy's ``bincount`` and histogram selection)."""
    if method == "count":
        pytest.importorskip("numba")
    rng = np.random.default_rng(seed)
    pool = [np.sort(rng.choice(m, k, replace=False)) for _ in range(3)]  # few distinct rows: ties everywhere
    rows = [pool[i][: rng.integers(1, k + 1)] if varying else pool[i] for i in rng.integers(0, 3, n)]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    uo, post, lengths = build_postings(offsets, np.concatenate(rows), m)
    queries = [pool[0], np.sort(rng.choice(m, k, replace=False))]
    with kernel_settings(compiled=method != "count-numpy", COUNT_PARALLEL_ROWS=16):
        pos, dist = sparse_topk(queries, uo, post, lengths, limit, method=method.removesuffix("-numpy"),
                                threads=threads)
    bits = np.zeros((n, m), bool)
    for i, r in enumerate(rows):
        bits[i, r] = True
    qbits = np.zeros((len(queries), m), bool)
    for i, r in enumerate(queries):
        qbits[i, r] = True
    want_pos, want_dist = _rule(pack_bits(qbits), pack_bits(bits), limit)
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(pos, want_pos)


@functools.cache
def _compiled_count_all():
    from numba import njit

    from hashplug.index._numba import compiled_popcount64

    pc = compiled_popcount64()

    @njit
    def count_all(a, b):
        out = np.empty((a.shape[0], b.shape[0]), np.int64)
        for i in range(a.shape[0]):
            for j in range(b.shape[0]):
                out[i, j] = pc(a[i] ^ b[j])
        return out

    return count_all


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.sampled_from([0, 1, 2**63, 2**64 - 1, 0x5555555555555555]) | st.integers(0, 2**64 - 1),
                      min_size=2, max_size=40))
def test_compiled_popcount_equals_the_numpy_kernel(words):
    pytest.importorskip("numba")
    w = np.array(words, dtype=np.uint64)
    a, b = w[: len(w) // 2], w[len(w) // 2 :]
    want = np.array([[bin(int(x) ^ int(y)).count("1") for y in b] for x in a])
    np.testing.assert_array_equal(_compiled_count_all()(a, b), want)
    np.testing.assert_array_equal(popcount_into(a[:, None], b[None, :], np.empty((a.size, b.size), np.int32)), want)


@settings(max_examples=40, deadline=None)
@given(c=st.integers(0, 9), n=st.integers(0, 50), w=st.integers(1, 5), rows=st.none() | st.integers(1, 4),
       cols=st.none() | st.integers(1, 7), seed=st.integers(0, 2**16))
def test_popcount_kernel_blocks_are_invisible(c, n, w, rows, cols, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, (c, w), dtype=np.uint64)
    b = rng.integers(0, 2**64, (n, w), dtype=np.uint64)
    want = np.array([[sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(ar, br)) for br in b] for ar in a],
                    dtype=np.int64).reshape(c, n)
    for bT in (b.T, np.ascontiguousarray(b.T)):
        for dtype in (np.int32, np.uint16):
            got = popcount_into(a, bT, np.full((c, n), 7, dtype), rows=rows, cols=cols)
            np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(d=st.lists(st.integers(0, 6), min_size=1, max_size=80), data=st.data())
def test_row_rule_helpers_are_the_stable_order(d, data):
    d = np.array(d, dtype=np.uint16)
    limit = data.draw(st.integers(1, d.size))
    want = np.argsort(d, kind="stable")[:limit]
    np.testing.assert_array_equal(order_rows(d)[:limit], want)
    rows, vals = topk_small(d, limit, 6)
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_array_equal(vals, d[want])
    keys = row_keys(d.astype(np.int64), np.arange(d.size, dtype=np.int64), d.size)
    kr, kd = rows_of_keys(smallest_keys(keys[None, :], limit)[0], d.size)
    np.testing.assert_array_equal(kr, want)
    np.testing.assert_array_equal(kd, d[want])
    assert row_keys(3, 5, 10) == 35 and isinstance(row_keys(3, 5, 10), int)
