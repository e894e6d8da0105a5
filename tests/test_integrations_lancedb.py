"""LanceDB embedding function, schema helpers, Query and Hamming search against real tables."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.embeddings import get_registry

import hashplug
from hashplug.graph import Flatten, Graph, KHot, MatMul, PackedSign
from hashplug.integrations import lancedb as hl
from hashplug.validation import HashplugError, ModelMismatchError

pytest.importorskip("onnx")  # test fixtures export tiny models; the library under test never imports onnx


# ---------------------------------------------------------------------------------------------------- helpers
def make_model(
    path: Path,
    d: int = 16,
    m: int = 32,
    k: int | None = None,
    seed: int = 0,
    input_shape: tuple | None = None,
):
    """Export a random-projection encoder to ONNX; return (path, reference packed-code function)."""
    from hashplug.export import to_onnx

    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, m)).astype(np.float32)
    shape = tuple(input_shape) if input_shape is not None else (d,)
    ops = [Flatten(), MatMul(W)] if len(shape) != 1 else [MatMul(W)]
    graph = Graph.chain(ops, shape, PackedSign() if k is None else KHot(k))
    enc = types.SimpleNamespace(
        graph=graph, method_name="test", weights_sha256=lambda: hashlib.sha256(W.tobytes()).hexdigest()
    )
    to_onnx(enc, path)

    def ref(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).reshape(len(X), *shape)
        return np.packbits(graph.bits(x=X), axis=1)

    return Path(path), ref


def brute_hamming(P: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.bitwise_xor(P, q[None, :]), axis=1).sum(axis=1)


def check_topk(result: pa.Table, P: np.ndarray, q: np.ndarray, k: int) -> None:
    """The returned rows are a true Hamming top-k (up to ties) and their _distance is exact."""
    d = brute_hamming(P, q)
    ids = np.asarray(result["id"].to_pylist())
    dist = np.asarray(result["_distance"].to_pylist())
    assert len(ids) == k and len(set(ids)) == k
    np.testing.assert_array_equal(dist, d[ids])
    np.testing.assert_array_equal(dist, np.sort(d)[:k])


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((400, 16)).astype(np.float32)


@pytest.fixture
def dense(tmp_path, data):
    path, ref = make_model(tmp_path / "dense.onnx")
    func = get_registry().get("hashplug").create(model=str(path))
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("items", schema=hl.schema(func, extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(len(data)), "vector": list(data)}))
    return tbl, func, ref, path


@pytest.fixture
def sparse(tmp_path, data):
    path, ref = make_model(tmp_path / "khot.onnx", m=64, k=6, seed=3)
    func = get_registry().get("hashplug").create(model=str(path), layout="indices")
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("sparse", schema=hl.schema(func, extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": np.arange(len(data)), "vector": list(data)}))
    hl.create_lancedb_index(tbl)
    return tbl, func, ref, path


def codes_by_id(tbl) -> np.ndarray:
    t = tbl.to_arrow().sort_by("id")
    return np.stack(t["code"].to_numpy(zero_copy_only=False))


# ---------------------------------------------------------------------------------------------------- function
def test_registry_and_saved_config(dense):
    tbl, func, ref, path = dense
    assert get_registry().get("hashplug") is hl.HashplugEmbeddings
    meta = json.loads(tbl.schema.metadata[b"embedding_functions"])
    cfg = meta[0]["model"]
    assert meta[0]["name"] == "hashplug" and meta[0]["vector_column"] == "code"
    assert cfg["model"] == str(path.resolve()) and cfg["file_sha256"] == func.encoder.file_sha256 and cfg["layout"] == "packed"
    assert (cfg["m"], cfg["k"], cfg["code_kind"]) == (32, 32, "dense")
    # Rebuilt functions share one onnxruntime session per file (the runtime's one session cache).
    again = get_registry().get("hashplug").create(**cfg)
    assert again.encoder._session is func.encoder._session


def test_dense_codes_are_uint8_not_float(dense, data, tmp_path):
    tbl, func, ref, _ = dense
    field = tbl.schema.field("code")
    assert field.type == pa.list_(pa.uint8(), 4)
    np.testing.assert_array_equal(codes_by_id(tbl), ref(data))
    # The LanceDB fallback this helper avoids: no explicit schema -> the function's output is stored as floats.
    db = lancedb.connect(tmp_path / "db2")
    from lancedb.embeddings import EmbeddingFunctionConfig

    naive = db.create_table(
        "naive",
        data=pa.table({"vector": list(data[:5])}),
        embedding_functions=[
            EmbeddingFunctionConfig(source_column="vector", vector_column="code", function=func)
        ],
    )
    assert pa.types.is_floating(naive.schema.field("code").type.value_type)


def test_dense_search_matches_bruteforce(dense, data):
    tbl, func, ref, _ = dense
    P = ref(data)
    for i in (0, 7, 123):
        res = hashplug.search(tbl, data[i], limit=10)
        check_topk(res, P, P[i], 10)
        # The LanceDB way, through the wrapper object.
        res2 = tbl.search(hashplug.Query(data[i])).distance_type("hamming").limit(10).to_arrow()
        check_topk(res2, P, P[i], 10)
        # ... and its string form.
        res3 = tbl.search(str(hashplug.Query(data[i]))).distance_type("hamming").limit(10).to_arrow()
        check_topk(res3, P, P[i], 10)
    # Filter and column selection.
    res = hashplug.search(tbl, data[0], limit=5, where="id >= 200", columns=["id"])
    assert res.column_names == ["id", "_distance"] and min(res["id"].to_pylist()) >= 200


def test_dense_index_ivf_flat_hamming_stays_updatable(dense, data):
    tbl, func, ref, _ = dense
    hl.create_lancedb_index(tbl, num_partitions=4)
    idx = tbl.list_indices()
    assert idx[0].index_type == "IvfFlat"
    res = hashplug.search(tbl, data[5], limit=10, nprobes=4)
    check_topk(res, ref(data), ref(data)[5], 10)
    tbl.add(pa.table({"id": np.arange(400, 410), "vector": list(data[:10])}))
    tbl.optimize()
    assert tbl.count_rows() == 410
    exact = hashplug.search(tbl, data[5], limit=3, exact=True)
    assert exact["_distance"].to_pylist()[:2] == [0.0, 0.0]


def test_sparse_table_label_list_and_exact_hamming(sparse, data):
    tbl, func, ref, _ = sparse
    assert tbl.schema.field("code").type == pa.list_(pa.int32())
    assert tbl.list_indices()[0].index_type == "LabelList"
    P = ref(data)
    stored = tbl.to_arrow().sort_by("id")["code"].to_pylist()
    assert all(len(r) == 6 for r in stored)
    for i in (0, 42, 399):
        res = hashplug.search(tbl, data[i], limit=12)
        check_topk(res, P, P[i], 12)
        # Hamming = 2 (k - overlap) for k-hot codes.
        q = set(np.flatnonzero(np.unpackbits(P[i])))
        for row, dist in zip(res["code"].to_pylist(), res["_distance"].to_pylist()):
            assert dist == 2 * (6 - len(q & set(row)))
    # The candidate filter uses the LABEL_LIST index (a typed literal; an untyped one would skip it).
    ids = ", ".join(str(int(v)) for v in hl.query_code(tbl, data[0]))
    plan = tbl.search().where(f"array_has_any(code, arrow_cast([{ids}], 'List(Int32)'))").explain_plan(True)
    assert "ScalarIndexQuery" in plan


def test_sparse_search_fills_with_non_candidates(sparse, data):
    tbl, func, ref, _ = sparse
    res = hashplug.search(tbl, data[0], limit=len(data))
    check_topk(res, ref(data), ref(data)[0], len(data))
    assert res["_distance"].to_pylist()[-1] == 12.0  # rows sharing no unit: 2k


def test_sparse_table_search_via_lancedb_is_redirected(sparse, data):
    tbl, *_ = sparse
    with pytest.raises(HashplugError, match="hashplug.search"):
        tbl.search(hashplug.Query(data[0]), vector_column_name="code").limit(3).to_arrow()


def test_sparse_needs_khot(dense):
    _, _, _, path = dense
    with pytest.raises(ModelMismatchError, match="k-hot"):
        get_registry().get("hashplug").create(model=str(path), layout="indices")


def test_query_wrapper_roundtrip_and_errors():
    x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    q = hashplug.Query(x)
    back = hashplug.Query.from_string(str(q))
    np.testing.assert_array_equal(back.x, x)
    with pytest.raises(HashplugError, match="NaN"):
        hashplug.Query(np.full(4, np.nan))
    with pytest.raises(HashplugError, match="not a hashplug query string"):
        hashplug.Query.from_string("hello")


def test_plain_vector_search_is_not_encoded(dense, data):
    tbl, *_ = dense
    # A raw float vector is used as the search vector itself by LanceDB (the documented pitfall).
    with pytest.raises(Exception):  # noqa: B017 - LanceDB's own error type
        tbl.search(data[0], vector_column_name="code").distance_type("hamming").limit(3).to_arrow()


def test_schema_checks(dense):
    _, func, _, _ = dense
    with pytest.raises(ModelMismatchError, match="16 features"):
        hl.schema(func, source_dim=17)
    s = hl.schema(func, source_type="fixed")
    assert s.field("vector").type == pa.list_(pa.float32(), 16)
    Model = hl.lance_model(func, extra={"id": int})
    assert Model.to_arrow_schema().field("code").type == pa.list_(pa.uint8(), 4)


def test_lance_model_table(tmp_path, data):
    path, ref = make_model(tmp_path / "m.onnx")
    func = get_registry().get("hashplug").create(model=str(path))
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("lm", schema=hl.lance_model(func, extra={"id": int}))
    tbl.add([{"id": i, "vector": data[i].tolist()} for i in range(20)])
    assert tbl.schema.field("code").type == pa.list_(pa.uint8(), 4)
    np.testing.assert_array_equal(codes_by_id(tbl), ref(data[:20]))
    res = (
        tbl.search(hashplug.Query(data[3]), vector_column_name="code")
        .distance_type("hamming")
        .limit(1)
        .to_arrow()
    )
    assert res["id"][0].as_py() == 3


def test_bad_add_leaves_table_unchanged(dense, data):
    tbl, *_ = dense
    n = tbl.count_rows()
    bad = data[:3].copy()
    bad[1, 2] = np.nan
    # LanceDB runs the function inside its Rust writer and re-raises our message as a RuntimeError.
    with pytest.raises((HashplugError, RuntimeError), match="NaN"):
        tbl.add(pa.table({"id": np.arange(3), "vector": list(bad)}))
    with pytest.raises((HashplugError, RuntimeError), match="features"):
        tbl.add(pa.table({"id": np.arange(3), "vector": list(data[:3, :10])}))
    assert tbl.count_rows() == n


def test_wrong_model_at_path_is_refused(dense, data, tmp_path):
    tbl, func, _, path = dense
    n = tbl.count_rows()
    sha_old = func.encoder.file_sha256
    make_model(path, seed=99)  # a different encoder, same shape, written over the original file
    os.utime(path, ns=(1, 1))
    db = lancedb.connect(tmp_path / "db")
    t = db.open_table("items")
    with pytest.raises(ModelMismatchError) as ei:
        t.add(pa.table({"id": [1000], "vector": [data[0]]}))
    msg = str(ei.value)
    assert sha_old in msg and hl.load_encoder_cached(path).file_sha256 in msg
    with pytest.raises(ModelMismatchError):
        hashplug.search(t, data[0], limit=3)
    assert t.count_rows() == n


def test_model_not_matching_table_column(dense, tmp_path, data):
    tbl, *_ = dense
    other, _ = make_model(tmp_path / "wide.onnx", m=48)
    n = tbl.count_rows()
    with pytest.raises(ModelMismatchError, match="sha256") as ei:
        hashplug.ingest(tbl, data[:5], model=str(other), columns={"id": np.arange(5)}, progress=False)
    assert "column type" in str(ei.value)
    assert tbl.count_rows() == n


SUBPROCESS = textwrap.dedent(
    """
    import sys, json
    import numpy as np
    import lancedb
    import hashplug
    db = lancedb.connect(sys.argv[1])
    tbl = db.open_table("items")
    X = np.load(sys.argv[2])
    hashplug.ingest(tbl, X[:10], columns={"id": np.arange(1000, 1010)}, chunk_size=4, progress=False)
    res = hashplug.search(tbl, X[3], limit=5)
    res2 = tbl.search(hashplug.Query(X[3])).distance_type("hamming").limit(5).to_arrow()
    print(json.dumps({
        "rows": tbl.count_rows(),
        "ids": res["id"].to_pylist(), "dist": res["_distance"].to_pylist(),
        "dist2": res2["_distance"].to_pylist(),
        "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules,
    }))
    """
)


def test_fresh_process_reopens_ingests_and_searches_without_torch_or_onnx(dense, data, tmp_path):
    tbl, func, ref, _ = dense
    np.save(tmp_path / "X.npy", data)
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, str(tmp_path / "db"), str(tmp_path / "X.npy")],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["torch"] is False and r["onnx"] is False
    assert r["rows"] == 410
    P = ref(data)
    d = brute_hamming(np.concatenate([P, P[:10]]), P[3])
    assert r["dist"] == sorted(d)[:5] == r["dist2"]
    assert 3 in r["ids"] and 1003 in r["ids"]


def test_image_source_as_fixed_size_arrays(tmp_path):
    path, ref = make_model(tmp_path / "img.onnx", d=48, input_shape=(3, 4, 4))
    func = get_registry().get("hashplug").create(model=str(path))
    sch = hl.schema(func, source="image", source_type="fixed", extra={"id": pa.int64()})
    assert sch.field("image").type == pa.list_(pa.list_(pa.list_(pa.float32(), 4), 4), 3)
    imgs = np.random.default_rng(0).random((30, 3, 4, 4), dtype=np.float32)
    db = lancedb.connect(tmp_path / "db")
    tbl = db.create_table("imgs", schema=sch)
    hashplug.ingest(tbl, imgs, source_column="image", columns={"id": np.arange(30)}, progress=False)
    tbl.add(pa.table({"id": [30], "image": [imgs[0].tolist()]}))  # through the embedding function
    np.testing.assert_array_equal(codes_by_id(tbl), ref(np.concatenate([imgs, imgs[:1]])))
    res = hashplug.search(tbl, imgs[7], limit=2)
    assert res["id"][0].as_py() == 7 and res["_distance"][0].as_py() == 0.0


def test_concurrent_searches_share_one_session(dense, data):
    from concurrent.futures import ThreadPoolExecutor

    tbl, func, ref, _ = dense
    P = ref(data)

    def one(i):
        return hashplug.search(tbl, data[i], limit=5)["_distance"].to_pylist()

    with ThreadPoolExecutor(8) as ex:
        out = list(ex.map(one, range(40)))
    for i, dist in enumerate(out):
        assert dist == sorted(brute_hamming(P, P[i]))[:5]
