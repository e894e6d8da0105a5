"""Streaming encode and resumable chunked ingestion into real LanceDB tables."""

from __future__ import annotations

import json

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lancedb.embeddings import get_registry
from test_integrations_lancedb import brute_hamming, make_model

import hashplug
from hashplug.integrations import arrow as harrow
from hashplug.integrations import ingest as hingest
from hashplug.integrations import lancedb as hl
from hashplug.runtime import OnnxEncoder
from hashplug.validation import HashplugError, ModelMismatchError

pytest.importorskip("onnx")


@pytest.fixture
def setup(tmp_path):
    path, ref = make_model(tmp_path / "enc.onnx")
    func = get_registry().get("hashplug").create(model=str(path))
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("items", schema=hl.schema(func, extra={"id": pa.int64()}))
    X = np.random.default_rng(2).standard_normal((1000, 16)).astype(np.float32)
    return tbl, func, ref, path, X


def table_codes(tbl):
    t = tbl.to_arrow().sort_by("id")
    return t["id"].to_numpy(), np.stack(t["code"].to_numpy(zero_copy_only=False))


def test_encode_batches_streams_with_bounded_batches(setup):
    _, func, ref, path, X = setup
    src = pa.table({"id": np.arange(1000), "vector": list(X)})
    reader = src.to_reader(max_chunksize=300)
    out = harrow.encode_batches(reader, OnnxEncoder(path), batch_size=128)
    assert out.schema.field("code").type == pa.list_(pa.uint8(), 4)
    sizes, parts = [], []
    for b in out:
        sizes.append(b.num_rows)
        parts.append(np.stack(b.column("code").to_numpy(zero_copy_only=False)))
    assert max(sizes) <= 128 and sum(sizes) == 1000
    np.testing.assert_array_equal(np.concatenate(parts), ref(X))
    # The embedding function works as the encoder too, and sparse ids come out as list<int32>.
    kpath, kref = make_model(path.parent / "k.onnx", m=64, k=5)
    sp = harrow.encode_batches(src.to_reader(), OnnxEncoder(kpath), layout="indices").read_all()
    assert sp.schema.field("code").type == pa.list_(pa.int32())
    ids = np.asarray(sp["code"].to_pylist())
    assert np.array_equal(np.packbits(np.isin(np.arange(64), ids[0])), kref(X[:1])[0])


@pytest.mark.parametrize("kind", ["numpy", "table", "reader", "pandas", "parquet"])
def test_ingest_sources(setup, tmp_path, kind):
    tbl, func, ref, _, X = setup
    ids = np.arange(1000)
    if kind == "numpy":
        src, kw = X, {"columns": {"id": ids}}
    elif kind == "table":
        src, kw = pa.table({"id": ids, "vector": list(X)}), {}
    elif kind == "reader":
        src, kw = pa.table({"id": ids, "vector": list(X)}).to_reader(max_chunksize=77), {}
    elif kind == "pandas":
        pd = pytest.importorskip("pandas")
        src, kw = pd.DataFrame({"id": ids, "vector": list(X)}), {}
    else:
        folder = tmp_path / "pq"
        folder.mkdir()
        for i in range(4):
            sl = slice(250 * i, 250 * (i + 1))
            pq.write_table(pa.table({"id": ids[sl], "vector": list(X[sl])}), folder / f"part-{i}.parquet")
        src, kw = folder, {}
    res = hashplug.ingest(tbl, src, chunk_size=300, progress=(kind == "table"), **kw)
    assert (res.rows_written, res.chunks) == (1000, 4)
    got_ids, codes = table_codes(tbl)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(codes, ref(X))
    assert tbl.schema.field("code").type == pa.list_(pa.uint8(), 4)


def test_ingest_creates_table_from_uri(tmp_path):
    path, ref = make_model(tmp_path / "k.onnx", m=64, k=6)
    X = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    res = hashplug.ingest(
        tmp_path / "db",
        X,
        name="new",
        model=str(path),
        layout="indices",
        columns={"id": np.arange(200)},
        progress=False,
    )
    tbl = res.table
    assert tbl.schema.field("code").type == pa.list_(pa.int32())
    hl.create_lancedb_index(tbl)
    P = ref(X)
    out = hashplug.search(tbl, X[9], limit=7)
    assert out["_distance"].to_pylist() == sorted(brute_hamming(P, P[9]))[:7]
    # Reopen by '<name>.lance' path.
    res2 = hashplug.ingest(tmp_path / "db" / "new.lance", X[:3], columns={"id": [1, 2, 3]}, progress=False)
    assert res2.table.count_rows() == 203


class Boom(RuntimeError):
    pass


def failing(batches, fail_at):
    for i, b in enumerate(batches):
        if i == fail_at:
            raise Boom("disk on fire")
        yield b


def test_resume_after_crash_mid_ingest(setup, tmp_path):
    tbl, func, ref, _, X = setup
    src = pa.table({"id": np.arange(1000), "vector": list(X)})
    ckpt = tmp_path / "ingest.json"
    with pytest.raises(Boom):
        hashplug.ingest(
            tbl,
            failing(src.to_batches(max_chunksize=100), 5),
            chunk_size=200,
            checkpoint=ckpt,
            progress=False,
        )
    assert tbl.count_rows() == 400  # two chunks of 200 committed, the third never was
    assert json.loads(ckpt.read_text())["rows_done"] == 400
    res = hashplug.ingest(tbl, src, chunk_size=200, checkpoint=ckpt, progress=False)
    assert (res.rows_skipped, res.rows_written) == (400, 600)
    ids, codes = table_codes(tbl)
    np.testing.assert_array_equal(ids, np.arange(1000))  # nothing lost, nothing twice
    np.testing.assert_array_equal(codes, ref(X))
    # Running again with the finished checkpoint does nothing.
    assert hashplug.ingest(tbl, src, chunk_size=200, checkpoint=ckpt, progress=False).rows_written == 0
    assert tbl.count_rows() == 1000


def test_resume_when_crash_between_commit_and_checkpoint(setup, tmp_path, monkeypatch):
    tbl, func, ref, _, X = setup
    src = pa.table({"id": np.arange(1000), "vector": list(X)})
    ckpt = tmp_path / "ingest.json"
    real = hingest._write_checkpoint
    calls = {"n": 0}

    def flaky(path, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("killed after the third commit")
        real(path, state)

    monkeypatch.setattr(hingest, "_write_checkpoint", flaky)
    with pytest.raises(Boom):
        hashplug.ingest(tbl, src, chunk_size=150, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(hingest, "_write_checkpoint", real)
    assert tbl.count_rows() == 450 and json.loads(ckpt.read_text())["rows_done"] == 300
    res = hashplug.ingest(tbl, src, chunk_size=150, checkpoint=ckpt, progress=False)
    assert res.rows_skipped == 450  # derived from the table
    ids, _ = table_codes(tbl)
    np.testing.assert_array_equal(ids, np.arange(1000))


def test_merge_insert_retry_never_duplicates(setup):
    tbl, func, ref, _, X = setup
    src = pa.table({"id": np.arange(1000), "vector": list(X)})
    with pytest.raises(Boom):
        hashplug.ingest(
            tbl, failing(src.to_batches(max_chunksize=100), 7), id_column="id", chunk_size=300, progress=False
        )
    assert tbl.count_rows() == 600
    hashplug.ingest(tbl, src, id_column="id", chunk_size=300, progress=False)  # retry from scratch
    ids, codes = table_codes(tbl)
    np.testing.assert_array_equal(ids, np.arange(1000))
    np.testing.assert_array_equal(codes, ref(X))


def test_bad_input_keeps_committed_data(setup, tmp_path):
    tbl, func, ref, path, X = setup
    bad = X.copy()
    bad[650, 3] = np.nan
    with pytest.raises(HashplugError, match="NaN"):
        hashplug.ingest(tbl, bad, columns={"id": np.arange(1000)}, chunk_size=300, progress=False)
    assert tbl.count_rows() == 600  # chunks before the bad one are committed and kept
    n = tbl.count_rows()
    with pytest.raises(HashplugError, match="features"):
        hashplug.ingest(tbl, X[:, :12], columns={"id": np.arange(1000)}, progress=False)
    with pytest.raises(HashplugError, match="empty"):
        hashplug.ingest(
            tbl,
            pa.table({"id": pa.array([], pa.int64()), "vector": pa.array([], pa.list_(pa.float32()))}),
            progress=False,
        )
    with pytest.raises(HashplugError, match="source column|no column"):
        hashplug.ingest(tbl, pa.table({"id": [1], "emb": [X[0]]}), progress=False)
    other, _ = make_model(tmp_path / "other.onnx", seed=5)
    with pytest.raises(ModelMismatchError, match="sha256"):
        hashplug.ingest(tbl, X, model=str(other), columns={"id": np.arange(1000)}, progress=False)
    assert tbl.count_rows() == n


# ---------------------------------------------------------------------------------------------------- step 3a
def test_checkpoint_refuses_another_source_and_writes_nothing(setup, tmp_path):
    """A finished checkpoint reused for a different source used to report rows_written=0 and drop the data."""
    tbl, func, ref, _, X = setup
    ckpt = tmp_path / "g.ckpt"
    res = hashplug.ingest(tbl, X[:400], columns={"id": np.arange(400)}, chunk_size=100, checkpoint=ckpt, progress=False)
    assert res.rows_written == 400
    with pytest.raises(HashplugError, match="another source") as err:
        hashplug.ingest(
            tbl, X[300:700], columns={"id": np.arange(300, 700)}, chunk_size=100, checkpoint=ckpt, progress=False
        )
    assert "new checkpoint" in str(err.value)
    assert tbl.count_rows() == 400
    # A shorter source cannot be the one the checkpoint covers either.
    with pytest.raises(HashplugError, match="only 50 rows|ended after"):
        hashplug.ingest(tbl, X[:50], columns={"id": np.arange(50)}, chunk_size=100, checkpoint=ckpt, progress=False)
    # The same source again is a no-op; the same source grown by 200 rows ingests just the new rows.
    again = hashplug.ingest(tbl, X[:400], columns={"id": np.arange(400)}, chunk_size=100, checkpoint=ckpt, progress=False)
    assert (again.rows_written, again.rows_skipped) == (0, 400)
    grown = hashplug.ingest(tbl, X[:600], columns={"id": np.arange(600)}, chunk_size=100, checkpoint=ckpt, progress=False)
    assert (grown.rows_written, grown.rows_skipped) == (200, 400)
    ids, codes = table_codes(tbl)
    np.testing.assert_array_equal(ids, np.arange(600))
    np.testing.assert_array_equal(codes, ref(X[:600]))


def test_checkpoint_detects_a_change_after_the_first_chunk(setup, tmp_path):
    tbl, func, ref, _, X = setup
    ckpt = tmp_path / "c.json"
    hashplug.ingest(tbl, X[:500], columns={"id": np.arange(500)}, chunk_size=100, checkpoint=ckpt, progress=False)
    changed = X[:700].copy()
    changed[[433, 366, 427]] += 1.0  # differs only inside the committed range, after the first chunk
    with pytest.raises(HashplugError, match="another source"):
        hashplug.ingest(tbl, changed, columns={"id": np.arange(700)}, chunk_size=100, checkpoint=ckpt, progress=False)
    assert tbl.count_rows() == 500


def test_checkpoint_belongs_to_its_table(setup, tmp_path):
    tbl, func, ref, _, X = setup
    ckpt = tmp_path / "t.json"
    hashplug.ingest(tbl, X[:100], columns={"id": np.arange(100)}, checkpoint=ckpt, progress=False)
    other = lancedb.connect(tmp_path / "db").create_table("other", schema=hl.schema(func, extra={"id": pa.int64()}))
    with pytest.raises(HashplugError, match="belongs to table"):
        hashplug.ingest(other, X[:100], columns={"id": np.arange(100)}, checkpoint=ckpt, progress=False)
    assert other.count_rows() == 0


def test_old_checkpoint_format_is_refused(setup, tmp_path):
    tbl, func, ref, _, X = setup
    ckpt = tmp_path / "v1.json"
    ckpt.write_text(json.dumps({"version": 1, "rows_done": 100, "finished": True, "chunk_size": 65536}))
    with pytest.raises(HashplugError, match="version 2"):
        hashplug.ingest(tbl, X[:100], columns={"id": np.arange(100)}, checkpoint=ckpt, progress=False)
    assert tbl.count_rows() == 0


def test_bad_row_is_reported_in_source_numbers(setup, tmp_path):
    """NaN in row 250 with chunks of 100: the message names row 250 and the 200 rows already committed."""
    tbl, func, ref, _, X = setup
    bad = X[:400].copy()
    bad[250, 3] = np.nan
    ckpt = tmp_path / "nan.json"
    with pytest.raises(hashplug.IngestError) as err:
        hashplug.ingest(tbl, bad, columns={"id": np.arange(400)}, chunk_size=100, checkpoint=ckpt, progress=False)
    e = err.value
    assert isinstance(e, HashplugError) and isinstance(e, ValueError)
    assert (e.rows_committed, e.row) == (200, 250)
    msg = str(e)
    assert "(250, 3)" in msg and "200 rows of this source are committed" in msg and "rows 200-299" in msg
    assert "(50, 3)" not in msg
    assert tbl.count_rows() == 200
    # Fix the row, rerun the same call: it resumes at row 200.
    bad[250, 3] = X[250, 3]
    res = hashplug.ingest(tbl, bad, columns={"id": np.arange(400)}, chunk_size=100, checkpoint=ckpt, progress=False)
    assert (res.rows_skipped, res.rows_written) == (200, 200)
    ids, codes = table_codes(tbl)
    np.testing.assert_array_equal(ids, np.arange(400))
    np.testing.assert_array_equal(codes, ref(X[:400]))


def test_null_row_is_reported_in_source_numbers(setup):
    tbl, func, ref, _, X = setup
    vec = pa.array([list(v) for v in X[:300]], type=pa.list_(pa.float32(), 16))
    vec = pa.array([None if i == 170 else v for i, v in enumerate(vec.to_pylist())], type=vec.type)
    src = pa.table({"id": np.arange(300), "vector": vec})
    with pytest.raises(hashplug.IngestError, match="first at row 170") as err:
        hashplug.ingest(tbl, src, chunk_size=100, progress=False)
    assert err.value.row == 170 and tbl.count_rows() == 100


def test_encode_batch_is_pure_and_shared(setup):
    """The per-batch function ingest and encode_batches share: same codes, replaces an existing column."""
    _, func, ref, path, X = setup
    batch = pa.RecordBatch.from_pydict({"id": np.arange(50), "vector": list(X[:50])})
    out = harrow.encode_batch(batch, OnnxEncoder(path))
    assert out.schema.names == ["id", "vector", "code"] and batch.num_columns == 2  # input untouched
    np.testing.assert_array_equal(np.stack(out["code"].to_numpy(zero_copy_only=False)), ref(X[:50]))
    again = harrow.encode_batch(out, func)  # an existing code column is replaced, not duplicated
    assert again.schema.names == ["id", "vector", "code"] and again["code"].equals(out["code"])
    streamed = harrow.encode_batches(pa.Table.from_batches([batch]).to_reader(max_chunksize=7), func).read_all()
    assert streamed["code"].combine_chunks().equals(out["code"])
    bad = X[:50].copy()
    bad[3, 1] = np.inf
    with pytest.raises(HashplugError, match=r"index \(1003, 1\)"):
        harrow.encode_batch(pa.RecordBatch.from_pydict({"vector": list(bad)}), func, row_offset=1000)


def test_ingest_of_images_into_a_new_table_stores_them_flat(tmp_path, digits):
    """Before: ``hashplug.ingest(db, X)`` with X of shape (n, 8, 8) (what ``hashplug.data.load_digits`` returns)
    into a new table raised a raw Arrow cast error inside LanceDB's create_table (the table declared
    ``list<float>``, the chunk held nested fixed-size lists). The samples are now stored flat, as the new table
    declares them, and the model reshapes them to its input shape."""
    from hashplug.export import to_onnx

    X = digits[0][:300].reshape(-1, 8, 8)
    enc = hashplug.get_encoder("biohash", k=8, random_state=0).fit(X)
    path = to_onnx(enc, tmp_path / "b.onnx")
    res = hashplug.ingest(str(tmp_path / "db"), X, name="img", model=str(path), progress=False)
    tbl = res.table
    assert tbl.schema.field("vector").type == pa.list_(pa.float32())
    assert len(tbl.to_arrow().column("vector")[0].as_py()) == 64
    codes = np.stack(tbl.to_arrow().column("code").to_numpy(zero_copy_only=False)).astype(np.uint8)
    np.testing.assert_array_equal(codes, enc.encode(X))
    hits = hashplug.search(tbl, X[7], limit=1)
    assert hits["_distance"].to_pylist() == [0.0]
    more = hashplug.ingest(tbl, X[:5] * 0.5, progress=False)  # a second chunk into the existing table
    assert more.table.count_rows() == 305
    # flat vectors of the same model still make a list<float> table
    flat = hashplug.ingest(str(tmp_path / "db"), X.reshape(300, 64), name="flat", model=str(path), progress=False)
    assert flat.table.schema.field("vector").type == pa.list_(pa.float32())


class _ShapedTensorType(pa.ExtensionType):
    """A tensor extension type as Ray Data's are built: a fixed per-row ``shape``, values in a list storage."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        super().__init__(pa.large_list(pa.float32()), "hashplug.test_tensor")

    def __arrow_ext_serialize__(self):
        return json.dumps(self.shape).encode()

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls(json.loads(serialized))


def test_tensor_extension_columns_and_the_row_of_a_wrong_width():
    X = np.arange(3 * 16, dtype=np.float32).reshape(3, 4, 4)
    storage = pa.array([x.ravel().tolist() for x in X], type=pa.large_list(pa.float32()))
    col = pa.ExtensionArray.from_storage(_ShapedTensorType((4, 4)), storage)
    np.testing.assert_array_equal(harrow.column_to_numpy(col, (16,)), X.reshape(3, 16))
    np.testing.assert_array_equal(harrow.column_to_numpy(pa.chunked_array([col.slice(1)]), (4, 4)), X[1:])
    fixed = pa.FixedShapeTensorArray.from_numpy_ndarray(X)
    np.testing.assert_array_equal(harrow.column_to_numpy(fixed, (16,)), X.reshape(3, 16))
    # a ragged extension column is refused, naming what it is
    bad = pa.ExtensionArray.from_storage(_ShapedTensorType((None,)), storage)
    with pytest.raises(HashplugError, match="not a tensor column of one fixed shape"):
        harrow.column_to_numpy(bad, (16,))
    # one row of another width: named in source numbering, on the error's row attribute too
    rows = pa.array([[1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0]], type=pa.list_(pa.float32()))
    with pytest.raises(HashplugError, match=r"row 11 has 3 features, but the model expects 2") as info:
        harrow.column_to_numpy(rows, (2,), name="source", row_offset=10)
    assert info.value.row == 11
