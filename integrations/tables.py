"""hashplug tables in LanceDB: the schema helpers, table facts and checks, the index and ``update``.

Why the helpers: LanceDB writes an embedding function's output as *float* vectors unless the table was created
with an explicit schema whose code column is ``fixed_size_list<uint8>[n_bytes]``, so create tables with
:func:`schema` (or :func:`lance_model` / :func:`create_table`); :func:`check_code_column` refuses a float code
column everywhere hashplug is called.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from lancedb.embeddings import EmbeddingFunctionConfig, get_registry

from .._deprecation import renamed_function
from ..validation import HashplugError, HashplugTypeError, ModelMismatchError, TableSchemaError
from .arrow import OLD_LAYOUTS
from .function import HashplugEmbeddings, Query
from .store import database_root, table_root

__all__ = [
    "META_M",
    "META_K",
    "META_KIND",
    "META_SHA",
    "schema",
    "check_column_name",
    "RESERVED_COLUMNS",
    "code_field",
    "lance_model",
    "create_table",
    "get_function",
    "check_table",
    "check_code_column",
    "create_lancedb_index",
    "create_index",
    "update",
    "StaleTableWarning",
    "latest_version",
    "warn_if_stale",
    "relocate_model",
    "model_location",
    "refuse_async",
]

META_M = b"hashplug.m"
META_K = b"hashplug.k"
META_KIND = b"hashplug.layout"
META_SHA = b"hashplug.sha256"


#: Column names LanceDB or hashplug put into search results; a table column of that name would be shadowed.
RESERVED_COLUMNS = frozenset({"_rowid", "_rowaddr", "_distance", "_score", "_relevance_score", "_hamming",
                              "_float_distance"})


def check_column_name(name: Any, what: str, owner: str) -> str:
    """``name`` if it is a safe plain column name, else :class:`~hashplug.validation.HashplugError`.

    A plain name is a non-empty ``str`` without ``/``, ``\\``, ``..``, NUL or other control characters, not
    padded with spaces and not one of :data:`RESERVED_COLUMNS`: column names end up in file paths (the
    hashplug index beside the table), in SQL (``where``) and in LanceDB's nested-field paths.
    """
    if not isinstance(name, str):
        raise HashplugTypeError(f"{owner}: {what} must be a column name (str); got {type(name).__name__} {name!r:.40}.")
    bad = None
    if not name.strip():
        bad = "is empty"
    elif name != name.strip():
        bad = "starts or ends with whitespace"
    elif any(c in name for c in "/\\") or ".." in name:
        bad = "contains a path separator or '..'"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        bad = "contains NUL or another control character"
    elif name in RESERVED_COLUMNS:
        bad = "is a name LanceDB or hashplug adds to search results"
    if bad:
        raise HashplugError(
            f"{owner}: {what}={name!r} {bad}; use a plain column name such as 'vector' or 'code' (letters, digits, "
            "'_' and '-')."
        )
    return name


def _check_source_target(source: Any, target: Any, owner: str) -> None:
    check_column_name(source, "source", owner)
    check_column_name(target, "target", owner)
    if source == target:
        raise HashplugError(
            f"{owner}: source and target are both {source!r}; the samples (source) and their codes (target) need "
            "two columns, e.g. source='vector', target='code'."
        )


class StaleTableWarning(UserWarning):
    """A table handle answers from an older version than the newest on disk.

    LanceDB's default connection (``lancedb.connect(path)``) reads a table at the version it had when it was
    opened and never sees commits made since by other processes or handles; readers beside a writer open it
    with ``lancedb.connect(path, read_consistency_interval=timedelta(0))`` (or a few seconds), or call
    ``table.checkout_latest()`` before each read.
    """


_FRESH_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def latest_version(table: Any) -> int | None:
    """The newest version of ``table`` on disk (``table.version`` is the version the handle reads).

    Read through a second, fresh handle of the same connection (about half a millisecond for a local table;
    independent of the number of versions, unlike ``table.list_versions()``); None when it cannot be told
    (a remote or foreign table).
    """
    conn, name = getattr(table, "_conn", None), getattr(table, "name", None)
    if conn is None or not isinstance(name, str) or not hasattr(conn, "open_table"):
        return None
    try:
        return int(conn.open_table(name).version)
    except Exception:  # noqa: BLE001 - a dropped or remote table: staleness cannot be told
        return None


def warn_if_stale(table: Any, owner: str, *, every: float = 1.0) -> None:
    """Warn (:class:`StaleTableWarning`) when ``table`` reads an older version than the newest on disk.

    Only for handles of a connection without ``read_consistency_interval`` (LanceDB's default, which never
    refreshes), and at most once per ``every`` seconds per handle, so a search pays the check (~0.5 ms) rarely.
    """
    import time

    conn = getattr(table, "_conn", None)
    if conn is None or getattr(conn, "read_consistency_interval", None) is not None:
        return
    now = time.monotonic()
    try:
        last = _FRESH_CHECKED.get(table)
        if last is not None and now - last < every:
            return
        _FRESH_CHECKED[table] = now
    except TypeError:  # not weak-referenceable
        pass
    latest = latest_version(table)
    try:
        current = int(table.version)
    except Exception:  # noqa: BLE001
        return
    if latest is not None and latest > current:
        import warnings

        warnings.warn(
            f"{owner}: table {getattr(table, 'name', '?')!r} is read at version {current}, but version {latest} is on "
            "disk (another process or handle committed since this handle was opened), so the answer does not "
            "include those commits. LanceDB's default connection never refreshes a table handle: open it with "
            "lancedb.connect(path, read_consistency_interval=datetime.timedelta(0)) (or a few seconds), or call "
            "table.checkout_latest() before reading. (A version pinned on purpose with table.checkout(v) may "
            "ignore this warning.)",
            StaleTableWarning,
            stacklevel=3,
        )


def code_field(func: HashplugEmbeddings, name: str = "code") -> pa.Field:
    """The code column's field, with the model's ``m``, ``k``, code kind and sha256 in its metadata."""
    enc = func.encoder
    meta = {
        META_M: str(enc.m).encode(),
        META_K: str(enc.k).encode(),
        META_KIND: func.layout.encode(),
        META_SHA: str(enc.file_sha256).encode(),
    }
    return pa.field(name, func.arrow_type(), nullable=True, metadata=meta)


def _check_func(func: Any, owner: str) -> None:
    if not isinstance(func, HashplugEmbeddings):
        raise HashplugTypeError(
            f"{owner}: func must be the hashplug embedding function, get_registry().get('hashplug').create("
            f"model='enc.onnx'); got {type(func).__name__} {func!r:.60}."
        )


def _nested(shape: Sequence[int], source_type: str) -> pa.DataType:
    """float32 samples of ``shape`` as nested fixed-size lists (``"fixed"``) or lists (``"list"``)."""
    if source_type not in ("list", "fixed"):
        raise HashplugError(f"source_type must be 'list' or 'fixed'; got {source_type!r}.")
    t: pa.DataType = pa.float32()
    for s in reversed([int(v) for v in shape]):
        t = pa.list_(t, s) if source_type == "fixed" else pa.list_(t)
    return t


def _source_type(
    func: HashplugEmbeddings, source_dim: int | None, source_shape: Sequence[int] | None, source_type: str
) -> pa.DataType:
    card = func.encoder.card
    if card.multi_input:  # a struct of the required named inputs (those with a default are left to it)
        if source_dim is not None or source_shape is not None:
            raise HashplugError(
                f"the model {func.model!r} takes named inputs; its source column is a struct of them, so source_dim "
                "and source_shape do not apply."
            )
        return pa.struct([
            pa.field(nm, _nested(shp, source_type), nullable=False) for nm, shp, d in card.input_specs if d is None
        ])
    shape = tuple(int(s) for s in (source_shape if source_shape is not None else func.input_shape))
    if source_dim is not None:
        if int(source_dim) != int(np.prod(func.input_shape)):
            raise ModelMismatchError(
                f"source_dim={source_dim} but the model {func.model!r} expects {int(np.prod(func.input_shape))} "
                f"features per sample (input shape {func.input_shape})."
            )
        shape = (int(source_dim),)
    if int(np.prod(shape)) != int(np.prod(func.input_shape)):
        raise ModelMismatchError(
            f"source_shape={shape} has {int(np.prod(shape))} values but the model expects input shape {func.input_shape}."
        )
    value = pa.float32()
    if source_type == "list":
        return pa.list_(value)
    if source_type != "fixed":
        raise HashplugError(f"source_type must be 'list' or 'fixed'; got {source_type!r}.")
    t: pa.DataType = value
    for s in reversed(shape):
        t = pa.list_(t, int(s))
    return t


def schema(
    func: HashplugEmbeddings,
    *,
    source: str = "vector",
    target: str = "code",
    source_dim: int | None = None,
    source_shape: Sequence[int] | None = None,
    source_type: Literal["list", "fixed"] = "list",
    extra: Mapping[str, pa.DataType] | Sequence[pa.Field] | None = None,
    db: Any = None,
) -> pa.Schema:
    """The pyarrow schema of a hashplug table, with the embedding function attached.

    Creating the table with this schema is what makes LanceDB store the codes as ``uint8`` (or ``int32`` ids)
    instead of silently falling back to floats.

    Parameters
    ----------
    func : HashplugEmbeddings
        From ``get_registry().get("hashplug").create(model=...)``.
    source, target : str
        Names of the input column (encoded on ``add``) and of the code column.
    source_dim : int or None
        Number of features per sample (checked against the model); default the model's input shape.
    source_shape : sequence of int or None
        Per-sample shape for ``source_type="fixed"`` (e.g. ``(28, 28)`` stores images as nested fixed-size lists).
    source_type : {"list", "fixed"}
        ``"list"`` (default) stores samples as ``list<float32>``, so the code column is the table's only vector
        column and ``table.search(hashplug.Query(x))`` needs no ``vector_column_name``; ``"fixed"`` stores
        ``fixed_size_list<float32>`` (LanceDB can then also index the floats; pass
        ``vector_column_name=target`` to ``table.search``).
    extra : mapping of name to pyarrow type, or list of pyarrow fields, optional
        Further columns (ids, labels, ...).
    db : LanceDB connection, str, PathLike or None
        The database the table will live in. Given, the model is copied into its model store
        (``<db>/_hashplug/models/<sha256>.onnx``, once, atomically) and the saved config names that copy
        relative to the database (``{db}/_hashplug/models/<sha256>.onnx``): the table then travels with the
        database folder (:meth:`HashplugEmbeddings.for_database`). None: the config names the model where
        ``func`` found it (an absolute path or a URI), as hashplug 0.2 did.

    Returns
    -------
    pyarrow.Schema
    """
    _check_func(func, "schema()")
    _check_source_target(source, target, "schema()")
    if db is not None:
        func = func.for_database(db)
    fields: list[pa.Field] = []
    if extra:
        if isinstance(extra, Mapping):
            fields += [pa.field(check_column_name(n, "a column name in extra", "schema()"), t)
                       for n, t in extra.items()]
        elif isinstance(extra, Sequence) and all(isinstance(f, pa.Field) for f in extra):
            fields += list(extra)
        else:
            raise HashplugTypeError(
                f"schema(): extra must be a mapping of column name to pyarrow type or a list of pyarrow fields; got "
                f"{type(extra).__name__} {extra!r:.60}."
            )
    fields.append(pa.field(source, _source_type(func, source_dim, source_shape, source_type)))
    fields.append(code_field(func, target))
    for f in fields[:-2]:
        check_column_name(f.name, "a column name in extra", "schema()")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise HashplugError(f"duplicate column names in the schema: {names}.")
    conf = EmbeddingFunctionConfig(source_column=source, vector_column=target, function=func)
    meta = get_registry().get_table_metadata([conf])
    return pa.schema(fields, metadata=meta)


def lance_model(
    func: HashplugEmbeddings,
    *,
    source: str = "vector",
    target: str = "code",
    source_dim: int | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str = "HashplugRecord",
    db: Any = None,
) -> type:
    """A ``LanceModel`` subclass for a dense hashplug table (``Vector(n_bytes, value_type=pa.uint8())`` codes).

    Writing the model by hand, declare the code field as ``Vector(func.ndims(), value_type=pa.uint8())``:
    LanceDB's default ``Vector(n)`` (and a ``list[float]`` ``VectorField``) make a *float* column, into which
    LanceDB silently casts the codes, and Hamming search then fails. Declare the source field as ``list[float]``
    rather than ``Vector(d)``, or every ``table.search`` needs ``vector_column_name``.

    Parameters
    ----------
    func : HashplugEmbeddings
        Must use ``layout="packed"`` (``"indices"`` tables: use :func:`schema`).
    source, target : str
        Field names of the samples and of the codes.
    source_dim : int or None
        Features per sample (default: the model's).
    extra : mapping of field name to Python type, optional
        Further fields, e.g. ``{"id": int, "label": str}``.
    name : str
        Class name.
    db : LanceDB connection, str, PathLike or None
        The database the table will live in: the model is stored in it and the config names the stored copy,
        as :func:`schema`'s ``db=``.

    Returns
    -------
    type
        Pass it as ``db.create_table(name, schema=Model)``.
    """
    from lancedb.pydantic import LanceModel, Vector
    from pydantic import create_model

    _check_func(func, "lance_model()")
    _check_source_target(source, target, "lance_model()")
    if func.layout != "packed":
        raise HashplugError(
            "lance_model() builds packed-code tables; for layout='indices' use hashplug.integrations.lancedb.schema()."
        )
    if db is not None:
        func = func.for_database(db)
    d = int(np.prod(func.input_shape)) if source_dim is None else int(source_dim)
    if d != int(np.prod(func.input_shape)):
        raise ModelMismatchError(
            f"source_dim={d} but the model expects {int(np.prod(func.input_shape))} features."
        )
    fields: dict[str, Any] = {k: (v, ...) for k, v in (extra or {}).items()}
    # ``list[float]`` (not ``Vector(d)``): the code column stays the table's only vector column, so
    # ``table.search(hashplug.Query(x))`` needs no ``vector_column_name``.
    fields[source] = (list[float], func.SourceField())
    fields[target] = (Vector(func.n_bytes, value_type=pa.uint8()), func.VectorField(default=None))
    return create_model(name, __base__=LanceModel, **fields)


def create_table(
    db: Any,
    name: str,
    func: HashplugEmbeddings,
    data: Any = None,
    *,
    mode: str = "create",
    index: bool = False,
    store_model: bool = True,
    **schema_kwargs: Any,
) -> Any:
    """Create a hashplug table with the right schema and its first rows in one commit, optionally indexed.

    Everything is checked and the rows are encoded before LanceDB is called, so a bad argument or a bad row
    raises a :class:`~hashplug.validation.HashplugError` subclass and creates (or, with ``mode="overwrite"``,
    replaces) nothing; the table and its rows are then written by one ``db.create_table`` call.

    Parameters
    ----------
    db : lancedb.DBConnection
    name : str
        A plain table name (no ``/``, ``\\``, ``..``, NUL).
    func : HashplugEmbeddings
    data : optional
        First rows: a pyarrow Table or RecordBatch, a list of dicts (or of ``LanceModel`` rows), a mapping of
        column name to values (a 2-D ndarray for the source column) or a pandas DataFrame; codes are computed
        by the function.
    mode : {"create", "overwrite"}
        ``"create"`` refuses an existing table.
    index : bool
        Build the code column's index after adding (:func:`create_lancedb_index`).
    store_model : bool
        Copy the model into the database's model store and name that copy in the table's config
        (``{db}/_hashplug/models/<sha256>.onnx``), so the table travels with the database folder (default).
        False keeps the config naming the model where ``func`` found it (an absolute path or a URI).
    **schema_kwargs
        Passed to :func:`schema` (``source``, ``target``, ``source_dim``, ``extra``, ...).

    Returns
    -------
    lancedb.table.Table
    """
    if not hasattr(db, "create_table") or not hasattr(db, "open_table"):
        raise HashplugTypeError(
            f"create_table: db must be a LanceDB connection (lancedb.connect(path)); got {type(db).__name__}."
        )
    check_column_name(name, "name", "create_table")
    if mode not in ("create", "overwrite"):
        raise HashplugError(f"create_table: mode must be 'create' or 'overwrite'; got {mode!r}.")
    if not isinstance(index, (bool, np.bool_)):
        raise HashplugTypeError(f"create_table: index must be True or False; got {index!r:.40}.")
    if not isinstance(store_model, (bool, np.bool_)):
        raise HashplugTypeError(f"create_table: store_model must be True or False; got {store_model!r:.40}.")
    source, target = schema_kwargs.get("source", "vector"), schema_kwargs.get("target", "code")
    arrow = None if data is None else _as_arrow(data)
    if arrow is not None and "extra" not in schema_kwargs:  # keep the data's other columns, with their types
        schema_kwargs["extra"] = [arrow.schema.field(c) for c in arrow.column_names if c not in (source, target)]
    sch = schema(func, **schema_kwargs)
    if mode == "create" and _table_exists(db, name):
        raise HashplugError(
            f"create_table: table {name!r} already exists; open it with db.open_table({name!r}), or pass "
            "mode='overwrite' to replace it."
        )
    rows = None if arrow is None else _rows_with_codes(arrow, sch, func, source, target)
    if store_model:  # after every check, before the table: a bad row stores nothing
        sch = schema(func, db=db, **schema_kwargs)
        if rows is not None:
            rows = rows.replace_schema_metadata(sch.metadata)
    tbl = db.create_table(name, data=rows, schema=sch, mode=mode)
    if index:
        create_lancedb_index(tbl)
    return tbl


def _table_exists(db: Any, name: str) -> bool:
    try:
        db.open_table(name)
    except (ValueError, FileNotFoundError):  # LanceDB: "Table 'x' was not found"
        return False
    return True


def _as_arrow(data: Any) -> pa.Table:
    """The rows given to :func:`create_table` as a pyarrow Table."""
    owner = "create_table"
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif isinstance(data, Mapping):
        # samples of any shape (n, *shape) are stored flat, as ingest stores them (the model reshapes them back)
        data = pa.table({k: (list(v.reshape(len(v), -1)) if isinstance(v, np.ndarray) and v.ndim > 1 else v)
                         for k, v in data.items()})
    elif isinstance(data, (list, tuple)):
        if not data:
            raise HashplugError(f"{owner}: data is an empty list; pass rows, or data=None for an empty table.")
        rows = [r.model_dump() if hasattr(r, "model_dump") else r for r in data]
        if not all(isinstance(r, Mapping) for r in rows):
            raise HashplugTypeError(f"{owner}: a list of rows must hold dicts (or LanceModel rows); got {rows[0]!r:.60}.")
        data = pa.Table.from_pylist(rows)
    elif type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        data = pa.Table.from_pandas(data, preserve_index=False)
    if not isinstance(data, pa.Table):
        raise HashplugTypeError(
            f"{owner}: data must be a pyarrow Table or RecordBatch, a list of dicts, a mapping of columns or a "
            f"pandas DataFrame; got {type(data).__name__}."
        )
    return data


def _rows_with_codes(data: pa.Table, sch: pa.Schema, func: HashplugEmbeddings, source: str, target: str) -> pa.Table:
    """``data`` as a table of ``sch`` with the codes computed (hashplug errors for bad rows; nothing written)."""
    owner = "create_table"
    if source not in data.column_names:
        raise HashplugError(f"{owner}: data has no source column {source!r}; its columns are {data.column_names}.")
    unknown = [c for c in data.column_names if c not in sch.names]
    if unknown:
        raise HashplugError(f"{owner}: data has columns {unknown} that the table does not (its columns: {sch.names}).")
    if target in data.column_names:  # recomputed (e.g. rows copied from a table whose codes were stored wrongly)
        data = data.drop_columns([target])
    if data.num_rows == 0:
        raise HashplugError(f"{owner}: data has no rows; pass data=None for an empty table.")
    from .arrow import codes_to_arrow

    codes = codes_to_arrow(func.encode(data[source]), func.layout)
    cols = []
    for f in sch:
        if f.name == target:
            cols.append(codes.cast(f.type))
        elif f.name in data.column_names:
            try:
                cols.append(data[f.name].cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise HashplugError(f"{owner}: column {f.name!r} cannot be stored as {f.type}: {exc}") from None
        else:
            cols.append(pa.nulls(data.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=sch)


def get_function(table: Any, column: str | None = None) -> tuple[str, str, HashplugEmbeddings]:
    """The hashplug embedding function of a table: ``(code_column, source_column, function)``.

    Raises
    ------
    HashplugError
        The table has no hashplug function (or several and ``column`` is not given).
    TableSchemaError
        The code column cannot hold the function's codes (:func:`check_code_column`), e.g. a float column.
    """
    refuse_async(table, "hashplug")
    if not hasattr(table, "embedding_functions") or not hasattr(table, "schema"):
        raise HashplugTypeError(
            f"expected a LanceDB table (db.open_table(name)); got {type(table).__name__} {table!r:.60}."
        )
    with database_root(table_root(table)):  # a {db} model location is the table's own database
        confs = table.embedding_functions
    funcs = {col: conf for col, conf in confs.items() if isinstance(conf.function, HashplugEmbeddings)}
    if column is not None:
        if column not in funcs:
            raise HashplugError(
                f"column {column!r} of table {getattr(table, 'name', '?')!r} has no hashplug embedding function; "
                f"hashplug columns: {sorted(funcs)}."
            )
        conf = funcs[column]
    elif len(funcs) == 1:
        conf = next(iter(funcs.values()))
    elif not funcs:
        raise HashplugError(
            f"table {getattr(table, 'name', '?')!r} has no hashplug embedding function; create it with "
            "hashplug.integrations.lancedb.schema(func, ...)."
        )
    else:
        raise HashplugError(f"table has several hashplug code columns {sorted(funcs)}; pass column=.")
    check_code_column(table, conf.vector_column, conf.function)
    return conf.vector_column, conf.source_column, conf.function


def check_table(
    table: Any, func: HashplugEmbeddings | None = None, column: str | None = None
) -> tuple[str, str, Any]:
    """Check that a table's code column matches a model before anything is written.

    Parameters
    ----------
    table : lancedb.table.Table
    func : HashplugEmbeddings or None
        The model to write with; default the table's own function.
    column : str or None
        Code column (default: the table's hashplug column).

    Returns
    -------
    (code_column, source_column, function)

    Raises
    ------
    ModelMismatchError
        The column's type or recorded ``m``/``k``/kind/sha256 differ from the model's (the message lists each).
    """
    col, src, own = get_function(table, column)
    use = func if func is not None else own
    field = table.schema.field(col)
    diffs = []
    if func is not None and own.file_sha256 and func.encoder.file_sha256 != own.file_sha256:
        diffs.append(f"sha256: table {own.file_sha256} != model {func.encoder.file_sha256}")
    if field.type != use.arrow_type():
        diffs.append(f"column type: table {field.type} != model {use.arrow_type()}")
    meta = field.metadata or {}
    enc = use.encoder
    for key, val in ((META_M, enc.m), (META_K, enc.k), (META_KIND, use.layout)):
        got = meta[key].decode() if key in meta else None
        if key == META_KIND and got is not None:
            got = OLD_LAYOUTS.get(got, got)  # 0.1.0 wrote "dense" / "sparse"
        if got is not None and got != str(val):
            diffs.append(f"{key.decode()}: table {got} != model {val}")
    if diffs:
        raise ModelMismatchError(
            f"model {use.model!r} does not match column {col!r} of table {getattr(table, 'name', '?')!r}: "
            + "; ".join(diffs)
            + ". Nothing was written."
        )
    return col, src, use


def check_code_column(table: Any, column: str, func: HashplugEmbeddings) -> None:
    """Raise :class:`~hashplug.validation.TableSchemaError` unless ``column`` has the type ``func`` writes.

    Catches the LanceDB idiom that silently stores codes as floats: a ``LanceModel`` field declared
    ``Vector(func.ndims())`` or ``list[float]`` with ``func.VectorField()`` makes a ``fixed_size_list<float>``
    column, into which LanceDB casts the codes on ``add`` (Hamming search then fails inside LanceDB). The
    message names the declaration to use and how to keep the rows already stored.
    """
    field = table.schema.field(column)
    want = func.arrow_type()
    if field.type == want:
        return
    name = getattr(table, "name", "?")
    keep = (
        f"The rows already stored are intact apart from the codes: copy them into a new table, e.g. "
        f"hashplug.integrations.lancedb.create_table(db, '{name}_v2', func, "
        f"data=table.to_arrow().drop_columns(['{column}'])), which recomputes the codes."
    )
    if func.layout == "packed":
        fix = (
            f"declare the field as `{column}: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()` "
            "in your LanceModel, or create the table with hashplug.integrations.lancedb.schema(func) or "
            "lance_model(func)."
        )
    else:
        fix = "create 'indices' tables with hashplug.integrations.lancedb.schema(func) (a list<int32> column)."
    what = (
        "LanceDB's default for Vector(n) and list[float] vector fields, so the codes were cast to floats and "
        "Hamming search cannot run on them"
        if pa.types.is_fixed_size_list(field.type) and pa.types.is_floating(field.type.value_type)
        else "not the type this function writes"
    )
    raise TableSchemaError(
        f"column {column!r} of table {name!r} is {field.type} ({what}); the hashplug function "
        f"(layout={func.layout!r}) needs {want}. Fix: {fix} {keep}"
    )


def create_lancedb_index(
    table: Any, column: str | None = None, *, num_partitions: int | None = None, replace: bool = True
) -> None:
    """Index the code column: ``IVF_FLAT`` with Hamming distance (dense) or ``LABEL_LIST`` (sparse).

    ``IVF_FLAT`` is the only vector index LanceDB builds on ``uint8`` Hamming columns that also survives
    ``optimize()`` after further adds (PQ/SQ/RQ reject uint8; IVF_HNSW_FLAT panics in optimize).
    """
    from lancedb.index import IvfFlat, LabelList

    col, _, func = get_function(table, column)
    if func.layout == "packed":
        n = table.count_rows()
        parts = num_partitions or max(1, min(256, int(np.sqrt(max(n, 1)))))
        table.create_index(
            col, config=IvfFlat(distance_type="hamming", num_partitions=parts), replace=replace
        )
    else:
        table.create_index(col, config=LabelList(), replace=replace)


def update(
    table: Any,
    where: str | None = None,
    values: Mapping[str, Any] | None = None,
    *,
    values_sql: Mapping[str, str] | None = None,
    column: str | None = None,
) -> Any:
    """``table.update`` that keeps the code column in step with the source column.

    LanceDB runs embedding functions on ``add`` and ``merge_insert`` only: ``table.update(values={"vector":
    x})`` replaces the samples and silently leaves their *old* codes in place. This call encodes the new
    sample with the table's own function and writes sample and code in one atomic update. To give many rows
    different new samples, use ``hashplug.ingest(table, rows, id_column="id")`` (``merge_insert``: each row's
    code is recomputed).

    Parameters
    ----------
    table : lancedb.table.Table
    where : str or None
        SQL filter of the rows to update (all rows when None), as in ``table.update``.
    values : mapping or None
        Column -> new value. A new sample for the source column is encoded; the code column cannot be set
        directly.
    values_sql : mapping or None
        Column -> SQL expression, for columns other than the source and code columns.
    column : str or None
        Code column, when the table has several hashplug columns.

    Returns
    -------
    The result of ``table.update``.

    Raises
    ------
    HashplugError
        ``values`` sets the code column, ``values_sql`` sets the source or code column, or the sample is
        invalid (checked before anything is written).
    """
    col, src, func = get_function(table, column)
    owner = "hashplug.update"
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise HashplugTypeError(
            f"{owner}: where must be a non-empty SQL filter (str) or None for every row; got {where!r:.60}."
        )
    for name, val in (("values", values), ("values_sql", values_sql)):
        if val is not None and not isinstance(val, Mapping):
            raise HashplugTypeError(
                f"{owner}: {name} must be a mapping of column name to new value; got {type(val).__name__} {val!r:.60}."
            )
    vals = dict(values or {})
    sql = dict(values_sql or {})
    unknown = [c for c in [*vals, *sql] if c not in table.schema.names]
    if unknown:
        raise HashplugError(f"{owner}: no column {unknown} in table {getattr(table, 'name', '?')!r}; its columns are "
                            f"{table.schema.names}.")
    bad_sql = {c: v for c, v in sql.items() if not isinstance(v, str)}
    if bad_sql:
        raise HashplugTypeError(f"{owner}: values_sql takes SQL expressions (str); got {bad_sql!r:.80}.")
    if col in vals or col in sql:
        raise HashplugError(
            f"hashplug.update: the code column {col!r} is computed by the table's function; set the source "
            f"column {src!r} instead."
        )
    if src in sql:
        raise HashplugError(
            f"hashplug.update: the source column {src!r} cannot be set by a SQL expression (its code could not "
            f"be computed); pass the new sample in values={{{src!r}: x}}, or use hashplug.ingest(table, rows, "
            "id_column=...) for per-row samples."
        )
    if src in vals and func.encoder.card.multi_input:
        # LanceDB 0.40's update cannot cast a struct literal of lists (DataFusion: unsupported CAST)
        raise HashplugError(
            f"hashplug.update cannot set the struct source column {src!r} of a named-input model in place; replace "
            "the rows with hashplug.ingest(table, rows, source_column=..., id_column=...), which upserts by id."
        )
    if src in vals:
        x = Query(vals[src]).x
        code = func.encode_query(Query(x))
        if code.shape[0] != 1:
            raise HashplugError(
                f"hashplug.update sets one sample on every matching row; got {code.shape[0]}. For per-row samples "
                "use hashplug.ingest(table, rows, id_column=...)."
            )
        depth, t = 0, table.schema.field(src).type
        while pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
            depth, t = depth + 1, t.value_type
        shape = func.input_shape if depth == len(func.input_shape) else (-1,)  # nested lists for images
        vals[src] = x.reshape(shape).tolist()
        vals[col] = code[0].tolist()
    if not vals and not sql:
        raise HashplugError("hashplug.update: nothing to update; pass values= or values_sql=.")
    return table.update(where=where, values=vals or None, values_sql=sql or None)


#: 0.1.0 name of :func:`create_lancedb_index` (deprecated, removed in 0.3.0): "index" alone also named
#: hashplug's exact Hamming index (:func:`hashplug.build_hamming_index`).
create_index = renamed_function(create_lancedb_index, "create_index", "create_lancedb_index")


# ---------------------------------------------------------------------------------------------------- async
def refuse_async(obj: Any, owner: str) -> None:
    """:class:`~hashplug.validation.HashplugTypeError` naming the async call for a LanceDB ``AsyncTable`` or
    ``AsyncConnection`` handed to a synchronous entry point (its methods are coroutines)."""
    try:
        from lancedb.db import AsyncConnection
        from lancedb.table import AsyncTable
    except ImportError:  # pragma: no cover - LanceDB is a base dependency
        return
    if isinstance(obj, (AsyncTable, AsyncConnection)):
        kind = "AsyncTable" if isinstance(obj, AsyncTable) else "AsyncConnection"
        raise HashplugTypeError(
            f"{owner}: got a LanceDB {kind} (from lancedb.connect_async), whose methods are coroutines; await the "
            "async entry points instead: `await hashplug.asearch(table, x, limit=...)`, `await hashplug.aingest("
            "table_or_db, source, ...)`, `await hashplug.aadd(table, rows)`, or use lancedb.connect(...) for the "
            "synchronous calls."
        )


# ---------------------------------------------------------------------------------------------------- models
def _hashplug_entries(table: Any, column: str | None, owner: str) -> tuple[list[dict[str, Any]], int]:
    """The table's saved function configs (LanceDB's JSON) and the index of its hashplug one, read without
    building any function (so a table whose model is missing can be re-pointed)."""
    import json

    meta = table.schema.metadata or {}
    raw = meta.get(b"embedding_functions")
    name = getattr(table, "name", "?")
    if raw is None:
        raise HashplugError(f"{owner}: table {name!r} has no embedding function; nothing to relocate.")
    entries = json.loads(raw)
    ours = [i for i, e in enumerate(entries) if e.get("name") == "hashplug"]
    if column is not None:
        ours = [i for i in ours if entries[i].get("vector_column") == column]
    if not ours:
        cols = sorted(e.get("vector_column") for e in entries if e.get("name") == "hashplug")
        raise HashplugError(
            f"{owner}: table {name!r} has no hashplug code column{'' if column is None else f' {column!r}'} "
            f"(hashplug columns: {cols})."
        )
    if len(ours) > 1:
        cols = sorted(entries[i].get("vector_column") for i in ours)
        raise HashplugError(f"{owner}: table {name!r} has several hashplug code columns {cols}; pass column=.")
    return entries, ours[0]


def _saved_config(entry: dict[str, Any]) -> dict[str, Any]:
    import warnings

    from .store import upgrade_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 0.1.0's code= / sha256= are upgraded, not used
        return upgrade_config(dict(entry.get("model") or {}))


def model_location(table: Any, column: str | None = None) -> dict[str, Any]:
    """Where a table's model is, from its saved config alone (nothing is loaded).

    Returns
    -------
    dict
        ``model`` (the saved location: ``{db}/...``, a URI, a path or ``$var:...``), ``file_sha256``, ``root``
        (the database folder or URI ``{db}`` stands for), ``resolved`` (the location with ``{db}``
        substituted) and ``exists`` (whether a file is there).
    """
    from .._locations import exists, join
    from .store import DB_PREFIX, is_db_reference

    refuse_async(table, "model_location")
    entries, i = _hashplug_entries(table, column, "model_location")
    cfg = _saved_config(entries[i])
    model = cfg.get("model")
    root = table_root(table)
    resolved = model
    if is_db_reference(model):
        resolved = join(root, model[len(DB_PREFIX):]) if root else None
    return {"model": model, "file_sha256": cfg.get("file_sha256"), "root": root, "resolved": resolved,
            "exists": bool(resolved) and not str(resolved).startswith("$var:") and exists(str(resolved))}


def relocate_model(table: Any, location: Any = None, *, column: str | None = None, copy: bool = True) -> str:
    """Re-point a table's embedding function at a copy of its model, checked by sha256.

    For a database that was moved or copied (to another folder or machine) whose config still names the
    model where it was (an absolute path, as hashplug 0.1.x / 0.2 wrote), a model moved to object storage, or
    to make an existing table travel with its database. The copy at ``location`` must have the sha256 the
    table recorded when its codes were written (``file_sha256``, 0.1.0's ``sha256``): any other file is
    refused, and nothing changes. Only the table's schema metadata changes (one commit, through pylance's
    ``update_schema_metadata``); rows, codes and indexes stay. 0.1.0's keys are rewritten in today's names
    (``layout``, ``file_sha256``).

    Parameters
    ----------
    table : lancedb.table.Table
        The table (its function need not open: the saved config is read as text).
    location : str, PathLike or None
        The model copy: a local path or a URI (``s3://``, ``gs://``, ...). None: the model the table opens
        with now (its saved location, or any copy with its sha256 this process already read).
    column : str or None
        The code column, when the table has several hashplug columns.
    copy : bool
        True (default): store the bytes in the database's model store, ``<db>/_hashplug/models/<sha256>.onnx``
        (once, atomically), and name that copy relative to the database (``{db}/_hashplug/models/<sha256>.onnx``),
        so the table travels with the database folder from then on. False: name ``location`` itself (an
        absolute path or the URI), e.g. one model on object storage shared by many databases.

    Returns
    -------
    str
        The location the config names now.

    Raises
    ------
    ModelMismatchError
        The file's sha256 (or its ``m`` / ``k`` / code kind) is not the table's; nothing changed.
    ModelNotFoundError, ModelFileError
        Nothing at ``location`` (or, with ``location=None``, nowhere the table looks), or not a hashplug model.
    HashplugError
        The table records no sha256 to check against, pylance is not installed, or ``copy=False`` without a
        ``location``.

    Notes
    -----
    Handles opened before the call keep the old config (LanceDB caches a table's functions per handle):
    this handle is refreshed; reopen others (``db.open_table(name)``).
    """
    import json
    import os

    from .._locations import describe, is_uri, local_path, read_bytes
    from .._onnx_wire import DEFAULT_MAX_BYTES
    from ..runtime import OnnxEncoder
    from .store import resolve_encoder, store_model

    owner = "hashplug.relocate_model"
    refuse_async(table, owner)
    if not hasattr(table, "schema") or not hasattr(table, "to_lance"):
        raise HashplugTypeError(
            f"{owner}: table must be an open LanceDB table (db.open_table(name)); got {type(table).__name__} "
            f"{table!r:.60}."
        )
    if not isinstance(copy, (bool, np.bool_)):
        raise HashplugTypeError(f"{owner}: copy must be True or False; got {copy!r:.40}.")
    if location is not None and (not isinstance(location, (str, os.PathLike)) or not os.fspath(location)):
        raise HashplugTypeError(
            f"{owner}: location must be the path or URI of the model's ONNX file (or None for the model the table "
            f"uses now); got {type(location).__name__} {location!r:.60}."
        )
    if location is None and not copy:
        raise HashplugError(f"{owner}: copy=False names a new location; pass location= (a path or a URI).")
    if hasattr(table, "checkout_latest"):
        table.checkout_latest()
    entries, i = _hashplug_entries(table, column, owner)
    cfg = _saved_config(entries[i])
    name = getattr(table, "name", "?")
    want = cfg.get("file_sha256")
    if not isinstance(want, str) or len(want) != 64 or want.startswith("$var:"):
        raise HashplugError(
            f"{owner}: table {name!r} records no sha256 of its model ({want!r}), so no copy can be checked against "
            "it; recreate the table with hashplug (it records one)."
        )
    root = table_root(table)
    if location is None:
        if not isinstance(cfg.get("model"), str) or cfg["model"].startswith("$var:"):
            raise HashplugError(f"{owner}: the table's model is named by a LanceDB variable; pass location=.")
        with database_root(root):
            enc = resolve_encoder(cfg["model"], want, cfg.get("providers"), cfg.get("batch_size", 8192))
        data, where = enc.model_bytes, enc.origin
    else:
        where = describe(os.fspath(location))
        data = read_bytes(os.fspath(location), DEFAULT_MAX_BYTES)
    import hashlib

    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ModelMismatchError(
            f"{owner}: {where!r} is not the model table {name!r} was built with: its sha256 is {got}, the table "
            f"records {want}. Nothing was changed; point it at a copy of the original file."
        )
    enc = OnnxEncoder.from_bytes(data, sha256=want, origin=where)
    diffs = [f"{key}: table {cfg[key]} != file {getattr(enc, key)}" for key in ("m", "k", "code_kind")
             if cfg.get(key) is not None and cfg[key] != getattr(enc, key)]
    if diffs:
        raise ModelMismatchError(f"{owner}: {where!r} does not match the table's saved config ({'; '.join(diffs)}).")
    try:
        import lance  # noqa: F401 - pylance: LanceDB itself cannot change a table's schema metadata
    except ImportError:
        raise HashplugError(
            f"{owner} needs pylance to rewrite the table's schema metadata (LanceDB has no call for it): "
            "pip install 'hashplug[lance]' (or pylance). Nothing was changed."
        ) from None
    if copy:
        new_model = store_model(root if root is not None else table, enc, owner=owner)
    else:
        loc = os.fspath(location)
        new_model = loc if is_uri(loc) else local_path(loc)
    new_cfg = {**cfg, "model": new_model}
    for key, val in (("m", enc.m), ("k", enc.k), ("code_kind", enc.code_kind)):
        new_cfg.setdefault(key, val)
    if new_cfg != entries[i].get("model"):
        entries[i] = {**entries[i], "model": new_cfg}
        ds = table.to_lance()
        ds.update_schema_metadata({"embedding_functions": json.dumps(entries, indent=2)})
        if hasattr(table, "checkout_latest"):
            table.checkout_latest()
        table.__dict__.pop("embedding_functions", None)  # LanceDB's cached functions of this handle
    return new_model
