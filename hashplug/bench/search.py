"""``hashplug bench search``: exact Hamming search speed, dense and sparse, against FAISS and LanceDB.

Everything is measured in one run on the same codes: for every code kind (dense 64/256/1024 bits, k-hot
codes m=320/k=16, m=2000/k=10, m=4096/k=16) and every N, single-query latency (median over queries) and
batched throughput of

* ``hashplug-index``: :class:`hashplug.index.HammingIndex` (exact; dense numpy kernel, sparse postings);
* ``faiss-flat``: FAISS ``IndexBinaryFlat`` on the packed codes (when ``faiss`` is installed: ``hashplug[fast]``);
* ``hashplug-faiss``: hashplug's dense kernel with ``backend="faiss"`` (FAISS's ranking, ties at the cut repaired
  so the result is identical to the exact index: ``identical_to_exact``);
* ``lancedb-flat``: LanceDB's exhaustive Hamming search (dense) and, for k-hot codes, the LABEL_LIST path of
  :func:`hashplug.search` (candidates by ``array_has_any``, ranked in Python), on fewer queries;
* ``lancedb-ivf``: LanceDB's ``IVF_FLAT`` Hamming index (dense), with recall@limit against the exact result;
* ``hashplug-mih``: multi-index hashing (:mod:`hashplug.index.mih`, exact, sublinear for short codes) on dense
  codes of at most 128 bits, and the exact top-10 rows ``faiss-flat@10``, ``hashplug-index@10``,
  ``hashplug-mih@10`` (their ``ratio_to_faiss`` is against ``faiss-flat@10``).

Also memory per row, index build and catch-up time, and the bound this machine sets for an exact scan
(bytes read at the measured memory bandwidth, popcounts at the measured ``np.bitwise_count`` rate).

FAISS is measured at ``--threads`` (``faiss-flat``) and, when that is not 1, at one thread (``faiss-flat-1t``):
on a loaded machine FAISS's OpenMP team can be much slower than one thread, so the summaries compare hashplug
with the faster of the two. With ``--baseline DIR`` (a source tree of another hashplug, e.g. a ``git worktree``
of an earlier commit) its :class:`HammingIndex` runs on the same codes in the same process (``baseline-index``;
``ratio_to_baseline`` = latency / baseline latency); the tree is copied once into ``--baseline-cache``, where
numba keeps its compiled kernels for the next run. Two summaries beside ``rows``:

* ``batched``: per dense code kind and N, queries/s of one batch of ``--queries`` queries (best of
  ``--repeats``), hashplug and FAISS, and ``qps_ratio_to_faiss`` (>= 1: hashplug answers at least as many);
* ``khot``: per k-hot code kind and N, its activity k / m, single-query ms of hashplug and FAISS on the packed
  codes, ``speedup_vs_faiss`` (FAISS ms / hashplug ms), the method the index chose (``count`` or
  ``postings``, :func:`hashplug.index.kernels.sparse_topk`) and the index build time.
Codes are random (uniform bits; k distinct uniform units): exact methods' speed does not depend on the data,
approximate recall does (random codes are their hardest case). JSON::

    {"rows": {"dense-256": {"1000000": {"hashplug-index": {"ms_per_query": ..., "qps_batched": ...,
              "recall": ..., "ratio_to_faiss": ...}, ...}}}, "bound": {...},
     "batched": {"dense-256": {"1000000": {"hashplug_qps": ..., "faiss_qps": ..., "qps_ratio_to_faiss": ...}}},
     "khot": {"khot-320-16": {"1000000": {"activity": 0.05, "hashplug_ms": ..., "faiss_ms": ...,
              "speedup_vs_faiss": ..., "method": "count", "build_s": ...}}}, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import environment, rounded, write_json
from .suite import Suite, add_out, add_png, register_suite

__all__ = ["run_search_bench", "bench_search", "CODES", "machine_bound"]

#: Code kinds of the suite: name -> (kind, m, k).
CODES: dict[str, tuple[str, int, int]] = {
    "dense-64": ("dense", 64, 64),
    "dense-256": ("dense", 256, 256),
    "dense-1024": ("dense", 1024, 1024),
    "khot-320-16": ("khot", 320, 16),
    "khot-2000-10": ("khot", 2000, 10),
    "khot-4096-16": ("khot", 4096, 16),
    # the activity sweep (k / m): 0.25 %, 0.5 % (khot-2000-10) and 5 % at m = 2000; 0.31 %, 0.63 % and 5 %
    # (khot-320-16) at m = 320
    "khot-2000-5": ("khot", 2000, 5),
    "khot-2000-100": ("khot", 2000, 100),
    "khot-320-1": ("khot", 320, 1),
    "khot-320-2": ("khot", 320, 2),
}

#: The peers a run can measure (``--peers``): FAISS's flat binary index, LanceDB (flat, IVF, HNSW, LABEL_LIST) and
#: multi-index hashing (dense codes up to :data:`MIH_MAX_BITS`).
PEERS = ("faiss", "lancedb", "mih")


def _random_codes(kind: str, m: int, k: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """(packed codes (n, ceil(m/8)), CSR (offsets, values) or None)."""
    from ..codes import indices_to_packed

    if kind == "dense":
        return rng.integers(0, 256, (n, -(-m // 8)), dtype=np.uint8), None
    # k distinct units per row: the k smallest of m random keys, drawn in chunks
    rows = np.empty((n, k), dtype=np.int32)
    for s in range(0, n, 20_000):
        e = min(n, s + 20_000)
        rows[s:e] = np.sort(np.argpartition(rng.random((e - s, m), dtype=np.float32), k - 1, axis=1)[:, :k], axis=1)
    offsets = np.arange(0, n * k + 1, k, dtype=np.int64)
    return indices_to_packed(rows, m), (offsets, rows.reshape(-1))


def machine_bound(seconds: float = 0.5) -> dict[str, float]:
    """Memory bandwidth (GB/s, reading a 256 MB array) and popcount rate (64-bit words/s, ``np.bitwise_count``)."""
    a = np.ones(32 * 2**20, dtype=np.uint64)  # 256 MB
    a.sum()
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a.sum()
        reps += 1
    bw = reps * a.nbytes / (time.perf_counter() - t0) / 1e9
    b = a[: 4 * 2**20]
    out = np.empty(b.shape, np.uint8)
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        np.bitwise_count(b, out=out)
        reps += 1
    pc = reps * b.size / (time.perf_counter() - t0)
    return {"memory_gb_per_s": round(bw, 2), "popcount_words_per_s": round(pc, 0)}


#: Seconds of each of the machine-bound readings (``--bound-seconds``).
_BOUND_SECONDS: list[float] = [0.5]

#: Single queries timed per latency figure (None: every query of the run; ``--latency-queries``).
_LATENCY_QUERIES: list[int | None] = [None]


def _time_queries(fn: Any, queries: Sequence[Any]) -> float:
    """Median ms per single query (over the first ``--latency-queries`` of them)."""
    cap = _LATENCY_QUERIES[0]
    queries = queries[: max(1, cap)] if cap else queries
    fn(queries[0])  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _recall(got: np.ndarray, exact: np.ndarray, exact_d: np.ndarray, got_d: np.ndarray | None = None) -> float:
    """Recall@limit against the exact result, tie-aware: a returned row counts if its distance is within the
    exact result's (rows tied at the cut are interchangeable)."""
    if got_d is not None:
        cut = exact_d[:, -1:]
        return float(np.mean(np.minimum(1.0, (got_d <= cut).sum(1) / exact.shape[1])))
    return float(np.mean([np.intersect1d(a, b).size / b.size for a, b in zip(got, exact)]))


def run_search_bench(
    *,
    rows: Sequence[int] = (100_000, 1_000_000),
    codes: Sequence[str] | None = None,
    n_queries: int = 100,
    limit: int = 100,
    threads: int = 2,
    lancedb_queries: int = 10,
    ann_max_rows: int = 2_000_000,
    seed: int = 0,
    out: str | None = None,
    progress: bool = True,
    peers: Sequence[str] = PEERS,
    baseline: str | None = None,
    repeats: int = 3,
    latency_queries: int | None = None,
    baseline_cache: str | os.PathLike[str] | None = None,
    bound_seconds: float = 0.5,
) -> dict[str, Any]:
    """Run the suite (see the module docstring); returns the JSON document."""
    from ..validation import HashplugError

    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise HashplugError(f"unknown peers {unknown}; choose among {list(PEERS)}.")
    faiss = None
    if "faiss" in peers:
        try:
            import faiss  # type: ignore[import-not-found]
        except ImportError:
            faiss = None
    base_cls = _baseline_index(baseline, baseline_cache) if baseline else None
    if isinstance(bound_seconds, bool) or not isinstance(bound_seconds, (int, float)) or not 0 < bound_seconds <= 60:
        raise HashplugError(f"bound_seconds={bound_seconds!r} must be a number of seconds in (0, 60]; e.g. 0.5.")
    _LATENCY_QUERIES[0] = latency_queries
    _BOUND_SECONDS[0] = float(bound_seconds)
    try:
        res = _run_search_bench(rows, names_of(codes), n_queries, limit, threads, lancedb_queries, ann_max_rows, seed,
                                out, progress, peers, baseline, repeats, faiss, base_cls)
        res["latency_queries"] = latency_queries or n_queries
        write_json(res, out)
        return res
    finally:
        _drop_baseline()
        _LATENCY_QUERIES[0] = None
        _BOUND_SECONDS[0] = 0.5


def names_of(codes: Sequence[str] | None) -> list[str]:
    """The code kinds of a run (all of :data:`CODES` when None)."""
    return list(codes or CODES)


def _run_search_bench(rows: Sequence[int], names: list[str], n_queries: int, limit: int, threads: int,
                      lancedb_queries: int, ann_max_rows: int, seed: int, out: str | None, progress: bool,
                      peers: Sequence[str], baseline: str | None, repeats: int, faiss: Any, base_cls: Any
                      ) -> dict[str, Any]:
    res: dict[str, Any] = {
        "suite": "search",
        "rows": {},
        "limit": int(limit),
        "n_queries": int(n_queries),
        "threads": int(threads),
        "ann_max_rows": int(ann_max_rows),
        "faiss": None if faiss is None else getattr(faiss, "__version__", "?"),
        "peers": list(peers),
        "baseline": None if baseline is None else {"path": str(baseline), "commit": _git_commit(baseline)},
        "repeats": int(repeats),
        "memory": {},
        "build": {},
        "batched": {},
        "khot": {},
        "bound": machine_bound(_BOUND_SECONDS[0]),
        "environment": environment(),
        "notes": "random codes; ms_per_query = median single-query latency; qps_batched = queries/s for one batch "
                 "of n_queries (best of `repeats`); recall = tie-aware recall@limit against hashplug's exact result",
    }
    rng = np.random.default_rng(seed)
    try:
        import numba  # noqa: F401  (multi-index hashing needs it)

        has_numba = "mih" in peers
    except ImportError:
        has_numba = False
    for n in rows:  # every code kind at one size before the next size: a long run stopped early keeps whole sizes
        for name in names:
            kind, m, k = CODES[name]
            t_gen = time.perf_counter()
            packed, csr = _random_codes(kind, m, k, int(n), rng)
            qpacked, qcsr = _random_codes(kind, m, k, int(n_queries), rng)
            gen_s = time.perf_counter() - t_gen
            cell, exact_ids, exact_d = _index_cells(res, name, int(n), packed, csr, qpacked, qcsr, limit, threads,
                                                    gen_s, rng, repeats)
            if base_cls is not None:
                cell.update(_baseline_cells(base_cls, res, name, int(n), packed, csr, qpacked, qcsr, limit, threads,
                                            exact_ids, exact_d, repeats))
            if faiss is not None:
                cell.update(_faiss_cells(faiss, kind, packed, qpacked, limit, threads, exact_ids, exact_d, repeats))
            if kind == "dense" and m <= MIH_MAX_BITS and has_numba:
                cell.update(_mih_cells(packed, qpacked, limit, threads, exact_ids, exact_d, res, name, n, fx_top10=(
                    faiss if faiss is not None else None)))
            # ---- LanceDB (dense: flat and IVF_FLAT; sparse: hashplug.search's LABEL_LIST path)
            if "lancedb" in peers:
                cell.update(_lancedb_cells(kind, m, packed, csr, qpacked, qcsr, k, limit, exact_ids, exact_d,
                                           min(lancedb_queries, n_queries), ann=n <= ann_max_rows))
            for meth, c in cell.items():  # "...@10" rows against FAISS at the same limit
                f = cell.get("faiss-flat@10" if meth.endswith("@10") else "faiss-flat")
                c["ratio_to_faiss"] = rounded(c["ms_per_query"] / f["ms_per_query"], 3) if f and "ms_per_query" in c else None
            if "baseline-index" in cell:
                cell["hashplug-index"]["ratio_to_baseline"] = rounded(
                    cell["hashplug-index"]["ms_per_query"] / cell["baseline-index"]["ms_per_query"], 3)
            res["rows"].setdefault(name, {})[str(n)] = cell
            _summaries(res, name, int(n), cell, csr, qcsr, k, int(threads))
            write_json(res, out)
            if progress:
                print(name, n, {mm: (c["ms_per_query"], c.get("recall")) for mm, c in cell.items()}, flush=True)
    import sys

    # FAISS and torch each bring an OpenMP runtime; this suite keeps torch out of the process
    res["torch_loaded"] = "torch" in sys.modules
    write_json(res, out)
    return res


def _index_cells(res: dict[str, Any], name: str, n: int, packed: np.ndarray, csr: Any, qpacked: np.ndarray,
                 qcsr: Any, limit: int, threads: int, gen_s: float, rng: np.random.Generator,
                 repeats: int = 1) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """hashplug's exact index on one code kind and size: latency, memory, build and catch-up (1 % new rows,
    1 % deleted; recorded in ``res``). Returns the cell and the exact result every other row is scored on."""
    from ..index import HammingIndex

    kind, m, k = CODES[name]
    n_queries = len(qpacked)
    if kind != "dense":  # the compiled k-hot kernels loaded (or compiled) before the build is timed
        warm = HammingIndex("indices", m)
        warm.add((np.arange(0, 64 * k + 1, k), np.resize(np.arange(k), 64 * k)), np.arange(64))
        warm.search([np.arange(k)], 1)
    t0 = time.perf_counter()
    idx = HammingIndex("packed" if kind == "dense" else "indices", m, threads=threads)
    idx.add(packed if kind == "dense" else csr, np.arange(n, dtype=np.int64))
    if kind != "dense":
        idx._sparse_postings()
    build_s = time.perf_counter() - t0
    if kind == "dense":
        q_list = [qpacked[i : i + 1] for i in range(len(qpacked))]
    else:
        q_list = [[qcsr[1][i * k : (i + 1) * k]] for i in range(len(qpacked))]
    ms = _time_queries(lambda q, ix=idx: ix.search(q, limit), q_list)
    batch_q = qpacked if kind == "dense" else [q[0] for q in q_list]
    batch_s, (exact_ids, exact_d) = _time_batch(lambda: idx.search(batch_q, limit), repeats)
    cell: dict[str, Any] = {"hashplug-index": {"ms_per_query": rounded(ms, 3),
                                               "qps_batched": rounded(n_queries / batch_s, 1), "recall": 1.0}}
    raw = packed.nbytes if kind == "dense" else csr[1].size * 4
    res["memory"].setdefault(name, {})[str(n)] = {
        "raw_code_bytes_per_row": rounded(raw / n, 2), "index_bytes_per_row": rounded(idx.nbytes / n, 2),
        "ratio": rounded(idx.nbytes / raw, 3)}
    extra, extra_csr = _random_codes(kind, m, k, max(1, n // 100), rng)
    t0 = time.perf_counter()
    idx.add(extra if kind == "dense" else extra_csr, np.arange(n, n + extra.shape[0], dtype=np.int64))
    idx.delete(np.arange(0, n, 100))
    if kind != "dense":
        idx._sparse_postings()
    res["build"].setdefault(name, {})[str(n)] = {"build_s": rounded(build_s, 3),
                                                  "catch_up_1pct_s": rounded(time.perf_counter() - t0, 3),
                                                  "generate_s": rounded(gen_s, 2)}
    return cell, exact_ids, exact_d


def _faiss_cells(faiss: Any, kind: str, packed: np.ndarray, qpacked: np.ndarray, limit: int, threads: int,
                 exact_ids: np.ndarray, exact_d: np.ndarray, repeats: int = 1) -> dict[str, Any]:
    """FAISS's flat binary index (at ``threads`` and at one thread), and (dense codes) hashplug's kernel on the
    FAISS backend (ties repaired)."""
    n_queries = len(qpacked)
    cell: dict[str, Any] = {}
    fx = faiss.IndexBinaryFlat(8 * packed.shape[1])
    fx.add(packed)
    for t, key in ((int(threads), "faiss-flat"), (1, "faiss-flat-1t")):
        if key == "faiss-flat-1t" and int(threads) == 1:
            break
        faiss.omp_set_num_threads(t)
        ms_f = _time_queries(lambda q, f=fx: f.search(q, limit), [qpacked[i : i + 1] for i in range(len(qpacked))])
        bf, (fd, fi) = _time_batch(lambda f=fx: f.search(qpacked, limit), repeats)
        cell[key] = {"ms_per_query": rounded(ms_f, 3), "qps_batched": rounded(n_queries / bf, 1),
                     "recall": rounded(_recall(fi, exact_ids, exact_d, fd), 4), "threads": t}
    faiss.omp_set_num_threads(int(threads))
    del fx
    if kind == "dense":  # hashplug's kernel with the FAISS backend: FAISS ranking, ties repaired
        from ..index.kernels import dense_topk, words_of

        wds = words_of(packed)
        dense_topk(qpacked[:1], wds, limit, threads=threads, backend="faiss")  # builds its FAISS copy
        ms_h = _time_queries(lambda q, w=wds: dense_topk(q, w, limit, threads=threads, backend="faiss"),
                             [qpacked[i : i + 1] for i in range(len(qpacked))])
        bh, (hp, hd) = _time_batch(lambda: dense_topk(qpacked, wds, limit, threads=threads, backend="faiss"), repeats)
        same = bool(np.array_equal(hp, exact_ids) and np.array_equal(hd, exact_d))
        cell["hashplug-faiss"] = {"ms_per_query": rounded(ms_h, 3), "qps_batched": rounded(n_queries / bh, 1),
                                  "recall": 1.0 if same else rounded(_recall(hp, exact_ids, exact_d, hd), 4),
                                  "identical_to_exact": same}
    return cell


def _time_batch(fn: Any, repeats: int) -> tuple[float, Any]:
    """(best seconds over ``repeats`` calls of ``fn``, its result): one batch, timed again to see past load."""
    best, out = float("inf"), None
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _git_commit(path: str) -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _baseline_index(path: str, cache: str | os.PathLike[str] | None = None) -> Any:
    """The ``HammingIndex`` class of the hashplug source tree at ``path``: its ``hashplug/`` package, copied
    once into ``cache`` (default: ``bench-baseline/`` of :func:`hashplug.data.default_cache_dir`) under the
    digest of its files and imported from there under the name ``hashplug_baseline``, beside this one: the code
    before a change, timed in the same run.

    A private copy because numba caches compiled kernels beside their source under the importing module's name,
    and a cache written under another name would break the tree's own imports later. A lasting one because
    compiling the baseline's kernels took longer than the measurements of a small run (14 of 16 s): the next
    run of the same tree takes them from numba's cache in the copy. The copy is checked against its digest at
    each use (a copy that differs is made again); the 8 most recently used copies are kept."""
    import importlib
    import importlib.util
    import sys

    from ..validation import HashplugError

    pkg = Path(path) / "hashplug"
    if not (pkg / "index" / "core.py").is_file():
        raise HashplugError(f"--baseline {str(path)!r} holds no hashplug source tree (hashplug/index/core.py); give "
                            "a checkout of another commit, e.g. `git worktree add /tmp/base <commit>`.")
    name = "hashplug_baseline"
    _drop_baseline()
    if cache is None:
        from ..data import default_cache_dir

        cache = default_cache_dir() / "bench-baseline"
    copy = _baseline_copy(pkg, Path(cache), name)
    spec = importlib.util.spec_from_file_location(name, copy / "__init__.py", submodule_search_locations=[str(copy)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module(f"{name}.index").HammingIndex


#: Copies of baseline trees kept in the cache (the least recently used beyond this are removed).
BASELINE_COPIES = 8


def _source_digest(pkg: Path) -> str:
    """sha256 over the relative paths and bytes of the files of a package (``__pycache__`` left out)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(pkg).parts):
        rel = f.relative_to(pkg).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        data = f.read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _baseline_copy(pkg: Path, cache: Path, name: str) -> Path:
    """``cache/<digest>/<name>``: a copy of ``pkg`` whose files have the digest of ``pkg``'s, made when missing or
    different (in a new folder renamed into place: two runs at once make one) and checked after it is made."""
    import shutil

    from ..validation import HashplugError

    digest = _source_digest(pkg)
    home = cache / digest[:32]
    target = home / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not (target.is_dir() and _source_digest(target) == digest):
            shutil.rmtree(home, ignore_errors=True)  # missing, partial or altered: made again
            tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
            shutil.copytree(pkg, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                os.rename(tmp, home)
            except OSError:  # another run put its copy there first
                shutil.rmtree(tmp, ignore_errors=True)
            if _source_digest(target) != digest:
                raise HashplugError(f"the copy {str(target)!r} of the baseline tree {str(pkg.parent)!r} differs from "
                                    "the tree (was the tree edited while it was copied?); run again.")
        os.utime(home)  # most recently used
        now = time.time()
        kept = sorted((d for d in cache.iterdir() if d.is_dir() and not d.name.startswith(".")), key=_mtime,
                      reverse=True)
        stale = [d for d in cache.glob(".partial-*") if now - _mtime(d) > 3600]  # left by a killed run
        for old in [*kept[BASELINE_COPIES:], *stale]:
            if old != home:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise HashplugError(f"could not copy the baseline tree {str(pkg.parent)!r} into {str(cache)!r} ({exc}); set "
                            "HASHPLUG_CACHE to a writable folder.") from exc
    return target


def _mtime(path: Path) -> float:
    """A folder's modification time; that of now when another run has just removed it (skipped, not pruned)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _drop_baseline() -> None:
    """Forget the baseline package (its modules; its copy stays in the cache for the next run)."""
    import sys

    for mod in [m for m in sys.modules if m == "hashplug_baseline" or m.startswith("hashplug_baseline.")]:
        del sys.modules[mod]


def _baseline_cells(base_cls: Any, res: dict[str, Any], name: str, n: int, packed: np.ndarray, csr: Any,
                    qpacked: np.ndarray, qcsr: Any, limit: int, threads: int, exact_ids: np.ndarray,
                    exact_d: np.ndarray, repeats: int) -> dict[str, Any]:
    """The baseline tree's index on the same codes: build time, single-query latency, batched q/s, and whether it
    returns the same rows (``identical_to_exact``)."""
    kind, m, k = CODES[name]
    t0 = time.perf_counter()
    idx = base_cls("packed" if kind == "dense" else "indices", m, threads=threads)
    idx.add(packed if kind == "dense" else csr, np.arange(n, dtype=np.int64))
    if kind != "dense":
        idx._sparse_postings()
    res["build"][name][str(n)]["baseline_build_s"] = rounded(time.perf_counter() - t0, 3)
    if kind == "dense":
        q_list: list[Any] = [qpacked[i : i + 1] for i in range(len(qpacked))]
        batch_q: Any = qpacked
    else:
        q_list = [[qcsr[1][i * k : (i + 1) * k]] for i in range(len(qpacked))]
        batch_q = [q[0] for q in q_list]
    ms = _time_queries(lambda q: idx.search(q, limit), q_list)
    bt, (ids, d) = _time_batch(lambda: idx.search(batch_q, limit), repeats)
    same = bool(np.array_equal(ids, exact_ids) and np.array_equal(d, exact_d))
    return {"baseline-index": {"ms_per_query": rounded(ms, 3), "qps_batched": rounded(len(qpacked) / bt, 1),
                               "recall": 1.0 if same else rounded(_recall(ids, exact_ids, exact_d, d), 4),
                               "identical_to_exact": same}}


def _summaries(res: dict[str, Any], name: str, n: int, cell: dict[str, Any], csr: Any, qcsr: Any, k: int,
               threads: int) -> None:
    """The ``batched`` (dense) and ``khot`` summaries of one cell, against the faster FAISS thread setting."""
    kind, m, _ = CODES[name]
    hp = cell["hashplug-index"]
    fx = [c for key, c in cell.items() if key in ("faiss-flat", "faiss-flat-1t") and "ms_per_query" in c]
    base = cell.get("baseline-index")
    if kind == "dense":
        out: dict[str, Any] = {"hashplug_qps": hp["qps_batched"]}
        if fx:
            best = max(fx, key=lambda c: c["qps_batched"])
            out.update(faiss_qps=best["qps_batched"], faiss_threads=best["threads"],
                       qps_ratio_to_faiss=rounded(hp["qps_batched"] / best["qps_batched"], 3))
        if base:
            out.update(baseline_qps=base["qps_batched"], qps_ratio_to_baseline=rounded(
                hp["qps_batched"] / base["qps_batched"], 3))
        out.update(hashplug_ms=hp["ms_per_query"], baseline_ms=base["ms_per_query"] if base else None,
                   ms_ratio_to_baseline=hp.get("ratio_to_baseline"))
        res["batched"].setdefault(name, {})[str(n)] = out
        return
    from ..index.kernels import COUNT_FRACTION

    counts = np.bincount(csr[1], minlength=m)  # posting lengths
    touched = np.array([counts[qcsr[1][i * k : (i + 1) * k]].sum() for i in range(len(qcsr[0]) - 1)])
    counted = touched >= COUNT_FRACTION * n  # the index's choice per query (kernels.sparse_topk, method="auto")
    out = {"activity": rounded(k / m, 5), "hashplug_ms": hp["ms_per_query"],
           "hashplug_qps": hp["qps_batched"], "touched_per_row": rounded(float(touched.mean()) / n, 4),
           "method": "count" if counted.all() else "postings" if not counted.any() else "mixed",
           "build_s": res["build"][name][str(n)]["build_s"]}
    if fx:
        best = min(fx, key=lambda c: c["ms_per_query"])
        out.update(faiss_ms=best["ms_per_query"], faiss_threads=best["threads"],
                   speedup_vs_faiss=rounded(best["ms_per_query"] / hp["ms_per_query"], 3),
                   faiss_qps=max(c["qps_batched"] for c in fx))
    if base:
        out.update(baseline_ms=base["ms_per_query"], baseline_build_s=res["build"][name][str(n)].get("baseline_build_s"))
    res["khot"].setdefault(name, {})[str(n)] = out


#: Dense codes up to this many bits also get multi-index hashing rows (longer codes need more probes than rows).
MIH_MAX_BITS = 128


def _mih_cells(packed: np.ndarray, qpacked: np.ndarray, limit: int, threads: int, exact_ids: np.ndarray,
               exact_d: np.ndarray, res: dict[str, Any], name: str, n: int, fx_top10: Any) -> dict[str, Any]:
    """Rows ``hashplug-mih`` (top-``limit``) and the exact top-10 of the stretch target: ``faiss-flat@10``,
    ``hashplug-index@10`` (the flat kernel) and ``hashplug-mih@10``; MIH build time and memory."""
    from ..index.kernels import dense_topk, words_of
    from ..index.mih import MultiIndexTables

    out: dict[str, Any] = {}
    wds = words_of(packed)
    qw = words_of(qpacked)
    t0 = time.perf_counter()
    tables = MultiIndexTables(wds)
    build = time.perf_counter() - t0
    res["build"][name][str(n)]["mih_build_s"] = rounded(build, 3)
    res["memory"][name][str(n)]["mih_bytes_per_row"] = rounded(tables.nbytes / n, 2)
    res["memory"][name][str(n)]["mih_substring_bits"] = [int(v) for v in tables.widths]
    q_list = [qw[i : i + 1] for i in range(len(qw))]
    for lim, suffix in ((limit, ""), (10, "@10")):
        ms = _time_queries(lambda q, lim=lim: tables.search(q, lim, threads=threads), q_list)
        t0 = time.perf_counter()
        hp, hd = tables.search(qw, lim, threads=threads)
        bt = time.perf_counter() - t0
        if suffix:
            ref_p, ref_d = dense_topk(qpacked, wds, lim, threads=threads)
        else:
            ref_p, ref_d = exact_ids, exact_d
        same = bool(np.array_equal(hp, ref_p) and np.array_equal(hd, ref_d))
        out[f"hashplug-mih{suffix}"] = {"ms_per_query": rounded(ms, 3), "qps_batched": rounded(len(qw) / bt, 1),
                                        "recall": 1.0 if same else rounded(_recall(hp, ref_p, ref_d, hd), 4),
                                        "identical_to_exact": same}
        if suffix:
            msf = _time_queries(lambda q: dense_topk(q, wds, 10, threads=threads), [qpacked[i : i + 1] for i in range(len(qw))])
            t0 = time.perf_counter()
            dense_topk(qpacked, wds, 10, threads=threads)
            out["hashplug-index@10"] = {"ms_per_query": rounded(msf, 3),
                                        "qps_batched": rounded(len(qw) / (time.perf_counter() - t0), 1), "recall": 1.0}
            if fx_top10 is not None:
                fx = fx_top10.IndexBinaryFlat(8 * packed.shape[1])
                fx.add(packed)
                msx = _time_queries(lambda q, f=fx: f.search(q, 10), [qpacked[i : i + 1] for i in range(len(qw))])
                t0 = time.perf_counter()
                fd, fi = fx.search(qpacked, 10)
                out["faiss-flat@10"] = {"ms_per_query": rounded(msx, 3),
                                        "qps_batched": rounded(len(qw) / (time.perf_counter() - t0), 1),
                                        "recall": rounded(_recall(fi, ref_p, ref_d, fd), 4)}
                del fx
    return out


def _lancedb_cells(kind, m, packed, csr, qpacked, qcsr, k, limit, exact_ids, exact_d, nq, ann=True) -> dict[str, Any]:
    import lancedb
    import pyarrow as pa

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hashplug_bench_search_") as d:
        db = lancedb.connect(d)
        n = packed.shape[0]
        if kind == "dense":
            col = pa.FixedSizeListArray.from_arrays(pa.array(packed.reshape(-1)), packed.shape[1])
            t = db.create_table("codes", pa.table({"code": col}))
            qs = [qpacked[i] for i in range(nq)]

            def flat(q):
                return t.search(q, vector_column_name="code").distance_type("hamming").limit(limit).bypass_vector_index().to_arrow()

            ms = _time_queries(flat, qs)
            got = [flat(q)["_distance"].to_numpy() for q in qs]
            out["lancedb-flat"] = {"ms_per_query": rounded(ms, 3), "qps_batched": rounded(1000 / ms, 1),
                                   "recall": rounded(_recall(None, exact_ids[:nq], exact_d[:nq], np.stack(got)), 4)}
            if not ann:  # IVF / HNSW builds (k-means over every row) skipped above ann_max_rows
                return out
            from lancedb.index import IvfFlat

            parts = max(1, min(1024, int(np.sqrt(n))))
            t0 = time.perf_counter()
            t.create_index("code", config=IvfFlat(distance_type="hamming", num_partitions=parts))
            build = time.perf_counter() - t0
            for nprobes in (8, 32):
                def ivf(q, nprobes=nprobes):
                    return t.search(q, vector_column_name="code").distance_type("hamming").limit(limit).nprobes(nprobes).to_arrow()

                ms = _time_queries(ivf, qs)
                got = [ivf(q)["_distance"].to_numpy() for q in qs]
                got = np.stack([np.pad(g, (0, limit - len(g)), constant_values=10**9) for g in got])
                out[f"lancedb-ivf-nprobes{nprobes}"] = {
                    "ms_per_query": rounded(ms, 3), "qps_batched": rounded(1000 / ms, 1),
                    "recall": rounded(_recall(None, exact_ids[:nq], exact_d[:nq], got), 4),
                    "build_s": rounded(build, 2), "partitions": parts}
            out.update(_hnsw_cells(t, qs, limit, exact_ids, exact_d, nq, parts))
        else:
            offsets, values = csr
            lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values.astype(np.int32)))
            t = db.create_table("codes", pa.table({"code": lists}))
            from lancedb.index import LabelList

            t.create_index("code", config=LabelList())
            from ..integrations.search import _sparse_search

            qs = [qcsr[1][i * k : (i + 1) * k] for i in range(nq)]
            ms = _time_queries(lambda q: _sparse_search(t, "code", q, limit, None, None), qs)
            got = np.stack([_sparse_search(t, "code", q, limit, None, None)["_distance"].to_numpy() for q in qs])
            out["lancedb-label-list"] = {"ms_per_query": rounded(ms, 3), "qps_batched": rounded(1000 / ms, 1),
                                         "recall": rounded(_recall(None, exact_ids[:nq], exact_d[:nq], got), 4)}
    return out


def _hnsw_cells(t: Any, qs: list[np.ndarray], limit: int, exact_ids: np.ndarray, exact_d: np.ndarray, nq: int,
                parts: int) -> dict[str, Any]:
    """LanceDB's IVF_HNSW_FLAT with Hamming: built and searched when lancedb can (0.40: yes), and whether the
    table can still be optimised after new rows (0.40: ``optimize()`` panics, "unsupported index type: HNSW,
    FLATBIN"), so it is an option only for tables that are not appended to."""
    import pyarrow as pa

    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        from lancedb.index import IvfHnswFlat

        t.create_index("code", config=IvfHnswFlat(distance_type="hamming", num_partitions=parts), replace=True)
        build = time.perf_counter() - t0
    except Exception as exc:  # report what lancedb says, do not stop the bench
        return {"lancedb-ivf-hnsw-flat": {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}}
    for nprobes in (8, 32):
        def hnsw(q: np.ndarray, nprobes: int = nprobes) -> Any:
            return t.search(q, vector_column_name="code").distance_type("hamming").limit(limit).nprobes(nprobes).to_arrow()

        ms = _time_queries(hnsw, qs)
        got = [hnsw(q)["_distance"].to_numpy() for q in qs]
        got = np.stack([np.pad(g, (0, limit - len(g)), constant_values=10**9) for g in got])
        out[f"lancedb-ivf-hnsw-flat-nprobes{nprobes}"] = {
            "ms_per_query": rounded(ms, 3), "qps_batched": rounded(1000 / ms, 1),
            "recall": rounded(_recall(None, exact_ids[:nq], exact_d[:nq], got), 4), "build_s": rounded(build, 2)}
    try:
        width = t.schema.field("code").type.list_size
        t.add(pa.table({"code": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(8 * width, np.uint8)), width)}))
        t.optimize()
        status = "ok"
    except BaseException as exc:  # a Rust panic surfaces as pyo3's PanicException (a BaseException)
        status = f"{type(exc).__name__}: {str(exc)[:160]}"
    for key in out:
        out[key]["optimize_after_add"] = status
    return out


def print_summaries(res: dict[str, Any]) -> None:
    """The ``batched`` and ``khot`` tables of a run."""
    from .common import fmt

    if res.get("batched"):
        print(f"\nbatched: {res.get('n_queries')} queries, top-{res.get('limit')}, queries/s (FAISS: the faster of "
              "its thread settings); single-query ms against the baseline")
        print(f"{'code':>11} {'N':>9} {'hashplug':>9} {'FAISS':>9} {'ratio':>6} | {'ms':>8} {'base ms':>8} {'ratio':>6}")
        for code, byn in res["batched"].items():
            for n, c in byn.items():
                print(f"{code:>11} {n:>9} {fmt(c.get('hashplug_qps'), 1):>9} {fmt(c.get('faiss_qps'), 1):>9} "
                      f"{fmt(c.get('qps_ratio_to_faiss'), 2):>6} | {fmt(c.get('hashplug_ms')):>8} "
                      f"{fmt(c.get('baseline_ms')):>8} {fmt(c.get('ms_ratio_to_baseline'), 2):>6}")
    if res.get("khot"):
        print("\nk-hot: single-query ms, FAISS on the packed codes (the faster of its thread settings)")
        print(f"{'code':>14} {'N':>9} {'activity':>8} {'method':>8} {'hashplug':>9} {'FAISS':>9} {'speedup':>7} "
              f"{'base ms':>8} {'build s':>8} {'base build s':>12}")
        for code, byn in res["khot"].items():
            for n, c in byn.items():
                print(f"{code:>14} {n:>9} {100 * c['activity']:>7.2f}% {c['method']:>8} {fmt(c.get('hashplug_ms')):>9} "
                      f"{fmt(c.get('faiss_ms')):>9} {fmt(c.get('speedup_vs_faiss'), 2):>7} "
                      f"{fmt(c.get('baseline_ms')):>8} {fmt(c.get('build_s')):>8} {fmt(c.get('baseline_build_s')):>12}")


def merge_search(paths: Sequence[str]) -> dict[str, Any]:
    """Combine ``hashplug bench search`` JSONs: each (code kind, N) cell, with its memory and build figures, comes
    from the first file that has it (a later run fills what an earlier one lacks, e.g. sizes it could not
    finish); ``"sources"`` records which file gave which cells."""
    from pathlib import Path

    from ..validation import HashplugError

    res: dict[str, Any] | None = None
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise HashplugError(f"cannot read search results {str(p)!r}: {exc}") from None
        if doc.get("suite") != "search":
            raise HashplugError(f"{str(p)!r} is not a `hashplug bench search` result (suite={doc.get('suite')!r}).")
        if res is None:
            res = {**doc, "rows": {}, "memory": {}, "build": {}, "batched": {}, "khot": {}, "sources": {}}
        taken = []
        for code, byn in doc["rows"].items():
            for n, cell in byn.items():
                if n in res["rows"].get(code, {}):
                    continue
                res["rows"].setdefault(code, {})[n] = cell
                for key in ("memory", "build", "batched", "khot"):
                    if n in doc.get(key, {}).get(code, {}):
                        res[key].setdefault(code, {})[n] = doc[key][code][n]
                taken.append(f"{code}@{n}")
        res["sources"][str(p)] = taken
    if res is None:
        raise HashplugError("--merge needs at least one JSON file.")
    return res


class SearchSuite(Suite):
    """``hashplug bench search``: exact Hamming top-k latency and recall against LanceDB and FAISS."""

    names = ("search",)
    help = "Hamming top-k latency vs N: hashplug's kernel, MIH, LanceDB, FAISS (random codes)"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--sizes", type=int, nargs="+", default=None,
                            help="database sizes N (default 100000 1000000)")
        parser.add_argument("--rows", type=int, default=None, help="one database size N (when --sizes is not given)")
        parser.add_argument("--codes", nargs="+", default=None,
                            help=f"code kinds, e.g. dense-256 khot-4096-16 (available: {' '.join(CODES)})")
        parser.add_argument("--queries", type=int, default=100, help="queries per measurement")
        parser.add_argument("--limit-results", type=int, default=100, help="results per query")
        parser.add_argument("--threads", type=int, default=2, help="threads of hashplug's kernel and FAISS")
        parser.add_argument("--ann-max-rows", type=int, default=2_000_000,
                            help="build LanceDB's IVF / HNSW indexes only up to this many rows (k-means over all rows)")
        parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS,
                            help="peers to measure beside hashplug's index (default: all)")
        parser.add_argument("--baseline", default=None, metavar="DIR",
                            help="a hashplug source tree (e.g. `git worktree add /tmp/base <commit>`) whose index "
                                 "is timed on the same codes (rows baseline-index, ratio_to_baseline)")
        parser.add_argument("--baseline-cache", default=None, metavar="DIR",
                            help="where the copy of the --baseline tree is kept, with numba's cache of its compiled "
                                 "kernels (default: bench-baseline/ in $HASHPLUG_CACHE or ~/.cache/hashplug)")
        parser.add_argument("--repeats", type=int, default=3, help="batched timings: best of this many batches")
        parser.add_argument("--bound-seconds", type=float, default=0.5,
                            help="seconds of each reading of the machine's bounds (memory bandwidth, popcount rate)")
        parser.add_argument("--latency-queries", type=int, default=None,
                            help="single-query latencies: the median over this many queries (default: all)")
        parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                            help="combine the cells (code kind x N) of these runs' JSONs into --out / --png "
                                 "(no measuring)")
        add_out(parser)
        add_png(parser, "the figure (latency vs N)")

    def merge(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        res = merge_search(args.merge)
        write_json(res, args.out)
        if args.png:
            plot_latency(res, args.png)
        return res

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        sizes = args.sizes or ([args.rows] if args.rows else [100_000, 1_000_000])
        unknown = sorted(set(args.codes or []) - set(CODES))
        if unknown:
            from ..validation import HashplugError

            raise HashplugError(f"unknown code kinds {unknown}; available: {list(CODES)}.")
        res = run_search_bench(rows=sizes, codes=args.codes, n_queries=args.queries, limit=args.limit_results,
                               out=args.out, threads=args.threads, ann_max_rows=args.ann_max_rows,
                               peers=args.peers, baseline=args.baseline, repeats=args.repeats,
                               latency_queries=args.latency_queries, baseline_cache=args.baseline_cache,
                               bound_seconds=args.bound_seconds)
        if args.png:
            plot_latency(res, args.png)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        if getattr(args, "merge", None):
            print(f"merged {len(args.merge)} runs: "
                  + "; ".join(f"{p}: {len(c)} cells" for p, c in result["sources"].items()))
            return
        print(f"bound: {result['bound']}")
        for name_, byn in result["rows"].items():
            for n_, cell in byn.items():
                print(f"{name_:>14} N={n_:>9}: " + ", ".join(
                    f"{m} {c.get('ms_per_query')} ms (r={c.get('recall')})" for m, c in cell.items()))
        print_summaries(result)


SEARCH = register_suite(SearchSuite())


def bench_search(args: argparse.Namespace) -> int:
    """CLI entry of ``hashplug bench search`` (:class:`SearchSuite`)."""
    return SEARCH.main("search", args)


def plot_latency(res: dict[str, Any], png: str) -> None:
    """Single-query latency against N, one panel per code kind, one line per method (log-log), to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(res["rows"])
    cols = min(3, len(kinds))
    rows_ = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.6 * cols, 3.4 * rows_ + 0.9), squeeze=False)
    # one colour and marker per method in every panel
    methods_all = list(dict.fromkeys(m for k in kinds for n in res["rows"][k] for m in res["rows"][k][n]))
    cmap = plt.get_cmap("tab20")
    style = {m: (cmap(i % 20), "osv^D<>p*h"[i % 10]) for i, m in enumerate(methods_all)}
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    for ax, kind in zip(axes.flat, kinds):
        byn = res["rows"][kind]
        ns = sorted(byn, key=int)
        for meth in methods_all:
            pts = [(int(n), byn[n][meth]["ms_per_query"]) for n in ns
                   if meth in byn[n] and byn[n][meth].get("ms_per_query") is not None]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker=style[meth][1], color=style[meth][0], label=meth)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows N")
        ax.set_ylabel("ms per query")
        ax.set_title(kind, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=style[m][0], marker=style[m][1], label=m) for m in methods_all]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / (3.4 * rows_ + 0.9) + 0.02, 1, 0.96))
    fig.suptitle(f"Single-query latency (top-{res.get('limit', '?')}; '@10': top-10), same data per panel", fontsize=9)
    fig.savefig(png, dpi=110)
    plt.close(fig)
