"""Hamming and float-rescoring rerankers on real LanceDB tables."""

from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.embeddings import get_registry
from test_integrations_lancedb import brute_hamming, make_model

import hashplug
from hashplug.integrations import lancedb as hl
from hashplug.integrations.reranker import FloatRescoreReranker, HammingReranker
from hashplug.validation import HashplugError

pytest.importorskip("onnx")

WORDS = ["red", "green", "blue", "cyan"]


@pytest.fixture
def setup(tmp_path):
    path, ref = make_model(tmp_path / "enc.onnx", m=40)
    func = get_registry().get("hashplug").create(model=str(path))
    X = np.random.default_rng(4).standard_normal((300, 16)).astype(np.float32)
    db = lancedb.connect(tmp_path / "db")
    # source_type="fixed": the float column is a real vector column, so LanceDB can search it too.
    tbl = db.create_table(
        "items", schema=hl.schema(func, source_type="fixed", extra={"id": pa.int64(), "text": pa.string()})
    )
    tbl.add(pa.table({"id": np.arange(300), "text": [WORDS[i % 4] for i in range(300)], "vector": list(X)}))
    return tbl, func, ref(X), X


def assert_hamming_sorted(res, P, q):
    ham = np.asarray(res["_hamming"].to_pylist())
    np.testing.assert_array_equal(ham, brute_hamming(P, q)[np.asarray(res["id"].to_pylist())])
    assert np.all(np.diff(ham) >= 0)
    rel = np.asarray(res["_relevance_score"].to_pylist())
    np.testing.assert_allclose(rel, 1 - ham / 40, rtol=1e-6)


def test_rerank_float_search_results_by_hamming(setup):
    tbl, func, P, X = setup
    q = hashplug.Query(X[10])
    res = (
        tbl.search(X[10], vector_column_name="vector")
        .limit(50)
        .rerank(HammingReranker(table=tbl, limit=10), query_string=str(q))  # re-encodes the query string
        .to_arrow()
    )
    assert res.num_rows == 10 and res["id"][0].as_py() == 10
    assert_hamming_sorted(res, P, P[10])
    # Same with the code given to the constructor.
    res2 = (
        tbl.search(X[10], vector_column_name="vector")
        .limit(50)
        .rerank(HammingReranker(query_code=P[10]), query_string="ignored")
        .to_arrow()
    )
    assert_hamming_sorted(res2, P, P[10])


def test_rerank_fts_and_hybrid(setup):
    tbl, func, P, X = setup
    from lancedb.index import FTS

    tbl.create_index("text", config=FTS())
    r = HammingReranker(query_code=P[3])
    fts = tbl.search("cyan", query_type="fts").limit(100).rerank(r).to_arrow()
    assert set(fts["text"].to_pylist()) == {"cyan"} and fts.num_rows == 75
    assert_hamming_sorted(fts, P, P[3])
    assert fts["id"][0].as_py() == 3
    hyb = (
        tbl.search(query_type="hybrid", vector_column_name="vector")
        .vector(X[3])
        .text("cyan")
        .limit(30)
        .rerank(r)
        .to_arrow()
    )
    assert len(set(hyb["id"].to_pylist())) == hyb.num_rows > 0  # merged and deduplicated
    assert hyb["id"][0].as_py() == 3
    assert_hamming_sorted(hyb, P, P[3])


def test_search_hands_query_code_to_reranker_and_trims(setup):
    tbl, func, P, X = setup
    r = HammingReranker(overfetch=5)
    res = hashplug.search(tbl, X[7], limit=8, reranker=r)
    assert res.num_rows == 8
    assert_hamming_sorted(res, P, P[7])
    np.testing.assert_array_equal(res["_hamming"].to_numpy(), res["_distance"].to_numpy().astype(int))


def test_two_stage_float_rescoring(setup):
    tbl, func, P, X = setup
    q = X[21] + 0.05 * np.random.default_rng(0).standard_normal(16).astype(np.float32)
    rr = FloatRescoreReranker("vector", metric="cosine", overfetch=10)
    res = hashplug.search(tbl, q, limit=5, reranker=rr)
    assert res.num_rows == 5
    cand = hashplug.search(tbl, q, limit=50)  # the Hamming candidates it rescored
    Xc = np.stack(cand["vector"].to_numpy(zero_copy_only=False))
    cos = 1 - Xc @ q / (np.linalg.norm(Xc, axis=1) * np.linalg.norm(q))
    want = np.sort(cos)[:5]
    np.testing.assert_allclose(res["_float_distance"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    assert res["id"][0].as_py() == 21
    assert "_hamming" in res.column_names
    # L2 through the LanceDB rerank() entry point, with the query recovered from its string form.
    l2 = (
        tbl.search(hashplug.Query(q), vector_column_name="code")
        .distance_type("hamming")
        .limit(50)
        .rerank(FloatRescoreReranker("vector", metric="l2", limit=5), query_string=str(hashplug.Query(q)))
        .to_arrow()
    )
    d = np.linalg.norm(Xc - q, axis=1)
    np.testing.assert_allclose(l2["_float_distance"].to_numpy(), np.sort(d)[:5], rtol=1e-5)


def test_reranker_errors(setup):
    tbl, func, P, X = setup
    res = tbl.search(X[0], vector_column_name="vector").limit(5)
    with pytest.raises(HashplugError, match="query's code"):
        res.rerank(HammingReranker(), query_string="plain text").to_arrow()
    with pytest.raises(HashplugError, match="raw query"):
        tbl.search(X[0], vector_column_name="vector").limit(5).rerank(
            FloatRescoreReranker("vector"), query_string="x"
        ).to_arrow()
    with pytest.raises(HashplugError, match="metric"):
        FloatRescoreReranker("vector", metric="dot")


def test_sparse_table_reranking(tmp_path):
    path, ref = make_model(tmp_path / "k.onnx", m=64, k=6)
    X = np.random.default_rng(5).standard_normal((200, 16)).astype(np.float32)
    res = hashplug.ingest(
        tmp_path / "db",
        X,
        name="s",
        model=str(path),
        layout="indices",
        columns={"id": np.arange(200)},
        progress=False,
    )
    P = ref(X)
    out = hashplug.search(res.table, X[4], limit=6, reranker=HammingReranker())
    ham = np.asarray(out["_hamming"].to_pylist())
    np.testing.assert_array_equal(ham, brute_hamming(P, P[4])[out["id"].to_numpy()])
    np.testing.assert_array_equal(ham, np.sort(brute_hamming(P, P[4]))[:6])
