"""Safe writes into a hashplug table: resumable ingest, errors you can catch, codes that stay in step.

1. A bad row stops ``hashplug.ingest`` with a ``hashplug.IngestError`` that names the row in source numbering
   and how many rows are already committed; fixing the row and rerunning the same call resumes there.
2. A checkpoint belongs to one table and one source: reusing it for other rows is refused, nothing written;
   the same source grown by new rows ingests just the new ones.
3. ``hashplug.add`` is ``table.add`` with hashplug's checks and error types (``table.add`` itself re-raises
   them as ``RuntimeError`` from LanceDB's Rust writer).
4. ``table.update(values={"vector": x})`` leaves the old code in place (LanceDB runs no embedding function on
   update); ``hashplug.update`` writes the sample and its new code together.
5. A ``LanceModel`` declared with LanceDB's default ``Vector(n)`` code field stores floats; hashplug refuses to
   search it and names the fix.

Run: ``python examples/05_safe_ingest.py`` (about 12 s measured on 2 CPU cores shared with other jobs; about 8-12 s with
``HASHPLUG_EXAMPLE_SMALL=1``). It works in ./hashplug_examples/05_safe_ingest/, replaced at each run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.embeddings import get_registry
from lancedb.pydantic import LanceModel, Vector

import hashplug
from hashplug.data import load_digits
from hashplug.export import to_onnx
from hashplug.integrations.lancedb import schema


def main() -> None:
    small = os.environ.get("HASHPLUG_EXAMPLE_SMALL") == "1"
    work = Path.cwd() / "hashplug_examples" / Path(__file__).stem  # replaced at each run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    X, y = load_digits()
    X = (X / np.float32(16)).reshape(len(X), -1).astype(np.float32)
    n = 600 if small else len(X)
    X, y = X[:n], y[:n]
    enc = hashplug.get_encoder("lsh", k=32, random_state=0).fit(X)
    model = to_onnx(enc, work / "lsh32.onnx")
    func = get_registry().get("hashplug").create(model=str(model))  # layout="packed" (the default)
    db = lancedb.connect(work / "db")
    tbl = db.create_table("digits", schema=schema(func, extra={"id": pa.int64(), "label": pa.int64()}))
    cols = {"id": np.arange(n), "label": y.astype(np.int64)}

    # 1. a bad row: committed chunks stay, the error says where to resume
    bad = X.copy()
    bad[250, 7] = np.nan
    ckpt = work / "digits.ckpt"
    try:
        hashplug.ingest(tbl, bad, columns=cols, chunk_size=100, checkpoint=ckpt, progress=False)
    except hashplug.IngestError as err:
        print(f"1. IngestError at source row {err.row}; {err.rows_committed} rows committed, table has "
              f"{tbl.count_rows()}")
    res = hashplug.ingest(tbl, X, columns=cols, chunk_size=100, checkpoint=ckpt, progress=False)
    print(f"   fixed and rerun: {res.rows_skipped} skipped (already in), {res.rows_written} written")

    # 2. the checkpoint refuses another source, and takes the same source grown
    try:
        hashplug.ingest(tbl, X[::-1].copy(), columns=cols, chunk_size=100, checkpoint=ckpt, progress=False)
    except hashplug.HashplugError as err:
        print(f"2. another source refused: {str(err)[:90]}...")
    more = np.concatenate([X, X[:50] * 0.5])
    cols2 = {"id": np.arange(n + 50), "label": np.concatenate([y, y[:50]]).astype(np.int64)}
    res = hashplug.ingest(tbl, more, columns=cols2, chunk_size=100, checkpoint=ckpt, progress=False)
    print(f"   same source grown by 50 rows: {res.rows_written} written, table has {tbl.count_rows()}")

    # 3. hashplug.add: checked first, one commit
    try:
        hashplug.add(tbl, [{"id": -1, "label": 0, "vector": [0.0] * 10}])
    except hashplug.HashplugError as err:
        print(f"3. add refused a short vector ({type(err).__name__}); table still has {tbl.count_rows()} rows")

    # 4. update keeps the code in step
    tbl.update(where="id = 3", values={"vector": X[9].tolist()})
    stale = hashplug.search(tbl, X[9], limit=2, columns=["id"])["id"].to_pylist()
    hashplug.update(tbl, "id = 3", {"vector": X[9]})
    fresh = hashplug.search(tbl, X[9], limit=2, columns=["id"])["id"].to_pylist()
    print(f"4. nearest to X[9] after table.update: {stale}; after hashplug.update: {fresh}")

    # 5. LanceDB's default Vector(n) would make a float code column: refused when the class is created
    try:

        class Row(LanceModel):
            id: int
            vector: list[float] = func.SourceField()
            code: Vector(func.ndims()) = func.VectorField()

    except hashplug.TableSchemaError as err:
        print(f"5. {str(err)[:150]}...")


if __name__ == "__main__":
    main()
