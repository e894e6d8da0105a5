"""Serving-side commands of the ``hashplug`` CLI: ``ingest`` and ``search``.

They run on the base install (numpy, onnxruntime, LanceDB) and know an encoder only as an ONNX file: this
module never imports torch, onnx or :mod:`hashplug.encoders`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = ["COMMANDS"]


def cmd_ingest(args: argparse.Namespace) -> int:
    from ..integrations.ingest import _check_checkpoint_path, ingest

    if args.checkpoint is not None:
        _check_checkpoint_path(args.checkpoint)  # before anything else looks at the table
    source: Any = args.source
    columns = None
    _check_scale(args, args.source.endswith((".npy", ".npz")))
    if args.source.endswith((".npy", ".npz")):
        from ..data import load_array

        X, y = load_array(args.source)
        source = np.asarray(X, dtype=np.float32) / np.float32(args.scale or 1.0)
        columns = {"id": file_row_ids(args.source, len(source))}
        if y is not None:
            columns["label"] = np.asarray(y)
        if args.id_column is None and (args.checkpoint is None or not Path(args.checkpoint).exists()):
            _refuse_rerun(args, columns["id"])
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
        progress=sys.stderr.isatty(),  # a bar in a log file is noise, and an error stays one line
    )
    dt = time.perf_counter() - t0
    print(f"ingested {res.rows_written} rows ({res.rows_skipped} skipped by resume) in {res.chunks} commits, "
          f"{dt:.1f} s ({res.rows_written / max(dt, 1e-9):,.0f} rows/s); table has {res.table.count_rows()} rows")
    if args.index_old:
        print("hashplug ingest: --index is deprecated (removed in 0.3.0); use --lancedb-index (LanceDB's "
              "approximate index) or --hamming-index (hashplug's exact one).", file=sys.stderr)
    if args.lancedb_index or args.index_old:
        from ..integrations.lancedb import create_lancedb_index

        create_lancedb_index(res.table)
        print("LanceDB index built (IVF_FLAT hamming)" if _is_packed(res.table) else "LanceDB index built (LABEL_LIST)")
    if args.hamming_index:
        from ..integrations.index import build_hamming_index

        t1 = time.perf_counter()
        bound = build_hamming_index(res.table)
        print(f"Hamming index built: {len(bound)} rows in {time.perf_counter() - t1:.1f} s")
    return 0


def _is_packed(table: Any) -> bool:
    from ..integrations.lancedb import get_function

    return get_function(table)[2].layout == "packed"


#: Rows per file the generated ids can number (the low 32 bits of an id).
_ROWS_PER_FILE = 1 << 32


def file_row_ids(path: str, n: int) -> np.ndarray:
    """The ids ``hashplug ingest`` gives the rows of a .npy/.npz file: ``tag * 2**32 + row``.

    ``tag`` is the first 31 bits of the file's sha256, so the ids are non-negative int64, unique within a file
    (up to 2**32 rows), the same for the same bytes under any name (a rerun is recognised), and different files
    share none unless their 31-bit tags coincide (probability 2**-31 per pair of files).
    """
    from .._files import file_sha256

    if n >= _ROWS_PER_FILE:
        raise HashplugError(f"{path!r} has {n} rows; hashplug ingest numbers at most {_ROWS_PER_FILE - 1} per file.")
    tag = int(file_sha256(path)[:8], 16) & 0x7FFFFFFF
    return np.int64(tag) * np.int64(_ROWS_PER_FILE) + np.arange(n, dtype=np.int64)


def _refuse_rerun(args: argparse.Namespace, ids: np.ndarray) -> None:
    """Refuse a plain (append) rerun of a file whose generated ids are already in the table (it would double
    every row); resuming needs the checkpoint, and ``--id-column id`` upserts."""
    db = Path(args.db)
    if not ids.size or not db.is_dir():
        return
    import lancedb

    try:
        tbl = lancedb.connect(str(db)).open_table(args.table)
    except (ValueError, FileNotFoundError):
        return
    if "id" not in tbl.schema.names:
        return
    lo, hi = int(ids[0]), int(ids[-1])
    hit = tbl.search().where(f"id >= {lo} AND id <= {hi}").select(["id"]).limit(1).to_arrow()
    if hit.num_rows:
        raise HashplugError(
            f"{args.source!r} (ids {lo}..{hi}, from its sha256) is already in table {args.table!r} (id "
            f"{hit['id'][0].as_py()}); appending it again would double its rows. Resume an interrupted run with "
            "its --checkpoint, or pass --id-column id to upsert (rows already there are updated, never doubled)."
        )


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

    from ..integrations.lancedb import search
    from ..integrations.search import MAX_LIMIT

    if args.query_file:
        from ..data import load_array

        Q, _ = load_array(args.query_file)
        Q = np.asarray(Q, dtype=np.float32)
        where = f"{args.query_file} has {len(Q)} row{'' if len(Q) == 1 else 's'}"
    else:
        Q = _parse_query(args.query)
        where = "--query is a single row"
    if args.limit_k is not None:
        print("hashplug search: --k is deprecated; use --limit.", file=sys.stderr)
        args.limit = args.limit_k
    if not 1 <= args.limit <= MAX_LIMIT:
        raise HashplugError(
            f"--limit must be between 1 and {MAX_LIMIT} (results per query); got {args.limit}. To print every row "
            "pass the table's row count."
        )
    if args.n < 1:
        raise HashplugError(f"--n must be at least 1 (the number of query rows); got {args.n}.")
    if not 0 <= args.row < len(Q):
        valid = f"valid rows are 0 to {len(Q) - 1}" if len(Q) > 1 else "the only valid row is 0"
        raise HashplugError(f"--row {args.row} is out of range: {where}; {valid}.")
    tbl = _open_table(lancedb, args.db, args.table)
    if args.scale is not None:
        _check_scale(args, True, tbl)
        Q = Q / np.float32(args.scale)
    rows = Q[args.row : args.row + args.n]
    cols = args.columns.split(",") if args.columns else None
    for i, q in enumerate(rows):
        res = search(tbl, q, limit=args.limit, columns=cols)
        keep = [c for c in res.column_names if c not in ("vector", "code")]
        print(json.dumps({"query": args.row + i, "results": res.select(keep).to_pylist()}, default=str))
    return 0


def _check_scale(args: argparse.Namespace, array_source: bool, table: Any = None) -> None:
    """``--scale``: a finite number > 0, for array inputs only, and never for a model whose graph already divides
    its raw input (``hashplug train --scale``): that would scale twice. Checked before anything is written."""
    if args.scale is None:
        return
    from ..modelcard import check_input_divisor, refuse_double_scaling

    check_input_divisor(args.scale)
    if not array_source:
        raise HashplugError(
            f"--scale applies to .npy/.npz sources only; {args.source!r} is read as a table source, unscaled. "
            "Scale the column beforehand, or export the model with the scale (hashplug train --scale)."
        )
    if table is None and getattr(args, "model", None):
        from ..runtime import OnnxEncoder

        card = OnnxEncoder(args.model).card
    else:
        if table is None:
            import lancedb

            try:
                table = lancedb.connect(args.db).open_table(args.table)
            except Exception:  # noqa: BLE001 - no such table: ingest itself reports it (a new table needs --model)
                return
        from ..integrations.lancedb import get_function

        card = get_function(table)[2].encoder.card
    refuse_double_scaling(card, args.scale)


def _open_table(lancedb: Any, db: str, name: str) -> Any:
    """The table ``name`` of the database ``db``, opened read-only: a missing or wrong-kind ``--db`` or a
    missing ``--table`` is an error that creates nothing (``lancedb.connect`` would create the folder)."""
    from pathlib import Path

    if "://" not in db:
        p = Path(db).expanduser()
        if not p.exists():
            raise HashplugError(f"--db {db!r} does not exist; pass the folder of a LanceDB database.")
        if not p.is_dir():
            raise HashplugError(f"--db {db!r} is a file, not a LanceDB database folder.")
    conn = lancedb.connect(db)
    try:
        return conn.open_table(name)
    except (ValueError, FileNotFoundError) as exc:  # LanceDB: "Table 'x' was not found"
        raise HashplugError(
            f"--table {name!r} could not be opened in the database {db!r} ({str(exc).splitlines()[0][:120]})."
        ) from None


def _layout_option(args: argparse.Namespace) -> str | None:
    """``--layout``, or the deprecated ``--code`` (0.1.0: dense / sparse)."""
    if args.code is None:
        return args.layout
    if args.layout is not None:
        raise HashplugError("pass --layout only (--code is its deprecated 0.1.0 name).")
    print("hashplug ingest: --code is deprecated; use --layout packed|indices.", file=sys.stderr)
    return {"dense": "packed", "sparse": "indices"}[args.code]


def _add_ingest(sub: Any) -> None:
    """``hashplug ingest``."""
    i = sub.add_parser(
        "ingest", help="encode and load vectors into a LanceDB table (resumable)",
        description="Encode and load vectors into a LanceDB table. A .npy/.npz source gets an int64 'id' column: "
        "the first 31 bits of the file's sha256 times 2**32 plus the row number (unique within a file, stable "
        "under renaming, distinct across files unless two 31-bit tags coincide), and its labels, if any, as "
        "'label'. Appending a file whose ids are already in the table is refused (it would double the rows): "
        "resume with --checkpoint, or upsert with --id-column id.",
    )
    i.add_argument("source", help=".npy/.npz array, parquet file or folder")
    i.add_argument("--db", required=True, help="LanceDB folder")
    i.add_argument("--table", required=True, help="table name (created by the first chunk if missing)")
    i.add_argument("--model", help="ONNX file (required for a new table)")
    i.add_argument(
        "--layout", choices=["packed", "indices"], default=None,
        help="code column of a new table: packed bits (default) or the k active unit ids of a k-hot code",
    )
    i.add_argument("--code", choices=["dense", "sparse"], default=None, help="deprecated 0.1.0 name of --layout")
    i.add_argument("--source-column", default="vector",
                   help="column of the samples the model encodes (default vector)")
    i.add_argument(
        "--id-column", default=None,
        help="upsert (merge_insert) on this column: a rerun updates rows, never doubles them; concurrent "
        "ingests on one machine are serialised per chunk by a lock file beside the table",
    )
    i.add_argument("--chunk-size", type=int, default=65536,
                   help="rows per commit (default 65536)")
    i.add_argument(
        "--checkpoint", default=None,
        help="JSON checkpoint (its folder must exist): rerun the same command after a crash to resume exactly",
    )
    i.add_argument("--scale", type=float, default=None,
                   help="divide a .npy/.npz source by this (> 0); refused for a model that already scales")
    i.add_argument(
        "--lancedb-index", action="store_true",
        help="afterwards build LanceDB's approximate index on the code column (IVF_FLAT hamming for packed "
        "codes, LABEL_LIST for indices): hashplug.create_lancedb_index",
    )
    i.add_argument(
        "--hamming-index", action="store_true",
        help="afterwards build hashplug's exact Hamming index, which hashplug search uses: "
        "hashplug.build_hamming_index",
    )
    i.add_argument("--index", dest="index_old", action="store_true",
                   help="deprecated 0.1.0 name of --lancedb-index")
    i.set_defaults(func=cmd_ingest)


def _add_search(sub: Any) -> None:
    """``hashplug search``."""
    s = sub.add_parser("search", help="Hamming search of a hashplug table with raw queries")
    s.add_argument("--db", required=True, help="LanceDB folder")
    s.add_argument("--table", required=True, help="table written by hashplug ingest (or the hashplug function)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", help="one query vector as a JSON list")
    g.add_argument("--query-file", help=".npy/.npz/.parquet of query vectors")
    s.add_argument("--row", type=int, default=0, help="first query row of --query-file")
    s.add_argument("--n", type=int, default=1, help="number of query rows")
    s.add_argument("--limit", type=int, default=10, help="results per query")
    s.add_argument("--k", dest="limit_k", type=int, default=None, help="deprecated 0.1.0 name of --limit")
    s.add_argument("--columns", default=None, help="comma-separated columns to print")
    s.add_argument("--scale", type=float, default=None,
                   help="divide the queries by this (> 0); refused for a model that already scales")
    s.set_defaults(func=cmd_search)


#: The serving-side commands: name -> function adding its subparser.
COMMANDS: dict[str, Callable[[Any], None]] = {"ingest": _add_ingest, "search": _add_search}
