"""The bad-input catalogue, area ``ingest``: ``hashplug.ingest``, ``hashplug.add``, ``hashplug.update`` and
``hashplug ingest`` (CLI). Each case gets the most specific hashplug error (or exit 2 and one line from the
CLI) and leaves every table and every file of the world unchanged (``check_case``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402

import hashplug  # noqa: E402
from hashplug.validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    IngestError,
    ModelMismatchError,
)

pytest.importorskip("onnx")


def _ckpt(w, **over) -> dict:
    """A well-formed checkpoint of table ``t`` (300 rows of X) with ``over`` changed."""
    t = w.table("t")
    state = {
        "version": 2, "source": "ndarray", "table": {"name": "t", "uri": t.uri},
        "model_sha256": hashplug.runtime.OnnxEncoder(w.lsh_path).file_sha256, "chunk_size": 100, "base_rows": 0,
        "rows_done": 300, "digest": "0" * 32, "finished": True, "table_version": int(t.version),
        "table_rows": 300, "digest_rule": "row",
    }
    state.update(over)
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import lancedb
    import numpy as np
    import pyarrow as pa

    w = make_world(tmp_path_factory.mktemp("world"))
    ck = w.root / "ckpt"
    (ck / "garbage.json").write_text("{not json")
    (ck / "list.json").write_text("[1, 2]")
    (ck / "big.json").write_text(" " * (2 << 20))
    (ck / "bare.json").write_text(json.dumps({"version": 2}))
    state = _ckpt(w)
    for name, over in {
        "nodigest": {"digest": None}, "negative": {"rows_done": -1}, "othersource": {},
        "othermodel": {"model_sha256": "ab" * 32}, "othertable": {"table": {"name": "s", "uri": w.table("s").uri}},
        "chunk": {"chunk_size": 7}, "moved": {"rows_done": 0, "table_rows": 250, "finished": False},
        "stringrows": {"rows_done": "300"},
    }.items():
        s = {**state, **over}
        if s["digest"] is None:
            del s["digest"]
        (ck / f"{name}.json").write_text(json.dumps(s))
    (w.root / "emptydir").mkdir()
    (w.root / "notes.txt").write_text("not a parquet file\n")
    good = w.root / "part.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": np.arange(5), "vector": list(w.X[:5])}), good)
    (w.root / "trunc.parquet").write_bytes(good.read_bytes()[:40])
    np.save(w.root / "x.npy", w.X[:50])
    (w.root / "trunc.npy").write_bytes((w.root / "x.npy").read_bytes()[:100])
    bad = w.X[:50].copy()
    bad[3, 5] = np.nan
    np.save(w.root / "nan.npy", bad)
    np.save(w.root / "narrow.npy", w.X[:50, :10])
    from hashplug.cli import main

    assert main(["ingest", str(w.root / "x.npy"), "--db", str(w.db_path), "--table", "c", "--model",
                 str(w.lsh_path)]) == 0
    lancedb.connect(str(w.db_path)).create_table(
        "plain", schema=pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32()))])
    )
    return w


def _ing(w, src=None, **kw):
    kw.setdefault("progress", False)
    return hashplug.ingest(w.table("t"), w.X[:20] if src is None else src, **kw)


def _ids(n, start=1000):
    import numpy as np

    return {"id": np.arange(start, start + n)}


def _nan(w):
    X = w.X[:20].copy()
    X[4, 2] = float("nan")
    return X


def _inf(w):
    X = w.X[:20].copy()
    X[7, 0] = float("inf")
    return X


def _pa(**cols):
    import pyarrow as pa

    return pa.table(cols)


def _cli(w, *extra, source=None, table="t"):
    return ["ingest", str(source or (w.root / "x.npy")), "--db", str(w.db_path), "--table", table, *extra]


CK = "ckpt"
CASES = [
    # ---------------------------------------------------------------------------------------- checkpoints
    Case("ingest-ckpt-missing-folder", "hashplug.ingest", "checkpoint in a folder that does not exist", HashplugError,
         r"does not exist; create it first",
         lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / "nofolder" / "c.json")),
    Case("ingest-ckpt-is-folder", "hashplug.ingest", "checkpoint= an existing folder", HashplugError, r"is a folder",
         lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK)),
    Case("ingest-ckpt-parent-is-file", "hashplug.ingest", "checkpoint under a file (model.onnx/c.json)", HashplugError,
         r"is not a folder", lambda w: _ing(w, columns=_ids(20), checkpoint=w.lsh_path / "c.json")),
    Case("ingest-ckpt-type", "hashplug.ingest", "checkpoint=123", HashplugTypeError, r"checkpoint .*must be a file path",
         lambda w: _ing(w, columns=_ids(20), checkpoint=123)),
    Case("ingest-ckpt-not-json", "hashplug.ingest", "checkpoint file that is not JSON", HashplugError,
         r"is unreadable", lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "garbage.json")),
    Case("ingest-ckpt-json-list", "hashplug.ingest", "checkpoint holding a JSON list", HashplugError,
         r"not a hashplug ingest checkpoint of version 2",
         lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "list.json")),
    Case("ingest-ckpt-huge", "hashplug.ingest", "a 2 MB file as checkpoint", HashplugError, r"bytes, not a hashplug",
         lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "big.json")),
    Case("ingest-ckpt-bare", "hashplug.ingest", 'checkpoint {"version": 2} (a JSON that is not a checkpoint)',
         HashplugError, r"not a valid hashplug ingest checkpoint \('source' missing",
         lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "bare.json")),
    Case("ingest-ckpt-no-digest", "hashplug.ingest", 'checkpoint without "digest" (was KeyError)', HashplugError,
         r"'digest' missing", lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "nodigest.json")),
    Case("ingest-ckpt-negative-rows", "hashplug.ingest", "checkpoint rows_done=-1", HashplugError,
         r"'rows_done' is -1", lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "negative.json")),
    Case("ingest-ckpt-string-rows", "hashplug.ingest", 'checkpoint rows_done="300"', HashplugError,
         r"'rows_done' is '300'", lambda w: _ing(w, columns=_ids(20), checkpoint=w.root / CK / "stringrows.json")),
    Case("ingest-ckpt-other-source", "hashplug.ingest", "checkpoint of another source (fingerprint differs)",
         HashplugError, r"written for another source",
         lambda w: _ing(w, w.X[:300], columns=_ids(300), chunk_size=100, checkpoint=w.root / CK / "othersource.json")),
    Case("ingest-ckpt-source-shorter", "hashplug.ingest", "checkpoint of 300 rows, source of 20", HashplugError,
         r"has only 20 rows",
         lambda w: _ing(w, columns=_ids(20), chunk_size=100, checkpoint=w.root / CK / "othersource.json")),
    Case("ingest-ckpt-other-model", "hashplug.ingest", "checkpoint written with another model", ModelMismatchError,
         r"written with model sha256 abab",
         lambda w: _ing(w, columns=_ids(20), chunk_size=100, checkpoint=w.root / CK / "othermodel.json")),
    Case("ingest-ckpt-other-table", "hashplug.ingest", "checkpoint of table s used for table t", HashplugError,
         r"belongs to table", lambda w: _ing(w, columns=_ids(20), chunk_size=100, checkpoint=w.root / CK / "othertable.json")),
    Case("ingest-ckpt-chunk-size", "hashplug.ingest", "resume with another chunk_size", HashplugError,
         r"used chunk_size=7", lambda w: _ing(w, columns=_ids(20), chunk_size=100, checkpoint=w.root / CK / "chunk.json")),
    Case("ingest-ckpt-table-moved", "hashplug.ingest", "table changed by another writer since the checkpoint",
         HashplugError, r"another writer changed it",
         lambda w: _ing(w, columns=_ids(20), chunk_size=100, checkpoint=w.root / CK / "moved.json")),
    # ---------------------------------------------------------------------------------------- table / database
    Case("ingest-table-none", "hashplug.ingest", "table_or_uri=None", HashplugTypeError, r"table_or_uri",
         lambda w: hashplug.ingest(None, w.X[:5], progress=False)),
    Case("ingest-db-is-file", "hashplug.ingest", "database path that is a file (was FileExistsError)", HashplugError,
         r"is a file, not a folder", lambda w: hashplug.ingest(w.lsh_path, w.X[:5], name="t", progress=False)),
    Case("ingest-db-parent-missing", "hashplug.ingest", "database under a missing folder, model given", HashplugError,
         r"cannot be created", lambda w: hashplug.ingest(w.root / "no" / "db", w.X[:5], name="t",
                                                          model=str(w.lsh_path), progress=False)),
    Case("ingest-uri-no-name", "hashplug.ingest", "database path without name=", HashplugError, r"needs name=",
         lambda w: hashplug.ingest(w.db_path, w.X[:5], progress=False)),
    Case("ingest-name-not-str", "hashplug.ingest", "name=5", HashplugTypeError, r"name must be a non-empty str",
         lambda w: hashplug.ingest(w.db_path, w.X[:5], name=5, progress=False)),
    Case("ingest-name-with-table", "hashplug.ingest", "an open table and name=", HashplugError, r"name= is for a database",
         lambda w: _ing(w, columns=_ids(20), name="other")),
    Case("ingest-new-table-no-model", "hashplug.ingest", "missing table, no model=", HashplugError, r"pass model=",
         lambda w: hashplug.ingest(w.db_path, w.X[:5], name="nope", progress=False)),
    Case("ingest-new-table-bad-rows", "hashplug.ingest", "new table, first chunk has NaN (no empty table left)",
         IngestError, r"NaN", lambda w: hashplug.ingest(w.db_path, _nan(w), name="fresh", model=str(w.lsh_path),
                                                        progress=False)),
    Case("ingest-foreign-table", "hashplug.ingest", "a LanceDB table without a hashplug function", HashplugError,
         r"no hashplug embedding function", lambda w: hashplug.ingest(w.table("plain"), w.X[:5], progress=False)),
    Case("ingest-model-mismatch", "hashplug.ingest", "model= another ONNX than the table's", ModelMismatchError,
         r"sha256", lambda w: _ing(w, columns=_ids(20), model=str(w.fly_path))),
    Case("ingest-layout-bad", "hashplug.ingest", 'layout="bits"', HashplugError, r"layout must be",
         lambda w: _ing(w, columns=_ids(20), layout="bits")),
    # ---------------------------------------------------------------------------------------- parameters
    Case("ingest-chunk-size-0", "hashplug.ingest", "chunk_size=0", HashplugError, r"'chunk_size'",
         lambda w: _ing(w, columns=_ids(20), chunk_size=0)),
    Case("ingest-chunk-size-float", "hashplug.ingest", "chunk_size=10.5", HashplugError, r"'chunk_size'",
         lambda w: _ing(w, columns=_ids(20), chunk_size=10.5)),
    Case("ingest-chunk-size-bool", "hashplug.ingest", "chunk_size=True", HashplugError, r"'chunk_size'",
         lambda w: _ing(w, columns=_ids(20), chunk_size=True)),
    Case("ingest-source-column-type", "hashplug.ingest", "source_column=5", HashplugTypeError, r"source_column",
         lambda w: _ing(w, columns=_ids(20), source_column=5)),
    Case("ingest-id-column-type", "hashplug.ingest", "id_column=3", HashplugTypeError, r"id_column must be",
         lambda w: _ing(w, columns=_ids(20), id_column=3)),
    Case("ingest-id-column-not-in-source", "hashplug.ingest", 'id_column="key", no such column', HashplugError,
         r"id_column 'key' is not in the source", lambda w: _ing(w, columns=_ids(20), id_column="key")),
    # ---------------------------------------------------------------------------------------- source rows
    Case("ingest-nan", "hashplug.ingest", "a NaN in the first chunk, with a checkpoint (none written)", IngestError,
         r"NaN", lambda w: _ing(w, _nan(w), columns=_ids(20), checkpoint=w.root / CK / "new.json")),
    Case("ingest-inf", "hashplug.ingest", "infinity in a row", IngestError, r"NaN or infinity",
         lambda w: _ing(w, _inf(w), columns=_ids(20))),
    Case("ingest-wrong-dim", "hashplug.ingest", "10 features for a 64-feature model", IngestError, r"features",
         lambda w: _ing(w, w.X[:20, :10], columns=_ids(20))),
    Case("ingest-1d", "hashplug.ingest", "a 1-D array", HashplugError, r"shape \(n, d\)",
         lambda w: _ing(w, w.X[0], columns=_ids(1))),
    Case("ingest-empty", "hashplug.ingest", "0 rows", HashplugError, r"empty", lambda w: _ing(w, w.X[:0])),
    Case("ingest-columns-length", "hashplug.ingest", "columns of another length than the samples", HashplugError,
         r"different lengths", lambda w: _ing(w, columns=_ids(5))),
    Case("ingest-extra-column", "hashplug.ingest", "a source column the table does not have", HashplugError,
         r"does not have", lambda w: _ing(w, columns={**_ids(20), "zzz": list(range(20))})),
    Case("ingest-id-type", "hashplug.ingest", "string ids into an int64 id column", HashplugError,
         r"cannot be stored in column 'id'", lambda w: _ing(w, columns={"id": [f"a{i}" for i in range(20)]})),
    Case("ingest-dup-ids", "hashplug.ingest", "id_column with a repeated id in the source", IngestError,
         r"duplicate ids in id_column 'id': \[1000\]",
         lambda w: _ing(w, columns={"id": [1000] * 2 + list(range(1001, 1019))}, id_column="id")),
    Case("ingest-null-ids", "hashplug.ingest", "id_column with a null id", IngestError, r"null at source row 3",
         lambda w: _ing(w, _pa(id=[0, 1, 2, None], vector=list(w.X[:4])), id_column="id")),
    Case("ingest-source-int", "hashplug.ingest", "source=42", HashplugError, r"cannot ingest a int",
         lambda w: _ing(w, 42)),
    Case("ingest-source-missing-path", "hashplug.ingest", "source path that does not exist", HashplugError,
         r"no parquet file or folder", lambda w: _ing(w, str(w.root / "missing.parquet"))),
    Case("ingest-source-empty-folder", "hashplug.ingest", "an empty folder as source", HashplugError,
         r"no .parquet files", lambda w: _ing(w, w.root / "emptydir")),
    Case("ingest-source-not-parquet", "hashplug.ingest", "a text file as a parquet source", HashplugError,
         r"not a readable parquet file", lambda w: _ing(w, w.root / "notes.txt")),
    Case("ingest-source-truncated-parquet", "hashplug.ingest", "a truncated parquet file", HashplugError,
         r"not a readable parquet file", lambda w: _ing(w, w.root / "trunc.parquet")),
    Case("ingest-columns-not-mapping", "hashplug.ingest", "columns=5 (was AttributeError)", HashplugTypeError,
         r"columns must be a mapping", lambda w: _ing(w, columns=5)),
    Case("ingest-columns-scalar", "hashplug.ingest", 'columns={"id": "abc"} (was ArrowInvalid)', HashplugError,
         r"columns\['id'\] must be one value per row", lambda w: _ing(w, columns={"id": "abc"})),
    Case("ingest-columns-with-table-source", "hashplug.ingest", "columns= with an Arrow table source (was ignored)",
         HashplugError, r"columns= is for an ndarray source",
         lambda w: _ing(w, _pa(id=[1], vector=[list(w.X[0])]), columns={"label": [1]})),
    Case("ingest-iterable-of-ints", "hashplug.ingest", "a list of ints (was AttributeError)", HashplugTypeError,
         r"must yield pyarrow RecordBatches", lambda w: _ing(w, [1, 2, 3])),
    Case("ingest-generator-of-arrays", "hashplug.ingest", "a generator of ndarrays (was AttributeError)",
         HashplugTypeError, r"got a ndarray", lambda w: _ing(w, (x for x in [w.X[:5]]))),
    Case("ingest-mapping-lengths", "hashplug.ingest", "a mapping of columns of different lengths (was ArrowInvalid)",
         HashplugError, r"do not make a table", lambda w: _ing(w, {"vector": w.X[:5], "id": list(range(3))})),
    Case("ingest-pandas-ragged", "hashplug.ingest", "a DataFrame with vectors of different lengths (was ValueError)",
         HashplugError, r"same length per row",
         lambda w: _ing(w, __import__("pandas").DataFrame({"id": [1, 2], "vector": [w.X[0], w.X[1][:5]]}))),
    Case("ingest-object-array", "hashplug.ingest", "an object ndarray (was ArrowInvalid)", HashplugError,
         r"must be real numbers; got dtype object",
         lambda w: _ing(w, __import__("numpy").array([[object()] * 64]), columns={"id": [1]})),
    Case("ingest-complex-array", "hashplug.ingest", "a complex ndarray (was ArrowNotImplementedError)", HashplugError,
         r"got dtype complex128", lambda w: _ing(w, w.X[:2].astype(complex), columns={"id": [1, 2]})),
    Case("ingest-chunk-size-huge", "hashplug.ingest", "chunk_size=10**30 (was OverflowError)", HashplugError,
         r"'chunk_size'", lambda w: _ing(w, columns=_ids(20), chunk_size=10**30)),
    Case("ingest-id-column-list-type", "hashplug.ingest", 'id_column="vector" (was ArrowNotImplementedError)',
         HashplugError, r"ids must be integers or strings", lambda w: _ing(w, columns=_ids(20), id_column="vector")),
    Case("ingest-layout-other", "hashplug.ingest", 'layout="indices" for a packed table (was ignored)',
         ModelMismatchError, r"stores 'packed' codes", lambda w: _ing(w, columns=_ids(20), layout="indices")),
    Case("ingest-source-no-vector-column", "hashplug.ingest", "Arrow table without the source column", HashplugError,
         r"no column 'vector'", lambda w: _ing(w, _pa(id=[1], emb=[list(w.X[0])]))),
    # ---------------------------------------------------------------------------------------- hashplug.add
    Case("add-not-a-table", "hashplug.add", "a database path instead of a table", HashplugTypeError,
         r"must be an open LanceDB table", lambda w: hashplug.add(str(w.db_path), w.X[:5])),
    Case("add-unknown-kwarg", "hashplug.add", "chunk_size=5 (ingest's option)", HashplugTypeError,
         r"unexpected keyword argument\(s\) \['chunk_size'\]", lambda w: hashplug.add(w.table("t"), w.X[:5], chunk_size=5)),
    Case("add-nan", "hashplug.add", "a NaN row", IngestError, r"NaN",
         lambda w: hashplug.add(w.table("t"), _nan(w), columns=_ids(20))),
    Case("add-wrong-dim", "hashplug.add", "3 features into the k-hot table", IngestError, r"features",
         lambda w: hashplug.add(w.table("s"), w.X[:5, :3], columns=_ids(5))),
    Case("add-empty-list", "hashplug.add", "an empty list of rows", HashplugError, r"empty",
         lambda w: hashplug.add(w.table("t"), [])),
    Case("add-rows-without-vector", "hashplug.add", "dict rows without the source column", HashplugError,
         r"no column 'vector'", lambda w: hashplug.add(w.table("t"), [{"id": 1}])),
    Case("add-float-ids", "hashplug.add", "id 1.5 into an int64 column", HashplugError, r"cannot be stored",
         lambda w: hashplug.add(w.table("t"), w.X[:2], columns={"id": [1.5, 2.5]})),
    Case("add-foreign-table", "hashplug.add", "a table without a hashplug function", HashplugError,
         r"no hashplug embedding function", lambda w: hashplug.add(w.table("plain"), w.X[:2])),
    # ---------------------------------------------------------------------------------------- hashplug.update
    Case("update-code-column", "hashplug.update", "values setting the code column", HashplugError,
         r"computed by the table's function", lambda w: hashplug.update(w.table("t"), "id = 1", {"code": [0, 0, 0, 0]})),
    Case("update-nothing", "hashplug.update", "no values", HashplugError, r"nothing to update",
         lambda w: hashplug.update(w.table("t"), "id = 1")),
    Case("update-source-sql", "hashplug.update", "values_sql for the source column", HashplugError,
         r"cannot be set by a SQL expression", lambda w: hashplug.update(w.table("t"), "id = 1", values_sql={"vector": "id"})),
    Case("update-nan-sample", "hashplug.update", "a NaN sample", HashplugError, r"NaN",
         lambda w: hashplug.update(w.table("t"), "id = 1", {"vector": _nan(w)[4]})),
    Case("update-wrong-dim", "hashplug.update", "a 10-feature sample", HashplugError, r"features",
         lambda w: hashplug.update(w.table("t"), "id = 1", {"vector": w.X[0, :10]})),
    Case("update-two-samples", "hashplug.update", "two samples for one update", HashplugError, r"one sample",
         lambda w: hashplug.update(w.table("t"), "id = 1", {"vector": w.X[:2]})),
    Case("update-not-a-table", "hashplug.update", "a string instead of a table", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.update("t", "id = 1", {"vector": w.X[0]})),
    # ---------------------------------------------------------------------------------------- CLI
    Case("cli-ingest-db-is-file", "hashplug ingest (CLI)", "--db a file (was a FileExistsError traceback)", "exit 2",
         r"is a file, not a folder", lambda w: ["ingest", str(w.root / "x.npy"), "--db", str(w.lsh_path), "--table", "t"]),
    Case("cli-ingest-ckpt-missing-folder", "hashplug ingest (CLI)", "--checkpoint in a missing folder", "exit 2",
         r"does not exist; create it first", lambda w: _cli(w, "--checkpoint", str(w.root / "nofolder" / "c.json"),
                                                            table="c")),
    Case("cli-ingest-ckpt-no-digest", "hashplug ingest (CLI)", 'checkpoint without "digest" (was KeyError)', "exit 2",
         r"'digest' missing", lambda w: _cli(w, "--checkpoint", str(w.root / CK / "nodigest.json"), "--id-column", "id",
                                             table="c")),
    Case("cli-ingest-ckpt-bare", "hashplug ingest (CLI)", 'checkpoint {"version": 2}', "exit 2",
         r"not a valid hashplug ingest checkpoint",
         lambda w: _cli(w, "--checkpoint", str(w.root / CK / "bare.json"), "--id-column", "id", table="c")),
    Case("cli-ingest-rerun", "hashplug ingest (CLI)", "the same .npy appended again without --checkpoint", "exit 2",
         r"already in table 'c'.*--id-column id", lambda w: _cli(w, table="c")),
    Case("cli-ingest-chunk-size-0", "hashplug ingest (CLI)", "--chunk-size 0", "exit 2", r"'chunk_size'",
         lambda w: _cli(w, "--chunk-size", "0", "--id-column", "id", table="c")),
    Case("cli-ingest-missing-source", "hashplug ingest (CLI)", "a .npy that does not exist", "exit 2",
         r"missing\.npy", lambda w: _cli(w, source=w.root / "missing.npy")),
    Case("cli-ingest-truncated-npy", "hashplug ingest (CLI)", "a truncated .npy", "exit 2", r"trunc\.npy",
         lambda w: _cli(w, source=w.root / "trunc.npy")),
    Case("cli-ingest-source-not-parquet", "hashplug ingest (CLI)", "an ONNX file as source", "exit 2",
         r"not a readable parquet file", lambda w: _cli(w, source=w.lsh_path)),
    Case("cli-ingest-no-model", "hashplug ingest (CLI)", "a new table without --model", "exit 2", r"pass model=",
         lambda w: _cli(w, table="fresh")),
    Case("cli-ingest-model-mismatch", "hashplug ingest (CLI)", "--model another ONNX than the table's", "exit 2",
         r"sha256", lambda w: _cli(w, "--model", str(w.fly_path), "--id-column", "id", table="c")),
    Case("cli-ingest-id-column-missing", "hashplug ingest (CLI)", "--id-column key (not a column)", "exit 2",
         r"id_column 'key' is not in the source", lambda w: _cli(w, "--id-column", "key", table="c")),
    Case("cli-ingest-nan", "hashplug ingest (CLI)", "a .npy with a NaN", "exit 2", r"NaN",
         lambda w: _cli(w, source=w.root / "nan.npy", table="c")),
    Case("cli-ingest-wrong-dim", "hashplug ingest (CLI)", "a .npy of 10 features", "exit 2", r"features",
         lambda w: _cli(w, source=w.root / "narrow.npy", table="c")),
    Case("cli-ingest-new-table-nan", "hashplug ingest (CLI)", "a new table from a .npy with a NaN (no table left)",
         "exit 2", r"NaN", lambda w: _cli(w, "--model", str(w.lsh_path), source=w.root / "nan.npy", table="fresh")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)
