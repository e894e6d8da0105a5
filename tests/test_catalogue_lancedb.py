"""Bad-input catalogue, area ``lancedb``: search, query codes, Hamming, schema helpers, update, the embedding
function and Query, the rerankers and ``hashplug search`` (CLI). Each case: the expected hashplug error with a
clear message, and nothing stored changed (``tests/_catalogue.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402

import hashplug  # noqa: E402
from hashplug.integrations import lancedb as hl  # noqa: E402
from hashplug.validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
    TableSchemaError,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def _func(w, **kw):
    from lancedb.embeddings import get_registry

    model = kw.pop("model", w.lsh_path)
    return get_registry().get("hashplug").create(model=model if model is None else str(model), **kw)


def _nan(w):
    x = w.X[0].copy()
    x[3] = np.nan
    return x


def _lance_model_float_code(w):
    from lancedb.pydantic import LanceModel, Vector

    func = _func(w)

    class Row(LanceModel):
        vector: list[float] = func.SourceField()
        code: Vector(func.ndims()) = func.VectorField()


def _lance_model_vector_source(w):
    from lancedb.pydantic import LanceModel, Vector

    func = _func(w)

    class Row(LanceModel):
        vector: Vector(64) = func.SourceField()
        code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()


def _cli(w, *extra):
    return ["search", "--db", w.db_path, "--table", "t", *extra]


Q = str([0.5] * 64)

CASES = [
    # ------------------------------------------------------------------ hashplug.search
    Case("lancedb-search-limit-huge", "hashplug.search", "limit=10**12", HashplugError, r"limit=1000000000000",
         lambda w: hashplug.search(w.t, w.X[0], limit=10**12)),
    Case("lancedb-search-limit-huge-sparse", "hashplug.search", "limit=2**40 on an indices table", HashplugError,
         r"limit=1099511627776", lambda w: hashplug.search(w.s, w.X[0], limit=2**40, use_hamming_index=False)),
    Case("lancedb-search-limit-0", "hashplug.search", "limit=0", HashplugError, r"'limit'.*\[1, 2147483647\]",
         lambda w: hashplug.search(w.t, w.X[0], limit=0)),
    Case("lancedb-search-limit-negative", "hashplug.search", "limit=-5", HashplugError, r"'limit'.*Got -5",
         lambda w: hashplug.search(w.t, w.X[0], limit=-5)),
    Case("lancedb-search-limit-float", "hashplug.search", "limit=2.5", HashplugTypeError, r"limit must be an int",
         lambda w: hashplug.search(w.t, w.X[0], limit=2.5)),
    Case("lancedb-search-limit-str", "hashplug.search", "limit='10'", HashplugTypeError, r"limit must be an int",
         lambda w: hashplug.search(w.t, w.X[0], limit="10")),
    Case("lancedb-search-limit-bool", "hashplug.search", "limit=True", HashplugTypeError, r"limit must be an int",
         lambda w: hashplug.search(w.t, w.X[0], limit=True)),
    Case("lancedb-search-reranker-object", "hashplug.search", "reranker=object()", HashplugTypeError,
         r"reranker must be a LanceDB reranker.*got object",
         lambda w: hashplug.search(w.t, w.X[0], reranker=object())),
    Case("lancedb-search-reranker-class", "hashplug.search", "reranker=HammingReranker (the class)",
         HashplugTypeError, r"got the class HammingReranker",
         lambda w: hashplug.search(w.t, w.X[0], reranker=hashplug.HammingReranker)),
    Case("lancedb-search-query-nan", "hashplug.search", "a NaN in the query", HashplugError, r"NaN",
         lambda w: hashplug.search(w.t, _nan(w))),
    Case("lancedb-search-query-inf", "hashplug.search", "an infinite query", HashplugError, r"NaN or infinity",
         lambda w: hashplug.search(w.t, np.full(64, np.inf, np.float32))),
    Case("lancedb-search-query-short", "hashplug.search", "10 features for a 64-feature model", HashplugError,
         r"64", lambda w: hashplug.search(w.t, w.X[0][:10])),
    Case("lancedb-search-query-empty", "hashplug.search", "an empty query", HashplugError, r"empty|0",
         lambda w: hashplug.search(w.t, np.zeros(0, np.float32))),
    Case("lancedb-search-query-batch", "hashplug.search", "two query rows", HashplugError, r"one query sample",
         lambda w: hashplug.search(w.t, w.X[:2])),
    Case("lancedb-search-query-text", "hashplug.search", "x='hello'", HashplugError, r"not a hashplug query string",
         lambda w: hashplug.search(w.t, "hello")),
    Case("lancedb-search-query-none", "hashplug.search", "x=None", HashplugError, r"query is None",
         lambda w: hashplug.search(w.t, None)),
    Case("lancedb-search-columns-str", "hashplug.search", "columns='id'", HashplugTypeError,
         r"columns must be a list", lambda w: hashplug.search(w.t, w.X[0], columns="id")),
    Case("lancedb-search-columns-missing", "hashplug.search", "columns=['nope']", HashplugError,
         r"\['nope'\] are not in table 't'", lambda w: hashplug.search(w.t, w.X[0], columns=["nope"])),
    Case("lancedb-search-where-int", "hashplug.search", "where=5", HashplugTypeError, r"where must be a str",
         lambda w: hashplug.search(w.t, w.X[0], where=5)),
    Case("lancedb-search-where-blank", "hashplug.search", "where='  '", HashplugError, r"where=.* is empty",
         lambda w: hashplug.search(w.t, w.X[0], where="  ")),
    Case("lancedb-search-nprobes-0", "hashplug.search", "nprobes=0", HashplugError, r"'nprobes'",
         lambda w: hashplug.search(w.t, w.X[0], nprobes=0)),
    Case("lancedb-search-exact-str", "hashplug.search", "exact='yes'", HashplugTypeError, r"exact must be True",
         lambda w: hashplug.search(w.t, w.X[0], exact="yes")),
    Case("lancedb-search-column-source", "hashplug.search", "column='vector' (the source column)", HashplugError,
         r"column 'vector' .* has no hashplug embedding function",
         lambda w: hashplug.search(w.t, w.X[0], column="vector")),
    Case("lancedb-search-not-a-table", "hashplug.search", "table='t' (a name)", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.search("t", w.X[0])),
    Case("lancedb-search-query-string-bad", "hashplug.search", "a truncated query string", HashplugError,
         r"malformed hashplug query string",
         lambda w: hashplug.search(w.t, str(hashplug.Query(w.X[0]))[:-7])),
    # ------------------------------------------------------------------ query_code, hamming
    Case("lancedb-query-code-nan", "hashplug.integrations.lancedb.query_code", "a NaN query", HashplugError,
         r"NaN", lambda w: hl.query_code(w.t, _nan(w))),
    Case("lancedb-query-code-not-a-table", "hashplug.integrations.lancedb.query_code", "table=None",
         HashplugTypeError, r"expected a LanceDB table", lambda w: hl.query_code(None, w.X[0])),
    Case("lancedb-hamming-not-a-table", "hashplug.integrations.lancedb.hamming", "table_or_func=42",
         HashplugTypeError, r"expected a LanceDB table",
         lambda w: hl.hamming(42, w.X[0], w.t.to_arrow()["code"])),
    Case("lancedb-hamming-query-nan", "hashplug.integrations.lancedb.hamming", "a NaN query", HashplugError,
         r"NaN", lambda w: hl.hamming(w.t, _nan(w), w.t.to_arrow()["code"])),
    # ------------------------------------------------------------------ schema, lance_model, create_table, index
    Case("lancedb-schema-target-absolute", "hashplug.integrations.lancedb.schema", "target='/abs/dir/x'",
         HashplugError, r"target='/abs/dir/x' contains a path separator",
         lambda w: hl.schema(_func(w), target="/abs/dir/x")),
    Case("lancedb-schema-target-dotdot", "hashplug.integrations.lancedb.schema", "target='..'", HashplugError,
         r"'\.\.'", lambda w: hl.schema(_func(w), target="..")),
    Case("lancedb-schema-target-backslash", "hashplug.integrations.lancedb.schema", "target='a\\b'",
         HashplugError, r"path separator", lambda w: hl.schema(_func(w), target="a\\b")),
    Case("lancedb-schema-target-nul", "hashplug.integrations.lancedb.schema", "target with a NUL byte",
         HashplugError, r"NUL", lambda w: hl.schema(_func(w), target="co\0de")),
    Case("lancedb-schema-source-empty", "hashplug.integrations.lancedb.schema", "source=''", HashplugError,
         r"source='' is empty", lambda w: hl.schema(_func(w), source="")),
    Case("lancedb-schema-source-is-target", "hashplug.integrations.lancedb.schema", "source='code'",
         HashplugError, r"source and target are both 'code'", lambda w: hl.schema(_func(w), source="code")),
    Case("lancedb-schema-target-reserved", "hashplug.integrations.lancedb.schema", "target='_distance'",
         HashplugError, r"LanceDB or hashplug adds", lambda w: hl.schema(_func(w), target="_distance")),
    Case("lancedb-schema-target-int", "hashplug.integrations.lancedb.schema", "target=3", HashplugTypeError,
         r"target must be a column name", lambda w: hl.schema(_func(w), target=3)),
    Case("lancedb-schema-func-none", "hashplug.integrations.lancedb.schema", "func=None", HashplugTypeError,
         r"func must be the hashplug embedding function", lambda w: hl.schema(None)),
    Case("lancedb-schema-source-dim", "hashplug.integrations.lancedb.schema", "source_dim=10 for 64 features",
         ModelMismatchError, r"source_dim=10", lambda w: hl.schema(_func(w), source_dim=10)),
    Case("lancedb-schema-source-type", "hashplug.integrations.lancedb.schema", "source_type='dense'",
         HashplugError, r"source_type", lambda w: hl.schema(_func(w), source_type="dense")),
    Case("lancedb-schema-extra-int", "hashplug.integrations.lancedb.schema", "extra=5", HashplugTypeError,
         r"extra must be a mapping", lambda w: hl.schema(_func(w), extra=5)),
    Case("lancedb-schema-extra-duplicate", "hashplug.integrations.lancedb.schema", "extra={'code': int64}",
         HashplugError, r"duplicate column names", lambda w: hl.schema(_func(w), extra={"code": pa.int64()})),
    Case("lancedb-lance-model-indices", "hashplug.integrations.lancedb.lance_model", "an indices function",
         HashplugError, r"layout='indices'", lambda w: hl.lance_model(_func(w, model=w.fly_path, layout="indices"))),
    Case("lancedb-lance-model-target-slash", "hashplug.integrations.lancedb.lance_model", "target='a/b'",
         HashplugError, r"path separator", lambda w: hl.lance_model(_func(w), target="a/b")),
    Case("lancedb-lancemodel-float-code", "LanceModel + func.VectorField()", "code: Vector(func.ndims())",
         TableSchemaError, r"Vector\(4, value_type=pa.uint8\(\)\) = func.VectorField\(\)", _lance_model_float_code),
    Case("lancedb-lancemodel-vector-source", "LanceModel + func.SourceField()", "vector: Vector(64)",
         TableSchemaError, r"vector: list\[float\] = func.SourceField\(\)", _lance_model_vector_source),
    Case("lancedb-vectorfield-indices", "HashplugEmbeddings.VectorField", "an indices function", TableSchemaError,
         r"schema\(func", lambda w: _func(w, model=w.fly_path, layout="indices").VectorField()),
    Case("lancedb-create-table-exists", "hashplug.integrations.lancedb.create_table", "name 't' (exists)",
         HashplugError, r"'t' already exists", lambda w: hl.create_table(w.db, "t", _func(w))),
    Case("lancedb-create-table-bad-rows", "hashplug.integrations.lancedb.create_table",
         "rows with NaN (new table 'n')", HashplugError, r"NaN",
         lambda w: hl.create_table(w.db, "n", _func(w), data={"vector": np.full((3, 64), np.nan, np.float32)})),
    Case("lancedb-create-table-overwrite-bad-rows", "hashplug.integrations.lancedb.create_table",
         "mode='overwrite' of 't' with NaN rows", HashplugError, r"NaN",
         lambda w: hl.create_table(w.db, "t", _func(w), data={"vector": np.full((3, 64), np.nan, np.float32)},
                                   mode="overwrite")),
    Case("lancedb-create-table-mode", "hashplug.integrations.lancedb.create_table", "mode='append'",
         HashplugError, r"mode must be 'create' or 'overwrite'",
         lambda w: hl.create_table(w.db, "n", _func(w), mode="append")),
    Case("lancedb-create-table-name-slash", "hashplug.integrations.lancedb.create_table", "name='../x'",
         HashplugError, r"name='\.\./x'", lambda w: hl.create_table(w.db, "../x", _func(w))),
    Case("lancedb-create-table-not-db", "hashplug.integrations.lancedb.create_table", "db='path'",
         HashplugTypeError, r"LanceDB connection", lambda w: hl.create_table(str(w.db_path), "n", _func(w))),
    Case("lancedb-create-index-not-a-table", "hashplug.integrations.lancedb.create_index", "table=None",
         HashplugTypeError, r"expected a LanceDB table", lambda w: hl.create_lancedb_index(None)),
    Case("lancedb-create-index-column", "hashplug.integrations.lancedb.create_index", "column='label'",
         HashplugError, r"column 'label'", lambda w: hl.create_lancedb_index(w.t, column="label")),
    # ------------------------------------------------------------------ update
    Case("lancedb-update-code-column", "hashplug.update", "values={'code': ...}", HashplugError,
         r"code column 'code' is computed", lambda w: hashplug.update(w.t, "id = 1", {"code": [0, 0, 0, 0]})),
    Case("lancedb-update-source-sql", "hashplug.update", "values_sql={'vector': ...}", HashplugError,
         r"cannot be set by a SQL expression", lambda w: hashplug.update(w.t, "id = 1", values_sql={"vector": "x"})),
    Case("lancedb-update-nan", "hashplug.update", "a NaN sample", HashplugError, r"NaN",
         lambda w: hashplug.update(w.t, "id = 1", {"vector": _nan(w)})),
    Case("lancedb-update-two-samples", "hashplug.update", "two samples for every matching row", HashplugError,
         r"one sample", lambda w: hashplug.update(w.t, "id = 1", {"vector": w.X[:2]})),
    Case("lancedb-update-nothing", "hashplug.update", "no values", HashplugError, r"nothing to update",
         lambda w: hashplug.update(w.t, "id = 1")),
    Case("lancedb-update-where-int", "hashplug.update", "where=1", HashplugTypeError, r"where must be",
         lambda w: hashplug.update(w.t, 1, {"label": 3})),
    Case("lancedb-update-values-list", "hashplug.update", "values=[1, 2]", HashplugTypeError,
         r"values must be a mapping", lambda w: hashplug.update(w.t, "id = 1", [1, 2])),
    Case("lancedb-update-unknown-column", "hashplug.update", "values={'nope': 1}", HashplugError,
         r"no column \['nope'\]", lambda w: hashplug.update(w.t, "id = 1", {"nope": 1})),
    # ------------------------------------------------------------------ the embedding function and Query
    Case("lancedb-func-model-none", "HashplugEmbeddings.create", "model=None", HashplugTypeError,
         r"model .* must be a file path", lambda w: _func(w, model=None)),
    Case("lancedb-func-model-missing", "HashplugEmbeddings.create", "a missing ONNX file", ModelNotFoundError,
         r"No ONNX model at", lambda w: _func(w, model=w.root / "models" / "missing.onnx")),
    Case("lancedb-func-model-folder", "HashplugEmbeddings.create", "model= a folder", ModelNotFoundError,
         r"No ONNX model at", lambda w: _func(w, model=w.root / "models")),
    Case("lancedb-func-model-not-onnx", "HashplugEmbeddings.create", "model= a text file", ModelFileError,
         r".", lambda w: _func(w, model=Path(__file__))),
    Case("lancedb-func-layout-bad", "HashplugEmbeddings.create", "layout='bits'", HashplugError, r"layout",
         lambda w: _func(w, layout="bits")),
    Case("lancedb-func-indices-dense", "HashplugEmbeddings.create", "layout='indices' for a dense model",
         ModelMismatchError, r"use layout='packed'", lambda w: _func(w, layout="indices")),
    Case("lancedb-func-sha-wrong", "HashplugEmbeddings.create", "file_sha256 of another file",
         ModelMismatchError, r"not the model this table was built with", lambda w: _func(w, file_sha256="0" * 64)),
    Case("lancedb-func-encode-nan", "HashplugEmbeddings.encode", "NaN rows", HashplugError, r"NaN",
         lambda w: _func(w).encode(np.full((2, 64), np.nan, np.float32))),
    Case("lancedb-func-encode-width", "HashplugEmbeddings.encode", "rows of 10 features", HashplugError, r"64",
         lambda w: _func(w).encode(w.X[:2, :10])),
    Case("lancedb-func-query-indices", "HashplugEmbeddings.compute_query_embeddings",
         "a Query on an indices function", HashplugError, r"hashplug.search\(table, x",
         lambda w: _func(w, model=w.fly_path, layout="indices").compute_query_embeddings(hashplug.Query(w.X[0]))),
    Case("lancedb-func-query-raw-list", "HashplugEmbeddings.compute_query_embeddings", "a raw list",
         HashplugError, r"wrapped as hashplug.Query", lambda w: _func(w).compute_query_embeddings([0.5] * 64)),
    Case("lancedb-query-words", "hashplug.Query", "Query(['a', 'b'])", HashplugError, r"must be numeric",
         lambda w: hashplug.Query(["a", "b"])),
    Case("lancedb-query-empty-mapping", "hashplug.Query", "Query({})", HashplugError, r"mapping .* is empty",
         lambda w: hashplug.Query({})),
    Case("lancedb-query-text", "hashplug.Query", "Query('plain text')", HashplugError,
         r"not a hashplug query string", lambda w: hashplug.Query("plain text")),
    Case("lancedb-query-string-garbage", "hashplug.Query", "'hashplug-query:v1:4:!!!'", HashplugError,
         r"malformed hashplug query string", lambda w: hashplug.Query("hashplug-query:v1:4:!!!")),
    Case("lancedb-query-named-for-plain-model", "HashplugEmbeddings.encode_query", "named inputs for a plain model",
         HashplugError, r"one array per sample", lambda w: _func(w).encode_query(hashplug.Query({"a": w.X[0]}))),
    # ------------------------------------------------------------------ rerankers
    Case("lancedb-hamming-reranker-limit-0", "HammingReranker", "limit=0", HashplugError, r"'limit'",
         lambda w: hashplug.HammingReranker(limit=0)),
    Case("lancedb-hamming-reranker-overfetch-0", "HammingReranker", "overfetch=0", HashplugError, r"'overfetch'",
         lambda w: hashplug.HammingReranker(overfetch=0)),
    Case("lancedb-hamming-reranker-score", "HammingReranker", "return_score='best'", HashplugError,
         r"'return_score'", lambda w: hashplug.HammingReranker(return_score="best")),
    Case("lancedb-hamming-reranker-float-code", "HammingReranker", "query_code of floats", HashplugError,
         r"query_vector=", lambda w: hashplug.HammingReranker(query_code=w.X[0])),
    Case("lancedb-hamming-reranker-both", "HammingReranker", "query_code= and query_vector=", HashplugError,
         r"not both", lambda w: hashplug.HammingReranker(query_code=[1, 2], query_vector=w.X[0])),
    Case("lancedb-hamming-reranker-vector-nan", "HammingReranker", "query_vector with NaN", HashplugError, r"NaN",
         lambda w: hashplug.HammingReranker(query_vector=_nan(w))),
    Case("lancedb-hamming-reranker-function", "HammingReranker", "function='lsh.onnx'", HashplugTypeError,
         r"function must be the hashplug embedding function",
         lambda w: hashplug.HammingReranker(function=str(w.lsh_path))),
    Case("lancedb-hamming-reranker-table", "HammingReranker", "table=object()", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.HammingReranker(table=object())),
    Case("lancedb-hamming-reranker-no-query", "HammingReranker via LanceDB", ".rerank(r, query_string='plain')",
         HashplugError, r"needs the query",
         lambda w: w.t.search(hashplug.Query(w.X[0])).distance_type("hamming").limit(5)
         .rerank(hashplug.HammingReranker(), query_string="plain").to_arrow()),
    Case("lancedb-hamming-reranker-column", "hashplug.search + HammingReranker", "column='nope'", HashplugError,
         r"no code column 'nope'",
         lambda w: hashplug.search(w.t, w.X[0], reranker=hashplug.HammingReranker(column="nope"), use_hamming_index=False)),
    Case("lancedb-float-reranker-column", "FloatRescoreReranker", "column=5", HashplugTypeError,
         r"column must be the name", lambda w: hashplug.FloatRescoreReranker(5)),
    Case("lancedb-float-reranker-metric", "FloatRescoreReranker", "metric='dot'", HashplugError, r"'metric'",
         lambda w: hashplug.FloatRescoreReranker("vector", metric="dot")),
    Case("lancedb-float-reranker-missing-column", "hashplug.search + FloatRescoreReranker", "column='nope'",
         HashplugError, r"no float column 'nope'",
         lambda w: hashplug.search(w.t, w.X[0], reranker=hashplug.FloatRescoreReranker("nope"), use_hamming_index=False)),
    # ------------------------------------------------------------------ hashplug search (CLI)
    Case("lancedb-cli-limit-huge", "hashplug search (CLI)", "--limit 10**12", "exit 2", r"--limit",
         lambda w: _cli(w, "--query", Q, "--limit", str(10**12))),
    Case("lancedb-cli-limit-0", "hashplug search (CLI)", "--limit 0", "exit 2", r"--limit",
         lambda w: _cli(w, "--query", Q, "--limit", "0")),
    Case("lancedb-cli-query-nan", "hashplug search (CLI)", "--query '[NaN, ...]'", "exit 2", r"NaN",
         lambda w: _cli(w, "--query", str([float("nan")] * 64).replace("nan", "NaN"))),
    Case("lancedb-cli-query-short", "hashplug search (CLI)", "--query of 1 value for 64 features", "exit 2",
         r"64", lambda w: _cli(w, "--query", "[0.5]")),
    Case("lancedb-cli-query-not-json", "hashplug search (CLI)", "--query 'abc'", "exit 2", r"not valid JSON",
         lambda w: _cli(w, "--query", "abc")),
    Case("lancedb-cli-db-missing", "hashplug search (CLI)", "--db a missing folder", "exit 2", r"does not exist",
         lambda w: ["search", "--db", w.root / "nodb", "--table", "t", "--query", Q]),
    Case("lancedb-cli-db-file", "hashplug search (CLI)", "--db an ONNX file", "exit 2", r"is a file",
         lambda w: ["search", "--db", w.lsh_path, "--table", "t", "--query", Q]),
    Case("lancedb-cli-table-missing", "hashplug search (CLI)", "--table nope", "exit 2", r"--table 'nope'",
         lambda w: ["search", "--db", w.db_path, "--table", "nope", "--query", Q]),
    Case("lancedb-cli-row-out-of-range", "hashplug search (CLI)", "--row 5 with one --query", "exit 2",
         r"--row 5 is out of range", lambda w: _cli(w, "--query", Q, "--row", "5")),
    Case("lancedb-cli-n-0", "hashplug search (CLI)", "--n 0", "exit 2", r"--n must be at least 1",
         lambda w: _cli(w, "--query", Q, "--n", "0")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)


def test_ids_are_unique_and_prefixed():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and all(i.startswith("lancedb-") for i in ids) and len(ids) >= 40
