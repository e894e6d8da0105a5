"""Exact Hamming top-k by multi-index hashing (Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space
with Multi-Index Hashing", CVPR 2012 / TPAMI 2014): sublinear in N for short codes.

Each code of b bits is cut into s disjoint substrings; substring j of every database row goes into its own
table (rows sorted by the substring's value: CSR offsets, the rows' positions and a copy of their codes in that
order, so a bucket is read sequentially). By the pigeonhole principle a row within distance ``s (r + 1) - 1``
of the query lies within distance ``r`` of it in at least one substring, so probing, for ``r = 0, 1, ...``,
every bucket at substring distance exactly ``r`` in every table finds all rows below ``s (r + 1)``. The search
stops as soon as the ``limit``-th smallest distance found is below that radius: the result is then exact,
ties included (ranked by ``distance * n + position`` like every hashplug kernel).

A row found through several substrings is counted once: it is kept only at its first encounter, the smallest
substring distance and, among substrings at that distance, the first one (computed from its own code, no
per-query memory of visited rows). Rows found farther than the current bound (the smallest distance with
``limit`` rows at or below it) are dropped at once.

Substrings of about ``log2(N) - 7`` bits (16 at 10M rows) keep a few hundred rows per bucket, which favours
sequential reads over the random jumps of ``log2(N)``-bit substrings. Memory: ``s`` copies of the codes plus
4 bytes per row and substring (about 6x the 64-bit codes): an accelerator for short codes, not the default.
The search kernel needs numba (``hashplug[fast]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = ["MultiIndexTables", "substring_layout"]

_KERNEL: Any = None

#: Database rows per block of the flat scan (a (1, block) uint64 temporary).
FLAT_BLOCK = 65536


def substring_layout(nbits: int, n: int, substring_bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start bit and width of each substring: ``(los (s,), widths (s,))`` int64, widths differing by at most 1.

    ``substring_bits`` defaults to ``clip(round(log2(n)) - 7, 6, 20)``.
    """
    if substring_bits is None:
        substring_bits = int(np.clip(round(math.log2(max(n, 2))) - 7, 6, 20))
    if not 1 <= int(substring_bits) <= 24:
        raise HashplugError(f"substring_bits must be in [1, 24]; got {substring_bits}.")
    s = max(1, -(-int(nbits) // int(substring_bits)))
    widths = np.full(s, nbits // s, np.int64)
    widths[: nbits % s] += 1
    los = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    return los, widths


def _substring_values(words: np.ndarray, lo: int, width: int) -> np.ndarray:
    """Bits ``[lo, lo + width)`` of every row of ``words`` (n, w) uint64 (bit i = word i // 64, bit i % 64)."""
    wi, sh = lo // 64, lo % 64
    v = words[:, wi] >> np.uint64(sh)
    if sh + width > 64:
        v = v | (words[:, wi + 1] << np.uint64(64 - sh))
    return (v & np.uint64((1 << width) - 1)).astype(np.int64)


class MultiIndexTables:
    """Multi-index hash tables over packed codes, for exact top-``limit`` search (see the module docstring).

    Parameters
    ----------
    db_words : ndarray of shape (n, w), dtype=uint64
        The database as :func:`hashplug.index.kernels.words_of` (kept by reference).
    nbits : int, optional
        Bits covered, in word order (bit b is bit ``b % 64`` of word ``b // 64``; packed codes put code bit i
        at bit ``7 - i % 8`` of byte ``i // 8``): every row must be zero from bit ``nbits`` on. Default: just
        past the highest bit any row sets, so padding and unused bits make no degenerate tables.
    substring_bits : int, optional
        Bits per substring (default: :func:`substring_layout`).
    """

    def __init__(self, db_words: np.ndarray, nbits: int | None = None, substring_bits: int | None = None) -> None:
        if db_words.dtype != np.uint64 or db_words.ndim != 2:
            raise HashplugError(f"db_words must be uint64 of shape (n, w); got {db_words.dtype} {db_words.shape}.")
        n, w = db_words.shape
        if n >= 2**31:
            raise HashplugError(f"multi-index hashing holds positions as int32; {n} rows are too many.")
        self.n, self.w = int(n), int(w)
        high = np.bitwise_or.reduce(db_words, axis=0) if n else np.zeros(w, np.uint64)
        nz = np.flatnonzero(high)
        used = 64 * int(nz[-1]) + int(high[nz[-1]]).bit_length() if nz.size else 1  # highest bit any row sets
        self.nbits = int(nbits) if nbits is not None else used
        if not 1 <= self.nbits <= 64 * w:
            raise HashplugError(f"nbits must be in [1, {64 * w}]; got {nbits}.")
        if used > self.nbits:
            raise HashplugError(f"a database row sets word bit {used - 1}, beyond nbits={self.nbits}; leave nbits out "
                                "(the highest bit any row sets is used).")
        self._beyond = np.zeros(w, np.uint64)  # the bits past nbits, as words
        for b in range(self.nbits, 64 * w):
            self._beyond[b // 64] |= np.uint64(1) << np.uint64(b % 64)
        self.db_words = db_words
        self.los, self.widths = substring_layout(self.nbits, self.n, substring_bits)
        s = self.los.shape[0]
        B = 1 << int(self.widths.max())
        self.offsets = np.zeros((s, B + 1), np.int64)
        self.ids = np.empty((s, self.n), np.int32)
        self.codes = np.empty((s, self.n, w), np.uint64)
        for j, (lo, wd) in enumerate(zip(self.los, self.widths)):
            keys = _substring_values(db_words, int(lo), int(wd))
            order = np.argsort(keys, kind="stable")  # positions ascending within a bucket
            self.ids[j] = order
            self.codes[j] = db_words[order]
            self.offsets[j, 1:] = np.cumsum(np.bincount(keys, minlength=B))

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.ids.nbytes + self.codes.nbytes)

    def search(self, qw: np.ndarray, limit: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``limit`` positions and distances of query words ``qw`` (nq, w) uint64.

        Work is split into lanes, one per (query, table), run radius by radius on ``threads`` Python threads
        (the kernel is ``nogil``): a row is found
        in exactly one lane (its first encounter), each lane drops rows above its own bound (safe: a lane's
        ``limit``-th distance bounds the query's), and after each radius the lanes' histograms decide whether
        the query is done. A query whose lane overflows its buffer (a huge tie at its bound, e.g. every row
        alike) is answered by the flat scan instead: the same exact result.

        Returns
        -------
        positions : ndarray of shape (nq, min(limit, n)), dtype=int64
        distances : ndarray of shape (nq, min(limit, n)), dtype=int32
            Ascending distance, ties by ascending position (as :func:`dense_topk`).
        """
        probe, check = _kernel()
        from ._threads import run_ranges

        qw = np.ascontiguousarray(qw, dtype=np.uint64)
        if qw.ndim != 2 or qw.shape[1] != self.w:
            raise HashplugError(f"query words must have shape (nq, {self.w}); got {qw.shape}.")
        lim = min(int(limit), self.n)
        nq, s = qw.shape[0], self.los.shape[0]
        pos = np.zeros((nq, lim), np.int64)
        dist = np.zeros((nq, lim), np.int32)
        if lim == 0 or nq == 0:
            return pos, dist
        # a query with bits beyond nbits (where every row is 0) is answered by the flat scan: the tables'
        # radius bound counts only the bits they cover
        outside = np.flatnonzero(np.any(qw & self._beyond, axis=1))
        done0 = np.zeros(nq, np.bool_)
        done0[outside] = True
        max_d = 64 * self.w
        L = nq * s
        cap = max(4 * lim, 1024)
        hist = np.zeros((L, max_d + 2), np.int64)
        bound = np.full(L, max_d + 1, np.int64)
        cnt = np.zeros(L, np.int64)
        fill = np.zeros(L, np.int64)
        bpos = np.empty((L, cap), np.int64)
        bd = np.empty((L, cap), np.int64)
        overflow = np.zeros(L, np.bool_)
        done = done0.copy()
        T = max(1, min(int(threads), L))
        cuts = [(L * t) // T for t in range(T + 1)]
        for r in range(int(self.widths.max()) + 1):

            def one(t: int, r: int = r) -> None:
                probe(qw, self.codes, self.ids, self.offsets, self.los, self.widths, r, lim, cuts[t], cuts[t + 1],
                      done, hist, bound, cnt, fill, bpos, bd, overflow)

            run_ranges(one, T)
            check(r, s, lim, int(self.widths.min()), self.n, hist, bound, fill, bpos, bd, overflow, done, pos, dist)
            if done.all():
                break
        bad = np.union1d(np.flatnonzero(overflow.reshape(nq, s).any(axis=1)), outside)
        for i in bad:
            pos[i], dist[i] = _flat_exact(qw[i], self.db_words, lim)
        return pos, dist


def _flat_exact(q: np.ndarray, db_words: np.ndarray, lim: int) -> tuple[np.ndarray, np.ndarray]:
    """One query's exact top-``lim`` by a full scan (ties to the lower position): the rare degenerate case."""
    from ..hamming import popcount_into
    from ..ranking import topk_small

    d = popcount_into(q[None, :], db_words.T, np.empty((1, db_words.shape[0]), np.int32), cols=FLAT_BLOCK)[0]
    return topk_small(d, lim, 64 * db_words.shape[1])


def _kernel() -> Any:
    """``(probe, check)``: the compiled kernels of the search (:mod:`hashplug.index._jit`)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from ._numba import compiled_popcount64

    if compiled_popcount64() is None:
        raise HashplugError("multi-index hashing needs numba: pip install 'hashplug[fast]'.")
    from . import _jit

    _KERNEL = (_jit.probe, _jit.check)
    return _KERNEL
