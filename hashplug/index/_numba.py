"""The compiled kernels of :mod:`hashplug.index.kernels` (optional: ``hashplug[fast]`` = numba), found lazily; their
code is in :mod:`hashplug.index._jit` (module level, so numba's on-disk cache serves every later process).

Dense (``scan``): one pass over the database per query chunk, split into contiguous ranges, one per Python
thread (the kernels are ``nogil``; no OpenMP pool, so nothing spins between calls to slow FAISS's or torch's
OpenMP threads in the same process, and concurrent callers are safe), so a single query uses every thread.
Each range keeps, per query, its exact top-``limit`` by (distance, position) behind a bound that only comes
down (a row is taken iff its distance is below the smallest value with ``limit`` taken rows at or below it),
in a small buffer compacted when full: once the bound has settled, almost every row costs its popcounts and
one comparison, with no distance matrix written. A few queries scan the rows once each (``scan_rows``); a
batch is query-tiled (``scan_tiled``): each row is read once, its words held in registers, and its distances to
every query of the chunk computed in one branch-free loop over the transposed query words, which the compiler
vectorises (AVX-512 ``vpopcntq`` where the CPU has it) -- the database is read from memory once per chunk,
not once per query. The ranges' lists (at most ``limit`` each) are merged by one key
``distance * n + position``.

k-hot (``count_scan``): overlaps counted from a query's postings into one counter per row of the range, then
the range scanned in position order behind the same falling bound; ``fill_postings`` builds CSC postings by a
counting sort. The same results as the numpy kernels (ascending distance, ties to the lower position).
Imported lazily; without numba the numpy kernels run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

_KERNELS: Any = None
_POPCOUNT64: Any = None


def compiled_popcount64() -> Any:
    """The compiled popcount of one uint64 (``inline="always"``) that every compiled kernel calls (this scan,
    :mod:`hashplug.index.mih`'s probe), or None when numba is not installed. The numpy kernels count with
    :func:`hashplug.hamming.popcount_into`; ``tests/test_tie_rule.py`` holds the two equal."""
    global _POPCOUNT64
    if _POPCOUNT64 is not None:
        return _POPCOUNT64 or None
    try:
        from . import _jit
    except ImportError:
        _POPCOUNT64 = False
        return None
    _POPCOUNT64 = _jit.popcount64
    return _POPCOUNT64


class Kernels(NamedTuple):
    """The compiled kernels (:mod:`hashplug.index._jit`, compiled on first use and cached on disk)."""

    scan: Any  # dense top-k of a range of rows (row by row, or query-tiled)
    merge: Any  # the ranges' lists merged by distance * n + position
    count_scan: Any  # k-hot top-k of a range of rows: overlaps counted from the postings, then one scan
    fill_postings: Any  # CSC postings of CSR k-hot rows (a counting sort by unit)


def kernels() -> Kernels | None:
    """The compiled kernels (:class:`Kernels`), or None when numba is not installed."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS or None
    if compiled_popcount64() is None:
        _KERNELS = False
        return None
    from . import _jit

    _KERNELS = Kernels(_jit.scan, _jit.merge, _jit.count_scan, _jit.fill_postings)
    return _KERNELS
