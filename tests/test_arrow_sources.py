"""Any Arrow source (issue 29): Polars DataFrames, DuckDB relations, pyarrow datasets and any object with
``__arrow_c_stream__`` / ``__arrow_c_array__`` go through ``hashplug.ingest``, ``hashplug.add``,
``encode_batch`` and ``encode_batches`` with the codes ``OnnxEncoder`` computes; ``ingest`` takes a LanceDB
connection as well as a path."""

from __future__ import annotations

from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import hashplug
from hashplug.integrations.arrow import encode_batch, encode_batches
from hashplug.integrations.lancedb import get_function
from hashplug.runtime import OnnxEncoder
from hashplug.validation import HashplugError, HashplugTypeError

pytest.importorskip("onnx")  # the fixture exports a model; the library under test never imports onnx
pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")

N = 120


@pytest.fixture(scope="module")
def model(tmp_path_factory, digits):
    from hashplug.export import to_onnx

    enc = hashplug.get_encoder("lsh", k=32, random_state=0).fit(digits[0])
    return Path(to_onnx(enc, tmp_path_factory.mktemp("m") / "lsh.onnx"))


@pytest.fixture
def X(digits):
    return digits[0][:N]


class StreamOnly:
    """An object of 'another library': only the Arrow C stream interface."""

    def __init__(self, table: pa.Table) -> None:
        self._t = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._t.__arrow_c_stream__(requested_schema)


class ArrayOnly:
    """Only the Arrow C array interface (a struct array: one batch)."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self._b = batch

    def __arrow_c_array__(self, requested_schema=None):
        return self._b.__arrow_c_array__(requested_schema)


def _codes_by_id(tbl) -> np.ndarray:
    t = tbl.to_arrow().sort_by("id")
    return np.stack(t["code"].to_numpy(zero_copy_only=False))


def _frame(X: np.ndarray, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"id": np.arange(start, start + len(X)), "vector": X.tolist()})


def test_polars_dataframe_ingests_like_numpy(tmp_path, X, model):
    df = _frame(X)
    assert pa.table(df).schema.field("vector").type == pa.large_list(pa.float64())  # Polars' own types
    res = hashplug.ingest(tmp_path / "db", df, name="t", model=str(model), chunk_size=50, progress=False)
    assert (res.rows_written, res.chunks) == (N, 3)
    ref = OnnxEncoder(model).encode(X)
    np.testing.assert_array_equal(_codes_by_id(res.table), ref)
    # hashplug.add of a Polars frame, and a Polars Array column (fixed size): the same codes
    arr = pl.DataFrame({"id": np.arange(N, N + 10), "vector": X[:10]})
    assert isinstance(arr.schema["vector"], pl.Array)
    hashplug.add(res.table, arr)
    np.testing.assert_array_equal(_codes_by_id(res.table)[N:], ref[:10])
    hit = hashplug.search(res.table, X[17], limit=2)
    assert hit["id"][0].as_py() == 17 and hit["_distance"][0].as_py() == 0.0


def test_polars_source_resumes_exactly_once(tmp_path, X, model):
    ckpt = tmp_path / "ingest.json"
    kw = dict(name="t", model=str(model), chunk_size=40, checkpoint=ckpt, progress=False)
    first = hashplug.ingest(tmp_path / "db", _frame(X[:80]), **kw)
    again = hashplug.ingest(tmp_path / "db", _frame(X), **kw)  # the same source, grown: only the new rows
    assert (first.rows_written, again.rows_skipped, again.rows_written) == (80, 80, N - 80)
    assert sorted(again.table.to_arrow()["id"].to_pylist()) == list(range(N))
    with pytest.raises(HashplugError, match="another source|not the source"):  # another frame: refused
        hashplug.ingest(tmp_path / "db", _frame(X[::-1].copy()), **kw)
    assert again.table.count_rows() == N


def test_duckdb_relations_and_pyarrow_datasets(tmp_path, X, model):
    ref = OnnxEncoder(model).encode(X)
    src = pa.table({"id": pa.array(np.arange(N)), "vector": pa.array(X.tolist(), pa.list_(pa.float32()))})
    rel = duckdb.sql("SELECT id, vector FROM src ORDER BY id")  # noqa: F841 - duckdb reads `src` by name
    db = lancedb.connect(tmp_path / "db")
    t = hashplug.ingest(tmp_path / "db", rel, name="duck", model=str(model), chunk_size=64, progress=False).table
    np.testing.assert_array_equal(_codes_by_id(t), ref)
    # a folder of parquet files as a pyarrow Dataset, and a Scanner of it
    (tmp_path / "pq").mkdir()
    pq.write_table(src.slice(0, 60), tmp_path / "pq" / "a.parquet")
    pq.write_table(src.slice(60), tmp_path / "pq" / "b.parquet")
    dset = pads.dataset(tmp_path / "pq")
    t2 = hashplug.ingest(db, dset, name="ds", model=str(model), progress=False).table
    np.testing.assert_array_equal(_codes_by_id(t2), ref)
    t3 = hashplug.ingest(db, dset.scanner(filter=pads.field("id") < 30), name="sc", model=str(model),
                         progress=False).table
    np.testing.assert_array_equal(_codes_by_id(t3), ref[:30])
    # any object with only the C stream / C array interface
    t4 = hashplug.ingest(db, StreamOnly(src), name="stream", model=str(model), progress=False).table
    np.testing.assert_array_equal(_codes_by_id(t4), ref)
    t5 = hashplug.ingest(db, ArrayOnly(src.to_batches()[0]), name="array", model=str(model), progress=False).table
    np.testing.assert_array_equal(_codes_by_id(t5), ref)


def test_encode_batch_and_encode_batches_take_other_libraries(X, model):
    enc = OnnxEncoder(model)
    ref = enc.encode(X)
    df = _frame(X)
    out = encode_batch(df, enc)
    assert isinstance(out, pa.RecordBatch) and out.schema.field("code").type == pa.list_(pa.uint8(), 4)
    np.testing.assert_array_equal(np.stack(out["code"].to_numpy(zero_copy_only=False)), ref)
    out = encode_batch(ArrayOnly(pa.table(df).combine_chunks().to_batches()[0]), enc)
    np.testing.assert_array_equal(np.stack(out["code"].to_numpy(zero_copy_only=False)), ref)
    rel = duckdb.sql("SELECT * FROM df")
    got = pa.Table.from_batches(list(encode_batches(rel, enc, batch_size=50)))
    np.testing.assert_array_equal(np.stack(got["code"].to_numpy(zero_copy_only=False)), ref)
    # a Polars Series is a column: the function encodes it
    func = hashplug.integrations.lancedb.HashplugEmbeddings.create(model=str(model))
    np.testing.assert_array_equal(func.encode(df["vector"]), ref)
    with pytest.raises(HashplugError, match="takes a batch of rows"):
        encode_batch([1, 2, 3], enc)


def test_ingest_takes_a_lancedb_connection(tmp_path, X, model):
    db = lancedb.connect(tmp_path / "db")
    res = hashplug.ingest(db, X[:50], name="t", model=str(model), columns={"id": np.arange(50)}, progress=False)
    assert res.table.count_rows() == 50 and db.open_table("t").count_rows() == 50
    more = hashplug.ingest(db, X[50:60], name="t", columns={"id": np.arange(50, 60)}, progress=False)
    assert more.rows_written == 10 and db.open_table("t").count_rows() == 60
    _, _, func = get_function(db.open_table("t"))
    np.testing.assert_array_equal(_codes_by_id(db.open_table("t")), OnnxEncoder(model).encode(X[:60]))
    assert func.model.startswith("{db}/")
    with pytest.raises(HashplugTypeError, match="name= must be the table's name"):
        hashplug.ingest(db, X[:5], model=str(model), progress=False)
    with pytest.raises(HashplugError, match="pass model= to create it"):
        hashplug.ingest(db, X[:5], name="nope", progress=False)


def test_sources_that_are_not_tables_are_refused_clearly(tmp_path, X, model):
    df = _frame(X)
    with pytest.raises(HashplugError, match=r"to_frame\(\)"):
        hashplug.ingest(tmp_path / "db", df["vector"], name="t", model=str(model), progress=False)
    with pytest.raises(HashplugError, match="cannot ingest a LazyFrame"):
        hashplug.ingest(tmp_path / "db", df.lazy(), name="t", model=str(model), progress=False)
    assert not (tmp_path / "db").exists()  # nothing was created
