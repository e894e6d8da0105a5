"""Serving-side commands of the ``hashplug`` CLI: ``export``, ``ingest``, ``search`` and ``demo``.

``ingest`` and ``search`` run on the base install (numpy, onnxruntime, LanceDB); ``export`` and
``demo`` train or export and need the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .validation import HashplugError

__all__ = ["add_commands", "run_demo"]


def cmd_export(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .export import check_parity, to_onnx

    enc = load_encoder(args.model)
    path = to_onnx(enc, args.out, opset=args.opset)
    print(f"exported {type(enc).__name__} (m={enc.m}, k={enc.k}, {enc.code_kind}) -> {path}")
    if args.check:
        from .data import load_dataset

        X, _ = load_dataset(args.check)
        X = np.asarray(X, dtype=np.float32)
        if args.scale:
            X = X / np.float32(args.scale)
        rep = check_parity(enc, path, X)
        print(json.dumps({k: v for k, v in rep.items() if not isinstance(v, np.ndarray)}, indent=2, default=str))
        return 0 if rep["identical"] else 1
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from .integrations.ingest import ingest

    source: Any = args.source
    columns = None
    if args.source.endswith((".npy", ".npz")):
        from .data import load_array

        X, y = load_array(args.source)
        source = np.asarray(X, dtype=np.float32) / np.float32(args.scale or 1.0)
        columns = {"id": np.arange(len(source), dtype=np.int64)}
        if y is not None:
            columns["label"] = np.asarray(y)
    t0 = time.perf_counter()
    res = ingest(
        args.db,
        source,
        name=args.table,
        model=args.model,
        layout=_layout_option(args),
        source_column=args.source_column,
        columns=columns,
        id_column=args.id_column,
        chunk_size=args.chunk_size,
        checkpoint=args.checkpoint,
        progress=True,
    )
    dt = time.perf_counter() - t0
    print(f"ingested {res.rows_written} rows ({res.rows_skipped} skipped by resume) in {res.chunks} commits, "
          f"{dt:.1f} s ({res.rows_written / max(dt, 1e-9):,.0f} rows/s); table has {res.table.count_rows()} rows")
    if args.index:
        from .integrations.lancedb import create_index

        create_index(res.table)
        print("index built")
    return 0


def _parse_query(text: str) -> np.ndarray:
    """The ``--query`` value: one vector as a JSON array of numbers, returned as a (1, d) float32 array."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    usage = f"--query must be a JSON array of numbers, e.g. '[0.1, 0.2, ...]'; got {shown!r}"
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HashplugError(f"{usage}, which is not valid JSON ({exc.msg} at character {exc.pos}).") from exc
    if not isinstance(val, list) or not val:
        kinds = {bool: "a JSON boolean", int: "a JSON number", float: "a JSON number", str: "a JSON string",
                 dict: "a JSON object"}
        what = "an empty array" if isinstance(val, list) else kinds.get(type(val), "a JSON null")
        raise HashplugError(f"{usage} ({what}).")
    for i, v in enumerate(val):
        if isinstance(v, list):
            raise HashplugError(f"{usage} (a nested array); pass one vector, or several rows with --query-file.")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise HashplugError(f"{usage} (element {i} is {v!r}).")
    return np.asarray(val, dtype=np.float32)[None, :]


def cmd_search(args: argparse.Namespace) -> int:
    import lancedb

    from .integrations.lancedb import search

    if args.query_file:
        from .data import load_array

        Q, _ = load_array(args.query_file)
        Q = np.asarray(Q, dtype=np.float32)
        where = f"{args.query_file} has {len(Q)} row{'' if len(Q) == 1 else 's'}"
    else:
        Q = _parse_query(args.query)
        where = "--query is a single row"
    if args.limit_k is not None:
        print("hashplug search: --k is deprecated; use --limit.", file=sys.stderr)
        args.limit = args.limit_k
    if args.limit < 1:
        raise HashplugError(f"--limit must be at least 1 (results per query); got {args.limit}.")
    if args.n < 1:
        raise HashplugError(f"--n must be at least 1 (the number of query rows); got {args.n}.")
    if not 0 <= args.row < len(Q):
        valid = f"valid rows are 0 to {len(Q) - 1}" if len(Q) > 1 else "the only valid row is 0"
        raise HashplugError(f"--row {args.row} is out of range: {where}; {valid}.")
    if args.scale:
        Q = Q / np.float32(args.scale)
    tbl = lancedb.connect(args.db).open_table(args.table)
    rows = Q[args.row : args.row + args.n]
    cols = args.columns.split(",") if args.columns else None
    for i, q in enumerate(rows):
        res = search(tbl, q, limit=args.limit, columns=cols)
        keep = [c for c in res.column_names if c not in ("vector", "code")]
        print(json.dumps({"query": args.row + i, "results": res.select(keep).to_pylist()}, default=str))
    return 0


def run_demo(
    folder: str | Path = "hashplug_demo",
    method: str = "biohash",
    k: int = 16,
    epochs: int = 60,
    n_show: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """The README's main job on scikit-learn digits, end to end.

    Train ``method`` -> export ONNX -> ingest the database into a LanceDB table under ``folder`` ->
    search every query through LanceDB -> print mAP, precision@10, storage per row against float32 and
    a few neighbours. Returns the figures as a dict.
    """
    import lancedb
    import pyarrow as pa

    from .codes import storage_bits
    from .data import load_digits, per_class_split
    from .encoders import get_encoder
    from .export import to_onnx
    from .integrations.ingest import ingest
    from .integrations.lancedb import create_index, get_function, search
    from .metrics import map_from_codes
    from .runtime import OnnxEncoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X, y = load_digits()
    X = X / np.float32(16.0)  # digits pixels are 0..16
    q, db = per_class_split(y, 20, seed)
    print(f"[1/5] data: scikit-learn digits, {len(db)} database rows, {len(q)} queries (20 per class), d={X.shape[1]}")

    t0 = time.perf_counter()
    params: dict[str, Any] = {"k": k, "random_state": seed}
    if method.lower() == "biohash":
        params.update(epochs=epochs, lr=0.2, delta=0.05, activity=0.05)
    enc = get_encoder(method, **params).fit(X[db])
    print(f"[2/5] trained {type(enc).__name__}: m={enc.m} units, k={enc.k} active, {time.perf_counter() - t0:.1f} s")

    onnx_path = to_onnx(enc, folder / f"{method}_k{k}.onnx")
    onx = OnnxEncoder(onnx_path)
    same = bool(np.array_equal(onx.encode(X), enc.encode(X)))
    print(f"[3/5] exported ONNX -> {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB); "
          f"onnxruntime codes identical to the encoder's: {same}")

    uri = folder / "lancedb"
    con = lancedb.connect(uri)
    if "digits" in con.table_names():
        con.drop_table("digits")
    res = ingest(uri, X[db], name="digits", model=str(onnx_path), layout="packed",
                 columns={"id": db.astype(np.int64), "label": y[db].astype(np.int64)}, progress=False)
    tbl = res.table
    if tbl.count_rows() >= 256:
        create_index(tbl)
    col, _, _ = get_function(tbl)
    code_type = tbl.schema.field(col).type
    print(f"[4/5] ingested {res.rows_written} rows into {uri}/digits.lance; code column {col}: {code_type}")

    cq, cdb = onx.encode(X[q]), onx.encode(X[db])
    map_all = 100 * map_from_codes(cq, cdb, y[q], y[db])
    precs, neighbours = [], []
    for i, qi in enumerate(q):
        hits = search(tbl, X[qi], 10, columns=["id", "label"], exact=True)
        labels = np.asarray(hits["label"].to_pylist())
        precs.append(float(np.mean(labels == y[qi])))
        if i < n_show:
            neighbours.append((int(qi), int(y[qi]), hits["id"].to_pylist()[:5], labels[:5].tolist(),
                               hits["_distance"].to_pylist()[:5]))
    float_bytes = X.shape[1] * 4
    code_bytes = pa.array([0], pa.uint8()).type.byte_width * onx.n_bytes
    bits_idx = storage_bits(onx.m, onx.k, onx.code_kind)
    out = {
        "method": type(enc).__name__,
        "m": onx.m,
        "k": onx.k,
        "map_all": round(map_all, 2),
        "precision_at_10": round(100 * float(np.mean(precs)), 2),
        "bytes_per_row_float32": float_bytes,
        "bytes_per_row_packed": code_bytes,
        "bits_per_row_as_indices": bits_idx,
        "onnx_parity": same,
    }
    print(f"[5/5] quality over {len(q)} queries: mAP@All {out['map_all']:.2f}%, "
          f"label precision@10 via LanceDB {out['precision_at_10']:.2f}%")
    print(f"      storage per row: float32 {float_bytes} B; packed code {code_bytes} B "
          f"({float_bytes / code_bytes:.1f}x smaller); as {onx.k} indices {bits_idx} bits "
          f"({8 * float_bytes / bits_idx:.1f}x smaller)")
    for qi, lab, ids, labs, dists in neighbours:
        print(f"      query #{qi} (label {lab}): neighbours {ids} labels {labs} hamming {dists}")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    out = run_demo(args.dir, method=args.method, k=args.k, epochs=args.epochs, seed=args.seed)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


def _layout_option(args: argparse.Namespace) -> str | None:
    """``--layout``, or the deprecated ``--code`` (0.1.0: dense / sparse)."""
    if args.code is None:
        return args.layout
    if args.layout is not None:
        raise HashplugError("pass --layout only (--code is its deprecated 0.1.0 name).")
    print("hashplug ingest: --code is deprecated; use --layout packed|indices.", file=sys.stderr)
    return {"dense": "packed", "sparse": "indices"}[args.code]


def add_commands(sub: Any) -> None:
    """Register the serving commands on the CLI's subparsers."""
    e = sub.add_parser("export", help="export a saved model (.npz) to ONNX")
    e.add_argument("model")
    e.add_argument("--out", required=True)
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--check", help="dataset to verify onnxruntime parity on (name or file)")
    e.add_argument("--scale", type=float, default=None)
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("ingest", help="encode and load vectors into a LanceDB table (resumable)")
    i.add_argument("source", help=".npy/.npz array, parquet file or folder")
    i.add_argument("--db", required=True, help="LanceDB folder")
    i.add_argument("--table", required=True)
    i.add_argument("--model", help="ONNX file (required for a new table)")
    i.add_argument(
        "--layout", choices=["packed", "indices"], default=None,
        help="code column of a new table: packed bits (default) or the k active unit ids of a k-hot code",
    )
    i.add_argument("--code", choices=["dense", "sparse"], default=None, help="deprecated 0.1.0 name of --layout")
    i.add_argument("--source-column", default="vector")
    i.add_argument("--id-column", default=None, help="merge_insert on this column (safe retries)")
    i.add_argument("--chunk-size", type=int, default=65536)
    i.add_argument("--checkpoint", default=None, help="JSON checkpoint for resuming")
    i.add_argument("--scale", type=float, default=None)
    i.add_argument("--index", action="store_true", help="build the index afterwards")
    i.set_defaults(func=cmd_ingest)

    s = sub.add_parser("search", help="Hamming search of a hashplug table with raw queries")
    s.add_argument("--db", required=True)
    s.add_argument("--table", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", help="one query vector as a JSON list")
    g.add_argument("--query-file", help=".npy/.npz/.parquet of query vectors")
    s.add_argument("--row", type=int, default=0, help="first query row of --query-file")
    s.add_argument("--n", type=int, default=1, help="number of query rows")
    s.add_argument("--limit", type=int, default=10, help="results per query")
    s.add_argument("--k", dest="limit_k", type=int, default=None, help="deprecated 0.1.0 name of --limit")
    s.add_argument("--columns", default=None, help="comma-separated columns to print")
    s.add_argument("--scale", type=float, default=None)
    s.set_defaults(func=cmd_search)

    d = sub.add_parser("demo", help="train on digits -> ONNX -> LanceDB -> search, printing quality")
    d.add_argument("--dir", default="hashplug_demo", help="folder for the model and the LanceDB table")
    d.add_argument("--method", default="biohash")
    d.add_argument("--k", type=int, default=16)
    d.add_argument("--epochs", type=int, default=60)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default=None, help="write the figures as JSON")
    d.set_defaults(func=cmd_demo)
