"""The exact index kernels equal a brute-force scan, ties included (hypothesis, adversarial codes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashplug.codes import indices_to_packed, pack_bits, unpack_bits
from hashplug.hamming import hamming_distances
from hashplug.index import build_postings, dense_topk, sparse_topk, words_of
from hashplug.validation import HashplugError

sys.path.insert(0, str(Path(__file__).parent))
from _index_helpers import kernel_settings  # noqa: E402


def brute(Q: np.ndarray, DB: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    D = hamming_distances(Q, DB)
    order = np.argsort(D, axis=1, kind="stable")[:, :limit]  # ties: lower position first
    return order, np.take_along_axis(D, order, axis=1)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300), m=st.sampled_from([1, 7, 8, 64, 65, 130]), nq=st.integers(1, 5),
    limit=st.integers(1, 40), density=st.sampled_from([0.0, 0.02, 0.5, 1.0]), seed=st.integers(0, 10**6),
    block=st.sampled_from([1, 7, 64, 32768]), threads=st.sampled_from([1, 2]),
    backend=st.sampled_from(["numpy", "auto"]),
)
def test_dense_topk_equals_brute_force(n, m, nq, limit, density, seed, block, threads, backend):
    rng = np.random.default_rng(seed)
    DB = pack_bits(rng.random((n, m)) < density)
    if n > 3:
        DB[n // 2] = DB[0]  # duplicates
    Q = pack_bits(rng.random((nq, m)) < density)
    pos, dist = dense_topk(Q, words_of(DB), limit, threads=threads, block=block, backend=backend)
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


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30_000), m=st.sampled_from([8, 64, 128, 200, 256, 320, 1024]), nq=st.integers(1, 20),
    limit=st.sampled_from([1, 5, 100, 257, 700]), order=st.sampled_from(["random", "descending", "ascending"]),
    levels=st.sampled_from([2, 5, 1000]), seed=st.integers(0, 10**6), threads=st.sampled_from([1, 2, 3]),
    tile=st.sampled_from([1, 8, 10**9]), chunk=st.sampled_from([7, None]),
)
def test_compiled_scan_equals_brute_force(n, m, nq, limit, order, levels, seed, threads, tile, chunk):
    """The numba kernel (one range per thread, a falling bound, a buffer compacted when full) on databases
    large enough to split, with few distinct distances and rows ordered so the bound falls as late as
    possible (descending distance: every row is taken and the buffer overflows again and again); on both
    paths: row by row per query, and query-tiled (``TILE_QUERIES``: 1 always tiles, 10**9 never; widths of
    1, 2, 4 and other word counts take different unrolled loops)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(seed)
    ones = rng.integers(0, min(levels, m + 1), n)  # each row: its first `ones` bits set
    if order == "descending":
        ones = np.sort(ones)[::-1]
    elif order == "ascending":
        ones = np.sort(ones)
    DB = pack_bits(np.arange(m)[None, :] < ones[:, None])
    Q = pack_bits(rng.random((nq, m)) < 0.02)
    from hashplug.index import kernels

    before = kernels.PARALLEL_WORDS, kernels.TILE_QUERIES
    kernels.PARALLEL_WORDS = 1000  # split small databases over the threads too
    kernels.TILE_QUERIES = tile
    try:
        pos, dist = dense_topk(Q, words_of(DB), limit, threads=threads, query_chunk=chunk, backend="numba")
    finally:
        kernels.PARALLEL_WORDS, kernels.TILE_QUERIES = before
    want_pos, want_dist = brute(Q, DB, limit)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(dist, want_dist)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6000), m=st.sampled_from([8, 30, 64, 100, 128]), nq=st.integers(1, 6),
    limit=st.sampled_from([1, 3, 10, 100, 5000]), density=st.sampled_from([0.02, 0.2, 0.5]),
    dup=st.booleans(), near=st.booleans(), sub_bits=st.sampled_from([None, 3, 7, 16]), seed=st.integers(0, 10**6),
    threads=st.sampled_from([1, 2]),
)
def test_multi_index_hashing_equals_brute_force(n, m, nq, limit, density, dup, near, sub_bits, seed, threads):
    """Multi-index hashing: exact top-k, ties by position, for random, duplicated and near-query databases,
    any substring width (widths differing by one, substrings straddling 64-bit words), limit above n."""
    pytest.importorskip("numba")
    from hashplug.index.mih import MultiIndexTables

    rng = np.random.default_rng(seed)
    bits = rng.random((n, m)) < density
    if dup:
        bits[rng.integers(0, n, n // 2)] = bits[0]  # many copies of one row: ties at every distance
    qbits = rng.random((nq, m)) < density
    if near:
        qbits[0] = bits[n // 2]
    DB, Q = pack_bits(bits), pack_bits(qbits)
    tables = MultiIndexTables(words_of(DB), substring_bits=sub_bits)
    pos, dist = tables.search(words_of(Q), limit, threads=threads)
    want_pos, want_dist = brute(Q, DB, limit)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(dist, want_dist)


def test_multi_index_hashing_covers_only_the_used_bits():
    """Codes of 100 bits in two words: the tables stop at the highest word bit a row sets (104: the last code
    byte is bits 32..39 of word 1), a query setting a bit no row uses is answered by the flat scan, and a
    row beyond a declared nbits is refused."""
    pytest.importorskip("numba")
    from hashplug.index.kernels import _mih_tables
    from hashplug.index.mih import MultiIndexTables

    rng = np.random.default_rng(5)
    DB = pack_bits(rng.random((3000, 100)) < 0.3)
    w = words_of(DB)
    assert _mih_tables(w).nbits == 104
    Q = pack_bits(rng.random((4, 128)) < 0.3)[:, : DB.shape[1] + 3]  # bits 100..127 set in some queries
    Q = np.ascontiguousarray(Q[:, : w.shape[1] * 8])
    assert np.any(unpack_bits(Q, 128)[:, 100:])
    pos, dist = dense_topk(Q, w, 20, backend="mih")
    want_pos, want_dist = dense_topk(Q, w, 20, backend="numpy")
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(dist, want_dist)
    with pytest.raises(HashplugError, match="sets word bit 15, beyond nbits=8"):
        MultiIndexTables(words_of(pack_bits(np.eye(10, dtype=bool))), nbits=8)


@pytest.mark.parametrize("kind", ["all-equal", "all-zero", "ties-at-cut"])
def test_multi_index_hashing_adversarial(kind):
    """A tie bigger than a lane's buffer (every row alike) falls back to the flat scan: still exact."""
    pytest.importorskip("numba")
    n = 5000
    if kind == "all-equal":
        DB = np.full((n, 8), 0xA5, np.uint8)
    elif kind == "all-zero":
        DB = np.zeros((n, 8), np.uint8)
    else:
        DB = np.zeros((n, 8), np.uint8)
        DB[::2, 0] = 1
        DB[1::2, 0] = 3
    Q = np.zeros((2, 8), np.uint8)
    Q[1, 3] = 0xFF
    for limit in (10, 400, n):
        pos, dist = dense_topk(Q, words_of(DB), limit, backend="mih", threads=2)
        want_pos, want_dist = brute(Q, DB, limit)
        np.testing.assert_array_equal(pos, want_pos)
        np.testing.assert_array_equal(dist, want_dist)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 200), m=st.integers(2, 60), k=st.integers(1, 6), nq=st.integers(1, 4),
    limit=st.integers(1, 30), varying=st.booleans(), seed=st.integers(0, 10**6),
    method=st.sampled_from(["auto", "postings", "count", "count-numpy"]), threads=st.sampled_from([1, 2, 3]),
)
def test_sparse_topk_equals_brute_force(n, m, k, nq, limit, varying, seed, method, threads):
    """Every k-hot method (``auto`` picks per query), the compiled counting kernel with its rows split over
    threads, the numpy one; rows of any length, empty rows and queries included."""
    if method == "count":
        pytest.importorskip("numba")
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
    with kernel_settings(compiled=method != "count-numpy", COUNT_PARALLEL_ROWS=16):
        pos, dist = sparse_topk(queries, uo, postings, lengths, limit, method=method.removesuffix("-numpy"),
                                threads=threads)
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


# ------------------------------------------------------------------------------------- HammingIndex
from hashplug.index import HammingIndex  # noqa: E402
from hashplug.validation import ModelFileError  # noqa: E402


def _rows_sparse(rng, n, m, k):
    return [np.sort(rng.choice(m, k, replace=False)) for _ in range(n)]


def _csr(rows):
    return np.concatenate([[0], np.cumsum([len(r) for r in rows])]), np.concatenate(rows)


@pytest.mark.parametrize(("layout", "backend"), [("packed", "auto"), ("packed", "numpy"), ("packed", "mih"),
                                                  ("indices", "auto")])
def test_index_add_delete_search_equals_brute_force_by_row_id(layout, backend, tmp_path):
    if backend == "mih":
        pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    m, k = 96, 6
    rows = _rows_sparse(rng, 300, m, k)
    packed = indices_to_packed(np.stack(rows), m)
    ids = rng.permutation(10_000)[:300].astype(np.int64)  # arbitrary row ids
    idx = HammingIndex(layout, m, backend=backend)
    data = packed if layout == "packed" else _csr(rows)
    first = (packed[:200] if layout == "packed" else _csr(rows[:200]))
    idx.add(first, ids[:200])
    rest = (packed[200:] if layout == "packed" else _csr(rows[200:]))
    idx.add(rest, ids[200:])
    dropped = ids[[3, 50, 250]]
    assert idx.delete(dropped) == 3 and idx.delete([-5]) == 0
    keep = ~np.isin(ids, dropped)
    Q = indices_to_packed(np.stack(_rows_sparse(rng, 4, m, k)), m)
    got_ids, got_d = idx.search(Q, 25)
    want_pos, want_d = brute(Q, packed[keep], 25)
    np.testing.assert_array_equal(got_ids, ids[keep][want_pos])
    np.testing.assert_array_equal(got_d, want_d)
    # prefilter: only allowed rows
    allowed = ids[keep][::3]
    got_ids, got_d = idx.search(Q, 10, allowed=allowed)
    sel = np.isin(ids, allowed) & keep
    want_pos, want_d = brute(Q, packed[sel], 10)
    np.testing.assert_array_equal(got_ids, ids[sel][want_pos])
    # save / load round trip, then corruption is caught
    idx.table_version, idx.model_sha256 = 7, "ab" * 32
    loaded = HammingIndex.load(idx.save(tmp_path / "ix"), backend=backend)
    assert (len(loaded), loaded.table_version, loaded.model_sha256) == (len(idx), 7, "ab" * 32)
    np.testing.assert_array_equal(loaded.search(Q, 25)[0], idx.search(Q, 25)[0])
    arrays_file = tmp_path / "ix" / HammingIndex.read_manifest(tmp_path / "ix")["arrays_file"]
    raw = bytearray(arrays_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    arrays_file.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="rebuild the index"):
        HammingIndex.load(tmp_path / "ix")
    with pytest.raises(ModelFileError, match="holds no hashplug index"):
        HammingIndex.load(tmp_path / "nothing")
    del data


def test_index_memory_is_close_to_the_raw_codes():
    rng = np.random.default_rng(1)
    idx = HammingIndex("packed", 256)
    codes = rng.integers(0, 256, (10_000, 32), dtype=np.uint8)
    idx.add(codes, np.arange(10_000))
    assert idx.nbytes <= 1.25 * (codes.nbytes + 8 * 10_000)  # words = raw bytes; plus the int64 row ids
    with pytest.raises(HashplugError, match="unique and not already in the index"):
        idx.add(codes[:2], [0, 1])
    with pytest.raises(HashplugError, match=r"packed codes must be uint8 of shape \(n, 32\)"):
        idx.add(codes[:, :8], [10**6])


def test_khot_index_memory_is_close_to_the_raw_indices():
    """k-hot rows are held once, as postings (4 bytes per active unit) plus a 2-byte length: at most 1.2x the
    raw int32 indices, after adds, a search (the merge) and a delete; the row-id runs add 16 bytes per run."""
    rng = np.random.default_rng(2)
    m, k, n = 4096, 16, 20_000
    rows = _rows_sparse(rng, n, m, k)
    idx = HammingIndex("indices", m)
    idx.add(_csr(rows[:12_000]), np.arange(12_000))
    idx.add(_csr(rows[12_000:]), np.arange(12_000, n))
    idx.search([rows[5]], 10)
    idx.delete(np.arange(0, n, 10))
    raw = 4 * k * len(idx)
    assert idx.nbytes <= 1.2 * raw, (idx.nbytes, raw)
    with pytest.raises(HashplugError, match=r"row 0 of this add \(row id 1000000\) lists active unit 5 twice"):
        idx.add((np.array([0, 3]), np.array([5, 9, 5])), [10**6])
    with pytest.raises(HashplugError, match=r"row 1 of this add \(row id 1000001\) lists active unit 7 twice"):
        idx.add((np.array([0, 2, 5]), np.array([1, 2, 7, 8, 7])), [10**6, 10**6 + 1])  # uneven lengths
    assert len(idx) == n - n // 10  # refused adds leave the index as it was


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "delete", "search"]), st.integers(0, 10**6)), min_size=1,
                    max_size=8), m=st.sampled_from([20, 64, 300]), k=st.integers(1, 5), varying=st.booleans())
def test_khot_index_under_adds_and_deletes_equals_brute_force(ops, m, k, varying):
    """Any sequence of adds (waiting to be merged), deletes and searches keeps the postings exact."""
    idx = HammingIndex("indices", m)
    held: dict[int, np.ndarray] = {}  # row id -> units, in insertion order
    next_id = 0
    for op, seed in ops:
        rng = np.random.default_rng(seed)
        if op == "add":
            cnt = int(rng.integers(1, 40))
            rows = [np.sort(rng.choice(m, int(rng.integers(0, k + 1)) if varying else min(k, m), replace=False))
                    for _ in range(cnt)]
            ids = np.arange(next_id, next_id + cnt) * 7 + 3
            next_id += cnt
            idx.add(_csr(rows), ids)
            held.update(zip(ids.tolist(), rows))
        elif op == "delete" and held:
            gone = rng.choice(list(held), size=min(len(held), int(rng.integers(1, 10))), replace=False)
            assert idx.delete(gone) == len(gone)
            for g in gone:
                del held[int(g)]
        elif held:
            q = np.sort(rng.choice(m, min(k, m), replace=False))
            ids = np.array(list(held))
            bits = np.zeros((len(held), m), bool)
            for i, r in enumerate(held.values()):
                bits[i, r] = True
            qb = np.zeros((1, m), bool)
            qb[0, q] = True
            want_pos, want_d = brute(pack_bits(qb), pack_bits(bits), 15)
            got_ids, got_d = idx.search([q], 15)
            np.testing.assert_array_equal(got_ids[0], ids[want_pos[0]])
            np.testing.assert_array_equal(got_d[0], want_d[0])
    assert len(idx) == len(held)


def test_khot_index_saved_before_the_postings_layout_still_loads(tmp_path):
    """An index saved with CSR codes (offsets / values, before this layout) loads and searches the same."""
    import json

    from hashplug._files import sha256_arrays

    rng = np.random.default_rng(4)
    rows = _rows_sparse(rng, 500, 128, 6)
    offsets, values = _csr(rows)
    idx = HammingIndex("indices", 128)
    idx.add((offsets, values), np.arange(500))
    folder = idx.save(tmp_path / "new")
    arrays = {**idx._ids.arrays(), "offsets": offsets.astype(np.int64), "values": values.astype(np.int32)}
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / "index.npz", **arrays)
    meta = json.loads((folder / "index.json").read_text())
    meta["arrays_sha256"] = sha256_arrays(arrays)
    meta["format"] = "hashplug-index/1"  # the first format: index.npz + index.json
    del meta["arrays_file"], meta["arrays_bytes"], meta["table"]
    (old / "index.json").write_text(json.dumps(meta))
    q = [rows[3], rows[77]]
    a, b = HammingIndex.load(folder).search(q, 20), HammingIndex.load(old).search(q, 20)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_dense_threads_split_the_database_exactly(monkeypatch):
    """Ranges over threads: results that straddle every range boundary (limits up to the whole database)."""
    from hashplug.index import kernels

    monkeypatch.setattr(kernels, "PARALLEL_WORDS", 1000)  # split this small database over the threads too
    rng = np.random.default_rng(3)
    DB = rng.integers(0, 4, (20_000, 2), dtype=np.uint8)  # few distinct distances: ties everywhere
    Q = rng.integers(0, 4, (5, 2), dtype=np.uint8)
    backends = ["numpy"] + (["numba"] if kernels.kernels_available() else [])
    for limit in (300, 9_000, 20_000):
        want_pos, want_dist = brute(Q, DB, limit)
        for threads in (1, 2, 3):
            for backend in backends:
                for tile in (1, 10**9):  # the compiled kernel's two paths: query-tiled and row by row
                    monkeypatch.setattr(kernels, "TILE_QUERIES", tile)
                    pos, dist = dense_topk(Q, words_of(DB), limit, threads=threads, block=1000, query_chunk=2,
                                           backend=backend)
                    np.testing.assert_array_equal(pos, want_pos)
                    np.testing.assert_array_equal(dist, want_dist)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**40), min_size=0, max_size=60, unique=True), st.integers(0, 5))
def test_row_id_runs_round_trip(ids, extra_run):
    from hashplug.index.core import RowIdRuns

    a = np.asarray(ids + list(range(10**6, 10**6 + extra_run * 7)), dtype=np.int64)
    r = RowIdRuns(a)
    np.testing.assert_array_equal(r.to_array(), a)
    if a.size:
        pos = np.random.default_rng(0).integers(0, a.size, (3, 4))
        np.testing.assert_array_equal(r.take(pos), a[pos])
    back = RowIdRuns.from_arrays(r.starts, r.run_pos, r.n)
    np.testing.assert_array_equal(back.to_array(), a)
    for runs in (r, back):  # the run lengths, computed once and read-only
        np.testing.assert_array_equal(runs.lengths(), np.diff(np.append(runs.run_pos, runs.n)))
        assert runs.lengths() is runs.lengths() and not runs.lengths().flags.writeable


def _runs_of(ranges: list[tuple[int, int]]) -> np.ndarray:
    return np.concatenate([np.arange(s, s + n) for s, n in ranges]).astype(np.int64) if ranges else \
        np.zeros(0, np.int64)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 6)), max_size=6),
       st.lists(st.tuples(st.integers(0, 60), st.integers(1, 6)), max_size=6))
def test_row_id_runs_disjoint_and_concat_agree_with_the_ids(a_ranges, b_ranges):
    """``disjoint`` (intervals, O(runs log runs)) says what ``np.unique`` says of the materialised ids, and
    ``concat`` holds the ids of both in order, a run continued across the join merged."""
    from hashplug.index.core import RowIdRuns

    a, b = _runs_of(a_ranges), _runs_of(b_ranges)
    ra, rb = RowIdRuns(a), RowIdRuns(b)
    both = np.concatenate([a, b])
    assert ra.disjoint() == (np.unique(a).size == a.size)
    assert ra.disjoint(rb) == (np.unique(both).size == both.size)
    joined = ra.concat(rb)
    np.testing.assert_array_equal(joined.to_array(), both)
    assert joined.n_runs == RowIdRuns(both).n_runs  # no split run where the ids continue


@pytest.mark.parametrize("layout", ["packed", "indices"])
def test_index_add_by_runs_and_keep_by_position_equal_add_and_delete_by_id(layout):
    """Ids given as runs are checked and joined without materialising them; the same rows, the same
    answers as ids given as an array; an overlapping run is refused and changes nothing; ``keep`` drops by
    position what ``delete`` drops by id."""
    from hashplug.index.core import RowIdRuns

    rng = np.random.default_rng(3)
    m, n = 24, 300
    bits = rng.random((2 * n, m)) < 0.3
    ids = np.concatenate([np.arange(n) + (5 << 32), np.arange(n) + (9 << 32)]).astype(np.int64)

    def codes(sl: slice):
        if layout == "packed":
            return pack_bits(bits[sl])
        rows = [np.flatnonzero(r) for r in bits[sl]]
        return np.concatenate([[0], np.cumsum([len(r) for r in rows])]), np.concatenate(rows)

    by_runs, by_ids = HammingIndex(layout, m), HammingIndex(layout, m)
    for sl in (slice(0, n), slice(n, 2 * n)):
        by_runs.add(codes(sl), RowIdRuns(ids[sl]))
        by_ids.add(codes(sl), ids[sl])
    assert by_runs.id_runs.n_runs == 2
    with pytest.raises(HashplugError, match="unique and not already in the index"):
        by_runs.add(codes(slice(0, 3)), RowIdRuns(ids[n - 1 : n + 2]))  # one id held already
    assert len(by_runs) == 2 * n
    q = pack_bits(bits[:5])
    np.testing.assert_array_equal(by_runs.row_ids, by_ids.row_ids)
    for a, b in zip(by_runs.search(q, limit=20), by_ids.search(q, limit=20)):
        np.testing.assert_array_equal(a, b)
    mask = rng.random(2 * n) < 0.7
    assert by_runs.keep(mask) == int((~mask).sum()) == by_ids.delete(ids[~mask])
    np.testing.assert_array_equal(by_runs.row_ids, ids[mask])
    for a, b in zip(by_runs.search(q, limit=20), by_ids.search(q, limit=20)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HashplugError, match="bool array of shape"):
        by_runs.keep(mask)  # the old length


def test_index_memory_of_64_bit_codes_stays_near_the_code_bytes(tmp_path):
    """LanceDB row ids come in runs (one per fragment): stored as runs, they cost next to nothing."""
    from hashplug.index.core import HammingIndex

    n = 100_000
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    ids = np.concatenate([np.arange(n // 2), (1 << 32) + np.arange(n - n // 2)])  # two fragments
    idx = HammingIndex("packed", 64)
    idx.add(codes, ids)
    assert idx.nbytes <= 1.2 * codes.nbytes
    idx.delete(ids[::1000])  # holes split the runs: still small
    assert idx.nbytes <= 1.2 * codes.nbytes and len(idx) == n - 100
    got_ids, dist = idx.search(codes[1:2], 3)
    assert got_ids[0, 0] == ids[1] and dist[0, 0] == 0
    back = HammingIndex.load(idx.save(tmp_path / "ix"))
    np.testing.assert_array_equal(back.row_ids, idx.row_ids)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.sampled_from([8, 64, 128, 200]), st.integers(0, 2**31 - 1),
       st.booleans())
def test_faiss_backend_equals_brute_force_including_ties(n, limit, m, seed, coarse):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(seed)
    # coarse codes: few distinct rows, so many ties sit at the cut
    base = rng.integers(0, 2, (4 if coarse else n, m)).astype(np.uint8)
    bits = base[rng.integers(0, base.shape[0], n)] if coarse else base
    db = pack_bits(bits.astype(bool))
    q = pack_bits(rng.integers(0, 2, (3, m)).astype(bool))
    pos, dist = dense_topk(q, words_of(db), limit, backend="faiss", block=64)
    D = hamming_distances(q, db)
    for i in range(3):
        order = np.lexsort((np.arange(n), D[i]))[: min(limit, n)]
        np.testing.assert_array_equal(pos[i], order)
        np.testing.assert_array_equal(dist[i], D[i][order])


def test_faiss_tie_repair_restores_the_position_order(monkeypatch):
    """FAISS does not promise an order among equal distances: an index that breaks ties at random (as a
    multi-threaded or blocked FAISS may) still gives the exact result through the range-search repair."""
    faiss = pytest.importorskip("faiss")
    from hashplug.index import kernels

    rng = np.random.default_rng(1)
    db = np.zeros((3000, 8), np.uint8)
    db[:, 0] = rng.integers(0, 4, 3000).astype(np.uint8)  # distances 0, 1, 2: huge ties at every cut
    real = faiss.IndexBinaryFlat(64)
    real.add(db)

    class Shuffling:
        def search(self, q, k):
            D, ids = real.search(q, db.shape[0])
            for r in range(D.shape[0]):  # shuffle within each distance, then keep k
                order = np.lexsort((rng.random(D.shape[1]), D[r]))
                D[r], ids[r] = D[r][order], ids[r][order]
            return D[:, :k], ids[:, :k]

        def range_search(self, q, radius):
            return real.range_search(q, radius)

    monkeypatch.setattr(kernels, "_faiss_index", lambda words: Shuffling())
    q = np.zeros((3, 8), np.uint8)
    q[1, 0], q[2, 0] = 1, 3
    for limit in (1, 50, 777):
        pos, dist = dense_topk(q, words_of(db), limit, backend="faiss")
        want_pos, want_dist = brute(q, db, limit)
        np.testing.assert_array_equal(pos, want_pos)
        np.testing.assert_array_equal(dist, want_dist)


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(HashplugError, match=r"backend must be one of \['auto', 'numpy', 'numba', 'faiss', 'mih'\]"):
        HammingIndex("packed", 64, backend="simd")
    with pytest.raises(HashplugError, match="backend must be one of"):
        dense_topk(np.zeros((1, 8), np.uint8), np.zeros((3, 1), np.uint64), 2, backend="simd")


def test_every_compiled_kernel_is_defined_at_module_level():
    """numba's disk cache never serves a jitted closure (its key holds the cells, and a jitted function pickles
    with a per-process uuid): a kernel defined inside a function compiles again in every process (5 s before
    the first search, until 0.12). Every ``@njit`` / ``@jit`` of the package is a module-level function."""
    import ast

    root = Path(__file__).resolve().parents[1]
    nested = []
    for f in [*(root / "hashplug").rglob("*.py"), *(root / "integrations").rglob("*.py"), *(root / "export").rglob("*.py")]:
        text = f.read_text()
        if "jit" not in text and "vectorize" not in text:
            continue
        tree = ast.parse(text)
        for parent in ast.walk(tree):
            if not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(parent):
                if node is parent or not isinstance(node, ast.FunctionDef):
                    continue
                names = {ast.unparse(d).split("(")[0].split(".")[-1] for d in node.decorator_list}
                if names & {"njit", "jit", "vectorize", "guvectorize"}:
                    nested.append(f"{f.relative_to(root)}:{node.lineno} {node.name} (inside {parent.name})")
    assert not nested, f"jitted functions defined inside functions (never cached): {nested}"


def test_a_second_process_takes_the_compiled_kernels_from_the_cache(tmp_path):
    """The k-hot postings fill, compiled in one process, is loaded from numba's cache in the next (a miss there
    would mean every process compiles again)."""
    pytest.importorskip("numba")
    import json
    import os
    import subprocess

    code = (
        "import json, numpy as np\n"
        "from hashplug.index import HammingIndex\n"
        "from hashplug.index import _jit\n"
        "idx = HammingIndex('indices', 64)\n"
        "rows = (np.arange(0, 41, 4), (np.arange(40) * 7 % 64).reshape(10, 4))\n"
        "idx.add((rows[0], np.sort(rows[1], axis=1).ravel()), np.arange(10))\n"
        "s = _jit.fill_postings.stats\n"
        "print(json.dumps({'hits': sum(s.cache_hits.values()), 'misses': sum(s.cache_misses.values())}))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0]["misses"] >= 1, runs  # compiled (and written to the cache) in the first process
    assert runs[1] == {"hits": runs[0]["misses"], "misses": 0}, runs  # found there by the second
