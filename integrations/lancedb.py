"""LanceDB embedding function, schema helpers, query wrapper and Hamming search for hashplug ONNX encoders.

Quick start::

    import lancedb, hashplug
    from lancedb.embeddings import get_registry
    from hashplug.integrations.lancedb import schema

    func = get_registry().get("hashplug").create(model="enc.onnx")          # code="sparse" for k-hot ids
    db = lancedb.connect("./db")
    tbl = db.create_table("items", schema=schema(func, source_dim=784, extra={"id": pa.int64()}))
    tbl.add(pa.table({"id": ids, "vector": list(X)}))                     # codes computed by the function
    tbl.search(hashplug.Query(x)).distance_type("hamming").limit(10).to_arrow()
    hashplug.search(tbl, x, limit=10)                                          # the same, dense or sparse

Why the helpers: LanceDB writes an embedding function's output as *float* vectors unless the table was created
with an explicit schema whose code column is ``fixed_size_list<uint8>[n_bytes]``, so always create tables with
:func:`schema` (or :func:`lance_model` / :func:`create_table`). In a hand-written ``LanceModel`` declare
``code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()`` and ``vector: list[float] =
func.SourceField()``; the float declarations LanceDB's docs show (``Vector(func.ndims())``, ``list[float]``) and
a ``Vector(d)`` source raise :class:`~hashplug.validation.TableSchemaError` when the class is created.

What LanceDB decides alone, before any hashplug code runs (so hashplug cannot catch it; use the right call):

* ``table.search(x)`` with a raw list or ndarray: used as the search vector itself, never encoded; when ``x``
  has as many values as the code has bytes, LanceDB ranks ``x`` cast to bytes against the codes (wrong rows,
  no error). Use ``table.search(Query(x))`` (a :class:`Query` is a ``str`` that the table's function encodes)
  or :func:`search`.
* a float code column from a hand-written ``pa.schema`` or ``db.create_table(name, data,
  embedding_functions=...)``: LanceDB casts the codes on ``add`` (the function only sees the source batch);
  every hashplug entry point refuses such a table (:func:`check_code_column`).
* ``.rerank(r)`` after a LanceDB search with a vector: LanceDB demands ``query_string=``; pass
  ``str(Query(x))``.
* ``lancedb.connect(path)`` never sees another process's later commits: readers use
  ``read_consistency_interval=datetime.timedelta(0)`` (:func:`search` warns :class:`StaleTableWarning`).
* the ``"hashplug"`` function in LanceDB's registry: installed at interpreter start by
  ``hashplug-lancedb-hook.pth`` (:mod:`hashplug._lancedb_hook`), except under ``python -S``. Sparse (k-hot id) tables are searched with :func:`search`, which uses the ``LABEL_LIST`` index
for candidates and ranks them by exact Hamming distance ``2 (k - overlap)``.

This module is the LanceDB face of hashplug; the rooms behind it (one idea each):

:mod:`~hashplug.integrations.aio`       :func:`asearch`, :func:`aingest`, :func:`aadd` (LanceDB's async API)
:mod:`~hashplug.integrations.function`  the embedding function (registered here) and :class:`Query`
:mod:`~hashplug.integrations.tables`    schema helpers, table checks, the index, :func:`update`
:mod:`~hashplug.integrations.search`    :func:`search` (dense natively, sparse exactly)
:mod:`~hashplug.integrations.ingest`    :func:`~hashplug.integrations.ingest.ingest` and ``add``
:mod:`~hashplug.integrations.store`     where a table's model lives (the database's model store, URIs)
:mod:`~hashplug.integrations.arrow`     Arrow <-> numpy and the pure per-batch ``encode_batch``

Serving side: never imports torch or onnx; the encoder is only an ONNX file opened with
:class:`hashplug.runtime.OnnxEncoder`.
"""


from __future__ import annotations

from .aio import aadd, aingest, asearch
from .function import HashplugEmbeddings, Query, load_encoder_cached
from .index import (
    build_hamming_index,
    build_index,
    hamming_index_search,
    index_search,
    open_hamming_index,
    open_index,
)
from .search import hamming, query_code, search
from .store import store_model
from .tables import (
    StaleTableWarning,
    check_code_column,
    check_table,
    code_field,
    create_index,
    create_lancedb_index,
    create_table,
    get_function,
    lance_model,
    latest_version,
    model_location,
    relocate_model,
    schema,
    update,
)

__all__ = [
    "HashplugEmbeddings",
    "Query",
    "schema",
    "code_field",
    "lance_model",
    "create_table",
    "create_lancedb_index",
    "get_function",
    "check_table",
    "check_code_column",
    "search",
    "update",
    "query_code",
    "hamming",
    "load_encoder_cached",
    "build_hamming_index",
    "open_hamming_index",
    "hamming_index_search",
    "StaleTableWarning",
    "latest_version",
    "relocate_model",
    "model_location",
    "store_model",
    "asearch",
    "aingest",
    "aadd",
    # 0.1.0 names, deprecated (removed in 0.3.0):
    "create_index",
    "build_index",
    "open_index",
    "index_search",
]
