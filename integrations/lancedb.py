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

Serving side: never imports torch or onnx; the encoder is only an ONNX file opened with
:class:`hashplug.runtime.OnnxEncoder`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from lancedb.embeddings import EmbeddingFunction, EmbeddingFunctionConfig, get_registry, register
from pydantic import PrivateAttr

from ..ranking import order_rows
from ..validation import HashplugError, ModelMismatchError, TableSchemaError, check_array
from ._common import (
    CODE_KINDS,
    META_K,
    META_KIND,
    META_M,
    META_SHA,
    code_type,
    codes_to_arrow,
    column_to_numpy,
    hamming_to_query,
    load_encoder_cached,
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
]

_QUERY_PREFIX = "hashplug-query:v1:"


# ---------------------------------------------------------------------------------------------------- Query
class Query:
    """A raw query for a hashplug table, encoded by the table's own embedding function.

    ``table.search(list_or_ndarray)`` uses the array itself as the search vector; wrapping it in ``Query``
    routes it through the table's :class:`HashplugEmbeddings` instead::

        table.search(hashplug.Query(x)).distance_type("hamming").limit(10).to_arrow()

    (add ``vector_column_name="code"`` when the table has another fixed-size vector column). ``str(q)`` is an
    exact text form of the query (base64 of the float32 values); LanceDB passes only strings to rerankers, so
    ``.rerank(reranker, query_string=str(q))`` lets :class:`~hashplug.integrations.reranker.HammingReranker`
    and :class:`~hashplug.integrations.reranker.FloatRescoreReranker` recover the query, and
    ``table.search(str(q))`` works too.

    Parameters
    ----------
    x : array-like
        One sample (its per-sample shape, e.g. ``(d,)`` or ``(28, 28)``), or a batch with a leading axis.
    """

    def __init__(self, x: Any) -> None:
        if isinstance(x, Query):
            x = x.x
        self.x = check_array(
            x, name="query", ndim=None, dtype=np.float32, finite=True, owner="hashplug.Query"
        )
        if self.x.ndim == 0:
            raise HashplugError("hashplug.Query: the query must be an array of features, not a scalar.")

    def to_string(self) -> str:
        """Exact, self-describing text form: ``hashplug-query:v1:<shape>:<base64 float32>``."""
        shape = ",".join(str(s) for s in self.x.shape)
        return f"{_QUERY_PREFIX}{shape}:{base64.b64encode(self.x.astype('<f4').tobytes()).decode('ascii')}"

    __str__ = to_string

    def __repr__(self) -> str:
        return f"hashplug.Query(shape={self.x.shape})"

    @staticmethod
    def is_query_string(s: Any) -> bool:
        """Whether ``s`` is the string form of a :class:`Query`."""
        return isinstance(s, str) and s.startswith(_QUERY_PREFIX)

    @classmethod
    def from_string(cls, s: str) -> Query:
        """Parse :meth:`to_string` output."""
        if not cls.is_query_string(s):
            raise HashplugError(
                f"not a hashplug query string (expected the prefix {_QUERY_PREFIX!r}; build one with "
                f"str(hashplug.Query(x))); got {s[:60]!r}."
            )
        try:
            shape_txt, data = s[len(_QUERY_PREFIX) :].split(":", 1)
            shape = tuple(int(v) for v in shape_txt.split(",") if v)
            x = np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(shape)
        except Exception as exc:
            raise HashplugError(f"malformed hashplug query string: {exc}") from None
        return cls(x.astype(np.float32))


# ---------------------------------------------------------------------------------------------------- function
@register("hashplug")
class HashplugEmbeddings(EmbeddingFunction):
    """LanceDB embedding function that writes binary hash codes computed by a hashplug ONNX encoder.

    Create it through the registry; the arguments are saved (as JSON) in the table's schema metadata and the
    function is rebuilt from them whenever LanceDB opens, adds to or searches the table::

        func = get_registry().get("hashplug").create(model="enc.onnx", code="dense")

    Parameters
    ----------
    model : str
        Path of the ONNX file (stored absolute, so a fresh process finds it from any working directory).
    sha256 : str or None
        Expected sha256 of the file's bytes. Filled in at creation; when the table is reopened a different
        file at ``model`` is refused with :class:`~hashplug.validation.ModelMismatchError`.
    code : {"dense", "sparse"}
        Code column layout: ``"dense"`` packed bits in ``fixed_size_list<uint8>[n_bytes]`` (LanceDB's native
        ``distance_type("hamming")`` search, ``IVF_FLAT`` index), or ``"sparse"`` the k active unit ids of a
        k-hot encoder in ``list<int32>`` (``LABEL_LIST`` index, searched by :func:`search`).
    providers : list of str or None
        onnxruntime execution providers (default: onnxruntime's choice).
    batch_size : int
        Rows per onnxruntime call.
    m, k, code_kind : optional
        The encoder's shape, recorded at creation and checked against the file when the table is reopened.
    """

    model: str
    sha256: str | None = None
    code: Literal["dense", "sparse"] = "dense"
    providers: list[str] | None = None
    batch_size: int = 8192
    m: int | None = None
    k: int | None = None
    code_kind: str | None = None
    max_retries: int = 0  # a local model does not benefit from LanceDB's exponential-backoff retries

    _encoder: Any = PrivateAttr(default=None)

    @classmethod
    def create(cls, **kwargs: Any) -> HashplugEmbeddings:
        """Create the function, check the model file, and record its absolute path, sha256 and shape."""
        inst = super().create(**kwargs)
        inst._load_and_check()  # outside pydantic validation, so our own error types reach the caller
        args = dict(inst._original_args)
        if not (isinstance(args.get("model"), str) and args["model"].startswith("$var:")):
            args["model"] = inst.model
        enc = inst.encoder
        args.setdefault("sha256", None)
        if args["sha256"] is None or (isinstance(args["sha256"], str) and args["sha256"].startswith("$var:")):
            args["sha256"] = enc.file_sha256
        for key in ("m", "k", "code_kind"):
            if args.get(key) is None:
                args[key] = getattr(enc, key)
        inst._original_args = args
        return inst

    def model_post_init(self, __context: Any) -> None:
        from pathlib import Path

        if self.code not in CODE_KINDS:  # pragma: no cover - pydantic's Literal already checks
            raise HashplugError(f"code must be one of {list(CODE_KINDS)}; got {self.code!r}.")
        if int(self.batch_size) < 1:
            raise HashplugError(f"batch_size must be >= 1; got {self.batch_size}.")
        self.model = str(Path(self.model).expanduser().resolve())

    def _load_and_check(self) -> Any:
        enc = load_encoder_cached(self.model, self.providers, self.batch_size)
        if self.sha256 is not None and self.sha256 != enc.file_sha256:
            raise ModelMismatchError(
                f"The ONNX file at {self.model!r} is not the model this table was built with: its sha256 is "
                f"{enc.file_sha256} but the table's saved config expects {self.sha256} (file sha256; the file's "
                f"weights_sha256 is {enc.weights_sha256}). Put the original file back at that path, or rebuild the "
                "table's codes with the new model."
            )
        diffs = [
            f"{key}: table {want} != file {getattr(enc, key)}"
            for key, want in (("m", self.m), ("k", self.k), ("code_kind", self.code_kind))
            if want is not None and want != getattr(enc, key)
        ]
        if diffs:
            raise ModelMismatchError(
                f"The ONNX file at {self.model!r} does not match the saved config ({'; '.join(diffs)})."
            )
        if self.code == "sparse" and enc.code_kind != "khot":
            raise ModelMismatchError(
                f"code='sparse' stores the active unit ids of k-hot codes, but {self.model!r} produces "
                f"{enc.code_kind} codes (m={enc.m}); use code='dense'."
            )
        self._encoder = enc
        return enc

    # ------------------------------------------------------------------ encoder facts
    @property
    def encoder(self) -> Any:
        """The :class:`~hashplug.runtime.OnnxEncoder` (shared by every instance using the same file)."""
        if self._encoder is None:  # constructed directly rather than through create()
            return self._load_and_check()
        return self._encoder

    @property
    def n_bytes(self) -> int:
        """Bytes per packed code."""
        return int(self.encoder.n_bytes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape of the encoder."""
        return tuple(int(s) for s in self.encoder.input_shape)

    def ndims(self) -> int:
        """Length of one code: ``n_bytes`` (dense) or ``k`` (sparse)."""
        return self.n_bytes if self.code == "dense" else int(self.encoder.k)

    def arrow_type(self) -> pa.DataType:
        """Arrow type of the code column this function writes."""
        return code_type(self.code, self.n_bytes)

    # ------------------------------------------------------------------ encoding
    def encode(self, X: Any) -> np.ndarray:
        """Encode samples to the column's form: packed uint8 (n, n_bytes) or int32 ids (n, k).

        ``X`` may be an ndarray of shape (n, *input_shape) or (n, prod(input_shape)), or an Arrow column.
        """
        arr = column_to_numpy(X, self.input_shape, name=f"input of {self.model!r}")
        if arr.shape[0] == 0:
            w = self.ndims()
            return np.zeros((0, w), dtype=np.uint8 if self.code == "dense" else np.int32)
        if self.code == "dense":
            return self.encoder.encode(arr, format="packed")
        return self.encoder.encode(arr, format="indices").astype(np.int32)

    def encode_query(self, query: Any) -> np.ndarray:
        """Encode a :class:`Query`, its string form, or a raw array to codes of shape (n, width)."""
        if isinstance(query, str):
            query = Query.from_string(query)
        q = query if isinstance(query, Query) else Query(query)
        x = q.x
        if x.shape == self.input_shape or (x.ndim == 1 and x.size == int(np.prod(self.input_shape))):
            x = x.reshape((1, *self.input_shape))
        return self.encode(x)

    def encode_arrow(self, col: Any) -> pa.Array:
        """Encode an Arrow column of samples to an Arrow code column of :meth:`arrow_type`."""
        return codes_to_arrow(self.encode(col), self.code)

    def compute_source_embeddings(self, data: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Codes of the source column (called by LanceDB on ``table.add``)."""
        codes = self.encode(data)
        return list(codes)

    def compute_query_embeddings(self, query: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Code of a :class:`Query` (or its string form), called by LanceDB on ``table.search(Query(x))``."""
        if self.code == "sparse":
            raise HashplugError(
                "This table stores sparse k-hot codes (list<int32>), which LanceDB's vector search cannot rank; "
                "use hashplug.search(table, x, limit=...) instead of table.search(hashplug.Query(x))."
            )
        if not isinstance(query, (Query, str)):
            raise HashplugError(
                f"hashplug tables take raw queries wrapped as hashplug.Query(x); got {type(query).__name__}."
            )
        return list(self.encode_query(query))

    # LanceDB retries embedding calls with exponential backoff (for remote APIs); a local model's errors are
    # final, so they are raised at once with their own message.
    def compute_source_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return self.compute_source_embeddings(*args, **kwargs)

    def compute_query_embeddings_with_retry(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return self.compute_query_embeddings(*args, **kwargs)

    def __hash__(self) -> int:
        return hash((self.model, self.sha256, self.code))


# ---------------------------------------------------------------------------------------------------- schema
def code_field(func: HashplugEmbeddings, name: str = "code") -> pa.Field:
    """The code column's field, with the model's ``m``, ``k``, code kind and sha256 in its metadata."""
    enc = func.encoder
    meta = {
        META_M: str(enc.m).encode(),
        META_K: str(enc.k).encode(),
        META_KIND: func.code.encode(),
        META_SHA: str(enc.file_sha256).encode(),
    }
    return pa.field(name, func.arrow_type(), nullable=True, metadata=meta)


def _source_type(
    func: HashplugEmbeddings, source_dim: int | None, source_shape: Sequence[int] | None, source_type: str
) -> pa.DataType:
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

    Returns
    -------
    pyarrow.Schema
    """
    fields: list[pa.Field] = []
    if extra:
        if isinstance(extra, Mapping):
            fields += [pa.field(n, t) for n, t in extra.items()]
        else:
            fields += list(extra)
    fields.append(pa.field(source, _source_type(func, source_dim, source_shape, source_type)))
    fields.append(code_field(func, target))
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
) -> type:
    """A ``LanceModel`` subclass for a dense hashplug table (``Vector(n_bytes, value_type=pa.uint8())`` codes).

    Writing the model by hand, declare the code field as ``Vector(func.ndims(), value_type=pa.uint8())``:
    LanceDB's default ``Vector(n)`` (and a ``list[float]`` ``VectorField``) make a *float* column, into which
    LanceDB silently casts the codes, and Hamming search then fails. Declare the source field as ``list[float]``
    rather than ``Vector(d)``, or every ``table.search`` needs ``vector_column_name``.

    Parameters
    ----------
    func : HashplugEmbeddings
        Must use ``code="dense"`` (sparse tables: use :func:`schema`).
    source, target : str
        Field names of the samples and of the codes.
    source_dim : int or None
        Features per sample (default: the model's).
    extra : mapping of field name to Python type, optional
        Further fields, e.g. ``{"id": int, "label": str}``.
    name : str
        Class name.

    Returns
    -------
    type
        Pass it as ``db.create_table(name, schema=Model)``.
    """
    from lancedb.pydantic import LanceModel, Vector
    from pydantic import create_model

    if func.code != "dense":
        raise HashplugError(
            "lance_model() builds dense tables; for code='sparse' use hashplug.integrations.lancedb.schema()."
        )
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
    **schema_kwargs: Any,
) -> Any:
    """Create a hashplug table with the right schema, optionally add data and build the code index.

    Parameters
    ----------
    db : lancedb.DBConnection
    name : str
    func : HashplugEmbeddings
    data : optional
        Rows to add (anything ``table.add`` accepts; codes are computed by the function).
    mode : {"create", "overwrite"}
    index : bool
        Build the code column's index after adding (:func:`create_index`).
    **schema_kwargs
        Passed to :func:`schema` (``source``, ``target``, ``source_dim``, ``extra``, ...).

    Returns
    -------
    lancedb.table.Table
    """
    tbl = db.create_table(name, schema=schema(func, **schema_kwargs), mode=mode)
    if data is not None:
        tbl.add(data)
    if index:
        create_index(tbl)
    return tbl


# ---------------------------------------------------------------------------------------------------- table facts
def get_function(table: Any, column: str | None = None) -> tuple[str, str, HashplugEmbeddings]:
    """The hashplug embedding function of a table: ``(code_column, source_column, function)``.

    Raises
    ------
    HashplugError
        The table has no hashplug function (or several and ``column`` is not given).
    """
    funcs = {
        col: conf
        for col, conf in table.embedding_functions.items()
        if isinstance(conf.function, HashplugEmbeddings)
    }
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
    check_code_column(table, col, own)
    use = func if func is not None else own
    field = table.schema.field(col)
    diffs = []
    if func is not None and own.sha256 and func.encoder.file_sha256 != own.sha256:
        diffs.append(f"sha256: table {own.sha256} != model {func.encoder.file_sha256}")
    if field.type != use.arrow_type():
        diffs.append(f"column type: table {field.type} != model {use.arrow_type()}")
    meta = field.metadata or {}
    enc = use.encoder
    for key, val in ((META_M, enc.m), (META_K, enc.k), (META_KIND, use.code)):
        if key in meta and meta[key].decode() != str(val):
            diffs.append(f"{key.decode()}: table {meta[key].decode()} != model {val}")
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
    if func.code == "dense":
        fix = (
            f"declare the field as `{column}: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()` "
            "in your LanceModel, or create the table with hashplug.integrations.lancedb.schema(func) or "
            "lance_model(func)."
        )
    else:
        fix = "create sparse tables with hashplug.integrations.lancedb.schema(func) (a list<int32> column)."
    what = (
        "LanceDB's default for Vector(n) and list[float] vector fields, so the codes were cast to floats and "
        "Hamming search cannot run on them"
        if pa.types.is_fixed_size_list(field.type) and pa.types.is_floating(field.type.value_type)
        else "not the type this function writes"
    )
    raise TableSchemaError(
        f"column {column!r} of table {name!r} is {field.type} ({what}); the hashplug function "
        f"(code={func.code!r}) needs {want}. Fix: {fix} {keep}"
    )


def create_index(
    table: Any, column: str | None = None, *, num_partitions: int | None = None, replace: bool = True
) -> None:
    """Index the code column: ``IVF_FLAT`` with Hamming distance (dense) or ``LABEL_LIST`` (sparse).

    ``IVF_FLAT`` is the only vector index LanceDB builds on ``uint8`` Hamming columns that also survives
    ``optimize()`` after further adds (PQ/SQ/RQ reject uint8; IVF_HNSW_FLAT panics in optimize).
    """
    from lancedb.index import IvfFlat, LabelList

    col, _, func = get_function(table, column)
    check_code_column(table, col, func)
    if func.code == "dense":
        n = table.count_rows()
        parts = num_partitions or max(1, min(256, int(np.sqrt(max(n, 1)))))
        table.create_index(
            col, config=IvfFlat(distance_type="hamming", num_partitions=parts), replace=replace
        )
    else:
        table.create_index(col, config=LabelList(), replace=replace)


# ---------------------------------------------------------------------------------------------------- search
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
    k: int | None = None,
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
        Rows to return (``k=`` is the deprecated 0.1.0 name; it still works, with a ``DeprecationWarning``).
    reranker : lancedb.rerankers.Reranker or None
        Applied to ``limit * reranker.overfetch`` candidates (default over-fetch 1), then trimmed to ``limit``.
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

    Returns
    -------
    pyarrow.Table
        The rows, nearest first, with ``_distance`` (Hamming, float32) and the reranker's columns.
    """
    from ..validation import check_int_param

    if k is not None:
        import warnings

        warnings.warn(
            "hashplug.search(k=...) is deprecated and will be removed in 0.3; use limit=.",
            DeprecationWarning,
            stacklevel=2,
        )
        limit = k
    k = check_int_param(limit, "limit", "hashplug.search", 1)
    col, _, func = get_function(table, column)
    check_code_column(table, col, func)
    q = x if isinstance(x, Query) else Query(x)
    codes = func.encode_query(q)
    if codes.shape[0] != 1:
        raise HashplugError(
            f"hashplug.search takes one query sample; got {codes.shape[0]}. Loop over the queries."
        )
    code = codes[0]
    fetch = k * max(1, int(getattr(reranker, "overfetch", 1))) if reranker is not None else k
    user_cols = None if columns is None else list(columns)
    sel = user_cols
    if reranker is not None and sel is not None:
        need = [col] + [c for c in (getattr(reranker, "column", None),) if isinstance(c, str)]
        sel = list(dict.fromkeys([*sel, *need]))
    if func.code == "dense":
        qb = table.search(code, vector_column_name=col).distance_type("hamming").limit(fetch)
        if where:
            qb = qb.where(where, prefilter=True)
        if sel is not None:
            qb = qb.select([*sel, "_distance"])
        if nprobes is not None:
            qb = qb.nprobes(int(nprobes))
        if exact:
            qb = qb.bypass_vector_index()
        res = qb.to_arrow()
    else:
        res = _sparse_search(table, col, code, fetch, where, sel)
    if reranker is not None:
        res = _apply_reranker(
            reranker, res, code=code, query=q, func=func, column=col, query_string=query_string
        )
        res = res.slice(0, k)
    if user_cols is not None:
        keep = [c for c in res.column_names if c in user_cols or c.startswith("_")]
        res = res.select(keep)
    return res


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
    check_code_column(table, col, func)
    vals = dict(values or {})
    sql = dict(values_sql or {})
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


def query_code(table: Any, x: Any, column: str | None = None) -> np.ndarray:
    """The code of one raw query under a table's function (packed uint8, or int32 ids for sparse tables)."""
    _, _, func = get_function(table, column)
    return func.encode_query(x)[0]


def hamming(table_or_func: Any, query: Any, col: Any) -> np.ndarray:
    """Hamming distances between a raw query (encoded by the table's function) and an Arrow code column."""
    func = table_or_func if isinstance(table_or_func, HashplugEmbeddings) else get_function(table_or_func)[2]
    return hamming_to_query(func.encode_query(query)[0], col)
