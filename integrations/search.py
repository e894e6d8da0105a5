"""Hamming search of hashplug tables with a raw query: dense codes natively, sparse codes exactly.

Dense code columns are searched by LanceDB (``distance_type("hamming")``); sparse ones (the k active units in
``list<int32>``) by ``LABEL_LIST`` candidates (``array_has_any``) ranked by the exact Hamming distance
``2 (k - overlap)``, with rows sharing no unit filling up the result. Ties: lower row first
(:mod:`hashplug.ranking`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._deprecation import renamed_kwargs
from ..codes import indices_to_packed, packed_to_indices
from ..ranking import order_rows
from ..validation import HashplugError, HashplugTypeError
from .arrow import codes_from_arrow
from .function import HashplugEmbeddings, Query
from .tables import get_function, warn_if_stale
from .transforms import object_weighting

__all__ = ["search", "query_code", "hamming", "hamming_to_query", "MAX_LIMIT"]

#: The largest ``limit`` :func:`search` accepts (``2**31 - 1``). LanceDB's ``limit`` is an unsigned 32-bit
#: number (``10**12`` overflowed inside it); a reranker's over-fetch (``limit * overfetch``) is capped here too,
#: which only matters for tables of more than two billion rows.
MAX_LIMIT = 2**31 - 1


def hamming_to_query(query_code: np.ndarray, col: Any) -> np.ndarray:
    """Hamming distances (int64, one per row) between one query code and an Arrow code column.

    ``query_code`` is packed uint8 (``n_bytes``,) for a dense column or the active-unit ids for a sparse one
    (either form is converted to the column's form). For sparse columns the distance is
    ``|a| + |b| - 2 |a & b|`` (``2 (k - overlap)`` when both have k units).
    """
    kind, data = codes_from_arrow(col)
    q = np.asarray(query_code).ravel()
    if kind == "packed":
        nb = data.shape[1]
        if q.dtype != np.uint8 or q.size != nb:
            q = indices_to_packed(np.unique(q.astype(np.int64)).reshape(1, -1), 8 * nb)[0]
        if data.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        from ..hamming import hamming_distances

        return np.asarray(hamming_distances(q.reshape(1, -1), data)).reshape(-1).astype(np.int64)
    offsets, values = data
    if q.dtype == np.uint8:
        q = packed_to_indices(q.reshape(1, -1), 8 * q.size)[0]
    q = np.unique(q.astype(np.int64))
    lens = np.diff(offsets)
    hit = np.isin(values, q).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(hit)])
    overlap = csum[offsets[1:]] - csum[offsets[:-1]]
    return (lens + q.size - 2 * overlap).astype(np.int64)


def _sql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _sparse_search(
    table: Any, col: str, ids: np.ndarray, limit: int, where: str | None, columns: list[str] | None
) -> pa.Table:
    """Exact Hamming top-``limit`` over a list<int> column: LABEL_LIST candidates, then ``|a|+|b|-2 overlap``."""
    vt = table.schema.field(col).type.value_type
    arrow_name = {pa.int8(): "Int8", pa.int16(): "Int16", pa.int32(): "Int32", pa.int64(): "Int64"}.get(
        vt, "Int32"
    )
    lit = ", ".join(str(int(i)) for i in ids)
    has_any = f"array_has_any({_sql_ident(col)}, arrow_cast([{lit}], 'List({arrow_name})'))"
    sel = None if columns is None else list(dict.fromkeys([*columns, col]))

    def scan(cond: str, cap: int | None) -> pa.Table:
        best: pa.Table | None = None
        full = cond if not where else f"({cond}) AND ({where})"
        q = table.search().where(full)
        if sel is not None:
            q = q.select(sel)
        if cap is not None:
            q = q.limit(cap)
        for batch in q.to_batches():
            if batch.num_rows == 0:
                continue
            t = pa.Table.from_batches([batch])
            d = hamming_to_query(ids, t[col])
            t = t.append_column("_distance", pa.array(d.astype(np.float32)))
            best = t if best is None else pa.concat_tables([best, t])
            if best.num_rows > 2 * limit:
                order = order_rows(best["_distance"].to_numpy())[:limit]
                best = best.take(pa.array(order))
        if best is None:
            return None
        order = order_rows(best["_distance"].to_numpy())[:limit]
        return best.take(pa.array(order))

    found = scan(has_any, None)
    n_found = 0 if found is None else found.num_rows
    if n_found < limit:
        # Rows sharing no unit are all at the largest distance |a| + k; fill the rest with them.
        rest = scan(f"NOT {has_any}", limit - n_found)
        if rest is not None:
            found = rest if found is None else pa.concat_tables([found, rest])
    if found is None:
        empty = table.schema.empty_table()
        if sel is not None:
            empty = empty.select(sel)
        return empty.append_column("_distance", pa.array([], type=pa.float32()))
    return found


def _check_reranker(reranker: Any) -> int:
    """The reranker's over-fetch multiple, after checking that it is a reranker at all."""
    from lancedb.rerankers import Reranker

    if isinstance(reranker, type) or not (
        isinstance(reranker, Reranker) or callable(getattr(reranker, "rerank_hashplug", None))
    ):
        raise HashplugTypeError(
            f"hashplug.search: reranker must be a LanceDB reranker instance (a lancedb.rerankers.Reranker, e.g. "
            f"hashplug.HammingReranker() or hashplug.FloatRescoreReranker('vector')); got "
            f"{'the class ' + reranker.__name__ if isinstance(reranker, type) else type(reranker).__name__} "
            f"{reranker!r:.60}."
        )
    over = getattr(reranker, "overfetch", 1)
    if isinstance(over, bool) or not isinstance(over, numbers.Integral) or int(over) < 1:
        raise HashplugError(
            f"hashplug.search: the reranker's overfetch must be an int >= 1 (candidates per result); got {over!r}."
        )
    return int(over)


def _check_args(
    limit: Any, where: Any, columns: Any, column: Any, nprobes: Any, exact: Any, query_string: Any
) -> tuple[int, list[str] | None]:
    """Check :func:`search`'s plain arguments before anything runs; returns ``(limit, columns)``."""
    from ..validation import check_int_param

    owner = "hashplug.search"
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral):
        raise HashplugTypeError(
            f"{owner}: limit must be an int (the number of rows to return); got {type(limit).__name__} {limit!r:.40}."
        )
    if int(limit) > MAX_LIMIT:
        raise HashplugError(
            f"{owner}: limit={int(limit)} is above the largest limit hashplug.search accepts ({MAX_LIMIT}); to "
            "return every row pass limit=table.count_rows()."
        )
    lim = check_int_param(limit, "limit", owner, 1, MAX_LIMIT)
    for name, val in (("where", where), ("column", column), ("query_string", query_string)):
        if val is not None and not isinstance(val, str):
            raise HashplugTypeError(f"{owner}: {name} must be a str or None; got {type(val).__name__} {val!r:.40}.")
    if where is not None and not where.strip():
        raise HashplugError(f"{owner}: where={where!r} is empty; pass None for no filter.")
    cols: list[str] | None = None
    if columns is not None:
        if isinstance(columns, (str, bytes)) or not isinstance(columns, (Sequence, np.ndarray)):
            raise HashplugTypeError(
                f"{owner}: columns must be a list of column names, e.g. ['id']; got {type(columns).__name__} "
                f"{columns!r:.40}."
            )
        cols = [str(c) if isinstance(c, np.str_) else c for c in columns]
        bad = [c for c in cols if not isinstance(c, str)]
        if bad or not cols:
            raise HashplugTypeError(
                f"{owner}: columns must be a non-empty list of column names (str); got {columns!r:.60}."
            )
    if nprobes is not None:
        check_int_param(nprobes, "nprobes", owner, 1, MAX_LIMIT)
    if not isinstance(exact, (bool, np.bool_)):
        raise HashplugTypeError(f"{owner}: exact must be True or False; got {type(exact).__name__} {exact!r:.40}.")
    return lim, cols


def _apply_reranker(
    reranker: Any,
    results: pa.Table,
    *,
    code: np.ndarray,
    query: Query,
    func: HashplugEmbeddings,
    column: str,
    query_string: str | None,
) -> pa.Table:
    if hasattr(reranker, "rerank_hashplug"):
        return reranker.rerank_hashplug(results, query_code=code, query=query, function=func, column=column)
    return reranker.rerank_vector(query_string if query_string is not None else str(query), results)


@renamed_kwargs(k="limit", use_index="use_hamming_index")
def search(
    table: Any,
    x: Any,
    limit: int = 10,
    *,
    reranker: Any = None,
    where: str | None = None,
    columns: Sequence[str] | None = None,
    column: str | None = None,
    nprobes: int | None = None,
    exact: bool = False,
    query_string: str | None = None,
    use_hamming_index: bool | None = None,
    eta: Any = None,
    focus: int | None = None,
    region: Sequence[float] | None = None,
    eta_weight: float = 10.0,
) -> pa.Table:
    """Hamming search of a hashplug table with a raw query, in one call.

    The query is encoded by the table's own embedding function; dense code columns are searched natively
    (``distance_type("hamming")``), sparse ones by ``LABEL_LIST`` candidates (``array_has_any``) ranked by the
    exact Hamming distance ``2 (k - overlap)``.

    Parameters
    ----------
    table : lancedb.table.Table
        A table created with :func:`schema` (or :func:`lance_model` / :func:`create_table`).
    x : array-like or Query
        One sample.
    limit : int
        Rows to return, 1 to :data:`MAX_LIMIT` (``2**31 - 1``; a table with fewer rows returns them all, so
        ``limit=table.count_rows()`` returns every row). ``k=`` is the deprecated 0.1.0 name (``k`` is the
        number of active units); it still works, with a ``DeprecationWarning``.
    reranker : lancedb.rerankers.Reranker or None
        Applied to ``limit * reranker.overfetch`` candidates (default over-fetch 1), then trimmed to ``limit``;
        anything that is not a LanceDB reranker raises :class:`~hashplug.validation.HashplugTypeError`.
        hashplug rerankers receive the query code (and raw query) directly; other rerankers get
        ``query_string`` (default ``str(Query(x))``).
    where : str or None
        SQL filter applied before the search.
    columns : sequence of str or None
        Columns to return (default all). ``_distance`` is always added.
    column : str or None
        Code column, when the table has several hashplug columns.
    nprobes : int or None
        IVF partitions to probe (dense, indexed tables).
    exact : bool
        Ignore any vector index (exhaustive search; dense tables).
    query_string : str or None
        Query text handed to non-hashplug rerankers.
    use_hamming_index : bool or None
        Use the table's Hamming index (:func:`hashplug.build_hamming_index`; exact, caught up with the table
        first). None: when one exists (and ``nprobes`` is not asked for); True: require it; False: LanceDB's
        search (with its IVF / LABEL_LIST index when :func:`create_lancedb_index` built one). ``use_index=`` is
        the deprecated 0.1.0 name.
    eta, focus, region, eta_weight
        Conditional queries for models with per-object weights (NeuroHash; ``x`` a dict of named inputs):
        ``eta`` the object weights themselves (K,), or ``focus`` the slot of one query object, or ``region``
        ``(x0, y0, x1, y1)`` in normalised coordinates (the objects whose centre lies inside), weighted
        ``eta_weight`` against 1 for the others (:func:`hashplug.hdc.conditional_eta`). The query transform
        :class:`~hashplug.integrations.transforms.ObjectWeighting`, which the model's card declares through
        its inputs (a 0/1 object mask, positions valid where it is set, a per-object weight with a default).

    Returns
    -------
    pyarrow.Table
        The rows, nearest first, with ``_distance`` (Hamming, float32) and the reranker's columns. The schema
        metadata key ``hashplug.search_path`` says what answered: ``"hashplug-index"``, ``"lancedb"`` (dense)
        or ``"lancedb-label-list"`` (sparse); ``hashplug.table_version`` the table version the answer reflects.

    Warns
    -----
    StaleTableWarning
        The handle reads an older version than the newest on disk (checked at most once a second per handle,
        for connections without ``read_consistency_interval``).

    Notes
    -----
    Readers in other processes: LanceDB's default connection, ``lancedb.connect(path)``, reads a table at the
    version it had when it was opened and never sees commits made later by another process (or another
    handle), so a search beside a writer answers from that old version. Open readers with
    ``lancedb.connect(path, read_consistency_interval=datetime.timedelta(0))`` (every read checks for new
    commits; or ``timedelta(seconds=5)`` to check at most every five seconds), or call
    ``table.checkout_latest()`` before searching. hashplug warns (:class:`StaleTableWarning`) when it sees a
    default-connection handle behind the newest version on disk.
    """
    lim, user_cols = _check_args(limit, where, columns, column, nprobes, exact, query_string)
    over = _check_reranker(reranker) if reranker is not None else 1
    col, _, func = get_function(table, column)  # the one lookup of the function: everything below gets it
    warn_if_stale(table, "hashplug.search")
    if user_cols is not None:
        names = table.schema.names
        missing = [c for c in user_cols if c not in names and not c.startswith("_")]  # _distance, _rowid: virtual
        if missing:
            raise HashplugError(
                f"hashplug.search: columns {missing} are not in table {getattr(table, 'name', '?')!r}; its columns "
                f"are {names}."
            )
    q = x if isinstance(x, Query) else Query(x)  # the edge: the query's values are checked here, once
    if eta is not None or focus is not None or region is not None:
        q = object_weighting(func.encoder.card)(q, eta=eta, focus=focus, region=region, eta_weight=eta_weight)
    code = _one_code(func, q)
    res, path = _search_code(table, col, func, code, min(lim * over, MAX_LIMIT), where=where,
                             select=_stored_columns(user_cols, reranker, col), nprobes=nprobes, exact=exact,
                             use_hamming_index=use_hamming_index)
    if reranker is not None:
        res = _apply_reranker(
            reranker, res, code=code, query=q, func=func, column=col, query_string=query_string
        )
        res = res.slice(0, lim)
    if user_cols is not None:
        keep = [c for c in res.column_names if c in user_cols or c.startswith("_")]
        res = res.select(keep)
    meta = {**(res.schema.metadata or {}), b"hashplug.search_path": path.encode()}
    try:
        meta[b"hashplug.table_version"] = str(int(table.version)).encode()
    except Exception:  # noqa: BLE001 - a table without versions
        pass
    return res.replace_schema_metadata(meta)


def _one_code(func: HashplugEmbeddings, q: Query) -> np.ndarray:
    """The code of a one-sample query (packed uint8, or the active units for an ``indices`` table)."""
    codes = func.encode_query(q)
    if codes.shape[0] != 1:
        raise HashplugError(
            f"hashplug.search takes one query sample; got {codes.shape[0]}. Loop over the queries."
        )
    return codes[0]


def _stored_columns(user_cols: list[str] | None, reranker: Any, col: str) -> list[str] | None:
    """The stored columns a search reads (None: all); the virtual ones (``_distance``, a reranker's scores)
    are added by the search itself."""
    if user_cols is None:
        return None
    sel = [c for c in user_cols if not c.startswith("_") or c == "_rowid"]
    if reranker is not None:
        need = [col] + [c for c in (getattr(reranker, "column", None),) if isinstance(c, str)]
        sel = list(dict.fromkeys([*sel, *need]))
    return sel


def _search_code(
    table: Any,
    col: str,
    func: HashplugEmbeddings,
    code: np.ndarray,
    fetch: int,
    *,
    where: str | None,
    select: list[str] | None,
    nprobes: int | None,
    exact: bool,
    use_hamming_index: bool | None,
) -> tuple[pa.Table, str]:
    """The generic call: the ``fetch`` nearest rows to a query code and the path that answered.

    Paths: the table's hashplug index (when there is one, unless ``use_hamming_index=False`` or ``nprobes`` is asked
    for), LanceDB's own Hamming search (packed codes) or ``LABEL_LIST`` candidates ranked exactly (indices).
    """
    bound = None
    if use_hamming_index is not False and not (use_hamming_index is None and nprobes is not None):
        from .index import open_bound_index

        bound = open_bound_index(table, col, func)
        if bound is None and use_hamming_index:
            raise HashplugError(
                f"table {getattr(table, 'name', '?')!r} has no hashplug index for column {col!r}; build one with "
                "hashplug.build_hamming_index(table), or pass use_hamming_index=None."
            )
    if bound is not None:
        return _index_path(table, col, func, bound, code, fetch, where, select), "hashplug-index"
    if func.layout == "packed":
        return _lancedb_path(table, col, code, fetch, where, select, nprobes, exact), "lancedb"
    return _sparse_search(table, col, code, fetch, where, select), "lancedb-label-list"


def _index_path(table: Any, col: str, func: HashplugEmbeddings, bound: Any, code: np.ndarray, fetch: int,
                where: str | None, select: list[str] | None) -> pa.Table:
    from .index import hamming_index_search, rows_by_id

    q_codes = code.reshape(1, -1) if func.layout == "packed" else [np.asarray(code, dtype=np.int64)]
    ids, dist = hamming_index_search(bound, table, q_codes, fetch, where=where)
    res = rows_by_id(table, ids[0], None if select is None else list(dict.fromkeys([*select, col])), at=bound)
    res = res.append_column("_distance", pa.array(dist[0].astype(np.float32)))
    if "_rowid" in res.column_names and (select is None or "_rowid" not in select):
        res = res.drop_columns(["_rowid"])
    return res


def _lancedb_path(table: Any, col: str, code: np.ndarray, fetch: int, where: str | None,
                  select: list[str] | None, nprobes: int | None, exact: bool) -> pa.Table:
    qb = table.search(code, vector_column_name=col).distance_type("hamming").limit(fetch)
    if where:
        qb = qb.where(where, prefilter=True)
    if select is not None:
        qb = qb.select([c for c in select if c != "_rowid"] + ["_distance"])
        if "_rowid" in select:
            qb = qb.with_row_id(True)
    if nprobes is not None:
        qb = qb.nprobes(int(nprobes))
    if exact:
        qb = qb.bypass_vector_index()
    return qb.to_arrow()


def query_code(table: Any, x: Any, column: str | None = None) -> np.ndarray:
    """The code of one raw query under a table's function (packed uint8, or int32 ids for sparse tables)."""
    _, _, func = get_function(table, column)
    return func.encode_query(x)[0]


def hamming(table_or_func: Any, query: Any, col: Any) -> np.ndarray:
    """Hamming distances between a raw query (encoded by the table's function) and an Arrow code column."""
    func = table_or_func if isinstance(table_or_func, HashplugEmbeddings) else get_function(table_or_func)[2]
    return hamming_to_query(func.encode_query(query)[0], col)
