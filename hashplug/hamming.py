"""Exact Hamming distances, top-``limit`` search and ranking over packed binary codes.

Codes are in hashplug's ``packed`` form (see :mod:`hashplug.codes`):
``ndarray of shape (n, ceil(m / 8)), dtype=uint8`` in ``np.packbits`` big bit order with zero padding.
Distances are computed 64 bits at a time: the byte axis is zero-padded to a multiple of 8 bytes, viewed
as ``uint64`` words (:func:`words_of`), XOR-ed and counted with ``np.bitwise_count``
(:func:`popcount_into`, hashplug's one numpy popcount kernel: the index kernels and multi-index hashing
call it too). Work is chunked over the rows of the first argument so the temporaries stay near
``_TEMP_BYTES`` whatever the database size.

**Tie rule** (used everywhere in hashplug, including :mod:`hashplug.metrics`): results are ordered by
ascending distance and, among equal distances, by ascending database index. The order is therefore
deterministic and identical to ``np.argsort(dist, axis=1, kind="stable")`` on the full distance matrix.

For k-hot codes (exactly ``k`` active units per code) ``d(a, b) = 2 (k - |a & b|)``, where ``|a & b|`` is the
number of shared active units (:func:`overlap_from_indices`).

numpy only: the serving side imports this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._deprecation import renamed_kwargs, spelled, warn_renamed
from .codes import check_indices
from .ranking import order_rows, topk_rows
from .validation import HashplugError, check_array, check_int_param

__all__ = [
    "words_of",
    "popcount_into",
    "hamming_distances",
    "hamming_search",
    "hamming_topk",
    "hamming_rank",
    "rank_distances",
    "overlap_from_indices",
]

#: Target size in bytes of one (chunk, n_db) temporary of the ranking / metric loops.
_TEMP_BYTES = 16 * 2**20
#: Target size of the uint64 XOR temporary of the popcount loop (small blocks stay in cache).
_WORD_TEMP_BYTES = 4 * 2**20


def _check_packed_pair(A: Any, B: Any, names: tuple[str, str], owner: str) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for X, name in zip((A, B), names):
        arr = check_array(X, name=name, ndim=2, dtype=None, finite=False, owner=owner)
        if arr.dtype != np.uint8:
            raise HashplugError(
                f"{owner}: {name} must be packed codes of dtype uint8, shape (n, ceil(m / 8)); got dtype "
                f"{arr.dtype}. Pack a boolean (n, m) matrix with hashplug.codes.pack_bits or convert k-hot "
                "indices with hashplug.codes.indices_to_packed."
            )
        if arr.shape[1] == 0:
            raise HashplugError(
                f"{owner}: {name} has 0 bytes per code (shape {arr.shape}); codes need m >= 1 bits."
            )
        out.append(arr)
    a, b = out
    if a.shape[1] != b.shape[1]:
        raise HashplugError(
            f"{owner}: {names[0]} has {a.shape[1]} bytes per code but {names[1]} has {b.shape[1]}; both must be "
            "packed from codes with the same number of units m (ceil(m / 8) bytes each)."
        )
    return a, b


def _check_chunk(chunk_size: Any, owner: str) -> int | None:
    if chunk_size is None:
        return None
    return check_int_param(chunk_size, "chunk_size", owner, 1)


def _auto_chunk(chunk_size: int | None, n_cols: int, bytes_per_item: int = 8) -> int:
    """Rows per chunk so that one (chunk, n_cols) temporary of ``bytes_per_item`` stays near ``_TEMP_BYTES``."""
    if chunk_size is not None:
        return chunk_size
    return max(1, _TEMP_BYTES // max(1, n_cols * bytes_per_item))


def words_of(packed: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (n, nb) as uint64 words (n, ceil(nb / 8)), zero-padded, C-contiguous.

    A view of ``packed`` when ``nb`` is a multiple of 8 and the array is C-contiguous, else a padded copy.
    """
    n, nb = packed.shape
    w = -(-nb // 8)
    if nb == 8 * w and packed.flags.c_contiguous:
        return packed.view(np.uint64)
    out = np.zeros((n, 8 * w), dtype=np.uint8)
    out[:, :nb] = packed
    return out.view(np.uint64)


def popcount_into(
    a: np.ndarray, bT: np.ndarray, out: np.ndarray, *, rows: int | None = None, cols: int | None = None
) -> np.ndarray:
    """Hamming distances of word rows: ``out[i, j] = sum_w popcount(a[i, w] ^ bT[w, j])``. The popcount kernel.

    Computed in blocks of ``rows`` rows of ``a`` by ``cols`` columns of ``bT`` (None: all of them), one 64-bit
    word at a time (XOR into a uint64 block, ``np.bitwise_count``, add into ``out``), so the temporaries are
    one block each and no (rows, cols, w) array is formed.

    Parameters
    ----------
    a : ndarray of shape (c, w), dtype=uint64
        Query words (:func:`words_of`).
    bT : ndarray of shape (w, n), dtype=uint64
        Database words, transposed: ``words_of(db).T`` (a view, read a column block at a time) or its
        C-contiguous copy (each word's row read sequentially).
    out : ndarray of shape (c, n), integer dtype
        Receives the distances (int32, or uint16 for codes of at most 65535 bits).
    rows, cols : int or None
        Block sizes; pick them so a (rows, cols) uint64 block stays in cache.

    Returns
    -------
    out : ndarray of shape (c, n)
    """
    c, w = a.shape
    n = bT.shape[1]
    rstep = max(1, int(rows) if rows is not None else c)
    cstep = max(1, int(cols) if cols is not None else n)
    tmp = np.empty((min(rstep, c), min(cstep, n)), dtype=np.uint64)
    cnt = np.empty(tmp.shape, dtype=np.uint8)
    for rs in range(0, c, rstep):
        re_ = min(rs + rstep, c)
        for cs in range(0, n, cstep):
            ce = min(cs + cstep, n)
            t, k, o = tmp[: re_ - rs, : ce - cs], cnt[: re_ - rs, : ce - cs], out[rs:re_, cs:ce]
            for j in range(w):
                np.bitwise_xor(a[rs:re_, j, None], bT[j, None, cs:ce], out=t)
                np.bitwise_count(t, out=k)
                if j == 0:
                    np.copyto(o, k, casting="unsafe")
                else:
                    np.add(o, k, out=o, casting="unsafe")
    return out


def _distances_words(
    a: np.ndarray, bT: np.ndarray, out: np.ndarray | None = None, block: int | None = None
) -> np.ndarray:
    """Distances between word rows ``a`` (c, w) and transposed database words ``bT`` (w, n_db) -> int32 (c, n_db).

    Blocks of ``block`` rows (None: the (block, n_db) uint64 temporary stays near ``_WORD_TEMP_BYTES``, small
    enough to stay in cache) by every column.
    """
    ndb = bT.shape[1]
    if out is None:
        out = np.empty((a.shape[0], ndb), dtype=np.int32)
    step = block if block is not None else max(1, _WORD_TEMP_BYTES // max(1, 8 * ndb))
    return popcount_into(a, bT, out, rows=step)


def _hamming_chunks(Q: np.ndarray, DB: np.ndarray, chunk_size: int | None):
    """Yield ``(start, stop, dist)`` with dist int32 (stop - start, n_db) for consecutive query chunks.

    ``Q`` and ``DB`` must already be validated packed codes of equal width.
    """
    qw = words_of(Q)
    bT = np.ascontiguousarray(words_of(DB).T)
    step = _auto_chunk(chunk_size, DB.shape[0])
    for s in range(0, Q.shape[0], step):
        e = min(s + step, Q.shape[0])
        yield s, e, _distances_words(qw[s:e], bT)


def hamming_distances(A: Any, B: Any, *, chunk_size: int | None = None) -> np.ndarray:
    """Pairwise Hamming distances between two sets of packed binary codes.

    Parameters
    ----------
    A : ndarray of shape (n_a, n_bytes), dtype=uint8
        Packed codes (``np.packbits`` big bit order, ``n_bytes = ceil(m / 8)``).
    B : ndarray of shape (n_b, n_bytes), dtype=uint8
        Packed codes with the same number of bytes per code.
    chunk_size : int or None, default=None
        Rows of ``A`` processed per block of the popcount loop. None picks it so the (chunk, n_b) uint64
        XOR temporary stays near 4 MB (the fastest setting measured; it keeps the block in cache).

    Returns
    -------
    dist : ndarray of shape (n_a, n_b), dtype=int32
        ``dist[i, j]`` is the number of differing bits between ``A[i]`` and ``B[j]``.

    Raises
    ------
    HashplugError
        If an input is not a non-empty 2-D uint8 array or the byte widths differ.
    """
    owner = "hamming_distances"
    A, B = _check_packed_pair(A, B, ("A", "B"), owner)
    chunk = _check_chunk(chunk_size, owner)
    out = np.empty((A.shape[0], B.shape[0]), dtype=np.int32)
    aw = words_of(A)
    bT = np.ascontiguousarray(words_of(B).T)
    return _distances_words(aw, bT, out=out, block=chunk)


def _check_limit(limit: Any, n_db: int, owner: str, name: str | None = None) -> int:
    """``limit`` (a result count) as an int in [1, n_db]; None means all ``n_db``.

    ``name`` is the parameter's name in messages (default: as the caller spelled it, ``limit`` or ``R``).
    """
    name = name or spelled("limit")
    if limit is None:
        return n_db
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise HashplugError(
            f"{owner}: {name} must be a positive int or None (all {n_db} database items); got {limit!r}."
        )
    limit = int(limit)
    if limit < 1:
        raise HashplugError(f"{owner}: {name} must be >= 1; got {limit}.")
    if limit > n_db:
        raise HashplugError(
            f"{owner}: {name}={limit} exceeds the {n_db} database items; pass {name}=min({name}, {n_db}) or "
            f"{name}=None for all of them."
        )
    return limit


@renamed_kwargs(R="limit")
def rank_distances(dist: Any, limit: int | None = None) -> np.ndarray:
    """Rank database items by a precomputed distance matrix with hashplug's tie rule.

    Parameters
    ----------
    dist : ndarray of shape (n_q, n_db)
        Any real distances; smaller is closer. NaN is rejected.
    limit : int or None, default=None
        Number of leading ranks to return, in [1, n_db]; None returns all ``n_db``. (0.1.0 name: ``R``,
        deprecated.)

    Returns
    -------
    idx : ndarray of shape (n_q, limit), dtype=int64
        Database indices by ascending distance; among equal distances the lower index comes first
        (identical to ``np.argsort(dist, axis=1, kind="stable")[:, :limit]``).
    """
    owner = "rank_distances"
    d = check_array(dist, name="dist", ndim=2, dtype=None, owner=owner)
    if d.shape[1] == 0:
        raise HashplugError(f"{owner}: dist has 0 database columns (shape {d.shape}).")
    limit = _check_limit(limit, d.shape[1], owner)
    return topk_rows(d, limit).astype(np.int64, copy=False)


def hamming_search(
    Q: Any, DB: Any, limit: int, *, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``limit`` nearest database codes of each query by Hamming distance, as ``(ids, distances)``.

    The order of the pair is hashplug's one result order (``HammingIndex.search`` and the LanceDB search
    return the same): see docs/architecture.md, Vocabulary.

    Parameters
    ----------
    Q : ndarray of shape (n_q, n_bytes), dtype=uint8
        Packed query codes.
    DB : ndarray of shape (n_db, n_bytes), dtype=uint8
        Packed database codes.
    limit : int
        Number of neighbours per query, in [1, n_db]. ``limit > n_db`` raises (it is not clipped).
    chunk_size : int or None, default=None
        Queries processed at once (None: automatic, ~16 MB per temporary).

    Returns
    -------
    ids : ndarray of shape (n_q, limit), dtype=int64
        Database indices of the neighbours. **Tie order:** among equal distances the lower database
        index comes first, so the result equals ``np.argsort(D, axis=1, kind="stable")[:, :limit]`` for the
        full distance matrix ``D`` — including at the limit-th boundary, where a group of equal distances
        is cut by keeping its lowest indices.
    distances : ndarray of shape (n_q, limit), dtype=int32
        Hamming distances of the neighbours, ascending along each row.
    """
    return _topk("hamming_search", Q, DB, limit, chunk_size, "limit")


def _topk(owner: str, Q: Any, DB: Any, limit: Any, chunk_size: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    Q, DB = _check_packed_pair(Q, DB, ("Q", "DB"), owner)
    if limit is None:
        raise HashplugError(f"{owner}: {name} is required; use hamming_rank for a full ranking.")
    limit = _check_limit(limit, DB.shape[0], owner, name=name)
    chunk = _check_chunk(chunk_size, owner)
    out_d = np.empty((Q.shape[0], limit), dtype=np.int32)
    out_i = np.empty((Q.shape[0], limit), dtype=np.int64)
    for s, e, D in _hamming_chunks(Q, DB, chunk):
        idx = topk_rows(D, limit)
        out_i[s:e] = idx
        out_d[s:e] = np.take_along_axis(D, idx, axis=1)
    return out_i, out_d


def hamming_topk(
    Q: Any, DB: Any, R: int | None = None, *, chunk_size: int | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated (removed in 0.3.0): :func:`hamming_search`, which returns ``(ids, distances)``.

    Returns the 0.1.0 order ``(dist, idx)``, unchanged, and warns on every call. ``R`` is the 0.1.0 name of
    ``limit``; either may be passed (not both).

    Returns
    -------
    dist : ndarray of shape (n_q, R), dtype=int32
        Hamming distances, ascending along each row.
    idx : ndarray of shape (n_q, R), dtype=int64
        Database indices (ties -> lower index), as :func:`hamming_search`'s ``ids``.
    """
    owner = "hamming_topk"
    warn_renamed("hamming_topk (returns (dist, idx))", "hamming_search (returns (ids, distances))", owner)
    if limit is not None and R is not None:
        raise HashplugError(f"{owner}: got both R (deprecated) and limit; pass only limit.")
    idx, dist = _topk(owner, Q, DB, R if limit is None else limit, chunk_size, "R" if limit is None else "limit")
    return dist, idx


def hamming_rank(Q: Any, DB: Any, *, chunk_size: int | None = None) -> np.ndarray:
    """Full ranking of the database for each query (ascending Hamming distance, ties -> lower index).

    Parameters
    ----------
    Q : ndarray of shape (n_q, n_bytes), dtype=uint8
        Packed query codes.
    DB : ndarray of shape (n_db, n_bytes), dtype=uint8
        Packed database codes.
    chunk_size : int or None, default=None
        Queries processed at once (None: automatic).

    Returns
    -------
    idx : ndarray of shape (n_q, n_db), dtype=int64
        Database indices in rank order (``hamming_search(Q, DB, n_db)[0]``).
    """
    owner = "hamming_rank"
    Q, DB = _check_packed_pair(Q, DB, ("Q", "DB"), owner)
    chunk = _check_chunk(chunk_size, owner)
    out = np.empty((Q.shape[0], DB.shape[0]), dtype=np.int64)
    for s, e, D in _hamming_chunks(Q, DB, chunk):
        out[s:e] = order_rows(D)
    return out


def overlap_from_indices(Q_idx: Any, DB_idx: Any, m: int) -> np.ndarray:
    """Number of shared active units between k-hot codes given as index lists.

    For codes with ``k`` active units each, the Hamming distance is ``2 * (k - overlap)``.

    Parameters
    ----------
    Q_idx : ndarray of shape (n_q, k_q), dtype=int
        Active units per query, strictly ascending in [0, m).
    DB_idx : ndarray of shape (n_db, k_db), dtype=int
        Active units per database item, strictly ascending in [0, m).
    m : int
        Number of hash units.

    Returns
    -------
    overlap : ndarray of shape (n_q, n_db), dtype=int32
        ``|Q_idx[i] & DB_idx[j]|``.
    """
    owner = "overlap_from_indices"
    m = check_int_param(m, "m", owner, 1)
    mats = []
    for X, name in ((Q_idx, "Q_idx"), (DB_idx, "DB_idx")):
        arr = check_array(X, name=name, ndim=2, dtype=None, finite=False, owner=owner)
        idx = check_indices(arr, m, name=name)
        ind = np.zeros((idx.shape[0], m), dtype=np.float32)
        np.put_along_axis(ind, idx, np.float32(1), axis=1)
        mats.append(ind)
    # Counts <= m are exact in float32 as long as m < 2**24.
    return np.rint(mats[0] @ mats[1].T).astype(np.int32)
