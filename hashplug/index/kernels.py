"""Exact Hamming top-k kernels of the index (numpy only), dense and sparse, with hashplug's tie rule.

Results are ordered by ascending distance and, among equal distances, by ascending **position** in the
index (the order rows were added): :mod:`hashplug.ranking`'s row rule; the index maps positions to table row
ids afterwards. The sparse kernel ranks its candidates by one int64 key, ``distance * n + position``
(:func:`hashplug.ranking.row_keys`), so a partition on the key is exact, ties included; the dense kernel
selects by a histogram of the distances (:func:`hashplug.ranking.topk_small`).

Dense (packed codes): the database is kept as uint64 words (n, w). With ``hashplug[fast]`` the compiled
kernel (:mod:`hashplug.index._numba`) splits the database into one range per thread and keeps each query's
top ``limit`` behind a falling bound; a batch of at least :data:`TILE_QUERIES` queries is query-tiled (every
row read once and compared with all the queries of the pass, up to :data:`NUMBA_QUERY_CHUNK`, in one loop the
compiler vectorises over the queries), fewer queries scan the rows once each. Without it, a chunk of queries
is scored in cache-sized blocks by :func:`hashplug.hamming.popcount_into` into uint16 distances, the database
split over ``threads`` Python threads (numpy's ufuncs release the GIL); each query's top ``limit`` then comes
from a histogram of its distances, not from sorting n keys.

Sparse (k active units of m): an inverted index (CSC postings: the rows holding each unit). A query with
active set A touches the postings of its units, S entries (about ``N k^2 / m``), and ``d = |a| + |b| - 2
|a & b|``. Per query, from S against N (:data:`COUNT_FRACTION`): few entries are ranked as candidates
(``np.unique``), the rows sharing no unit with the query by ``|b|`` then position (precomputed); many entries
(high activity) are counted into one counter per row and every row scanned in position order (compiled over
row ranges, or ``np.bincount``): O(S + N), no sort. Both equal a full scan.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..hamming import popcount_into, words_of
from ..ranking import order_rows, row_keys, rows_of_keys, smallest_keys, topk_small
from ..validation import HashplugError
from ._threads import run_ranges

__all__ = ["words_of", "dense_topk", "build_postings", "merge_postings", "repeated_unit", "sparse_topk", "merge_topk",
           "select_smallest"]

#: The dense kernels' names (``dense_topk(backend=...)``).
BACKENDS = ("auto", "numpy", "numba", "faiss", "mih")

#: Database rows per block of the dense distance loop (a (query_chunk, block) uint64 temporary in cache).
DENSE_BLOCK = 4096


#: :func:`hashplug.ranking.smallest_keys` and :func:`hashplug.ranking.topk_small`, under their former names here.
merge_topk = smallest_keys
select_smallest = topk_small


def _distances_into(qw: np.ndarray, dbw: np.ndarray, out: np.ndarray, block: int) -> None:
    """Hamming distances of query words ``qw`` (nq, w) to ``dbw`` (b, w) into ``out`` (nq, b) uint16, in blocks
    of ``block`` database rows."""
    popcount_into(qw, dbw.T, out, cols=max(1, min(int(block), dbw.shape[0])))


def dense_topk(
    queries: np.ndarray, db_words: np.ndarray, limit: int, *, threads: int = 1, block: int = DENSE_BLOCK,
    query_chunk: int | None = None, backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``limit`` database positions and Hamming distances of packed ``queries`` (nq, nb).

    The distances of ``query_chunk`` queries to the whole database are computed into a uint16 matrix (the
    database split into ``threads`` contiguous ranges computed in parallel, each in cache-sized blocks), then
    each query's results are selected by :func:`select_smallest` (no sort of n keys).

    Parameters
    ----------
    queries : ndarray of shape (nq, nb), dtype=uint8
    db_words : ndarray of shape (n, w), dtype=uint64
        The database as :func:`words_of`.
    limit : int
        Results per query (capped at n).
    threads : int
        Python threads over database ranges (numpy releases the GIL in the ufuncs).
    block : int
        Database rows per block of the distance loop.
    query_chunk : int, optional
        Queries per pass over the database. numpy: the queries whose distance rows are held at once (memory
        ``query_chunk * n * 2`` bytes; default 16). numba: the queries that scan each cached block of the
        database before the next block is read (default: all of them, up to :data:`NUMBA_QUERY_CHUNK` and a
        buffer budget of about ``64 MB`` of per-query result lists).
    backend : {"auto", "numpy", "numba", "faiss", "mih"}
        ``numba`` (the ``fast`` extra) fuses popcount and selection in compiled loops over ``threads`` threads;
        ``auto`` uses it when installed. ``faiss`` (also the ``fast`` extra) ranks with FAISS
        ``IndexBinaryFlat`` and repairs its tie order: FAISS breaks ties at the cut arbitrarily, so a query
        whose ``limit``-th and next distances are equal gets every row at the cut distance from one FAISS
        ``range_search`` and keeps the lowest positions. ``mih`` (needs numba) searches multi-index hash
        tables built once
        per database array (:class:`hashplug.index.mih.MultiIndexTables`: sublinear in n for short codes,
        about 6x the memory of 64-bit codes). All give identical results.

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
    pos_out = np.zeros((nq, lim), np.int64)
    dist_out = np.zeros((nq, lim), np.int32)
    if n == 0 or lim == 0:
        return pos_out, dist_out
    max_d = 64 * qw.shape[1]
    if backend not in BACKENDS:
        raise HashplugError(f"backend must be one of {list(BACKENDS)}; got {backend!r}.")
    if backend == "faiss":
        return _dense_topk_faiss(qw, db_words, lim, int(threads), block)
    if backend == "mih":
        return _mih_tables(db_words).search(qw, lim, threads=int(threads))
    if backend != "numpy":
        from ._numba import kernels

        compiled = kernels()
        if compiled is None and backend == "numba":
            raise HashplugError("backend='numba' needs numba: pip install 'hashplug[fast]'.")
        if compiled is not None:
            return _dense_topk_numba(compiled, qw, db_words, lim, int(threads), query_chunk)
    T = max(1, min(int(threads), n // 4096 or 1))
    bounds = np.linspace(0, n, T + 1).astype(int)
    step = max(1, int(query_chunk or 16))
    D = np.empty((min(step, nq), n), dtype=np.uint16)
    ex = ThreadPoolExecutor(max_workers=T) if T > 1 else None
    try:
        for qs in range(0, nq, step):
            qe = min(nq, qs + step)
            Dq = D[: qe - qs]
            if ex is None:
                _distances_into(qw[qs:qe], db_words, Dq, block)
            else:
                qc = qw[qs:qe]
                list(ex.map(lambda r, qc=qc, Dq=Dq: _distances_into(qc, db_words[bounds[r] : bounds[r + 1]],
                                                                     Dq[:, bounds[r] : bounds[r + 1]], block),
                            range(T)))
            for i in range(qe - qs):
                pos_out[qs + i], dist_out[qs + i] = topk_small(Dq[i], lim, max_d)
    finally:
        if ex is not None:
            ex.shutdown()
    return pos_out, dist_out


#: Database words per thread below which the compiled kernels stay on the calling thread.
PARALLEL_WORDS = 100_000


def kernels_available() -> bool:
    """Whether the compiled (numba) kernels can run here."""
    from ._numba import kernels

    return kernels() is not None


#: Queries per pass of the compiled kernel over the database (each block of rows is read from memory once per
#: pass and scanned by every query of it while in cache).
NUMBA_QUERY_CHUNK = 256
#: Queries from which the compiled kernel tiles: each row read once and compared with every query of the chunk in
#: one vectorised loop over the queries; fewer queries scan the rows once per query (measured crossover: 4-16).
TILE_QUERIES = 8


def _dense_topk_numba(compiled: Any, qw: np.ndarray, db_words: np.ndarray, lim: int, threads: int,
                      chunk: int | None) -> tuple[np.ndarray, np.ndarray]:
    scan, merge = compiled.scan, compiled.merge
    nq, n = qw.shape[0], db_words.shape[0]
    db_words = np.ascontiguousarray(db_words)
    pos_out = np.zeros((nq, lim), np.int64)
    dist_out = np.zeros((nq, lim), np.int32)
    cap = max(2 * lim, 256)
    if chunk is None:  # every query in one pass, within ~64 MB of result buffers per thread
        chunk = min(NUMBA_QUERY_CHUNK, max(1, (64 << 20) // (32 * cap)))
    step = max(1, int(chunk))
    # a range below ~100k words costs less than handing it to another thread (measured: 100k 64-bit rows scan
    # in 0.08 ms on one thread, slower on two)
    T = max(1, min(int(threads), (n * db_words.shape[1]) // PARALLEL_WORDS))
    bounds = [(n * t) // T for t in range(T + 1)]
    for qs in range(0, nq, step):
        qe = min(nq, qs + step)
        r = qe - qs
        tiled = bool(r >= TILE_QUERIES)
        qc = np.ascontiguousarray(qw[qs:qe])
        # fresh C-contiguous buffers per chunk: slices of bigger ones would change the arrays' layout type and
        # make numba compile another version of the kernels on a short last chunk
        buf_pos, buf_d = np.empty((T, r, cap), np.int64), np.empty((T, r, cap), np.int64)
        out_pos, out_d = np.empty((T, r, lim), np.int64), np.empty((T, r, lim), np.int64)
        out_cnt = np.empty((T, r), np.int64)

        def one(t: int, qc: np.ndarray = qc, bp: Any = buf_pos, bd: Any = buf_d, op: Any = out_pos, od: Any = out_d,
                oc: Any = out_cnt, tiled: bool = tiled) -> None:
            scan(qc, db_words, bounds[t], bounds[t + 1], lim, tiled, bp[t], bd[t], op[t], od[t], oc[t])

        run_ranges(one, T)
        merge(out_pos, out_d, out_cnt, n, lim, pos_out[qs:qe], dist_out[qs:qe])
    return pos_out, dist_out


def build_postings(offsets: np.ndarray, values: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC postings of CSR k-hot codes: ``(unit_offsets (m + 1,) int64, rows (nnz,) int32, lengths (n,) int32)``.

    Row ``i`` holds units ``values[offsets[i]:offsets[i + 1]]`` (in [0, m)); the postings of unit u are
    ``rows[unit_offsets[u]:unit_offsets[u + 1]]``, ascending (a row listing a unit twice appears twice in a row:
    :func:`repeated_unit` finds it). A stable sort by unit: a radix sort (O(nnz)) when m <= 65,536.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    values = np.asarray(values)
    n = offsets.shape[0] - 1
    if values.size and (values.min() < 0 or values.max() >= m):
        raise HashplugError(f"active units must lie in [0, m={m}); got [{values.min()}, {values.max()}].")
    lengths = np.diff(offsets).astype(np.int32)
    keys = values.astype(np.uint16 if m <= 2**16 else np.int64, copy=False)
    from ._numba import kernels

    compiled = kernels()
    if compiled is not None and n >= 0 and values.size == int(offsets[-1]) and (n == 0 or offsets[0] == 0):
        unit_offsets, rows = compiled.fill_postings(offsets, keys, int(m))  # a counting sort by unit, O(nnz)
        return unit_offsets, rows, lengths
    unit_offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=m), out=unit_offsets[1:])
    # numpy's stable sort of 16-bit keys is a radix sort: 5x faster than sorting int64 keys at 16M entries
    order = np.argsort(keys, kind="stable")  # by unit, rows ascending within a unit
    k = int(lengths[0]) if n else 0
    if n and k and values.size == n * k and offsets[0] == 0 and bool(np.all(lengths == k)):
        rows = (order // k).astype(np.int32)  # k units per row, laid out row after row: no row map needed
    else:
        row_of = np.repeat(np.arange(n, dtype=np.int32), lengths)
        rows = row_of[order]
    return unit_offsets, np.ascontiguousarray(rows, dtype=np.int32), lengths


def repeated_unit(unit_offsets: np.ndarray, rows: np.ndarray) -> tuple[int, int] | None:
    """``(row, unit)`` of the first row listing a unit twice in these postings (a row appears twice in a row
    within that unit's postings), or None: one vectorised pass, no per-row sort."""
    if rows.size < 2:
        return None
    same = rows[1:] == rows[:-1]
    starts = unit_offsets[1:-1]
    starts = starts[(starts > 0) & (starts < rows.size)]
    same[starts - 1] = False  # the last row of one unit and the first of the next: different units
    hit = np.flatnonzero(same)
    if not hit.size:
        return None
    t = int(hit[0])
    return int(rows[t]), int(np.searchsorted(unit_offsets, t, side="right") - 1)


def merge_postings(parts: list[tuple[np.ndarray, np.ndarray, int]], m: int) -> tuple[np.ndarray, np.ndarray]:
    """Postings of several row ranges, each unit's rows from the parts in order: ``(unit_offsets, rows)``.

    ``parts`` are ``(unit_offsets (m + 1,), rows, base)``: postings whose rows are numbered from 0, shifted by
    ``base``. Long postings are copied one slice per unit, short ones by one scatter.
    """
    counts = [np.diff(uo) for uo, _, _ in parts]
    unit_offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.sum(counts, axis=0) if counts else np.zeros(m, np.int64), out=unit_offsets[1:])
    rows = np.empty(int(unit_offsets[-1]), dtype=np.int32)
    fill = unit_offsets[:-1].copy()
    for (puo, prows, base), c in zip(parts, counts):
        if prows.size == 0:
            continue
        if prows.size >= 8 * m:  # a slice per unit: no per-entry index arrays
            for u in np.flatnonzero(c):
                np.add(prows[puo[u] : puo[u + 1]], base, out=rows[fill[u] : fill[u] + c[u]], casting="unsafe")
        else:
            u_of = np.repeat(np.arange(m), c)
            rows[fill[u_of] + (np.arange(prows.size) - puo[u_of])] = prows + base
        fill += c
    return unit_offsets, rows


#: The k-hot search methods (``sparse_topk(method=...)``).
SPARSE_METHODS = ("auto", "postings", "count")
#: ``auto`` counts overlaps over every row (``count``) when a query's summed posting lengths reach this fraction of
#: the rows; below it, the candidates from the postings are ranked alone (``postings``). Measured crossover at 1M
#: rows with the compiled kernel: about 1 / 160 (postings 0.18 ms vs count 0.35 ms at 0.3 %, 0.58 vs 0.32 at 1.3 %).
COUNT_FRACTION = 1 / 160


def sparse_topk(
    query_units: list[np.ndarray], unit_offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray, limit: int,
    *, zero_order: np.ndarray | None = None, threads: int = 1, method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``limit`` positions and distances ``|a| + |b| - 2 |a & b|`` of sparse queries.

    Two methods, chosen per query from its summed posting lengths S (the entries it touches) against the n
    rows: ``postings`` ranks only the rows sharing a unit with the query (``np.unique`` of the S entries, then
    the rows sharing none by ``zero_order``): cheapest while S is small; ``count`` counts the overlaps of every
    row into an array of n counters and scans it in position order (compiled with ``hashplug[fast]``: the
    rows split over ``threads`` threads, the dense kernel's falling bound; else ``np.bincount`` and a
    histogram selection): O(S + n), no sort, for queries whose units are common (high activity: at m = 320,
    k = 16 a query touches 80 % of the rows' entries). Both give the rows of a full scan, ties to the lower
    position.

    Parameters
    ----------
    query_units : list of ndarray
        Each query's active units (unique).
    unit_offsets, rows, lengths
        From :func:`build_postings`.
    limit : int
    zero_order : ndarray of shape (n,), int64, or None
        Positions sorted by (|b|, position): the order of the rows that share no unit with a query
        (computed when None and needed).
    threads : int
        Threads of the compiled counting kernel.
    method : {"auto", "postings", "count"}
        ``auto``: ``count`` when S >= ``COUNT_FRACTION * n``, else ``postings``.

    Returns
    -------
    positions, distances : ndarray of shape (nq, min(limit, n)), int64 / int32
    """
    if method not in SPARSE_METHODS:
        raise HashplugError(f"method must be one of {list(SPARSE_METHODS)}; got {method!r}.")
    n = lengths.shape[0]
    lim = min(int(limit), n)
    nq = len(query_units)
    pos_out = np.zeros((nq, lim), dtype=np.int64)
    dist_out = np.zeros((nq, lim), dtype=np.int32)
    if lim == 0:
        return pos_out, dist_out
    units = [np.asarray(u, dtype=np.int64).reshape(-1) for u in query_units]
    post_len = np.diff(unit_offsets)
    touched = np.array([int(post_len[u].sum()) for u in units], dtype=np.int64)
    if method == "count":
        counted = np.ones(nq, dtype=bool)
    elif method == "postings":
        counted = np.zeros(nq, dtype=bool)
    else:
        counted = touched >= COUNT_FRACTION * n
    cq = np.flatnonzero(counted)
    if cq.size:
        pos_out[cq], dist_out[cq] = _sparse_count([units[i] for i in cq], unit_offsets, rows, lengths, lim,
                                                  int(threads))
    rest = np.flatnonzero(~counted)
    if rest.size:
        if zero_order is None:
            zero_order = order_rows(lengths)
        seen = np.zeros(n, dtype=bool)  # reused: marks one query's candidates
        for qi in rest:
            pos_out[qi], dist_out[qi] = _sparse_candidates(units[qi], unit_offsets, rows, lengths, lim, zero_order,
                                                           seen)
    return pos_out, dist_out


def _sparse_candidates(units: np.ndarray, unit_offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray, lim: int,
                       zero_order: Any, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query by its candidates (the rows of its units' postings), then the rows sharing no unit."""
    n = lengths.shape[0]
    n_total = np.int64(max(n, 1))
    a = int(units.size)
    parts = [rows[unit_offsets[u] : unit_offsets[u + 1]] for u in units]
    hit = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    if hit.size:
        cand, overlap = np.unique(hit, return_counts=True)
        d = lengths[cand].astype(np.int64) + a - 2 * overlap.astype(np.int64)
        keys = smallest_keys(row_keys(d, cand.astype(np.int64), n_total)[None, :], lim)[0]
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
        k0 = row_keys(int(lengths[p]) + a, int(p), int(n_total))
        if k0 >= worst or len(extra) >= lim:
            break
        if not seen[p]:
            extra.append(k0)
    if extra:
        keys = np.sort(np.concatenate([keys, np.array(extra, dtype=np.int64)]))[:lim]
    if cand.size:
        seen[cand] = False
    return rows_of_keys(keys, n_total)


#: Each calling thread's overlap counters, kept between searches (the counting kernel leaves them at zero): a
#: fresh zeroed array per query costs its page faults, about as much as the scan at 1M rows.
_COUNTERS = threading.local()


def _count_buffer(n: int, dtype: Any) -> np.ndarray:
    buf = getattr(_COUNTERS, "buf", None)
    if buf is None or buf.shape[0] != n or buf.dtype != dtype:
        buf = _COUNTERS.buf = np.zeros(n, dtype)
    return buf


#: Rows per thread below which the counting kernel stays on the calling thread.
COUNT_PARALLEL_ROWS = 200_000


def _sparse_count(units: list[np.ndarray], unit_offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray, lim: int,
                  threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries by counting every row's overlap (O(S + n) each): compiled over row ranges, or numpy."""
    from ._numba import kernels

    n, nq = lengths.shape[0], len(units)
    a_max = max(int(u.size) for u in units)
    V = int(lengths.max()) + a_max + 1 if n else a_max + 1  # distances lie in [0, V)
    compiled = kernels()
    if compiled is None:
        pos_out = np.zeros((nq, lim), dtype=np.int64)
        dist_out = np.zeros((nq, lim), dtype=np.int32)
        base = lengths.astype(np.int64)
        for qi, u in enumerate(units):
            parts = [rows[unit_offsets[x] : unit_offsets[x + 1]] for x in u]
            cnt = np.bincount(np.concatenate(parts), minlength=n) if parts else np.zeros(n, np.int64)
            pos_out[qi], dist_out[qi] = topk_small(base + (u.size - 2 * cnt), lim, V - 1)
        return pos_out, dist_out
    qoff = np.zeros(nq + 1, np.int64)
    np.cumsum([u.size for u in units], out=qoff[1:])
    qunits = np.concatenate(units) if qoff[-1] else np.zeros(0, np.int64)
    cnt = _count_buffer(n, np.uint8 if a_max < 2**8 else np.uint16 if a_max < 2**16 else np.int32)
    T = max(1, min(int(threads), n // COUNT_PARALLEL_ROWS))
    bounds = [(n * t) // T for t in range(T + 1)]
    cap = max(2 * lim, 256)
    buf_pos, buf_d = np.empty((T, nq, cap), np.int64), np.empty((T, nq, cap), np.int64)
    out_pos, out_d = np.empty((T, nq, lim), np.int64), np.empty((T, nq, lim), np.int64)
    out_cnt = np.empty((T, nq), np.int64)

    def one(t: int) -> None:
        compiled.count_scan(qoff, qunits, unit_offsets, rows, lengths, cnt, bounds[t], bounds[t + 1], lim, V,
                            buf_pos[t], buf_d[t], out_pos[t], out_d[t], out_cnt[t])

    try:
        run_ranges(one, T)
    except BaseException:
        _COUNTERS.__dict__.clear()  # the counters may not be back to zero
        raise
    pos_res = np.zeros((nq, lim), np.int64)
    dist_res = np.zeros((nq, lim), np.int32)
    compiled.merge(out_pos, out_d, out_cnt, n, lim, pos_res, dist_res)
    return pos_res, dist_res


# ---------------------------------------------------------------------------------------------- FAISS
#: The FAISS index of the last database searched (building one copies the codes): (words array, index). The
#: array itself is kept, so its identity cannot be reused by another array (HammingIndex never writes into
#: its words in place: add and delete make new arrays).
_FAISS_CACHE: list[Any] = []


_MIH_CACHE: list[tuple[np.ndarray, Any]] = []


def _mih_tables(db_words: np.ndarray) -> Any:
    """The multi-index tables of ``db_words``, built on first use and kept while the same array is searched."""
    hit = _MIH_CACHE[0] if _MIH_CACHE else None  # read once: another thread may replace the entry
    if hit is not None and hit[0] is db_words:
        return hit[1]
    from .mih import MultiIndexTables

    tables = MultiIndexTables(db_words)  # covers the bits up to the highest one any row sets
    _MIH_CACHE[:] = [(db_words, tables)]
    return tables


def _faiss_index(db_words: np.ndarray) -> Any:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        raise HashplugError("backend='faiss' needs FAISS: pip install 'hashplug[fast]' (faiss-cpu).") from None
    hit = _FAISS_CACHE[0] if _FAISS_CACHE else None  # read once: another thread may replace the entry
    if hit is not None and hit[0] is db_words:
        return hit[1]
    index = faiss.IndexBinaryFlat(64 * db_words.shape[1])
    index.add(np.ascontiguousarray(db_words).view(np.uint8))
    _FAISS_CACHE[:] = [(db_words, index)]
    return index


def _dense_topk_faiss(qw: np.ndarray, db_words: np.ndarray, lim: int, threads: int, block: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    import faiss  # type: ignore[import-not-found]

    index = _faiss_index(db_words)
    faiss.omp_set_num_threads(max(1, threads))
    n = db_words.shape[0]
    k = min(lim + 1, n)
    D, Ix = index.search(np.ascontiguousarray(qw).view(np.uint8), k)
    pos_out = np.zeros((qw.shape[0], lim), np.int64)
    dist_out = np.zeros((qw.shape[0], lim), np.int32)
    cut = D[:, lim - 1].astype(np.int64)
    tied = np.flatnonzero(D[:, lim] == D[:, lim - 1]) if k > lim else np.zeros(0, np.int64)
    repair: dict[int, np.ndarray] = {}
    if tied.size:
        # rows at the cut distance extend past the limit and FAISS picked among them arbitrarily: one range
        # search (every row below cut + 1, FAISS's own threads) gives them all; the lowest positions win
        qbytes = np.ascontiguousarray(qw[tied]).view(np.uint8)
        for j, i in enumerate(tied):
            _, dd, ii = index.range_search(qbytes[j : j + 1], int(cut[i]) + 1)
            repair[int(i)] = np.sort(ii[dd == cut[i]].astype(np.int64))
    for i in range(qw.shape[0]):
        d, ix = D[i].astype(np.int64), Ix[i].astype(np.int64)
        if i in repair:
            below = d < cut[i]
            need = lim - int(below.sum())
            ix = np.concatenate([ix[below], repair[i][:need]])
            d = np.concatenate([d[below], np.full(need, cut[i])])
        else:
            ix, d = ix[:lim], d[:lim]
        pos_out[i], dist_out[i] = rows_of_keys(np.sort(row_keys(d, ix, n)), n)
    return pos_out, dist_out
