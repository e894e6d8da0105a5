"""Portable tables: a database that moves with its models, sources from Polars and DuckDB, and async search.

1. A Polars DataFrame (and a DuckDB query) ingested through a LanceDB connection: the table keeps its model
   inside the database (``<db>/_hashplug/models/<sha256>.onnx``) and names it ``{db}/...`` in its config.
2. The database folder is copied elsewhere and the original folder and model file are deleted; a fresh Python
   process that never imports hashplug opens the copy with LanceDB alone, adds a row (``tbl.add``) and searches
   (``tbl.search(<hashplug.Query text>)``), and hashplug's own search gives the same rows as before the move.
3. A table written the 0.2 way (its config names the model's absolute path) after the same move: it cannot
   find its model, and ``hashplug.relocate_model`` re-points it at a copy, checked by sha256.
4. LanceDB's async API: ``hashplug.asearch`` / ``hashplug.aingest`` on an ``AsyncTable`` give the synchronous
   answers.

Needs polars and duckdb (the ``dev`` extra). Run: ``python examples/13_portable_tables.py`` (about 10 s on 2 CPU cores shared with other jobs: 9.1 s measured,
9.0 s with ``HASHPLUG_EXAMPLE_SMALL=1``, most of it imports and the fresh process; it works in
./hashplug_examples/13_portable_tables and leaves its files there).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import lancedb
import numpy as np
import polars as pl
from lancedb.embeddings import get_registry

import hashplug
from hashplug.data import load_digits
from hashplug.export import to_onnx
from hashplug.integrations import lancedb as hl

LANCEDB_ONLY = """
import json, sys
import lancedb                      # no `import hashplug`: the installed .pth hook registers the function
tbl = lancedb.connect(sys.argv[1]).open_table("digits")
x = json.loads(sys.argv[2])
tbl.add([{"id": 10_000, "label": -1, "vector": x}])
hits = tbl.search(sys.argv[3]).distance_type("hamming").limit(3).to_arrow()
print(json.dumps({"rows": tbl.count_rows(), "ids": hits["id"].to_pylist(), "dist": hits["_distance"].to_pylist()}))
"""


def ingest_from_polars_and_duckdb(X: np.ndarray, y: np.ndarray, model: Path, db_path: Path) -> None:
    print("1. a Polars DataFrame and a DuckDB query, ingested through a LanceDB connection")
    n = len(X) // 2
    frame = pl.DataFrame({"id": np.arange(n), "label": y[:n], "vector": X[:n].tolist()})
    db = lancedb.connect(db_path)
    res = hashplug.ingest(db, frame, name="digits", model=str(model), chunk_size=256, progress=False)
    rest = pl.DataFrame({"id": np.arange(n, len(X)), "label": y[n:], "vector": X[n:].tolist()})  # noqa: F841
    hashplug.add(res.table, duckdb.sql("SELECT id, label, vector FROM rest WHERE label >= 0"))
    cfg = hl.model_location(res.table)
    stored = sorted(p.name for p in (db_path / "_hashplug" / "models").iterdir())
    print(f"   {res.table.count_rows()} rows in {res.chunks} + 1 commits; the config names {cfg['model'][:40]}...")
    print(f"   the database holds its model: _hashplug/models/{stored[0][:16]}... ({len(stored)} file)")


def moved_database(X: np.ndarray, old: Path, new: Path) -> None:
    print("2. the database copied elsewhere, the original folder and model deleted")
    before = hashplug.search(lancedb.connect(old).open_table("digits"), X[7], limit=5)
    shutil.copytree(old, new)
    shutil.rmtree(old.parent)  # the first folder: the original database and enc.onnx
    proc = subprocess.run(
        [sys.executable, "-c", LANCEDB_ONLY, str(new.resolve()), json.dumps(X[7].ravel().tolist()), str(hashplug.Query(X[7]))],
        capture_output=True, text=True, cwd="/", timeout=300,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"   a fresh process with LanceDB alone: tbl.add -> {r['rows']} rows; tbl.search(Query text) -> ids "
          f"{r['ids']} at {r['dist']}")
    after = hashplug.search(lancedb.connect(new).open_table("digits"), X[7], limit=6, where="id < 10000")
    same = after["id"].to_pylist()[:5] == before["id"].to_pylist()
    print(f"   hashplug.search on the copy: ids {after['id'].to_pylist()[:5]} (the same as before the move: {same})")
    assert same and 10_000 in r["ids"] and r["dist"][0] == 0.0


def relocate_old_table(X: np.ndarray, work: Path, model: Path) -> None:
    print("3. a table written the 0.2 way (an absolute model path), moved: relocate_model")
    first = work / "legacy_first"
    first.mkdir()
    shutil.copy(model, first / "enc.onnx")
    func = get_registry().get("hashplug").create(model=str(first / "enc.onnx"))
    db = lancedb.connect(first / "db")
    hl.create_table(db, "old", func, data={"id": np.arange(200), "vector": X[:200]}, store_model=False)
    shutil.copytree(first / "db", work / "legacy_moved")
    shutil.rmtree(first)
    hashplug.runtime.clear_session_cache()  # this process forgets the model, as a new one would
    hashplug.integrations.function.clear_function_cache()
    tbl = lancedb.connect(work / "legacy_moved").open_table("old")
    try:
        hashplug.search(tbl, X[3], limit=1)
    except hashplug.ModelNotFoundError as exc:
        print(f"   before: ModelNotFoundError: ...{str(exc)[-90:]}")
    try:
        hashplug.relocate_model(tbl, work / "other.onnx")
    except hashplug.ModelMismatchError as exc:
        print(f"   another model is refused ({type(exc).__name__}): ...{str(exc)[-105:]}")
    ref = hashplug.relocate_model(tbl, model)  # the copy that came with us
    hit = hashplug.search(tbl, X[3], limit=1)
    print(f"   relocate_model -> {ref[:40]}...; search finds row {hit['id'][0].as_py()} at "
          f"distance {hit['_distance'][0].as_py()}")


def async_calls(X: np.ndarray, db_path: Path) -> None:
    print("4. LanceDB's async API")

    async def main():
        adb = await lancedb.connect_async(str(db_path))
        atbl = await adb.open_table("digits")
        hits = await asyncio.gather(*(hashplug.asearch(atbl, X[i], limit=3, where="id < 10000") for i in range(4)))
        more = pl.DataFrame({"id": np.arange(20_000, 20_010), "label": np.zeros(10, np.int64),
                             "vector": X[:10].tolist()})
        res = await hashplug.aingest(atbl, more, progress=False)
        return hits, res.rows_written, await atbl.count_rows()

    hits, written, rows = asyncio.run(main())
    sync = lancedb.connect(db_path).open_table("digits")
    same = all(h["id"].to_pylist() == hashplug.search(sync, X[i], limit=3, where="id < 10000")["id"].to_pylist()
               for i, h in enumerate(hits))
    print(f"   4 concurrent asearch calls: the synchronous answers ({same}); aingest of a Polars frame: "
          f"{written} rows, the table has {rows}")
    assert same


def main() -> None:
    work = Path("hashplug_examples") / "13_portable_tables"
    shutil.rmtree(work, ignore_errors=True)
    (work / "first").mkdir(parents=True)
    X, y = load_digits()
    n = 600 if os.environ.get("HASHPLUG_EXAMPLE_SMALL") == "1" else len(X)
    X, y = X[:n] / 16.0, y[:n]
    enc = hashplug.get_encoder("biohash", k=16, random_state=0).fit(X)
    model = to_onnx(enc, work / "first" / "enc.onnx")
    keep = shutil.copy(model, work / "enc_copy.onnx")  # the copy that travels by other means
    to_onnx(hashplug.get_encoder("lsh", k=32, random_state=0).fit(X), work / "other.onnx")
    ingest_from_polars_and_duckdb(X, y, Path(model), work / "first" / "db")
    moved_database(X, work / "first" / "db", work / "second" / "db")
    relocate_old_table(X, work, Path(keep))
    async_calls(X, work / "second" / "db")


if __name__ == "__main__":
    main()
