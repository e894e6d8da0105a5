"""``hashplug bench load``: ingest many rows from a generator with a reader searching beside the writer.

One process runs :func:`hashplug.ingest` over a generator of ``rows`` rows (``dim`` float32 features, a
seeded mixture of Gaussians, generated chunk by chunk so the source never sits in memory) into a new table
with a dense encoder (LSH, ``bits`` bits); a sampler thread reads the process's resident set size
(``/proc/self/statm``) every 50 ms. A second process (``spawn``) opens the same database with
``read_consistency_interval=0`` (it sees every commit) and calls :func:`hashplug.search` in a loop while the
ingest runs, recording each latency and the rows it saw. After the ingest, a fresh connection times the first
search (LanceDB's exhaustive Hamming scan), :func:`hashplug.build_hamming_index` and the first search through the
index, and checks that every probe row is found at distance 0.

Reported (JSON ``rows``, one per phase): rows/s, peak RSS of the ingesting process (and its RSS before the
ingest), search p50 / p99 / max during ingestion, the first search after it. Not a CI test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .common import environment, format_rows, write_json
from .suite import Suite, add_lengths, add_out, lengths_flag, lengths_of, register_suite

__all__ = ["run_load", "format_load", "bench_load"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0


class _RssSampler:
    """Peak RSS of this process over a block, sampled every ``interval`` seconds by a daemon thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        self.peak = _rss_bytes()
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())


def _centers(dim: int, seed: int, n_centers: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_centers, dim)).astype(np.float32)


def _rows(start: int, n: int, dim: int, centers: np.ndarray, seed: int) -> np.ndarray:
    """Rows ``start .. start + n - 1`` of the generator: the same rows whatever the chunking (seeded per block)."""
    out = np.empty((n, dim), dtype=np.float32)
    block = 4096
    pos = 0
    while pos < n:
        b0 = (start + pos) // block
        rng = np.random.default_rng([seed, b0])
        blk = centers[rng.integers(0, len(centers), block)] + 0.5 * rng.standard_normal((block, dim)).astype(np.float32)
        lo = (start + pos) - b0 * block
        take = min(block - lo, n - pos)
        out[pos : pos + take] = blk[lo : lo + take]
        pos += take
    return out


def _source(rows: int, chunk: int, dim: int, centers: np.ndarray, seed: int) -> Iterator[Any]:
    import pyarrow as pa

    for s in range(0, rows, chunk):
        n = min(chunk, rows - s)
        X = _rows(s, n, dim, centers, seed)
        vec = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(X.reshape(-1)))
        yield pa.RecordBatch.from_arrays([pa.array(np.arange(s, s + n, dtype=np.int64)), vec], names=["id", "vector"])


def _searcher(db_path: str, name: str, stop_file: str, out_file: str, dim: int, seed: int, limit: int) -> None:
    """Search the table in a loop until ``stop_file`` exists; write latencies (s) and rows seen as JSON.

    Writes ``out_file + ".ready"`` once its imports are done, so the writer starts only then, and
    ``out_file + ".searched"`` after its first search, so a short ingest does not stop it before it searched."""
    import json
    import resource

    import lancedb

    import hashplug

    rng = np.random.default_rng(seed + 1)
    centers = _centers(dim, seed)
    db = lancedb.connect(db_path, read_consistency_interval=timedelta(0))
    lat: list[float] = []
    seen: list[int] = []
    errors: list[str] = []
    tbl = None
    Path(out_file + ".ready").write_text("ready")
    while not os.path.exists(stop_file):
        if tbl is None:
            try:
                tbl = db.open_table(name)
            except (ValueError, FileNotFoundError):
                time.sleep(0.05)
                continue
        q = centers[rng.integers(0, len(centers))] + 0.5 * rng.standard_normal(dim).astype(np.float32)
        t0 = time.perf_counter()
        try:
            hashplug.search(tbl, q, limit=limit, use_hamming_index=False)
        except Exception as exc:  # noqa: BLE001 - a benchmark records what went wrong and goes on
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.05)
            continue
        lat.append(time.perf_counter() - t0)
        seen.append(int(tbl.count_rows()))
        if len(lat) == 1:
            Path(out_file + ".searched").write_text("searched")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(out_file).write_text(json.dumps({"latencies": lat, "rows_seen": seen, "errors": errors[:20],
                                          "n_errors": len(errors), "peak_rss_bytes": peak_kb * 1024}))


def _pct(v: list[float], q: float) -> float | None:
    return None if not v else float(np.percentile(np.asarray(v), q))


def run_load(
    *,
    rows: int = 10_000_000,
    dim: int = 64,
    bits: int = 64,
    chunk_size: int = 65_536,
    search: bool = True,
    limit: int = 10,
    probes: int = 20,
    workdir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Ingest ``rows`` generated rows with a searching reader beside the writer; see the module docstring.

    Parameters
    ----------
    rows, dim : int
        Rows to ingest and float32 features per row.
    bits : int
        Code length of the LSH encoder (fitted on 10,000 generated rows).
    chunk_size : int
        Rows per commit.
    search : bool
        Run the searching reader process during the ingest.
    limit : int
        Results per search.
    probes : int
        Rows searched for after the ingest (each must come back at distance 0).
    workdir : path-like or None
        Where the database goes (default the system temp dir); removed afterwards.
    seed : int
    progress : bool

    Returns
    -------
    dict
        ``rows`` (one per phase) and the settings.
    """
    import resource

    import lancedb

    import hashplug
    from hashplug.export import to_onnx

    rows, dim, chunk_size = int(rows), int(dim), int(min(chunk_size, rows))
    centers = _centers(dim, seed)
    tmp = Path(tempfile.mkdtemp(prefix="hashplug_bench_load_", dir=workdir))
    try:
        enc = hashplug.get_encoder("lsh", k=bits, random_state=seed).fit(_rows(0, 10_000, dim, centers, seed))
        model = to_onnx(enc, tmp / f"lsh{bits}.onnx")
        db_path = str(tmp / "db")
        lancedb.connect(db_path)  # creates the folder
        stop, out = tmp / "stop", tmp / "searcher.json"
        proc = _start_searcher(db_path, stop, out, dim, seed, limit) if search else None
        rss_before = _rss_bytes()
        t0 = time.perf_counter()
        with _RssSampler() as sampler:
            res = hashplug.ingest(db_path, _source(rows, chunk_size, dim, centers, seed), name="load", model=str(model),
                                  chunk_size=chunk_size, progress=progress)
        ingest_s = time.perf_counter() - t0
        searcher = _stop_searcher(proc, stop, out)
        after = _after_ingest(db_path, rows, dim, centers, seed, probes, limit)
        peak_self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ingest_row = {"phase": "ingest", "rows": rows, "rows_in_table": after.pop("n_rows"), "seconds": round(ingest_s, 2),
                  "rows_per_s": round(rows / ingest_s, 1), "commits": res.chunks,
                  "peak_rss_mb": round(sampler.peak / 2**20, 1), "rss_before_mb": round(rss_before / 2**20, 1),
                  "peak_rss_growth_mb": round((sampler.peak - rss_before) / 2**20, 1)}
    return {
        "suite": "load",
        "metric": "rows/s, peak RSS (MB) of the ingesting process, search latency (ms) during and after",
        "input": f"{rows} rows of {dim} float32 (seeded Gaussian mixture, generated per chunk), id int64; LSH {bits} bits",
        "settings": {"rows": rows, "dim": dim, "bits": bits, "chunk_size": chunk_size, "limit": limit, "seed": seed,
                     "search_during_ingest": bool(search)},
        "peak_rss_self_ru_maxrss_mb": round(peak_self_kb / 1024, 1),
        "rows": [ingest_row, *_phase_rows(searcher, after)],
        "environment": environment(),
    }


def _start_searcher(db_path: str, stop: Path, out: Path, dim: int, seed: int, limit: int) -> Any:
    """The searching reader (another process), started and waited for until it is ready."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_searcher, args=(db_path, "load", str(stop), str(out), dim, seed, limit))
    proc.start()
    while not Path(str(out) + ".ready").exists() and proc.is_alive():
        time.sleep(0.05)
    return proc


def _stop_searcher(proc: Any, stop: Path, out: Path) -> dict[str, Any]:
    """Tell the reader to stop; its report (``{}`` without a reader)."""
    import json

    deadline = time.monotonic() + 120  # a short ingest may end before the reader's first search (its imports)
    while proc is not None and proc.is_alive() and not Path(str(out) + ".searched").exists() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.write_text("stop")
    if proc is not None:
        proc.join(timeout=600)
        if out.exists():
            return json.loads(out.read_text())
    return {}


def _after_ingest(db_path: str, rows: int, dim: int, centers: np.ndarray, seed: int, probes: int,
                  limit: int) -> dict[str, Any]:
    """The first search after the ingest, from a fresh connection, then the index: its build, its first search
    and ``probes`` searches for stored rows (each must come back at distance 0)."""
    import lancedb

    import hashplug

    tbl = lancedb.connect(db_path).open_table("load")
    n_rows = tbl.count_rows()
    pick = np.random.default_rng(seed + 2).choice(rows, size=min(probes, rows), replace=False)
    Xp = np.concatenate([_rows(int(i), 1, dim, centers, seed) for i in pick])
    t1 = time.perf_counter()
    first = hashplug.search(tbl, Xp[0], limit=limit, use_hamming_index=False)
    first_lancedb_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    hashplug.build_hamming_index(tbl)
    build_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    hashplug.search(tbl, Xp[0], limit=limit)
    first_index_s = time.perf_counter() - t1
    found = 0
    idx_lat = []
    for i, x in zip(pick, Xp):
        t1 = time.perf_counter()
        r = hashplug.search(tbl, x, limit=limit, columns=["id"])
        idx_lat.append(time.perf_counter() - t1)
        d = r["_distance"].to_numpy()
        ids = r["id"].to_numpy()
        found += int(np.any(ids[d == 0] == i))
    return {"n_rows": n_rows, "probes": len(pick), "first_lancedb_s": first_lancedb_s, "build_s": build_s,
            "first_index_s": first_index_s, "idx_lat": idx_lat, "found": found,
            "lancedb_found": int(float(first["_distance"][0].as_py()) == 0.0)}


def _phase_rows(searcher: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows after the ingest's: the reader during the ingest, the searches after it."""
    lat = searcher.get("latencies", [])
    return [
        {"phase": "search during ingest (LanceDB flat, other process)", "searches": len(lat),
         "p50_ms": None if not lat else round(1000 * _pct(lat, 50), 2),
         "p99_ms": None if not lat else round(1000 * _pct(lat, 99), 2),
         "max_ms": None if not lat else round(1000 * max(lat), 2),
         "errors": searcher.get("n_errors"), "error_messages": (searcher.get("errors") or [])[:3],
         "searcher_peak_rss_mb": round(searcher.get("peak_rss_bytes", 0) / 2**20, 1),
         "rows_seen_last": (searcher.get("rows_seen") or [None])[-1]},
        {"phase": "first search after ingest (LanceDB flat, fresh connection)",
         "ms": round(1000 * after["first_lancedb_s"], 2), "self_at_distance_0": after["lancedb_found"]},
        {"phase": "build_index", "seconds": round(after["build_s"], 3)},
        {"phase": "first search through the index (incl. kernel compile if numba)",
         "ms": round(1000 * after["first_index_s"], 2)},
        {"phase": f"{after['probes']} probe searches through the index", "p50_ms": round(1000 * _pct(after["idx_lat"], 50), 3),
         "found_at_distance_0": after["found"], "probes": after["probes"]},
    ]


def format_load(res: dict[str, Any]) -> str:
    """The phases as a text table."""
    cols = [("phase", "phase"), ("rows_per_s", "rows/s"), ("peak_rss_mb", "peak RSS MB"), ("seconds", "s"),
            ("searches", "searches"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("ms", "ms"), ("errors", "errors")]
    return f"{res['input']}\n" + format_rows(res["rows"], cols)


class LoadSuite(Suite):
    """``hashplug bench load``: a large resumable ingest of generated rows with a reader searching beside it."""

    names = ("load",)
    help = "ingest of generated rows at scale (rows/s, writer RSS) with a reader searching beside the writer"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--rows", type=int, default=None, help="generated rows (default 10000000)")
        parser.add_argument("--dim", type=int, default=None, help="float32 features per generated row (default 64)")
        add_lengths(parser, "code length of the LSH encoder (one value; default 64)")
        parser.add_argument("--chunk-size", type=int, default=None, help="rows per commit (default 65536)")
        parser.add_argument("--no-search", action="store_true", help="no searching reader beside the ingest")
        add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        from ..validation import HashplugError, check_int_param

        def opt(value: Any, default: int, flag: str) -> int:
            v = default if value is None else value
            return check_int_param(v, flag, "hashplug bench load", 1)

        lengths, flag = lengths_of(args), lengths_flag(args)
        if lengths is not None and len(lengths) != 1:
            raise HashplugError(f"hashplug bench load takes one {flag} (the LSH code length); got {lengths}.")
        res = run_load(
            rows=opt(args.rows, 10_000_000, "--rows"),
            dim=opt(getattr(args, "dim", None), 64, "--dim"),
            bits=opt((lengths or [None])[0], 64, flag),
            chunk_size=opt(getattr(args, "chunk_size", None), 65_536, "--chunk-size"),
            search=not getattr(args, "no_search", False),
        )
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_load(result))


LOAD = register_suite(LoadSuite())


def bench_load(args: argparse.Namespace) -> int:
    """``hashplug bench load`` (:class:`LoadSuite`)."""
    return LOAD.main("load", args)
