"""``hashplug bench ingest``: LanceDB ingestion rows/s of :func:`hashplug.ingest` against ``table.add`` of
precomputed codes and against encoding alone, on MNIST-sized rows streamed in chunks.
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

__all__ = ["run_ingest", "format_ingest", "bench_ingest"]


def _list_vectors(X: np.ndarray) -> Any:
    """``list<float32>`` Arrow array over the rows of X (the hashplug schema's default source type)."""
    import pyarrow as pa

    n, d = X.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(X.reshape(-1)))


def _fixed_codes(codes: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(codes.reshape(-1)), codes.shape[1])


def run_ingest(
    data: str | os.PathLike[str] | None = None,
    *,
    rows: int = 1_000_000,
    chunk_size: int = 65_536,
    method: str = "lsh",
    k: int = 64,
    n_fit: int = 10_000,
    workdir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """LanceDB ingestion rows/s: :func:`hashplug.ingest` against ``table.add`` of precomputed codes.

    The source streams ``rows`` MNIST-sized rows (784 float32, pixels / 255) in chunks of ``chunk_size``:
    one chunk of MNIST rows is sampled once and tiled with fresh ids, so memory stays bounded by one chunk
    and generating the stream costs nothing measurable. Every path sees the same chunks.

    Paths, each timed end to end over all rows:

    ``encode only``
        ``OnnxEncoder.encode`` of every chunk (numpy in, codes out; no Arrow, no write).
    ``encode_batches (no write)``
        The ingest pipeline without the write: Arrow chunk -> numpy -> ONNX -> Arrow code column.
    ``table.add precomputed``
        A plain LanceDB table (same columns, ``fixed_size_list<uint8>`` code column, no embedding function),
        one ``table.add`` per chunk with the codes already computed.
    ``table.add precomputed, hashplug schema``
        The same into a table created with :func:`hashplug.integrations.lancedb.schema` (the embedding function
        recorded in the schema metadata; LanceDB skips it because the code column is present).
    ``hashplug.ingest``
        Encode with the ONNX model and commit each chunk (``chunk_size`` rows per atomic ``table.add``).

    Parameters
    ----------
    data : path-like or None
        ``mnist.npz`` (default :func:`hashplug.data.default_data_path` ``("mnist")``).
    rows : int
        Rows to ingest.
    chunk_size : int
        Rows per chunk and per commit.
    method, k : str, int
        The dense encoder (default LSH, 64 bits).
    n_fit : int
        Rows used to fit the encoder.
    workdir : path-like or None
        Where the temporary databases go (default the system temp dir); removed afterwards.
    seed : int
        Seed of the sampling and of the encoder.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        ``rows`` (one per path) with seconds, rows/s and the ratio to ``hashplug.ingest``, plus settings.
    """
    import lancedb

    from ..export import to_onnx
    from ..runtime import OnnxEncoder

    t_start = time.perf_counter()
    rows = int(rows)
    chunk_size = int(min(chunk_size, rows))
    enc, Xc, yc, path = _fit_and_sample(data, method, k, n_fit, chunk_size, seed)
    tmp = Path(tempfile.mkdtemp(prefix="hashplug_bench_ingest_", dir=workdir))
    try:
        onnx_path = to_onnx(enc, tmp / f"{method}{k}.onnx")
        ort = OnnxEncoder(onnx_path)
        stream = _Stream(Xc, yc, rows, chunk_size, str(onnx_path), progress)
        codes_c = _fixed_codes(ort.encode(Xc))
        ort.encode(Xc)  # warm up the session on one chunk (not timed)
        results = [_time_encode_only(stream, ort, Xc), _time_encode_batches(stream, ort)]
        db = lancedb.connect(str(tmp / "db"))
        # 3. table.add of precomputed codes into a plain table; 4. the same into a table with the hashplug
        #    schema (embedding function in the metadata): isolates what LanceDB's embedding-function handling
        #    costs on add, codes already present
        add, plain_rows, plain_sample = _time_add(db, "plain", stream.plain_schema, stream, codes_c,
                                                  "table.add, precomputed codes")
        add_hp, _, _ = _time_add(db, "hp_add", stream.hp_schema, stream, codes_c,
                                 "table.add, precomputed codes, hashplug schema")
        ing, hp_rows, hp_sample = _time_ingest(db, tmp / "db", stream)
        results += [add, add_hp, ing]
        same_codes = bool(np.array_equal(_codes_by_id(plain_sample), _codes_by_id(hp_sample)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _ingest_result(results, enc, path, stream, seed, int(plain_rows), int(hp_rows), same_codes, t_start)


def _fit_and_sample(data: Any, method: str, k: int, n_fit: int, chunk_size: int,
                    seed: int) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """The dense encoder fitted on ``n_fit`` MNIST rows, and one chunk of sampled rows and labels."""
    from ..encoders import encoder_class, get_encoder

    X, y, path = load_mnist_float(data)
    rng = np.random.default_rng(seed)
    cls = encoder_class(method)
    seeded = {"random_state": seed} if "random_state" in cls._param_names() else {}
    enc = get_encoder(cls.method_name, k=k, **seeded)
    if enc.code_kind != "dense":
        raise ValueError(f"the ingest benchmark needs a dense encoder; {method!r} is {enc.code_kind}.")
    enc.fit(X[rng.choice(X.shape[0], size=min(n_fit, X.shape[0]), replace=False)])
    pick = rng.choice(X.shape[0], size=chunk_size, replace=chunk_size > X.shape[0])
    return enc, np.ascontiguousarray(X[pick]), y[pick].astype(np.int64), path


class _Stream:
    """The source every path sees: ``rows`` rows in chunks of ``chunk_size``, one sampled chunk tiled with
    fresh ids, and the schemas (source, plain table, hashplug table)."""

    def __init__(self, Xc: np.ndarray, yc: np.ndarray, rows: int, chunk_size: int, model: str,
                 progress: bool) -> None:
        import pyarrow as pa
        from lancedb.embeddings import get_registry

        from ..integrations.lancedb import schema

        self.rows, self.chunk_size, self.model, self.progress = rows, chunk_size, model, progress
        self.vec, self.lab = _list_vectors(Xc), pa.array(yc)
        func = get_registry().get("hashplug").create(model=model)
        self.hp_schema = schema(func, extra={"id": pa.int64(), "label": pa.int64()})
        self.plain_schema = pa.schema(list(self.hp_schema), metadata=None)
        self.src_schema = pa.schema([f for f in self.hp_schema if f.name != "code"])
        self.n_chunks = len(range(0, rows, chunk_size))

    def starts(self) -> Iterator[tuple[int, int]]:
        for s in range(0, self.rows, self.chunk_size):
            yield s, min(self.chunk_size, self.rows - s)

    def source(self) -> Iterator[Any]:
        import pyarrow as pa

        for s, n in self.starts():
            ids = pa.array(np.arange(s, s + n, dtype=np.int64))
            yield pa.RecordBatch.from_arrays([ids, self.lab.slice(0, n), self.vec.slice(0, n)], schema=self.src_schema)

    def bar(self, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=self.rows, unit="rows", desc=desc, disable=not self.progress, leave=False)

    def record(self, name: str, seconds: float, **extra: Any) -> dict[str, Any]:
        return {"path": name, "rows": self.rows, "seconds": round(seconds, 3),
                "rows_per_s": round(self.rows / seconds, 1), **extra}


def _time_encode_only(stream: _Stream, ort: Any, Xc: np.ndarray) -> dict[str, Any]:
    """1. ``OnnxEncoder.encode`` of every chunk (numpy in, codes out)."""
    with stream.bar("encode only") as b:
        t0 = time.perf_counter()
        for _, n in stream.starts():
            ort.encode(Xc[:n])
            b.update(n)
        return stream.record("encode only (OnnxEncoder, numpy in)", time.perf_counter() - t0)


def _time_encode_batches(stream: _Stream, ort: Any) -> dict[str, Any]:
    """2. The ingest pipeline's encode step, no write."""
    from ..integrations.arrow import encode_batches

    with stream.bar("encode_batches") as b:
        t0 = time.perf_counter()
        for batch in encode_batches(stream.source(), ort, schema=stream.src_schema):
            b.update(batch.num_rows)
        return stream.record("encode_batches (Arrow in/out, no write)", time.perf_counter() - t0)


def _time_add(db: Any, name: str, table_schema: Any, stream: _Stream, codes_c: Any,
              label: str) -> tuple[dict[str, Any], int, Any]:
    """One ``table.add`` per chunk of precomputed codes into a new table ``name`` (dropped after); returns
    the timing, the row count and the first 1,000 ids' codes."""
    import pyarrow as pa

    tbl = db.create_table(name, schema=table_schema)
    with stream.bar(label.replace("table.add, precomputed codes", "table.add precomputed")) as b:
        t0 = time.perf_counter()
        for batch in stream.source():
            n = batch.num_rows
            tbl.add(pa.Table.from_batches([batch]).append_column("code", codes_c.slice(0, n)))
            b.update(n)
        rec = stream.record(label, time.perf_counter() - t0, commits=stream.n_chunks)
    n_rows = tbl.count_rows()
    sample = tbl.search().where(f"id < {min(stream.rows, 1000)}").select(["id", "code"]).to_arrow()
    db.drop_table(name)
    return rec, n_rows, sample


def _time_ingest(db: Any, uri: Path, stream: _Stream) -> tuple[dict[str, Any], int, Any]:
    """5. :func:`hashplug.ingest` (encode + chunked commits) into a new table (dropped after)."""
    from ..integrations.ingest import ingest

    t0 = time.perf_counter()
    out = ingest(str(uri), stream.source(), name="hashplug", model=stream.model, chunk_size=stream.chunk_size,
                 progress=stream.progress)
    rec = stream.record("hashplug.ingest (encode + commit)", time.perf_counter() - t0, commits=out.chunks)
    tbl = out.table
    n_rows = tbl.count_rows()
    sample = tbl.search().where(f"id < {min(stream.rows, 1000)}").select(["id", "code"]).to_arrow()
    db.drop_table("hashplug")
    return rec, n_rows, sample


def _codes_by_id(t: Any) -> np.ndarray:
    t = t.sort_by("id")
    return np.asarray(t["code"].to_pylist(), dtype=np.uint8)


def _ingest_result(results: list[dict[str, Any]], enc: Any, path: str, stream: _Stream, seed: int,
                   plain_rows: int, hp_rows: int, same_codes: bool, t_start: float) -> dict[str, Any]:
    """The suite's JSON: the paths' rows with their ratio to ``hashplug.ingest``, ratios, checks, settings."""
    rows, chunk_size = stream.rows, stream.chunk_size
    ingest_rate = results[-1]["rows_per_s"]
    for r in results:
        r["ratio_to_ingest"] = round(r["rows_per_s"] / ingest_rate, 3)
    enc_r, _, add_r, add_hp_r, _ = results
    ratios = {
        "ingest_over_add_precomputed": round(ingest_rate / add_r["rows_per_s"], 3),
        "ingest_over_add_precomputed_hashplug_schema": round(ingest_rate / add_hp_r["rows_per_s"], 3),
        "ingest_over_encode_only": round(ingest_rate / enc_r["rows_per_s"], 3),
        "ingest_over_encode_then_add": round(ingest_rate / (rows / (enc_r["seconds"] + add_r["seconds"])), 3),
    }
    return {
        "suite": "ingest",
        "metric": "rows/s into LanceDB (one timed run per path); ratios to hashplug.ingest",
        "data": path,
        "input": f"{rows} rows of 784 float32 (MNIST pixels / 255; one chunk of {chunk_size} sampled rows "
        "tiled with fresh ids); columns id int64, label int64, vector list<float32>, code",
        "model": {
            "method": enc.method_name,
            "k": int(enc.k_),
            "m": int(enc.m_),
            "code_bytes": int(enc.n_bytes),
        },
        "settings": {"rows": rows, "chunk_size": chunk_size, "chunks": stream.n_chunks, "seed": seed},
        "checks": {
            "plain_rows": int(plain_rows),
            "ingest_rows": int(hp_rows),
            "codes_equal_first_1000_ids": same_codes,
        },
        "ratios": ratios,
        "notes": [
            "encode_then_add = the sum of the 'encode only' and 'table.add' times; ingest_over_encode_then_add "
            "near 1 means hashplug.ingest adds little beyond encoding plus writing.",
            "Each write path stores the 784 floats of every row (3.1 KB/row), so the write dominates.",
            "Single timed run per path on a shared 2-core machine: noisy; the ratios are what matter.",
        ],
        "rows": results,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "environment": environment(),
    }


def format_ingest(res: dict[str, Any]) -> str:
    """Text table of :func:`run_ingest` results."""
    cols = [
        ("path", "path"),
        ("rows", "rows"),
        ("seconds", "seconds"),
        ("rows_per_s", "rows/s"),
        ("ratio_to_ingest", "vs ingest"),
    ]
    rows = [
        {
            **r,
            "seconds": f"{r['seconds']:.1f}",
            "rows_per_s": f"{r['rows_per_s']:,.0f}",
            "ratio_to_ingest": f"{r['ratio_to_ingest']:.2f}x",
        }
        for r in res["rows"]
    ]
    lines = [format_rows(rows, cols)]
    lines.append("ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in res["ratios"].items()))
    return "\n".join(lines)


class IngestSuite(Suite):
    """``hashplug bench ingest``: LanceDB ingestion rows/s of :func:`hashplug.ingest` against ``table.add``."""

    names = ("ingest",)
    help = "LanceDB ingestion rows/s: hashplug.ingest against table.add of precomputed codes"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (the rows are MNIST-sized, pixels / 255)")
        parser.add_argument("--rows", type=int, default=None, help="rows ingested (default 1000000)")
        suite.add_lengths(parser, "code length of the encoder (the first value; default 64)")
        parser.add_argument("--methods", nargs="+", default=None,
                            help="encoder fitted and exported (the first name; default lsh)")
        suite.add_max_rows(parser, "rows the encoder is fitted on (default 10000)")
        parser.add_argument("--chunk-size", type=int, default=None, help="rows per commit (default 65536)")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if suite.max_rows_of(args) is not None:
            kw["n_fit"] = int(suite.max_rows_of(args))
        if getattr(args, "chunk_size", None):
            kw["chunk_size"] = int(args.chunk_size)
        method = (args.methods or ["lsh"])[0]
        res = run_ingest(args.data, rows=args.rows or 1_000_000, method=method, k=(suite.lengths_of(args) or [64])[0], **kw)
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_ingest(result))
        print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


INGEST = register_suite(IngestSuite())


def bench_ingest(args: argparse.Namespace) -> int:
    """``hashplug bench ingest`` (:class:`IngestSuite`): run, print the table, write ``--out``.

    ``--rows`` sets the row count (default 1,000,000), ``--k`` the LSH code length (default 64) and ``--limit``
    the number of rows used to fit the encoder. An optional ``args.chunk_size`` sets rows per commit.
    """
    return INGEST.main("ingest", args)
