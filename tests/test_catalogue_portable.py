"""The bad-input catalogue, area ``portable`` (issue 29): models that travel with their tables
(``relocate_model``, ``store_model``, model URIs, ``OnnxEncoder`` bytes and pickles), Arrow sources of other
libraries and LanceDB connections, and the async entry points (``asearch``, ``aingest``, ``aadd``) and their
misuse. Each case gets the most specific hashplug error and leaves every table and every file of the world
unchanged (``check_case``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402

import hashplug  # noqa: E402
from hashplug.integrations import lancedb as hl  # noqa: E402
from hashplug.integrations.arrow import encode_batch  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402
from hashplug.validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
)

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("world"))
    (w.root / "models" / "notes.txt").write_text("not a model")
    return w


def _async_handles(w):
    """An ``AsyncConnection`` and an ``AsyncTable`` of the world's database."""
    import lancedb

    async def main():
        adb = await lancedb.connect_async(str(w.db_path))
        return adb, await adb.open_table("t")

    return asyncio.run(main())


def _run(coro):
    return asyncio.run(coro)


def _nan(w):
    X = np.array(w.X[:5], copy=True)
    X[2, 3] = np.nan
    return X


def _polars(w, X=None):
    pl = pytest.importorskip("polars")
    return pl.DataFrame({"id": np.arange(1000, 1005), "vector": (w.X[:5] if X is None else X).tolist()})


def _unpickle_tampered(w):
    enc = OnnxEncoder(w.lsh_path)
    state = dict(enc.__getstate__(), bytes=w.fly_path.read_bytes())
    OnnxEncoder.__new__(OnnxEncoder).__setstate__(state)


Z = "0" * 64

CASES = [
    # ------------------------------------------------------------------ relocate_model, store_model
    Case("portable-relocate-other-model", "hashplug.relocate_model", "another model's ONNX file",
         ModelMismatchError, r"is not the model table 't' was built with.*Nothing was changed",
         lambda w: hashplug.relocate_model(w.table("t"), w.fly_path)),
    Case("portable-relocate-missing", "hashplug.relocate_model", "a path that does not exist", ModelNotFoundError,
         r"No ONNX model file at", lambda w: hashplug.relocate_model(w.table("t"), w.root / "models" / "gone.onnx")),
    Case("portable-relocate-not-onnx", "hashplug.relocate_model", "a text file", ModelMismatchError,
         r"its sha256 is", lambda w: hashplug.relocate_model(w.table("t"), w.root / "models" / "notes.txt")),
    Case("portable-relocate-location-int", "hashplug.relocate_model", "location=42", HashplugTypeError,
         r"location must be the path or URI", lambda w: hashplug.relocate_model(w.table("t"), 42)),
    Case("portable-relocate-copy-false-no-location", "hashplug.relocate_model", "copy=False without location",
         HashplugError, r"copy=False names a new location", lambda w: hashplug.relocate_model(w.table("t"), copy=False)),
    Case("portable-relocate-copy-not-bool", "hashplug.relocate_model", "copy='yes'", HashplugTypeError,
         r"copy must be True or False", lambda w: hashplug.relocate_model(w.table("t"), w.lsh_path, copy="yes")),
    Case("portable-relocate-not-a-table", "hashplug.relocate_model", "a database path instead of a table",
         HashplugTypeError, r"table must be an open LanceDB table", lambda w: hashplug.relocate_model(w.db_path)),
    Case("portable-relocate-column-missing", "hashplug.relocate_model", "column='nope'", HashplugError,
         r"no hashplug code column 'nope'", lambda w: hashplug.relocate_model(w.table("t"), column="nope")),
    Case("portable-relocate-uri-unknown", "hashplug.relocate_model", "a URI of an unknown scheme", HashplugError,
         r"no filesystem for", lambda w: hashplug.relocate_model(w.table("t"), "nosuchscheme-x://b/m.onnx")),
    Case("portable-store-not-a-model", "hl.store_model", "a text file", ModelFileError, r"not a well-formed ONNX",
         lambda w: hl.store_model(w.db, w.root / "models" / "notes.txt")),
    Case("portable-store-model-int", "hl.store_model", "model=7", HashplugTypeError,
         r"model must be the path or URI of an ONNX file", lambda w: hl.store_model(w.db, 7)),
    Case("portable-store-cloud-db", "hl.store_model", "a db:// (LanceDB Cloud) database", HashplugError,
         r"relocate_model\(table, 's3://", lambda w: hl.store_model("db://my-project", w.lsh_path)),
    # ------------------------------------------------------------------ model locations
    Case("portable-func-db-ref-outside-a-table", "HashplugEmbeddings.create",
         "model='{db}/_hashplug/models/<sha>.onnx' with no table to resolve it", ModelNotFoundError,
         r"relative to its database folder",
         lambda w: hl.HashplugEmbeddings.create(model=f"{{db}}/_hashplug/models/{Z}.onnx", file_sha256=Z)),
    Case("portable-func-uri-unknown", "HashplugEmbeddings.create", "model='nosuchscheme-x://b/m.onnx'",
         HashplugError, r"no filesystem for", lambda w: hl.HashplugEmbeddings.create(model="nosuchscheme-x://b/m.onnx")),
    Case("portable-onnx-sha-wrong", "hashplug.OnnxEncoder", "sha256= of another file", ModelMismatchError,
         r"is not the expected model", lambda w: OnnxEncoder(w.lsh_path, sha256=Z)),
    Case("portable-onnx-from-bytes-garbage", "OnnxEncoder.from_bytes", "bytes that are not ONNX", ModelFileError,
         r"not a well-formed ONNX", lambda w: OnnxEncoder.from_bytes(b"not a model")),
    Case("portable-onnx-from-bytes-str", "OnnxEncoder.from_bytes", "a str", HashplugError,
         r"takes the model's bytes", lambda w: OnnxEncoder.from_bytes("lsh.onnx")),
    Case("portable-onnx-from-bytes-sha", "OnnxEncoder.from_bytes", "sha256= of other bytes", ModelMismatchError,
         r"is not the expected model", lambda w: OnnxEncoder.from_bytes(w.lsh_path.read_bytes(), sha256=Z)),
    Case("portable-onnx-unpickle-tampered", "pickle.loads(OnnxEncoder)", "a pickle whose bytes were swapped",
         ModelMismatchError, r"is not the expected model", _unpickle_tampered),
    # ------------------------------------------------------------------ Arrow sources, connections
    Case("portable-ingest-polars-series", "hashplug.ingest", "a Polars Series (a column, not a table)",
         HashplugError, r"to_frame\(\)", lambda w: hashplug.ingest(w.db_path, _polars(w)["vector"], name="fresh",
                                                                   model=str(w.lsh_path), progress=False)),
    Case("portable-ingest-polars-lazy", "hashplug.ingest", "a Polars LazyFrame", HashplugError,
         r"cannot ingest a LazyFrame", lambda w: hashplug.ingest(w.db_path, _polars(w).lazy(), name="fresh",
                                                                  model=str(w.lsh_path), progress=False)),
    Case("portable-add-polars-nan", "hashplug.add", "a Polars DataFrame with a NaN sample", HashplugError, r"NaN",
         lambda w: hashplug.add(w.table("t"), _polars(w, _nan(w)))),
    Case("portable-ingest-connection-no-name", "hashplug.ingest", "a LanceDB connection without name=",
         HashplugTypeError, r"name= must be the table's name",
         lambda w: hashplug.ingest(w.db, w.X[:5], model=str(w.lsh_path), progress=False)),
    Case("portable-ingest-connection-missing-table", "hashplug.ingest", "a connection and a new name without model=",
         HashplugError, r"pass model= to create it", lambda w: hashplug.ingest(w.db, w.X[:5], name="fresh",
                                                                            progress=False)),
    Case("portable-ingest-store-model-str", "hashplug.ingest", "store_model='yes'", HashplugTypeError,
         r"store_model must be True or False",
         lambda w: hashplug.ingest(w.db, w.X[:5], name="fresh", model=str(w.lsh_path), store_model="yes",
                                   progress=False)),
    Case("portable-create-table-store-model-str", "hl.create_table", "store_model='yes'", HashplugTypeError,
         r"store_model must be True or False",
         lambda w: hl.create_table(w.db, "fresh", hl.HashplugEmbeddings.create(model=str(w.lsh_path)),
                                   store_model="yes")),
    Case("portable-encode-batch-list", "encode_batch", "a list instead of a batch", HashplugError,
         r"takes a batch of rows", lambda w: encode_batch([1, 2, 3], OnnxEncoder(w.lsh_path))),
    # ------------------------------------------------------------------ async
    Case("portable-search-async-table", "hashplug.search", "a LanceDB AsyncTable", HashplugTypeError,
         r"await hashplug\.asearch", lambda w: hashplug.search(_async_handles(w)[1], w.X[0])),
    Case("portable-add-async-table", "hashplug.add", "a LanceDB AsyncTable", HashplugTypeError,
         r"await hashplug\.aadd", lambda w: hashplug.add(_async_handles(w)[1], w.X[:2])),
    Case("portable-ingest-async-connection", "hashplug.ingest", "a LanceDB AsyncConnection", HashplugTypeError,
         r"await hashplug\.aingest", lambda w: hashplug.ingest(_async_handles(w)[0], w.X[:2], name="t")),
    Case("portable-asearch-not-a-table", "hashplug.asearch", "a str instead of a table", HashplugTypeError,
         r"expected a LanceDB table", lambda w: _run(hashplug.asearch("t", w.X[0]))),
    Case("portable-asearch-limit-0", "hashplug.asearch", "limit=0", HashplugError, r"'limit'",
         lambda w: _run(hashplug.asearch(_async_handles(w)[1], w.X[0], limit=0))),
    Case("portable-aadd-nan", "hashplug.aadd", "a NaN sample", HashplugError, r"NaN",
         lambda w: _run(hashplug.aadd(_async_handles(w)[1], _nan(w), columns={"id": np.arange(900, 905)}))),
    Case("portable-aingest-wrong-model", "hashplug.aingest", "model= another ONNX than the table's",
         ModelMismatchError, r"sha256", lambda w: _run(hashplug.aingest(_async_handles(w)[1], w.X[:5],
                                                                         model=str(w.fly_path), progress=False))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)


def test_ids_are_unique_and_prefixed():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and all(i.startswith("portable-") for i in ids) and len(ids) >= 30
