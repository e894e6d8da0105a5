"""Exact Hamming top-k kernels of the index (numpy only), dense and sparse, with hashplug's tie rule.

Results are ordered by ascending distance and, among equal distances, by ascending **position** in the
index (the order rows were added); the index maps positions to table row ids afterwards. Both kernels
rank by one int64 key per candidate, ``distance * n + position``, so a partition on the key is exact,
ties included.

Dense (packed codes): the database is kept as uint64 words (n, w); queries are scored in blocks of
database rows (XOR, ``np.bitwise_count``, add per word), each block's best ``limit`` keys merged into a
running top-k. Blocks are spread over ``threads`` Python threads: numpy's ufuncs release the GIL, so the
blocks run in parallel.

Sparse (k active units of m): an inverted index (CSC postings: the rows holding each unit). A query with
active set A touches only the postings of its units, about ``N k^2 / m`` entries instead of ``N m / 8``
bytes; overlaps are counted with ``np.bincount``, and ``d = |a| + |b| - 2 |a & b|``. Rows sharing no unit
with the query are ranked by ``|b|`` then position (precomputed), so the result equals a full scan.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..validation import HashplugError

__all__ = ["words_of", "dense_topk", "build_postings", "sparse_topk", "merge_topk"]

#: Database rows per block of the dense kernel (a (n_queries, block) int32 + uint64 temporary).
DENSE_BLOCK = 32768


def words_of(packed: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (n, nb) as uint64 words (n, ceil(nb / 8)), zero-padded, C-contiguous."""
    n, nb = packed.shape
    w = -(-nb // 8)
    if nb == 8 * w and packed.flags.c_contiguous:
        return packed.view(np.uint64)
    out = np.zeros((n, 8 * w), dtype=np.uint8)
    out[:, :nb] = packed
    return out.view(np.uint64)


def merge_topk(keys: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` smallest keys of every row (n_q, c), sorted ascending (all of them when c <= limit)."""
    c = keys.shape[1]
    if c > limit:
        part = np.argpartition(keys, limit - 1, axis=1)[:, :limit]
        keys = np.take_along_axis(keys, part, axis=1)
    return np.sort(keys, axis=1)


def _dense_block(qw: np.ndarray, dbw: np.ndarray, start: int, n_total: int, limit: int) -> np.ndarray:
    """Top-``limit`` keys (distance * n_total + position) of queries ``qw`` (nq, w) against ``dbw`` (b, w)."""
    nq, w = qw.shape
    b = dbw.shape[0]
    dist = np.zeros((nq, b), dtype=np.int64)
    tmp = np.empty((nq, b), dtype=np.uint64)
    cnt = np.empty((nq, b), dtype=np.uint8)
    for j in range(w):
        np.bitwise_xor(qw[:, j, None], dbw[None, :, j], out=tmp)
        np.bitwise_count(tmp, out=cnt)
        np.add(dist, cnt, out=dist, casting="unsafe")
    dist *= n_total
    dist += np.arange(start, start + b, dtype=np.int64)
    return merge_topk(dist, limit)


def dense_topk(
    queries: np.ndarray, db_words: np.ndarray, limit: int, *, threads: int = 1, block: int = DENSE_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``limit`` database positions and Hamming distances of packed ``queries`` (nq, nb).

    Parameters
    ----------
    queries : ndarray of shape (nq, nb), dtype=uint8
    db_words : ndarray of shape (n, w), dtype=uint64
        The database as :func:`words_of`.
    limit : int
        Results per query (capped at n).
    threads : int
        Python threads over database blocks (numpy releases the GIL in the ufuncs).
    block : int
        Database rows per block.

    Returns
    -------
    positions : ndarray of shape (nq, min(limit, n)), dtype=int64
    distances : ndarray of shape (nq, min(limit, n)), dtype=int32
        Ascending distance, ties by ascending position.
    """
    n = db_words.shape[0]
    qw = words_of(queries)
    if qw.shape[1] != db_words.shape[1]:
        raise HashplugError(
            f"queries have {queries.shape[1]} bytes per code but the index holds {8 * db_words.shape[1]}-byte words "
            "of another code length; encode the queries with the model the index was built from."
        )
    lim = min(int(limit), n)
    nq = qw.shape[0]
    if n == 0 or lim == 0:
        return np.zeros((nq, 0), np.int64), np.zeros((nq, 0), np.int32)
    n_total = max(n, 1)
    starts = list(range(0, n, int(block)))

    def run(s: int) -> np.ndarray:
        return _dense_block(qw, db_words[s : s + block], s, n_total, lim)

    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=int(threads)) as ex:
            parts = list(ex.map(run, starts))
    else:
        parts = [run(s) for s in starts]
    keys = merge_topk(np.concatenate(parts, axis=1), lim) if len(parts) > 1 else parts[0]
    return keys % n_total, (keys // n_total).astype(np.int32)


def build_postings(offsets: np.ndarray, values: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC postings of CSR k-hot codes: ``(unit_offsets (m + 1,) int64, rows (nnz,) int32, lengths (n,) int32)``.

    Row ``i`` holds units ``values[offsets[i]:offsets[i + 1]]`` (unique, in [0, m)); the postings of unit u are
    ``rows[unit_offsets[u]:unit_offsets[u + 1]]``, ascending.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    n = offsets.shape[0] - 1
    if values.size and (values.min() < 0 or values.max() >= m):
        raise HashplugError(f"active units must lie in [0, m={m}); got [{values.min()}, {values.max()}].")
    lengths = np.diff(offsets).astype(np.int32)
    row_of = np.repeat(np.arange(n, dtype=np.int32), lengths)
    order = np.argsort(values, kind="stable")  # by unit, rows ascending within a unit
    unit_offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(values, minlength=m), out=unit_offsets[1:])
    return unit_offsets, np.ascontiguousarray(row_of[order]), lengths


def sparse_topk(
    query_units: list[np.ndarray], unit_offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray, limit: int,
    *, zero_order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``limit`` positions and distances ``|a| + |b| - 2 |a & b|`` of sparse queries.

    Parameters
    ----------
    query_units : list of ndarray
        Each query's active units (unique).
    unit_offsets, rows, lengths
        From :func:`build_postings`.
    limit : int
    zero_order : ndarray of shape (n,), int64, or None
        Positions sorted by (|b|, position): the order of the rows that share no unit with a query
        (computed when None).

    Returns
    -------
    positions, distances : ndarray of shape (nq, min(limit, n)), int64 / int32
    """
    n = lengths.shape[0]
    lim = min(int(limit), n)
    nq = len(query_units)
    pos_out = np.zeros((nq, lim), dtype=np.int64)
    dist_out = np.zeros((nq, lim), dtype=np.int32)
    if lim == 0:
        return pos_out, dist_out
    if zero_order is None:
        zero_order = np.lexsort((np.arange(n), lengths))
    n_total = np.int64(max(n, 1))
    seen = np.zeros(n, dtype=bool)  # reused: marks one query's candidates
    for qi, units in enumerate(query_units):
        units = np.asarray(units, dtype=np.int64)
        a = int(units.size)
        parts = [rows[unit_offsets[u] : unit_offsets[u + 1]] for u in units]
        hit = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        if hit.size:
            cand, overlap = np.unique(hit, return_counts=True)
            d = lengths[cand].astype(np.int64) + a - 2 * overlap.astype(np.int64)
            keys = merge_topk((d * n_total + cand)[None, :], lim)[0]
            seen[cand] = True
        else:
            cand = np.zeros(0, dtype=np.int64)
            keys = np.zeros(0, dtype=np.int64)
        # Rows sharing no unit sit at |b| + |a|; zero_order lists them by that key, ascending. Take them while
        # they beat the current lim-th key (or while fewer than lim results exist); with equal code lengths
        # they never beat a candidate, and the loop stops at once.
        worst = keys[lim - 1] if keys.size >= lim else np.iinfo(np.int64).max
        extra: list[int] = []
        for p in zero_order:
            k0 = (int(lengths[p]) + a) * int(n_total) + int(p)
            if k0 >= worst or len(extra) >= lim:
                break
            if not seen[p]:
                extra.append(k0)
        if extra:
            keys = np.sort(np.concatenate([keys, np.array(extra, dtype=np.int64)]))[:lim]
        if cand.size:
            seen[cand] = False
        pos_out[qi] = keys % n_total
        dist_out[qi] = (keys // n_total).astype(np.int32)
    return pos_out, dist_out
