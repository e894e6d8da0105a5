"""The compiled kernels (numba), defined at module level so that numba's on-disk cache (``cache=True``) finds
them again in the next process.

Imported only through :func:`hashplug.index._numba.kernels` / :func:`~hashplug.index._numba.compiled_popcount64`
and :mod:`hashplug.index.mih`'s kernel, once numba was found: this module imports numba at its top.

Why module level: numba keys a closure's cache entry on its cell contents, and a jitted function pickles with a
uuid drawn per process, so kernels defined inside a function (as they were until 0.12) never found their cache
entry: every process compiled them again (about 5 s before its first search) and wrote one more entry into
``__pycache__``. ``tests/test_index_kernels.py`` checks that a second process compiles nothing.

The dense scan, the k-hot counting scan and the postings fill are described in :mod:`hashplug.index._numba`;
multi-index hashing's probe and check in :mod:`hashplug.index.mih`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def popcount64(x):  # SWAR popcount; LLVM lowers it to the popcnt instruction where the CPU has one
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(inline="always")
def compact(pos, dist, fill, b, quota):
    # keep, in position order, every entry below b and the first `quota` entries at b
    k = 0
    at_b = 0
    for r in range(fill):
        d = dist[r]
        if d < b or (d == b and at_b < quota):
            if d == b:
                at_b += 1
            pos[k] = pos[r]
            dist[k] = d
            k += 1
    return k


@njit(inline="always")
def take(pos, dist, hist, b, below, fill, q, i, d, cap, limit):
    # row i at distance d < b[q] joins query q's list; the bound comes down while `limit` rows lie below it
    if fill[q] == cap:
        fill[q] = compact(pos, dist, fill[q], b[q], limit - below[q])
    k = fill[q]
    pos[k] = i
    dist[k] = d
    fill[q] = k + 1
    hist[d] += 1
    below[q] += 1
    while below[q] >= limit:
        b[q] -= 1
        below[q] -= hist[b[q]]
    return b[q]


@njit(inline="always")
def emit(buf_pos, buf_d, fill, b, below, limit, out_pos, out_d, out_cnt):
    # each query's buffer compacted to its exact top-`limit` (position order) and copied out
    for q in range(buf_pos.shape[0]):
        k = compact(buf_pos[q], buf_d[q], fill[q], b[q], limit - below[q])
        out_cnt[q] = k
        for r in range(k):
            out_pos[q, r] = buf_pos[q, r]
            out_d[q, r] = buf_d[q, r]


@njit(cache=True, nogil=True)
def scan_rows(qw, dbw, s, e, limit, buf_pos, buf_d, hist, b, below, fill):
    # [s, e) row by row, a block of 2048 rows per query in turn (the few-query path; the bound in a
    # register: the common path is one popcount and one compare)
    nq, w = qw.shape
    cap = buf_pos.shape[1]
    for bs in range(s, e, 2048):
        be = min(e, bs + 2048)
        for q in range(nq):
            bq = b[q]
            if w == 1:  # 64-bit codes: one word, no inner loop (3x faster than the general loop)
                q0 = qw[q, 0]
                for i in range(bs, be):
                    d = np.int64(popcount64(q0 ^ dbw[i, 0]))
                    if d < bq:
                        bq = take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, i, d, cap, limit)
            elif w == 4:  # 256-bit codes, unrolled likewise
                q0, q1, q2, q3 = qw[q, 0], qw[q, 1], qw[q, 2], qw[q, 3]
                for i in range(bs, be):
                    d = np.int64(popcount64(q0 ^ dbw[i, 0]) + popcount64(q1 ^ dbw[i, 1])
                                 + popcount64(q2 ^ dbw[i, 2]) + popcount64(q3 ^ dbw[i, 3]))
                    if d < bq:
                        bq = take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, i, d, cap, limit)
            elif w == 2:  # 128-bit codes
                q0, q1 = qw[q, 0], qw[q, 1]
                for i in range(bs, be):
                    d = np.int64(popcount64(q0 ^ dbw[i, 0]) + popcount64(q1 ^ dbw[i, 1]))
                    if d < bq:
                        bq = take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, i, d, cap, limit)
            else:
                for i in range(bs, be):
                    acc = np.uint64(0)
                    for j in range(w):
                        acc += popcount64(qw[q, j] ^ dbw[i, j])
                    d = np.int64(acc)
                    if d < bq:
                        bq = take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, i, d, cap, limit)


@njit(cache=True, nogil=True)
def scan_tiled(qw, dbw, s, e, limit, buf_pos, buf_d, hist, b, below, fill):
    # [s, e) tiled over queries: each row is read once (its words in registers) and its distances to every
    # query of the chunk computed in one branch-free loop over the queries, whose words are held transposed
    # (Qt[j] = word j of every query, contiguous: the compiler vectorises the popcounts over queries), with
    # the smallest distance minus bound; only when some query's distance is below its bound are the
    # queries walked, so each query still sees the rows in position order.
    nq, w = qw.shape
    cap = buf_pos.shape[1]
    Qt = np.empty((w, nq), np.uint64)
    for q in range(nq):
        for j in range(w):
            Qt[j, q] = qw[q, j]
    acc = np.empty(nq, np.int64)
    for i in range(s, e):
        gap = np.int64(1)
        if w == 1:  # 64-bit codes
            x0 = dbw[i, 0]
            Q0 = Qt[0]
            for q in range(nq):
                d = np.int64(popcount64(x0 ^ Q0[q]))
                acc[q] = d
                gap = min(gap, d - b[q])
        elif w == 2:  # 128-bit codes
            x0, x1 = dbw[i, 0], dbw[i, 1]
            Q0, Q1 = Qt[0], Qt[1]
            for q in range(nq):
                d = np.int64(popcount64(x0 ^ Q0[q]) + popcount64(x1 ^ Q1[q]))
                acc[q] = d
                gap = min(gap, d - b[q])
        elif w == 4:  # 256-bit codes
            x0, x1, x2, x3 = dbw[i, 0], dbw[i, 1], dbw[i, 2], dbw[i, 3]
            Q0, Q1, Q2, Q3 = Qt[0], Qt[1], Qt[2], Qt[3]
            for q in range(nq):
                d = np.int64(popcount64(x0 ^ Q0[q]) + popcount64(x1 ^ Q1[q])
                             + popcount64(x2 ^ Q2[q]) + popcount64(x3 ^ Q3[q]))
                acc[q] = d
                gap = min(gap, d - b[q])
        else:  # any width: four words per pass over the queries, then the rest one by one
            for q in range(nq):
                acc[q] = 0
            j = 0
            while j + 4 <= w:
                x0, x1, x2, x3 = dbw[i, j], dbw[i, j + 1], dbw[i, j + 2], dbw[i, j + 3]
                Q0, Q1, Q2, Q3 = Qt[j], Qt[j + 1], Qt[j + 2], Qt[j + 3]
                for q in range(nq):
                    acc[q] += np.int64(popcount64(x0 ^ Q0[q]) + popcount64(x1 ^ Q1[q])
                                       + popcount64(x2 ^ Q2[q]) + popcount64(x3 ^ Q3[q]))
                j += 4
            while j < w:
                x0 = dbw[i, j]
                Q0 = Qt[j]
                for q in range(nq):
                    acc[q] += np.int64(popcount64(x0 ^ Q0[q]))
                j += 1
            for q in range(nq):
                gap = min(gap, acc[q] - b[q])
        if gap < 0:  # the row joins some query's list
            for q in range(nq):
                if acc[q] < b[q]:
                    take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, i, acc[q], cap, limit)


@njit(cache=True, nogil=True)
def scan(qw, dbw, s, e, limit, tiled, buf_pos, buf_d, out_pos, out_d, out_cnt):
    # one contiguous database range [s, e) (one Python thread each; nogil): per query, its exact
    # top-`limit` by (distance, position) behind a bound b that only comes down: a row is taken iff its
    # distance is below b, the smallest value with `limit` taken rows at or below it. `tiled`: the
    # many-query path (scan_tiled), else row by row (scan_rows); both take the same rows.
    nq, w = qw.shape
    V = 64 * w + 1
    hist = np.zeros((nq, V), np.int64)
    b = np.full(nq, V, np.int64)
    below = np.zeros(nq, np.int64)
    fill = np.zeros(nq, np.int64)
    if tiled:
        scan_tiled(qw, dbw, s, e, limit, buf_pos, buf_d, hist, b, below, fill)
    else:
        scan_rows(qw, dbw, s, e, limit, buf_pos, buf_d, hist, b, below, fill)
    emit(buf_pos, buf_d, fill, b, below, limit, out_pos, out_d, out_cnt)


@njit(cache=True, nogil=True)
def merge(out_pos, out_d, out_cnt, n, limit, pos_res, dist_res):
    # the ranges' lists (each ascending by position within a distance) merged by distance * n + position
    T, nq, _ = out_pos.shape
    for q in range(nq):
        tot = 0
        for t in range(T):
            tot += out_cnt[t, q]
        keys = np.empty(tot, np.int64)
        k = 0
        for t in range(T):
            for r in range(out_cnt[t, q]):
                keys[k] = out_d[t, q, r] * n + out_pos[t, q, r]
                k += 1
        keys.sort()
        for r in range(min(limit, tot)):
            pos_res[q, r] = keys[r] % n
            dist_res[q, r] = keys[r] // n


#: rows per sub-block of the counting scan: distances computed branch-free with their minimum; a sub-block is
#: walked row by row only when that minimum is below the bound
SUB = 64


@njit(cache=True, nogil=True)
def count_scan(qoff, qunits, uo, rows, lengths, cnt, s, e, limit, V, buf_pos, buf_d, out_pos, out_d, out_cnt):
    # k-hot rows [s, e) (one Python thread each; nogil) against each query's active units
    # qunits[qoff[q]:qoff[q + 1]]: the overlaps |a & b| are counted into cnt[s:e] from the units' postings
    # (their rows within [s, e) found by binary search: postings are ascending), then every row of the range
    # is scanned in position order, d = |b| + |a| - 2 |a & b| (SUB rows at a time, branch-free, cnt reset on
    # the way), behind the falling bound of the dense scan: the same rows as a full scan, ties to the lower
    # position. Costs the query's summed posting lengths plus one pass over the range.
    nq = qoff.shape[0] - 1
    cap = buf_pos.shape[1]
    hist = np.zeros((nq, V), np.int64)
    b = np.full(nq, V, np.int64)
    below = np.zeros(nq, np.int64)
    fill = np.zeros(nq, np.int64)
    acc = np.empty(SUB, np.int32)
    n = lengths.shape[0]
    for q in range(nq):
        a_len = np.int64(qoff[q + 1] - qoff[q])
        for t in range(qoff[q], qoff[q + 1]):
            u = qunits[t]
            lo, hi = uo[u], uo[u + 1]
            if s > 0:
                lo += np.searchsorted(rows[lo:hi], s)
            if e < n:
                hi = uo[u] + np.searchsorted(rows[uo[u] : hi], e)
            for p in range(lo, hi):
                cnt[rows[p]] += 1
        a32 = np.int32(a_len)
        for sb in range(s, e, SUB):
            L = min(e, sb + SUB) - sb
            mn = np.int32(V)
            lb, cb = lengths[sb : sb + L], cnt[sb : sb + L]  # slices and int32: the loops vectorise (5x)
            for i in range(L):
                d = np.int32(lb[i]) + a32 - 2 * np.int32(cb[i])
                acc[i] = d
                mn = min(mn, d)
            for i in range(L):
                cb[i] = 0
            if mn < b[q]:
                for i in range(L):
                    if acc[i] < b[q]:
                        take(buf_pos[q], buf_d[q], hist[q], b, below, fill, q, sb + i, np.int64(acc[i]), cap,
                             limit)
    emit(buf_pos, buf_d, fill, b, below, limit, out_pos, out_d, out_cnt)


@njit(cache=True, nogil=True)
def fill_postings(offsets, values, m):
    # CSC postings of CSR rows by a counting sort: (unit_offsets (m + 1,), rows (nnz,) int32), the rows
    # listing unit u at rows[unit_offsets[u]:unit_offsets[u + 1]], ascending; values already checked in [0, m)
    unit_offsets = np.zeros(m + 1, np.int64)
    for t in range(values.shape[0]):
        unit_offsets[values[t] + 1] += 1
    for u in range(m):
        unit_offsets[u + 1] += unit_offsets[u]
    fill = unit_offsets[:-1].copy()
    rows = np.empty(values.shape[0], np.int32)
    for i in range(offsets.shape[0] - 1):
        for t in range(offsets[i], offsets[i + 1]):
            u = values[t]
            rows[fill[u]] = i
            fill[u] += 1
    return unit_offsets, rows


# ------------------------------------------------------------------ multi-index hashing (hashplug.index.mih)
@njit(inline="always")
def sub_value(words, lo, width):  # words: one row (w,) uint64
    wi = lo >> 6
    sh = lo & 63
    v = words[wi] >> np.uint64(sh)
    if sh + width > 64:
        v = v | (words[wi + 1] << np.uint64(64 - sh))
    return np.int64(v & np.uint64((1 << width) - 1))


@njit(cache=True, nogil=True)
def probe(qw, codes, ids, offsets, los, widths, r, limit, lane_lo, lane_hi, done, hist, bound, cnt, fill, bpos,
          bd, overflow):
    # lane = (query, table j): every bucket of table j at substring distance exactly r from the query
    nq, w = qw.shape
    s = los.shape[0]
    cap = bpos.shape[1]
    for lane in range(lane_lo, lane_hi):
        qi = lane // s
        j = lane % s
        wd = widths[j]
        if done[qi] or overflow[lane] or r > wd:
            continue
        q = qw[qi]
        qsub = np.empty(s, np.int64)
        for jj in range(s):
            qsub[jj] = sub_value(q, los[jj], widths[jj])
        b = bound[lane]
        mask = (1 << r) - 1
        top = 1 << wd
        while mask < top:
            bucket = qsub[j] ^ mask
            for t in range(offsets[j, bucket], offsets[j, bucket + 1]):
                acc = np.uint64(0)
                for k in range(w):
                    acc += popcount64(q[k] ^ codes[j, t, k])
                d = np.int64(acc)
                if d > b:
                    continue
                # first encounter: no substring before j within r, none after j below r
                row = codes[j, t]
                first = True
                for jj in range(s):
                    if jj == j:
                        continue
                    dj = np.int64(popcount64(np.uint64(sub_value(row, los[jj], widths[jj]) ^ qsub[jj])))
                    if dj < r or (jj < j and dj == r):
                        first = False
                        break
                if not first:
                    continue
                f = fill[lane]
                if f == cap:  # drop rows above the bound
                    k2 = 0
                    for e in range(f):
                        if bd[lane, e] <= b:
                            bpos[lane, k2] = bpos[lane, e]
                            bd[lane, k2] = bd[lane, e]
                            k2 += 1
                    f = k2
                    if f == cap:  # a tie larger than the buffer: the flat scan answers this query
                        overflow[lane] = True
                        break
                bpos[lane, f] = ids[j, t]
                bd[lane, f] = d
                fill[lane] = f + 1
                hist[lane, d] += 1
                cnt[lane] += 1
                while cnt[lane] - hist[lane, b] >= limit:
                    cnt[lane] -= hist[lane, b]
                    b -= 1
                bound[lane] = b
            if overflow[lane] or r == 0:
                break
            c = mask & -mask  # Gosper's hack: the next mask with r bits set
            rr = mask + c
            mask = (((rr ^ mask) >> 2) // c) | rr


@njit(cache=True, nogil=True)
def check(r, s, limit, min_width, n, hist, bound, fill, bpos, bd, overflow, done, pos_out, dist_out):
    # per query: the limit-th smallest distance X found over its lanes (each lane's histogram is exact
    # up to its bound); done when X < s (r + 1) (nothing unfound lies below) or r covers a whole substring
    nq = done.shape[0]
    for qi in range(nq):
        if done[qi]:
            continue
        lanes = np.arange(qi * s, (qi + 1) * s)
        ovf = False
        top = hist.shape[1] - 1
        for lane in lanes:
            ovf = ovf or overflow[lane]
            top = min(top, bound[lane])
        if ovf:
            done[qi] = True
            continue
        cum = 0
        X = -1
        for v in range(top + 1):
            for lane in lanes:
                cum += hist[lane, v]
            if cum >= limit:
                X = v
                break
        if not ((X >= 0 and X < s * (r + 1)) or r >= min_width):
            continue
        if X < 0:
            X = top
        tot = 0
        for lane in lanes:
            for e in range(fill[lane]):
                if bd[lane, e] <= X:
                    tot += 1
        keys = np.empty(tot, np.int64)
        k2 = 0
        for lane in lanes:
            for e in range(fill[lane]):
                if bd[lane, e] <= X:
                    keys[k2] = bd[lane, e] * n + bpos[lane, e]
                    k2 += 1
        keys.sort()
        for e in range(min(limit, tot)):
            pos_out[qi, e] = keys[e] % n
            dist_out[qi, e] = keys[e] // n
        done[qi] = True
