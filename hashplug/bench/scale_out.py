"""``hashplug bench scale-out``: rows/s of writing a hashplug table from one process (:func:`hashplug.ingest`)
against Ray Data with 1 and 2 encoding workers (:func:`hashplug.integrations.ray.write_table`), for LSH-64 and
BioConvHash, on MNIST-sized rows (784 float32, pixels / 255).

The rows are generated where they are read: one chunk of sampled MNIST rows, tiled with fresh ids (row ``i``
is sample ``i % chunk``), so neither path holds the source in memory and generating it costs nothing
measurable. Each path writes a new table (one commit per chunk for ``ingest``, one commit at the end for Ray)
and is timed end to end; the local Ray cluster is started once, before the first timing. A few rows of each
table are checked against :class:`~hashplug.runtime.OnnxEncoder` (their codes, every id once).

Not a CI test (a smoke run with ``--max-rows`` is): the defaults take about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import suite
from .common import environment, format_rows, load_mnist_float, write_json
from .suite import Suite, register_suite

__all__ = ["run_scale_out", "format_scale_out", "SCALE_OUT_ENCODERS"]

#: The encoders the suite runs, and each one's default number of rows.
SCALE_OUT_ENCODERS = {"lsh": 1_000_000, "bioconvhash": 10_000}
#: BioConvHash as measured (its default architecture: 500 filters of sizes 3 and 4, k=16), trained briefly:
#: the encoding cost depends on the architecture, not on how well it was trained.
_CONV_PARAMS = {"k": 16, "filter_epochs": 1, "epochs": 1, "n_patches": 20_000, "device": "cpu"}
#: Rows per encode call (and per ``hashplug.ingest`` chunk, at most) of each encoder: BioConvHash's 500 feature
#: maps of one MNIST image hold ~2.7 MB, so the runtime's default 8,192 images per onnxruntime call need ~22 GB
#: (a first full run here was killed by the OOM killer at 20 GB).
_BATCH_ROWS = {"lsh": 4096, "bioconvhash": 64}
_INGEST_CHUNK = {"lsh": 65_536, "bioconvhash": 256}
#: A small BioConvHash for smoke runs (``--max-rows``).
_CONV_SMOKE = {"k": 8, "n_filters": 16, "kernel_sizes": (3,), "kci": 2, "filter_epochs": 1, "epochs": 1,
               "n_patches": 2_000, "device": "cpu"}


def _fit_model(name: str, X: np.ndarray, n_fit: int, seed: int, smoke: bool, folder: Path) -> tuple[str, Any]:
    """The encoder ``name`` fitted on ``n_fit`` rows and exported; returns (ONNX path, encoder)."""
    from ..encoders import get_encoder
    from ..export import to_onnx

    rng = np.random.default_rng(seed)
    Xfit = X[rng.choice(X.shape[0], size=min(n_fit, X.shape[0]), replace=False)]
    if name == "lsh":
        enc = get_encoder("lsh", k=64, random_state=seed).fit(Xfit)
    elif name == "bioconvhash":
        params = dict(_CONV_SMOKE if smoke else _CONV_PARAMS)
        enc = get_encoder("bioconvhash", random_state=seed, **params).fit(Xfit.reshape(-1, 28, 28))
    else:
        raise ValueError(f"scale-out runs the encoders {sorted(SCALE_OUT_ENCODERS)}; got {name!r}.")
    return str(to_onnx(enc, folder / f"{name}.onnx")), enc


def _vectors(X: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(X, np.float32).reshape(-1)), X.shape[1])


def _rows_of(ids: np.ndarray, chunk: np.ndarray) -> Any:
    """The rows ``ids`` of the tiled source: ``id`` and ``vector`` (sample ``id % len(chunk)``)."""
    import pyarrow as pa

    ids = np.asarray(ids, dtype=np.int64)
    return pa.table({"id": ids, "vector": _vectors(chunk[ids % len(chunk)])})


class _Generate:
    """``map_batches`` over ``ray.data.range(n)``: the rows of the tiled source, made in the workers."""

    def __init__(self, chunk: np.ndarray) -> None:
        self.chunk = chunk

    def __call__(self, batch: Any) -> Any:
        return _rows_of(batch.column("id").to_numpy(), self.chunk)


def _ingest_source(chunk: np.ndarray, n: int, step: int) -> Iterator[Any]:
    for s in range(0, n, step):
        yield from _rows_of(np.arange(s, min(n, s + step)), chunk).to_batches()


def _time_ingest(db: Path, model: str, chunk: np.ndarray, n: int, chunk_size: int) -> dict[str, Any]:
    from ..integrations.ingest import ingest

    t0 = time.perf_counter()
    out = ingest(str(db), _ingest_source(chunk, n, chunk_size), name="ingest", model=model, chunk_size=chunk_size,
                 progress=False)
    return {"path": "hashplug.ingest (1 process)", "workers": 1, "seconds": time.perf_counter() - t0,
            "commits": out.chunks, "table": "ingest"}


def _time_ray(db: Path, model: str, chunk: np.ndarray, n: int, workers: int, num_cpus: float,
              block_rows: int, batch_rows: int) -> dict[str, Any]:
    import pyarrow as pa
    import ray.data

    from ..integrations.ray import write_table

    name = f"ray{workers}"
    t0 = time.perf_counter()
    ds = ray.data.range(n, override_num_blocks=max(1, -(-n // block_rows)))
    ds = ds.map_batches(_Generate, fn_constructor_args=(chunk,), batch_format="pyarrow", batch_size=block_rows,
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0)
    # the columns _Generate makes, given so that write_table need not run the generator once to learn them
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), int(chunk.shape[1])))])
    write_table(ds, db, name, model, concurrency=workers, num_cpus=num_cpus, batch_size=min(batch_rows, block_rows),
                schema=schema)
    return {"path": f"Ray Data, {workers} worker{'s' if workers > 1 else ''} ({num_cpus:g} CPU each)",
            "workers": workers, "seconds": time.perf_counter() - t0, "commits": 1, "table": name}


def _check(db: Path, table: str, model: str, chunk: np.ndarray, n: int, batch_rows: int) -> dict[str, Any]:
    """Every id once, and the codes of the first 1,000 ids equal to OnnxEncoder's."""
    import lancedb

    from ..runtime import OnnxEncoder

    tbl = lancedb.connect(str(db)).open_table(table)
    rows = tbl.count_rows()
    few = tbl.search().where(f"id < {min(n, 1000)}").select(["id", "code"]).limit(1000).to_arrow().sort_by("id")
    ids = few["id"].to_numpy()
    codes = np.stack(few["code"].to_numpy(zero_copy_only=False)) if len(ids) else np.zeros((0, 0), np.uint8)
    want = OnnxEncoder(model, batch_size=batch_rows).encode(chunk[ids % len(chunk)]) if len(ids) else codes
    return {"rows": int(rows), "ids_once": bool(rows == n and ids.tolist() == list(range(min(n, 1000)))),
            "codes_equal_onnx": bool(np.array_equal(codes, want))}


def _encoder_rows(name: str, X: np.ndarray, n: int, args: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """The three paths for one encoder: rows/s, per worker, the checks."""
    import ray

    model, enc = _fit_model(name, X, args["n_fit"], args["seed"], args["smoke"], folder)
    rng = np.random.default_rng(args["seed"] + 1)
    chunk = np.ascontiguousarray(X[rng.choice(X.shape[0], size=min(args["chunk_rows"], n, X.shape[0]), replace=False)])
    cpus = float(ray.cluster_resources().get("CPU", 2))
    two = round(min(1.0, (cpus - 1) / 2), 2)  # two actors leave a CPU for the write tasks
    db = folder / f"db_{name}"
    batch = _BATCH_ROWS[name]
    timed = [_time_ingest(db, model, chunk, n, min(args["chunk_size"], _INGEST_CHUNK[name])),
             _time_ray(db, model, chunk, n, 1, min(1.0, cpus - 1), args["block_rows"], batch),
             _time_ray(db, model, chunk, n, 2, two, args["block_rows"], batch)]
    out = []
    base = n / timed[0]["seconds"]
    for t in timed:
        rate = n / t["seconds"]
        out.append({"encoder": "LSH-64" if name == "lsh" else f"BioConvHash k={enc.k_}", "path": t["path"],
                    "workers": t["workers"], "rows": n, "seconds": round(t["seconds"], 3),
                    "rows_per_s": round(rate, 1), "rows_per_s_per_worker": round(rate / t["workers"], 1),
                    "ratio_to_ingest": round(rate / base, 3), "commits": t["commits"],
                    "checks": _check(db, t["table"], model, chunk, n, batch)})
    shutil.rmtree(db, ignore_errors=True)
    return out


def run_scale_out(
    data: str | os.PathLike[str] | None = None,
    *,
    encoders: tuple[str, ...] = ("lsh", "bioconvhash"),
    rows: int | None = None,
    conv_rows: int | None = None,
    max_rows: int | None = None,
    chunk_size: int = 65_536,
    block_rows: int = 16_384,
    chunk_rows: int = 4_096,
    n_fit: int = 10_000,
    seed: int = 0,
    workdir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Rows/s of :func:`hashplug.ingest` against Ray Data with 1 and 2 workers, per encoder.

    Parameters
    ----------
    data : path-like or None
        ``mnist.npz`` (default: the shared data folder's).
    encoders : tuple of str
        ``"lsh"`` (LSH, 64 bits) and/or ``"bioconvhash"``.
    rows, conv_rows : int or None
        Rows written per path for LSH (default 1,000,000) and BioConvHash (default 10,000).
    max_rows : int or None
        A smoke run: at most this many rows per path, a small BioConvHash and fewer fitting rows.
    chunk_size : int
        Rows per ``ingest`` commit.
    block_rows : int
        Rows per Ray block of the generated source.
    chunk_rows : int
        Sampled MNIST rows the source tiles.
    n_fit : int
        Rows the encoders are fitted on.
    seed : int
    workdir : path-like or None
        Where the tables go (default the system temp dir); removed afterwards.

    Returns
    -------
    dict
        ``rows``: one per (encoder, path) with seconds, rows/s, rows/s per worker, the ratio to ``ingest`` and
        the checks; settings and the environment.
    """
    _need_ray()
    t_start = time.perf_counter()
    X, _, path = load_mnist_float(data)
    smoke = max_rows is not None
    sizes = {"lsh": int(rows or SCALE_OUT_ENCODERS["lsh"]), "bioconvhash": int(conv_rows or SCALE_OUT_ENCODERS["bioconvhash"])}
    if smoke:
        sizes = {k: min(v, int(max_rows)) for k, v in sizes.items()}
    args = {"n_fit": min(n_fit, 500) if smoke else n_fit, "seed": seed, "smoke": smoke, "chunk_size": chunk_size,
            "block_rows": block_rows, "chunk_rows": chunk_rows}
    from ..integrations.ray import local_ray

    with local_ray():  # this machine's CPUs (a running cluster is used as it is)
        folder = Path(tempfile.mkdtemp(prefix="hashplug_bench_scale_out_", dir=workdir))
        try:
            results = [r for name in encoders for r in _encoder_rows(name, X, sizes[name], args, folder)]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return _result(results, path, sizes, args, encoders, t_start)


def _need_ray() -> None:
    try:
        import lance_ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"hashplug bench scale-out needs Ray and lance-ray ({exc}): pip install 'hashplug[ray]'.") from exc


def _result(results: list[dict[str, Any]], path: str, sizes: dict[str, int], args: dict[str, Any],
            encoders: tuple[str, ...], t_start: float) -> dict[str, Any]:
    import ray

    return {
        "suite": "scale-out",
        "metric": "rows/s written into a new hashplug table, end to end (one timed run per path)",
        "data": path,
        "input": "MNIST-sized rows: 784 float32 (pixels / 255), a chunk of sampled MNIST rows tiled with fresh ids; "
                 "columns id int64, vector, code",
        "settings": {"rows": {k: sizes[k] for k in encoders}, "chunk_size": args["chunk_size"], "ingest_chunk_max": _INGEST_CHUNK, "encode_batch_rows": _BATCH_ROWS,
                     "block_rows": args["block_rows"], "chunk_rows": args["chunk_rows"], "n_fit": args["n_fit"],
                     "seed": args["seed"], "smoke": args["smoke"],
                     "bioconvhash": _CONV_SMOKE if args["smoke"] else _CONV_PARAMS},
        "versions": {"ray": getattr(ray, "__version__", "?"), "lance_ray": _version("lance_ray"),
                     "pylance": _version("lance")},
        "notes": [
            "ingest commits every chunk_size rows (one LanceDB add each); Ray writes Lance files in its write tasks "
            "and commits once at the end.",
            "Ray with 2 workers gives each actor a fraction of a CPU so the write tasks keep one: on 2 cores the "
            "two actors share one core's worth of scheduling, not two.",
            "rows_per_s_per_worker is the figure a cluster scales: a 100-worker job reads, encodes and writes "
            "about 100 times it until the one commit at the end (docs/scaling.md).",
            "Single timed run per path on a shared machine: noisy.",
        ],
        "rows": results,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "environment": environment(),
    }


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except (ImportError, AttributeError):
        return "?"


def format_scale_out(res: dict[str, Any]) -> str:
    """Text table of :func:`run_scale_out` results."""
    cols = [("encoder", "encoder"), ("path", "path"), ("rows", "rows"), ("seconds", "seconds"),
            ("rows_per_s", "rows/s"), ("rows_per_s_per_worker", "rows/s/worker"), ("ratio_to_ingest", "vs ingest"),
            ("ok", "checks")]
    rows = [{**r, "seconds": f"{r['seconds']:.1f}", "rows_per_s": f"{r['rows_per_s']:,.0f}",
             "rows_per_s_per_worker": f"{r['rows_per_s_per_worker']:,.0f}",
             "ratio_to_ingest": f"{r['ratio_to_ingest']:.2f}x",
             "ok": "ok" if r["checks"]["ids_once"] and r["checks"]["codes_equal_onnx"] else "FAILED"}
            for r in res["rows"]]
    return format_rows(rows, cols)


class ScaleOutSuite(Suite):
    """``hashplug bench scale-out``: one process against Ray Data with 1 and 2 workers."""

    names = ("scale-out",)
    help = "rows/s into a hashplug table: hashplug.ingest (one process) against Ray Data with 1 and 2 workers"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (the rows are MNIST-sized, pixels / 255)")
        parser.add_argument("--encoders", nargs="+", choices=sorted(SCALE_OUT_ENCODERS), default=None,
                            help="encoders to run (default: lsh bioconvhash)")
        parser.add_argument("--rows", type=int, default=None, help="rows per path for LSH-64 (default 1000000)")
        parser.add_argument("--conv-rows", type=int, default=None,
                            help="rows per path for BioConvHash (default 10000: ~90 s per path on one core)")
        suite.add_max_rows(parser, "a smoke run: at most this many rows per path, a small BioConvHash")
        parser.add_argument("--chunk-size", type=int, default=None, help="rows per hashplug.ingest commit (default 65536)")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if args.chunk_size:
            kw["chunk_size"] = int(args.chunk_size)
        res = run_scale_out(args.data, encoders=tuple(args.encoders or ("lsh", "bioconvhash")), rows=args.rows,
                            conv_rows=args.conv_rows, max_rows=suite.max_rows_of(args), **kw)
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_scale_out(result))
        print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


SCALE_OUT = register_suite(ScaleOutSuite())
