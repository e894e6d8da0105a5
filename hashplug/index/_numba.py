"""Compiled dense kernel for :func:`hashplug.index.kernels.dense_topk` (optional: ``hashplug[fast]`` = numba).

One fused pass per query chunk: popcount(XOR) distances over the database rows in parallel (``prange``),
then, per query in parallel, a histogram of the distances, the cut value, and the positions in order: the
same results as the numpy kernel (ties to the lower position), without its per-element temporaries.
Imported lazily; without numba the numpy kernel runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_KERNELS: Any = None


def kernels() -> Any:
    """``(distances, select)`` compiled functions, or None when numba is not installed."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS or None
    try:
        import numba
    except ImportError:
        _KERNELS = False
        return None
    from numba import njit, prange

    @njit(inline="always")
    def popcount64(x):  # SWAR popcount; LLVM lowers it to the popcnt instruction where the CPU has one
        x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
        x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)

    @njit(parallel=True, cache=True, nogil=True)
    def distances(qw, dbw, out):
        nq, w = qw.shape
        n = dbw.shape[0]
        for i in prange(n):
            for q in range(nq):
                s = np.uint64(0)
                for j in range(w):
                    s += popcount64(qw[q, j] ^ dbw[i, j])
                out[q, i] = np.uint16(s)

    @njit(parallel=True, cache=True, nogil=True)
    def select(D, limit, max_d, pos_out, dist_out):
        nq, n = D.shape
        for q in prange(nq):
            hist = np.zeros(max_d + 2, dtype=np.int64)
            for i in range(n):
                hist[D[q, i]] += 1
            # the cut value c: the smallest c with count(d <= c) >= limit
            cum = 0
            c = 0
            for v in range(max_d + 1):
                cum += hist[v]
                if cum >= limit:
                    c = v
                    break
            below = cum - hist[c]  # rows with d < c: all in the result
            # offsets of each value's first slot in the output (values < c), then rows at c fill the rest
            start = np.zeros(max_d + 2, dtype=np.int64)
            acc = 0
            for v in range(c):
                start[v] = acc
                acc += hist[v]
            fill_c = below
            for i in range(n):
                d = D[q, i]
                if d < c:
                    k = start[d]
                    pos_out[q, k] = i
                    dist_out[q, k] = d
                    start[d] = k + 1
                elif d == c and fill_c < limit:
                    pos_out[q, fill_c] = i
                    dist_out[q, fill_c] = d
                    fill_c += 1

    _KERNELS = (distances, select)
    del numba
    return _KERNELS
