"""Batched queries and k-hot codes at any activity: hashplug's exact Hamming index in the regimes beyond one query.

1. Dense codes (256 bits): ``index.search(Q)`` with 100 queries at once runs the query-tiled kernel (each row
   read once and compared with every query of the batch in one vectorised loop, with ``hashplug[fast]``);
   compare its queries/s with the same queries one by one and, when installed, with FAISS ``IndexBinaryFlat``.
   Every result is checked against a brute-force ranking (smaller distance first, the earlier row on ties).
2. k-hot codes (k active units of m) at three activities k / m: 0.25 %, 0.5 % and 5 %. The index picks, per query,
   the candidates of its units' postings (few rows touched) or a count of every row's overlap (many touched:
   ``kernels.sparse_topk``); the rows are the same either way, and again checked against brute force.

Usage::

    python examples/19_batched_search.py          # 1,000,000 rows: about a minute

``HASHPLUG_EXAMPLE_SMALL=1`` (set by the tests) uses 20,000 rows: a few seconds after the imports. numpy only
(numba and FAISS used when installed). Nothing is written to disk.
"""

from __future__ import annotations

import os
import time

import numpy as np

from hashplug.codes import indices_to_packed
from hashplug.hamming import hamming_distances
from hashplug.index import HammingIndex
from hashplug.index.kernels import COUNT_FRACTION, kernels_available
from hashplug.ranking import topk_rows


def best_of(fn, reps: int = 3) -> tuple[float, object]:
    """(best seconds over ``reps`` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def brute_force(Q: np.ndarray, DB: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distance, then the row rule: ascending distance, the lower row first among equal distances."""
    D = hamming_distances(Q, DB)
    rows = topk_rows(D, limit)
    return rows, np.take_along_axis(D, rows, axis=1)


def khot_codes(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    """n rows of k distinct active units of m, ascending: (n, k) int32."""
    out = np.empty((n, k), np.int32)
    for s in range(0, n, 20_000):
        e = min(n, s + 20_000)
        out[s:e] = np.sort(np.argpartition(rng.random((e - s, m), dtype=np.float32), k - 1, axis=1)[:, :k], axis=1)
    return out


def main() -> dict:
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL", "") not in ("", "0")
    n, nq, limit = (20_000 if small else 1_000_000), 100, 10
    rng = np.random.default_rng(0)
    print(f"compiled kernels (hashplug[fast]): {'yes' if kernels_available() else 'no: the numpy kernels run'}")
    out: dict = {}

    # ---- 1. dense codes: a batch of queries against one by one (and FAISS)
    m = 256
    db = rng.integers(0, 256, (n, m // 8), dtype=np.uint8)
    Q = db[rng.integers(0, n, nq)] ^ (rng.random((nq, m // 8)) < 0.02).astype(np.uint8)  # near some rows
    idx = HammingIndex("packed", m, threads=2)
    idx.add(db, np.arange(n))
    idx.search(Q[:8], limit)  # compiles the kernels on first use
    t_batch, (ids, dist) = best_of(lambda: idx.search(Q, limit))
    t_one, _ = best_of(lambda: [idx.search(Q[i : i + 1], limit) for i in range(nq)])
    want_rows, want_d = brute_force(Q, db, limit)  # row ids are 0..n-1 here: rows are ids
    same = bool(np.array_equal(ids, want_rows) and np.array_equal(dist, want_d))
    print(f"dense {m}-bit, {n:,} rows, {nq} queries, top-{limit}: batched {nq / t_batch:,.0f} q/s, one by one "
          f"{nq / t_one:,.0f} q/s (x{t_one / t_batch:.1f}); identical to brute force: {same}")
    out["dense"] = {"qps_batched": nq / t_batch, "qps_single": nq / t_one, "same": same}
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        print("  FAISS not installed (pip install faiss-cpu): no comparison")
    else:
        fx = faiss.IndexBinaryFlat(m)
        fx.add(db)
        best = 0.0
        for threads in (1, 2):  # FAISS's OpenMP team can be slower than one thread on a busy machine
            faiss.omp_set_num_threads(threads)
            t_f, _ = best_of(lambda f=fx: f.search(Q, limit))
            best = max(best, nq / t_f)
        print(f"  FAISS IndexBinaryFlat (the faster of 1 and 2 threads): {best:,.0f} q/s; hashplug / FAISS = "
              f"{nq / t_batch / best:.2f}")
        out["dense"]["faiss_qps"] = best
    if not same:
        raise SystemExit("the batched search disagreed with brute force")

    # ---- 2. k-hot codes at three activities: the index chooses postings or a count per query
    m = 2000
    warm = HammingIndex("indices", m)  # compile the k-hot kernels first, so the timings below are the work alone
    warm.add((np.arange(0, 64 * 100 + 1, 100), khot_codes(rng, 64, m, 100).reshape(-1)), np.arange(64))
    warm.search([np.arange(100)], 1)
    for k in (5, 10, 100):
        rows = khot_codes(rng, n, m, k)
        t0 = time.perf_counter()
        kidx = HammingIndex("indices", m, threads=2)
        kidx.add((np.arange(0, n * k + 1, k), rows.reshape(-1)), np.arange(n))
        kidx.search([rows[0]], 1)  # the first search merges the postings
        build = time.perf_counter() - t0
        queries = list(khot_codes(rng, 20, m, k))
        t_q, (kids, kd) = best_of(lambda kidx=kidx, queries=queries: kidx.search(queries, limit))
        want_rows, want_d = brute_force(indices_to_packed(np.stack(queries), m), indices_to_packed(rows, m), limit)
        ok = bool(np.array_equal(kids, want_rows) and np.array_equal(kd, want_d))
        touched = k * (n * k / m) / n  # entries of a query's postings per row: k units of ~n k / m rows each
        method = "count" if touched >= COUNT_FRACTION else "postings"
        print(f"k-hot m={m} k={k} ({100 * k / m:.2f} % active): built in {build:.2f} s; {1000 * t_q / 20:.2f} ms per "
              f"query ({method}: a query touches ~{touched:.3f} postings entries per row); identical to brute force: "
              f"{ok}")
        out[f"khot-{k}"] = {"ms": 1000 * t_q / 20, "method": method, "same": ok}
        if not ok:
            raise SystemExit("the k-hot search disagreed with brute force")
    return out


if __name__ == "__main__":
    main()
