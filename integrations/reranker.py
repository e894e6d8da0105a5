"""LanceDB rerankers for hashplug tables.

:class:`HammingReranker`
    Orders vector, FTS or hybrid results by the Hamming distance between the query's code and each row's code
    (adds ``_hamming`` and ``_relevance_score = 1 - hamming / m``).
:class:`FloatRescoreReranker`
    The reverse two-stage mode: Hamming candidates from the code column (over-fetched, e.g. 10x), rescored by
    the exact cosine or L2 distance on a stored float column (adds ``_hamming``, ``_float_distance`` and
    ``_relevance_score``).

LanceDB hands a reranker only the query *string* and the result table, never the query vector. The query is
therefore found, in this order: given to the constructor (``query_code=`` / ``query_vector=``), passed directly
by :func:`hashplug.search` (``rerank_hashplug``), or decoded from a :class:`~hashplug.integrations.lancedb.Query`,
which is a ``str`` holding the exact query: ``table.search(hashplug.Query(x)).rerank(r)`` (LanceDB keeps the
query string), or ``.rerank(r, query_string=str(hashplug.Query(x)))`` after a search LanceDB ran with a vector.
The function that encodes it is the one given (``function=`` / ``table=``), else the table's own, read from the
``embedding_functions`` metadata LanceDB copies into every search result.

The calls (each one is a test, ``tests/test_lancedb_idioms.py``)::

    q = hashplug.Query(x)
    tbl.search(q).distance_type("hamming").limit(40).rerank(hashplug.HammingReranker(limit=10)).to_arrow()
    tbl.search(x, vector_column_name="vector").limit(40).rerank(
        hashplug.HammingReranker(limit=10), query_string=str(q)).to_arrow()
    tbl.search(x, vector_column_name="vector").limit(40).rerank(
        hashplug.HammingReranker(query_vector=x, limit=10), query_string="x").to_arrow()
    hashplug.search(tbl, x, limit=10, reranker=hashplug.FloatRescoreReranker("vector", overfetch=10))

Serving side: numpy, pyarrow and LanceDB only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from lancedb.rerankers import Reranker

from ..ranking import order_rows
from ..validation import HashplugError, HashplugTypeError, check_array, check_choice, check_int_param
from .search import hamming_to_query

__all__ = ["HammingReranker", "FloatRescoreReranker"]


def _resolve_function(function: Any, table: Any, column: str | None, owner: str) -> tuple[Any, str | None]:
    from .function import HashplugEmbeddings

    if column is not None and not isinstance(column, str):
        raise HashplugTypeError(f"{owner}: column must be a column name (str); got {type(column).__name__}.")
    if function is not None and not isinstance(function, HashplugEmbeddings):
        raise HashplugTypeError(
            f"{owner}: function must be the hashplug embedding function (get_registry().get('hashplug').create(...))"
            f"; got {type(function).__name__} {function!r:.60}."
        )
    if function is None and table is not None:
        from .tables import get_function

        column_, _, function = get_function(table, column)
        column = column or column_
    return function, column


def _function_from_results(results: pa.Table, column: str | None) -> tuple[Any, str | None]:
    """The table's hashplug function, rebuilt from the ``embedding_functions`` metadata LanceDB copies into its
    search results; ``(None, column)`` when the results carry none."""
    from lancedb.embeddings import get_registry

    from .function import HashplugEmbeddings

    meta = results.schema.metadata or {}
    if b"embedding_functions" not in meta:
        return None, column
    funcs = {
        col: conf.function
        for col, conf in get_registry().parse_functions(meta).items()
        if isinstance(conf.function, HashplugEmbeddings)
    }
    if column is not None:
        return funcs.get(column), column
    if len(funcs) == 1:
        col, func = next(iter(funcs.items()))
        return func, col
    return None, column


def _code_column(results: pa.Table, column: str | None) -> str:
    if column is not None:
        if column not in results.column_names:
            raise HashplugError(
                f"the results have no code column {column!r} (columns: {results.column_names}); do not drop it "
                "with select() before reranking."
            )
        return column
    cands = [
        f.name
        for f in results.schema
        if (pa.types.is_fixed_size_list(f.type) and pa.types.is_uint8(f.type.value_type))
        or (pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type))
    ]
    if len(cands) != 1:
        raise HashplugError(
            f"cannot tell the code column among {cands or results.column_names}; pass column= to the reranker."
        )
    return cands[0]


class _HashplugReranker(Reranker):
    """Shared plumbing: query resolution, trimming, the three LanceDB entry points."""

    def __init__(
        self,
        *,
        function: Any = None,
        table: Any = None,
        column: str | None = None,
        limit: int | None = None,
        overfetch: int = 4,
        return_score: str = "relevance",
    ) -> None:
        owner = type(self).__name__
        check_choice(return_score, "return_score", owner, ("relevance", "all"))
        super().__init__(return_score)
        self.function, self.code_column = _resolve_function(function, table, column, owner)
        self.limit = None if limit is None else check_int_param(limit, "limit", type(self).__name__, 1)
        self.overfetch = check_int_param(overfetch, "overfetch", type(self).__name__, 1)

    # subclasses: score(results, query_code, query) -> (sort_key ascending, {extra columns}, relevance)
    def _score(
        self, results: pa.Table, query_code: Any, query: Any, function: Any, column: str | None
    ) -> tuple[np.ndarray, dict, np.ndarray]:
        raise NotImplementedError

    def _finish(
        self, results: pa.Table, query_code: Any, query: Any, function: Any = None, column: str | None = None
    ) -> pa.Table:
        if results.num_rows == 0:
            out = results
            for name, typ in (("_hamming", pa.int64()), ("_relevance_score", pa.float32())):
                if name not in out.column_names:
                    out = out.append_column(name, pa.array([], type=typ))
            return out
        function = function or self.function
        column = self.code_column or column  # a column given to the reranker wins over the search's
        if function is None:
            function, column = _function_from_results(results, column)
        key, extra, rel = self._score(results, query_code, query, function, column)
        out = results
        for name, vals in {**extra, "_relevance_score": rel.astype(np.float32)}.items():
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, pa.array(vals))
        order = order_rows(key)
        if self.limit is not None:
            order = order[: self.limit]
        out = out.take(pa.array(order))
        if self.score == "relevance":
            out = out.drop_columns([c for c in ("_score",) if c in out.column_names])
        return out

    def _query_from_string(self, query: Any) -> Any:
        from .function import Query

        if isinstance(query, Query):
            return query
        if Query.is_query_string(query):
            return Query.from_string(query)
        return None

    # ---- LanceDB entry points
    def rerank_hashplug(
        self,
        results: pa.Table,
        *,
        query_code: Any,
        query: Any = None,
        function: Any = None,
        column: str | None = None,
    ) -> pa.Table:
        """Rerank with the query code (and raw query) given directly; called by :func:`hashplug.search`."""
        return self._finish(results, query_code, query, function, column)

    def rerank_vector(self, query: str, vector_results: pa.Table) -> pa.Table:
        """Rerank vector-search results (``table.search(...).rerank(self, query_string=...)``)."""
        return self._finish(vector_results, None, query)

    def rerank_fts(self, query: str, fts_results: pa.Table) -> pa.Table:
        """Rerank full-text-search results; the rows must include the code column."""
        return self._finish(fts_results, None, query)

    def rerank_hybrid(self, query: str, vector_results: pa.Table, fts_results: pa.Table) -> pa.Table:
        """Merge vector and FTS results (deduplicated by row id) and rerank them together."""
        merged = self.merge_results(vector_results, fts_results)
        return self._finish(merged, None, query)


class HammingReranker(_HashplugReranker):
    """Order results by Hamming distance to the query's code.

    Parameters
    ----------
    query_code : array-like or None
        The query's code: packed uint8 ``(n_bytes,)`` or active unit ids. When given it is always used, also
        by :func:`hashplug.search` (which then fetches candidates for its own query ``x`` and orders them by
        the distance to this code). Default: the code :func:`hashplug.search` computes, or the query
        (a :class:`~hashplug.integrations.lancedb.Query` or its string) encoded with the table's function.
    query_vector : array-like or None
        The raw query, encoded with the function (``function=``, ``table=``'s, or the one in the results'
        metadata); always used when given, like ``query_code`` (pass one of the two).
    function : HashplugEmbeddings or None
        Encoder of raw and string queries (default: ``table``'s, else the results' own).
    table : lancedb.table.Table or None
        Table whose hashplug function encodes raw and string queries.
    column : str or None
        Code column in the results (default: the function's, or the only uint8 / int-list column).
    limit : int or None
        Keep this many rows after reranking (over-fetch with ``.limit(...)`` first).
    overfetch : int
        Candidate multiple :func:`hashplug.search` fetches before reranking and trimming to ``k``.
    return_score : {"relevance", "all"}
        As in LanceDB rerankers.
    """

    def __init__(
        self,
        query_code: Any = None,
        *,
        query_vector: Any = None,
        function: Any = None,
        table: Any = None,
        column: str | None = None,
        limit: int | None = None,
        overfetch: int = 4,
        return_score: str = "relevance",
    ) -> None:
        super().__init__(
            function=function,
            table=table,
            column=column,
            limit=limit,
            overfetch=overfetch,
            return_score=return_score,
        )
        if query_code is not None and query_vector is not None:
            raise HashplugError(
                "HammingReranker: pass query_code= (the code) or query_vector= (the raw query), not both."
            )
        self.query_code = None
        if query_code is not None:
            code = check_array(query_code, name="query_code", ndim=(1, 2), dtype=None, owner="HammingReranker")
            if code.ndim == 2 and code.shape[0] != 1:
                raise HashplugError(f"HammingReranker: query_code is one code; got shape {code.shape}.")
            if not (np.issubdtype(code.dtype, np.integer) or code.dtype == np.bool_):
                raise HashplugError(
                    f"HammingReranker: query_code must be packed uint8 bytes or integer unit ids; got dtype "
                    f"{code.dtype} (for a raw query pass query_vector=)."
                )
            self.query_code = code.ravel()
        self.query_vector = None
        if query_vector is not None:
            from .function import Query

            self.query_vector = Query(query_vector)

    def _resolve_code(self, query_code: Any, query: Any, function: Any) -> np.ndarray:
        if self.query_code is not None:  # given explicitly: it wins over the code hashplug.search passes
            return self.query_code
        if self.query_vector is None and query_code is not None:
            return np.asarray(query_code).ravel()
        q = self.query_vector if self.query_vector is not None else self._query_from_string(query)
        if q is None:
            raise HashplugError(
                "HammingReranker needs the query or the query's code: search LanceDB with "
                "tbl.search(hashplug.Query(x)), or pass query_string=str(hashplug.Query(x)) to .rerank(...), or give "
                "HammingReranker(query_vector=x) or query_code=, or use hashplug.search(table, x, reranker=...); got "
                f"the query {str(query)[:60]!r}."
            )
        if function is None:
            raise HashplugError(
                "HammingReranker has a raw query but no hashplug function to encode it (the results carry no "
                "hashplug embedding_functions metadata); pass HammingReranker(table=tbl, ...)."
            )
        codes = function.encode_query(q)
        if codes.shape[0] != 1:
            raise HashplugError(f"HammingReranker reranks for one query; got {codes.shape[0]}.")
        return codes[0]

    def _score(
        self, results: pa.Table, query_code: Any, query: Any, function: Any, column: str | None
    ) -> tuple[np.ndarray, dict, np.ndarray]:
        code = self._resolve_code(query_code, query, function)
        col = _code_column(results, column)
        ham = hamming_to_query(code, results[col])
        if function is not None:
            m = int(function.encoder.m)
        elif pa.types.is_fixed_size_list(results.schema.field(col).type):
            m = 8 * results.schema.field(col).type.list_size
        else:
            m = max(1, int(ham.max()))
        rel = 1.0 - ham / float(m)
        return ham, {"_hamming": ham}, rel


class FloatRescoreReranker(_HashplugReranker):
    """Two-stage search: Hamming candidates rescored by the exact float distance on a stored float column.

    With :func:`hashplug.search` the table's code column supplies ``k * overfetch`` Hamming candidates, which
    are reordered by the cosine or L2 distance between the raw query and each row's ``column`` and trimmed to
    ``k``.

    Parameters
    ----------
    column : str
        Stored float column (e.g. the source column ``"vector"``).
    metric : {"cosine", "l2"}
    query_vector : array-like or None
        The raw query; when given it is always used, also by :func:`hashplug.search` (default: the query of
        :func:`hashplug.search`, or the query string ``str(hashplug.Query(x))``).
    overfetch : int
        Candidate multiple (default 10).
    limit : int or None
        Keep this many rows after rescoring.
    return_score : {"relevance", "all"}
    """

    def __init__(
        self,
        column: str = "vector",
        metric: str = "cosine",
        *,
        query_vector: Any = None,
        overfetch: int = 10,
        limit: int | None = None,
        return_score: str = "relevance",
    ) -> None:
        if not isinstance(column, str) or not column:
            raise HashplugTypeError(
                f"FloatRescoreReranker: column must be the name of a stored float column, e.g. 'vector'; got "
                f"{type(column).__name__} {column!r:.40}."
            )
        super().__init__(limit=limit, overfetch=overfetch, return_score=return_score)
        self.column = column
        self.metric = check_choice(metric, "metric", "FloatRescoreReranker", ("cosine", "l2"))
        self.query_vector = (
            None
            if query_vector is None
            else check_array(
                query_vector, name="query_vector", ndim=None, dtype=np.float32, owner="FloatRescoreReranker"
            ).ravel()
        )

    def _score(
        self, results: pa.Table, query_code: Any, query: Any, function: Any, column: str | None
    ) -> tuple[np.ndarray, dict, np.ndarray]:
        from .arrow import column_to_numpy
        from .function import Query

        if self.query_vector is not None:  # given explicitly: it wins over the query hashplug.search passes
            q = self.query_vector
        else:
            qq = query if isinstance(query, Query) else self._query_from_string(query)
            if qq is None:
                raise HashplugError(
                    "FloatRescoreReranker needs the raw query: search LanceDB with tbl.search(hashplug.Query(x)), "
                    "or pass query_string=str(hashplug.Query(x)) to .rerank(...), or give "
                    "FloatRescoreReranker(column, query_vector=x), or use hashplug.search(table, x, reranker=...)."
                )
            if qq.x is None:
                raise HashplugError(
                    "FloatRescoreReranker compares one float vector per row; this query has named inputs."
                )
            q = qq.x.ravel()
        if self.column not in results.column_names:
            raise HashplugError(
                f"the results have no float column {self.column!r}; columns: {results.column_names}."
            )
        X = column_to_numpy(results[self.column], (q.size,), name=self.column).reshape(results.num_rows, -1)
        if self.metric == "l2":
            dist = np.sqrt(np.maximum(((X - q[None, :]) ** 2).sum(axis=1), 0.0))
            rel = 1.0 / (1.0 + dist)
        else:
            denom = np.maximum(np.linalg.norm(X, axis=1) * np.linalg.norm(q), 1e-12)
            dist = 1.0 - (X @ q) / denom
            rel = 1.0 - dist
        extra: dict[str, Any] = {"_float_distance": dist.astype(np.float32)}
        if query_code is not None and column is not None and column in results.column_names:
            extra["_hamming"] = hamming_to_query(query_code, results[column])
        return dist, extra, rel
