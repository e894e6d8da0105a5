"""Top-k and ranking with hashplug's two tie rules, in one place (numpy only).

Units (the k-hot head, winner-take-all):
    the ``k`` largest scores win; **among equal scores the lower unit index wins**, exactly as ONNX ``TopK``
    orders equal values. :func:`topk_mask`, :func:`topk_units`, :func:`ranked_units`.
Rows (search results, Hamming ranks):
    smaller distance first; **among equal distances the lower row (database) index comes first**, i.e. a
    stable sort. :func:`order_rows`, :func:`topk_rows`; for the index kernels, which hold one row's small
    integer distances or candidate lists: :func:`topk_small`, and the rule as one sortable integer per
    (distance, row), :func:`row_keys` / :func:`rows_of_keys` with :func:`smallest_keys`.

Everything that picks winners or orders results (the graph heads, :mod:`hashplug.hamming`,
:mod:`hashplug.metrics`, the index kernels, the benchmarks and the LanceDB integration) calls these, so the
rules cannot drift. The compiled (numba) kernels of :mod:`hashplug.index` write the row rule inline, as
:func:`row_keys`; ``tests/test_tie_rule.py`` holds them to this module's rule on ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import HashplugError

__all__ = [
    "topk_mask",
    "topk_units",
    "ranked_units",
    "order_rows",
    "topk_rows",
    "topk_small",
    "row_keys",
    "rows_of_keys",
    "smallest_keys",
]


# ---------------------------------------------------------------------------------------------------- units
def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask (n, m) of the k largest scores per row; ties go to the lower unit index.

    Runs in O(m) per row (partition, then fill ties left to right).

    Parameters
    ----------
    scores : ndarray of shape (n, m)
    k : int
        Winners per row, in [1, m].

    Returns
    -------
    mask : ndarray of shape (n, m), dtype=bool
        Exactly ``k`` True per row.
    """
    s = np.asarray(scores)
    n, m = s.shape
    if not 1 <= k <= m:
        raise HashplugError(f"k must be in [1, m={m}]; got {k}.")
    if k == m:
        return np.ones((n, m), dtype=bool)
    kth = np.partition(s, m - k, axis=1)[:, m - k][:, None]
    gt = s > kth
    eq = s == kth
    need = k - gt.sum(axis=1, keepdims=True)
    return gt | (eq & (np.cumsum(eq, axis=1) <= need))


def topk_units(scores: np.ndarray, k: int) -> np.ndarray:
    """The winners of :func:`topk_mask` as unit indices, ascending: ndarray (n, k), dtype=int64."""
    mask = topk_mask(scores, k)
    return np.nonzero(mask)[1].reshape(mask.shape[0], k).astype(np.int64, copy=False)


def ranked_units(scores: np.ndarray, kmax: int) -> np.ndarray:
    """The ``kmax`` best units of every row, best first (ties to the lower unit index): (n, kmax) int32.

    Its first k columns, sorted, are exactly :func:`topk_units` ``(scores, k)`` for every k <= kmax, so one
    pass over the scores serves every hash length.
    """
    s = np.asarray(scores)
    kk = min(int(kmax), s.shape[1])
    idx = topk_units(s, kk)  # ascending unit index
    order = np.argsort(-np.take_along_axis(s, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1).astype(np.int32)


# ---------------------------------------------------------------------------------------------------- rows
def order_rows(dist: np.ndarray, axis: int = -1) -> np.ndarray:
    """Indices that sort distances ascending, ties to the lower index (a stable sort).

    Small-integer distances (Hamming) use a 16-bit radix sort; the result equals
    ``np.argsort(dist, axis=axis, kind="stable")``.
    """
    d = np.asarray(dist)
    if d.size and (np.issubdtype(d.dtype, np.integer) or d.dtype == np.bool_):
        lo, hi = int(d.min()), int(d.max())
        if hi - lo < 2**16:
            d16 = d.astype(np.uint16) if lo == 0 else (d - lo).astype(np.uint16)
            return np.argsort(d16, axis=axis, kind="stable")
    return np.argsort(d, axis=axis, kind="stable")


def topk_rows(dist: np.ndarray, limit: int) -> np.ndarray:
    """Indices (n, limit) of the ``limit`` smallest entries of each row of ``dist`` (n, n_db); ties -> lower index
    first."""
    return order_rows(dist, axis=1)[:, :limit]


def topk_small(d: np.ndarray, limit: int, max_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and values of the ``limit`` smallest entries of one row of small non-negative integers, in row order.

    Equals ``order_rows(d)[:limit]`` without sorting ``n`` keys: a histogram of the values finds the cut value
    c, then every row below c (sorted by value, rows ascending within a value) and the first rows at c.

    Parameters
    ----------
    d : ndarray of shape (n,), integer dtype
        Values in ``[0, max_value]`` (Hamming distances).
    limit : int
        Results, in [1, n].
    max_value : int
        Upper bound of ``d`` (the histogram's length - 1).

    Returns
    -------
    rows : ndarray of shape (limit,), dtype=int64
    values : ndarray of shape (limit,), dtype=int32
    """
    hist = np.bincount(d, minlength=max_value + 1)
    cum = np.cumsum(hist)
    c = int(np.searchsorted(cum, limit))  # the value at which the limit-th result lies
    below = np.flatnonzero(d < c) if c > 0 else np.zeros(0, dtype=np.intp)
    at = np.flatnonzero(d == c)[: limit - below.size]
    order = np.argsort(d[below], kind="stable")  # few (< limit) rows: by value, rows ascending within
    rows = np.concatenate([below[order], at]).astype(np.int64)
    return rows, d[rows].astype(np.int32)


def row_keys(dist: Any, rows: Any, n: Any) -> Any:
    """The row rule as one integer per (distance, row): ``dist * n + rows``, for rows in ``[0, n)``.

    Ascending keys are the row order (smaller distance first, the lower row among equal distances), so a
    partition or sort of keys is exact, ties included. Arrays give int64 arrays (pass int64 inputs: no
    overflow below ``2**63``); Python ints give a Python int.
    """
    return dist * n + rows


def rows_of_keys(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`row_keys`: ``(rows int64, distances int32)`` of int64 ``keys``."""
    keys = np.asarray(keys, dtype=np.int64)
    n = np.int64(n)
    return keys % n, (keys // n).astype(np.int32)


def smallest_keys(keys: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` smallest keys of every row of ``keys`` (n_q, c), ascending (all of them when c <= limit)."""
    c = keys.shape[1]
    if c > limit:
        part = np.argpartition(keys, limit - 1, axis=1)[:, :limit]
        keys = np.take_along_axis(keys, part, axis=1)
    return np.sort(keys, axis=1)
