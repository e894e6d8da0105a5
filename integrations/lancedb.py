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
:func:`schema` (or :func:`lance_model` / :func:`create_table`). A plain list or ndarray passed to
``table.search`` is used as the search vector itself and never reaches the embedding function, so raw queries
are wrapped in :class:`Query`; a :class:`Query`, or its string form ``str(Query(x))``, is encoded by the table's
own function. Sparse (k-hot id) tables are searched with :func:`search`, which uses the ``LABEL_LIST`` index
for candidates and ranks them by exact Hamming distance ``2 (k - overlap)``.

This module is the LanceDB face of hashplug; the rooms behind it (one idea each):

:mod:`~hashplug.integrations.function`  the embedding function (registered here) and :class:`Query`
:mod:`~hashplug.integrations.tables`    schema helpers, table checks, the index, :func:`update`
:mod:`~hashplug.integrations.search`    :func:`search` (dense natively, sparse exactly)
:mod:`~hashplug.integrations.ingest`    :func:`~hashplug.integrations.ingest.ingest` and ``add``
:mod:`~hashplug.integrations.arrow`     Arrow <-> numpy and the pure per-batch ``encode_batch``

Serving side: never imports torch or onnx; the encoder is only an ONNX file opened with
:class:`hashplug.runtime.OnnxEncoder`.
"""


from __future__ import annotations

from .function import HashplugEmbeddings, Query, load_encoder_cached
from .index import build_index, index_search, open_index
from .search import hamming, query_code, search
from .tables import (
    StaleTableWarning,
    check_code_column,
    check_table,
    code_field,
    create_index,
    create_table,
    get_function,
    lance_model,
    latest_version,
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
    "create_index",
    "get_function",
    "check_table",
    "check_code_column",
    "search",
    "update",
    "query_code",
    "hamming",
    "load_encoder_cached",
    "build_index",
    "open_index",
    "index_search",
    "StaleTableWarning",
    "latest_version",
]
