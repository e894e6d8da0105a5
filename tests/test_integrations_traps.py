"""Step 3a: LanceDB idioms that used to fail silently or lose hashplug's error types."""

from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.embeddings import get_registry
from lancedb.pydantic import LanceModel, Vector
from test_integrations_lancedb import brute_hamming, make_model

import hashplug
from hashplug.integrations import lancedb as hl
from hashplug.integrations.reranker import FloatRescoreReranker, HammingReranker
from hashplug.validation import HashplugError, IngestError, TableSchemaError

pytest.importorskip("onnx")


@pytest.fixture
def model(tmp_path):
    path, ref = make_model(tmp_path / "enc.onnx")  # 16 features -> 32 bits (4 bytes)
    func = get_registry().get("hashplug").create(model=str(path))
    X = np.random.default_rng(7).standard_normal((200, 16)).astype(np.float32)
    return func, ref, X, lancedb.connect(tmp_path / "db")


def float_code_table(db, func, kind):
    """A table whose code column is float: LanceModel declarations that make one now fail at class creation
    (tests/test_lancedb_idioms.py), so build it the two ways LanceDB still allows: a hand-written schema, and
    ``create_table(data, embedding_functions=...)`` (LanceDB's default float vector column)."""
    from lancedb.embeddings import EmbeddingFunctionConfig

    conf = EmbeddingFunctionConfig(source_column="vector", vector_column="code", function=func)
    if kind == "vector":
        schema = pa.schema(
            [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32())),
             pa.field("code", pa.list_(pa.float32(), func.ndims()))],
            metadata=get_registry().get_table_metadata([conf]),
        )
        return db.create_table(f"float_{kind}", schema=schema)
    tbl = db.create_table(f"float_{kind}", data=[{"id": -1, "vector": [0.0] * 16}], embedding_functions=[conf])
    tbl.delete("id = -1")
    return tbl


@pytest.mark.parametrize("kind", ["vector", "list"])
def test_float_code_column_is_caught_with_the_fix(model, kind):
    func, ref, X, db = model
    tbl = float_code_table(db, func, kind)
    assert pa.types.is_floating(tbl.schema.field("code").type.value_type)  # LanceDB's doing, not ours
    tbl.add([{"id": i, "vector": X[i].tolist()} for i in range(20)])  # LanceDB casts the codes silently
    for call in (
        lambda: hashplug.search(tbl, X[0], limit=3),
        lambda: hashplug.ingest(tbl, X[20:30], columns={"id": np.arange(20, 30)}, progress=False),
        lambda: hashplug.add(tbl, X[20:30], columns={"id": np.arange(20, 30)}),
        lambda: hl.create_lancedb_index(tbl),
        lambda: hashplug.update(tbl, "id = 1", {"vector": X[5]}),
    ):
        with pytest.raises(TableSchemaError) as err:
            call()
        msg = str(err.value)
        assert "value_type=pa.uint8()" in msg and "fixed_size_list<item: uint8>[4]" in msg
        assert "drop_columns" in msg  # how to keep the stored rows
    assert tbl.count_rows() == 20


def test_the_documented_lance_model_declaration_works(model):
    func, ref, X, db = model

    class Row(LanceModel):
        id: int
        vector: list[float] = func.SourceField()
        code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField(default=None)

    tbl = db.create_table("ok", schema=Row)
    tbl.add([Row(id=i, vector=X[i].tolist()) for i in range(50)])
    # One vector column: LanceDB's own search with a Query needs no vector_column_name.
    res = tbl.search(hashplug.Query(X[3])).distance_type("hamming").limit(5).to_arrow()
    assert res["id"][0].as_py() == 3
    P = ref(X[:50])
    np.testing.assert_array_equal(res["_distance"].to_numpy(), np.sort(brute_hamming(P, P[3]))[:5])


def test_lance_model_helper_has_a_single_vector_column(model):
    func, ref, X, db = model
    tbl = db.create_table("lm", schema=hl.lance_model(func, extra={"id": int}))
    tbl.add([{"id": i, "vector": X[i].tolist()} for i in range(30)])
    res = tbl.search(hashplug.Query(X[7])).distance_type("hamming").limit(1).to_arrow()
    assert res["id"][0].as_py() == 7


def test_source_as_vector_gives_two_vector_columns_and_hashplug_search_still_works(model):
    func, ref, X, db = model
    # (a LanceModel source declared Vector(16) now fails at class creation: tests/test_lancedb_idioms.py)
    tbl = db.create_table("two", schema=hl.schema(func, source_type="fixed", extra={"id": pa.int64()}))
    tbl.add([{"id": i, "vector": X[i].tolist()} for i in range(40)])
    res = hashplug.search(tbl, X[9], limit=3)  # passes vector_column_name itself
    assert res["id"][0].as_py() == 9
    res = tbl.search(hashplug.Query(X[9]), vector_column_name="code").distance_type("hamming").limit(1)
    assert res.to_arrow()["id"][0].as_py() == 9


def test_add_raises_hashplug_errors_and_writes_nothing(model):
    func, ref, X, db = model
    tbl = db.create_table("t", schema=hl.schema(func, extra={"id": pa.int64()}))
    hashplug.add(tbl, X[:10], columns={"id": np.arange(10)})
    bad = X[10:20].copy()
    bad[4, 2] = np.nan
    with pytest.raises(IngestError, match=r"NaN.*index \(4, 2\)"):
        hashplug.add(tbl, bad, columns={"id": np.arange(10, 20)})
    with pytest.raises(HashplugError, match="16 are expected"):
        hashplug.add(tbl, [{"id": 1, "vector": [0.0] * 15}])
    assert tbl.count_rows() == 10
    # dicts and pydantic rows are accepted as by table.add, in one commit
    v0 = tbl.version
    hashplug.add(tbl, [{"id": 100 + i, "vector": X[i].tolist()} for i in range(5)])
    assert tbl.count_rows() == 15 and tbl.version == v0 + 1
    # table.add itself re-raises from LanceDB's Rust writer: the type is lost but our message stays readable.
    with pytest.raises(RuntimeError) as err:
        tbl.add(pa.table({"id": np.arange(10, 20), "vector": list(bad)}))
    assert "contains NaN or infinity (first at index (4, 2)); clean or impute" in str(err.value)
    assert tbl.count_rows() == 15


def test_update_keeps_codes_in_step(model):
    func, ref, X, db = model
    tbl = db.create_table("u", schema=hl.schema(func, extra={"id": pa.int64()}))
    hashplug.add(tbl, X[:20], columns={"id": np.arange(20)})

    def code_of(i):
        return np.asarray(tbl.search().where(f"id = {i}").to_arrow()["code"][0].as_py(), dtype=np.uint8)

    # The trap: LanceDB's update does not run the embedding function.
    tbl.update(where="id = 3", values={"vector": X[150].tolist()})
    np.testing.assert_array_equal(code_of(3), ref(X[3:4])[0])  # stale code
    # The right call recomputes it, atomically with the sample.
    hashplug.update(tbl, "id = 3", {"vector": X[150]})
    np.testing.assert_array_equal(code_of(3), ref(X[150:151])[0])
    assert hashplug.search(tbl, X[150], limit=1)["id"][0].as_py() == 3
    with pytest.raises(HashplugError, match="computed by the table's function"):
        hashplug.update(tbl, "id = 4", {"code": [0, 0, 0, 0]})
    with pytest.raises(HashplugError, match="SQL expression"):
        hashplug.update(tbl, "id = 4", values_sql={"vector": "vector"})
    with pytest.raises(HashplugError, match="NaN"):
        hashplug.update(tbl, "id = 4", {"vector": np.full(16, np.nan)})
    np.testing.assert_array_equal(code_of(4), ref(X[4:5])[0])


def test_update_sparse_table(tmp_path):
    path, ref = make_model(tmp_path / "k.onnx", m=64, k=5)
    func = get_registry().get("hashplug").create(model=str(path), layout="indices")
    X = np.random.default_rng(3).standard_normal((30, 16)).astype(np.float32)
    tbl = lancedb.connect(tmp_path / "db").create_table("s", schema=hl.schema(func, extra={"id": pa.int64()}))
    hashplug.add(tbl, X[:10], columns={"id": np.arange(10)})
    hashplug.update(tbl, "id = 2", {"vector": X[20]})
    got = tbl.search().where("id = 2").to_arrow()["code"][0].as_py()
    assert got == np.flatnonzero(np.unpackbits(ref(X[20:21])[0])).tolist()
    assert tbl.schema.field("code").type == pa.list_(pa.int32())


def test_reranker_query_code_given_explicitly_is_used_by_search(model):
    func, ref, X, db = model
    tbl = db.create_table("r", schema=hl.schema(func, source_type="fixed", extra={"id": pa.int64()}))
    hashplug.add(tbl, X, columns={"id": np.arange(200)})
    P = ref(X)
    # Candidates for X[0], reordered by the distance to another code: the explicit code must be used.
    res = hashplug.search(tbl, X[0], limit=20, reranker=HammingReranker(query_code=P[50], overfetch=10))
    ham = np.asarray(res["_hamming"].to_pylist())
    np.testing.assert_array_equal(ham, brute_hamming(P, P[50])[np.asarray(res["id"].to_pylist())])
    assert res["id"][0].as_py() == 50 and ham[0] == 0
    res = hashplug.search(
        tbl, X[0], limit=5, reranker=FloatRescoreReranker("vector", query_vector=X[50], overfetch=40)
    )
    assert res["id"][0].as_py() == 50


def test_search_entry_points_raise_hashplug_errors(model, tmp_path):
    func, ref, X, db = model
    plain = db.create_table("plain", data=pa.table({"v": pa.array(list(X[:5]), type=pa.list_(pa.float32(), 16))}))
    with pytest.raises(HashplugError, match="no hashplug embedding function"):
        hashplug.search(plain, X[0])
    kpath, _ = make_model(tmp_path / "k.onnx", m=64, k=5)
    sfunc = get_registry().get("hashplug").create(model=str(kpath), layout="indices")
    sp = db.create_table("sp", schema=hl.schema(sfunc))
    hashplug.add(sp, X[:20])
    assert hashplug.search(sp, X[4], limit=1)["_distance"][0].as_py() == 0
    # LanceDB's own table.search reaches hashplug only with vector_column_name; then our error type survives.
    with pytest.raises(HashplugError, match="hashplug.search"):
        sp.search(hashplug.Query(X[0]), vector_column_name="code").limit(3).to_arrow()


def test_search_k_keyword_is_deprecated_for_limit(model):
    func, ref, X, db = model
    tbl = db.create_table("dep", schema=hl.schema(func, extra={"id": pa.int64()}))
    hashplug.add(tbl, X[:30], columns={"id": np.arange(30)})
    with pytest.warns(DeprecationWarning, match="limit="):
        old = hashplug.search(tbl, X[2], k=4)
    new = hashplug.search(tbl, X[2], limit=4)
    assert old["id"].to_pylist() == new["id"].to_pylist() and old.num_rows == 4


def test_one_vocabulary_with_0_1_0_names_still_accepted(model, tmp_path):
    """Layouts are 'packed' / 'indices' everywhere; 0.1.0's code='dense'/'sparse' and sha256= still work."""
    func, ref, X, db = model
    assert func.layout == "packed" and func.file_sha256 == func.encoder.file_sha256
    tbl = db.create_table("v", schema=hl.schema(func))
    assert tbl.schema.field("code").metadata[b"hashplug.layout"] == b"packed"
    kpath, _ = make_model(tmp_path / "k.onnx", m=64, k=5)
    with pytest.warns(DeprecationWarning, match="layout='indices'"):
        old = get_registry().get("hashplug").create(model=str(kpath), code="sparse", sha256=None)
    assert old.layout == "indices"
    with pytest.raises(HashplugError, match="layout= only"):
        get_registry().get("hashplug").create(model=str(kpath), code="sparse", layout="packed")
    with pytest.warns(DeprecationWarning, match="layout="):
        res = hashplug.ingest(tmp_path / "db2", X[:10], name="t", model=str(kpath), code="sparse", progress=False)
    assert res.table.schema.field("code").type == pa.list_(pa.int32())
    with pytest.raises(HashplugError, match="'packed'.*'indices'"):
        hashplug.ingest(tmp_path / "db2", X[:10], name="u", model=str(kpath), layout="bits", progress=False)


def test_cli_layout_and_limit_options(model, tmp_path, capsys):
    from hashplug.cli import main

    func, ref, X, db = model
    kpath, _ = make_model(tmp_path / "k.onnx", m=64, k=5)
    np.save(tmp_path / "x.npy", X[:30])
    base = ["ingest", str(tmp_path / "x.npy"), "--db", str(tmp_path / "cdb"), "--model", str(kpath)]
    assert main([*base, "--table", "a", "--layout", "indices"]) == 0
    assert main([*base, "--table", "b", "--code", "sparse"]) == 0
    assert "--code is deprecated" in capsys.readouterr().err
    t = lancedb.connect(tmp_path / "cdb")
    assert t.open_table("a").schema == t.open_table("b").schema
    q = ["search", "--db", str(tmp_path / "cdb"), "--table", "a", "--query-file", str(tmp_path / "x.npy"), "--row", "4"]
    assert main([*q, "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert len(__import__("json").loads(out)["results"]) == 3
    assert main([*q, "--k", "2"]) == 0
    cap = capsys.readouterr()
    assert "--k is deprecated" in cap.err and len(__import__("json").loads(cap.out)["results"]) == 2


def test_bad_argument_types_raise_hashplug_errors(model, tmp_path):
    """Every entry point turns a wrong argument type into a HashplugError subclass naming the argument."""
    func, ref, X, db = model
    reg = get_registry().get("hashplug")
    cases = [
        (lambda: hashplug.OnnxEncoder(123), hashplug.HashplugTypeError, "path"),
        (lambda: hashplug.load_encoder(None), hashplug.HashplugTypeError, "path"),
        (lambda: reg.create(model=None), hashplug.HashplugTypeError, "model"),
        (lambda: reg.create(model=func.model, layout="bits"), HashplugError, "'packed'"),
        (lambda: reg.create(model=func.model, batch_size="big"), HashplugError, "batch_size"),
        (lambda: hashplug.search(None, X[0]), hashplug.HashplugTypeError, "LanceDB table"),
        (lambda: hashplug.ingest(None, X), hashplug.HashplugTypeError, "table_or_uri"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words):
            call()
    assert issubclass(hashplug.HashplugTypeError, TypeError) and issubclass(hashplug.ModelNotFoundError, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        hashplug.OnnxEncoder(tmp_path / "missing.onnx")


def test_cli_ingest_refuses_a_checkpoint_of_another_source(model, tmp_path, capsys):
    from hashplug.cli import main

    func, ref, X, db = model
    np.save(tmp_path / "a.npy", X[:100])
    np.save(tmp_path / "b.npy", X[100:200])
    args = ["--db", str(tmp_path / "cdb"), "--table", "t", "--model", func.model, "--checkpoint", str(tmp_path / "c.json")]
    assert main(["ingest", str(tmp_path / "a.npy"), *args]) == 0
    capsys.readouterr()
    code = main(["ingest", str(tmp_path / "b.npy"), *args])
    err = capsys.readouterr().err
    assert code == 2 and "another source" in err and "Traceback" not in err
    assert lancedb.connect(tmp_path / "cdb").open_table("t").count_rows() == 100
