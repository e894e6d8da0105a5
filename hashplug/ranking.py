"""Top-k and ranking with hashplug's two tie rules, in one place (numpy only).

Units (the k-hot head, winner-take-all):
    the ``k`` largest scores win; **among equal scores the lower unit index wins**, exactly as ONNX ``TopK``
    orders equal values. :func:`topk_mask`, :func:`topk_units`, :func:`ranked_units`.
Rows (search results, Hamming ranks):
    smaller distance first; **among equal distances the lower row (database) index comes first**, i.e. a
    stable sort. :func:`order_rows`, :func:`topk_rows`.

Everything that picks winners or orders results (the graph heads, :mod:`hashplug.hamming`,
:mod:`hashplug.metrics`, the benchmarks and the LanceDB integration) calls these, so the rules cannot drift.
"""

from __future__ import annotations

import numpy as np

from .validation import HashplugError

__all__ = ["topk_mask", "topk_units", "ranked_units", "order_rows", "topk_rows"]


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


def topk_rows(dist: np.ndarray, R: int) -> np.ndarray:
    """Indices (n, R) of the R smallest entries of each row of ``dist`` (n, n_db); ties -> lower index first."""
    return order_rows(dist, axis=1)[:, :R]
