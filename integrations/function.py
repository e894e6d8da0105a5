"""The ``"hashplug"`` LanceDB embedding function and :class:`Query`, the raw-query wrapper.

``get_registry().get("hashplug").create(model="enc.onnx", layout="packed" | "indices")``: LanceDB saves the
arguments (as JSON) in the table's schema metadata and rebuilds the function from them whenever it opens,
adds to or searches the table; the ONNX file is opened with :class:`hashplug.runtime.OnnxEncoder`, whose
session cache is shared by every rebuild. Where the saved config finds its model (a copy in the database's
own model store, a URI, a path; always checked by sha256): :mod:`hashplug.integrations.store`.

Serving side: numpy, pyarrow, pydantic, LanceDB and the ONNX runtime only.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from lancedb.embeddings import EmbeddingFunction, register
from pydantic import PrivateAttr, ValidationError

from .._locations import is_uri
from ..codes import INDEX_DTYPE
from ..validation import (
    HashplugError,
    TableSchemaError,
    check_array,
    check_path,
)
from .arrow import (
    LAYOUTS,
    check_width,
    code_type,
    codes_to_arrow,
    n_samples,
    normalize_layout,
    sample_converter,
)
from .store import (
    check_model,
    connection_root,
    database_root,
    is_db_reference,
    resolve_encoder,
    store_model,
    upgrade_config,
)

__all__ = ["HashplugEmbeddings", "Query", "load_encoder_cached"]




def load_encoder_cached(
    path: str | os.PathLike, providers: list[str] | None = None, batch_size: int | None = None
) -> Any:
    """An :class:`~hashplug.runtime.OnnxEncoder` for ``path``, cheap to call on every LanceDB rebuild.

    LanceDB rebuilds an embedding function from the table's saved config on every ``add()`` (twice) and on
    every search. The onnxruntime session behind the encoder comes from the runtime's one session cache
    (keyed on the file's path and content; a file replaced on disk is reloaded and its new sha256 is then
    checked by the caller), so building the small encoder object here costs a ``stat``.

    Parameters
    ----------
    path : str or PathLike
        The ONNX file: a local path or a URI (``s3://...``; :mod:`hashplug._locations`).
    providers : list of str or None
        onnxruntime execution providers.
    batch_size : int or None
        Rows per onnxruntime call (None: sized by the model's working memory per row,
        :func:`hashplug.runtime.rows_per_run`).

    Returns
    -------
    OnnxEncoder
    """
    return resolve_encoder(os.fspath(path), None, providers, batch_size)


_QUERY_PREFIX = "hashplug-query:v1:"
_QUERY_PREFIX_NAMED = "hashplug-query:v2:"


# ---------------------------------------------------------------------------------------------------- Query
def _parse_query_string(s: str) -> tuple[np.ndarray | None, dict[str, np.ndarray] | None]:
    """``(x, named)`` of a query string (:meth:`Query.to_string`); HashplugError when it is not one."""
    if not (s.startswith(_QUERY_PREFIX) or s.startswith(_QUERY_PREFIX_NAMED)):
        raise HashplugError(
            f"not a hashplug query string (expected the prefix {_QUERY_PREFIX!r}; build one with "
            f"hashplug.Query(x)); got {s[:60]!r}."
        )
    try:
        if s.startswith(_QUERY_PREFIX_NAMED):
            named = {}
            for part in s[len(_QUERY_PREFIX_NAMED) :].split(";"):
                key, rest = part.split("=", 1)
                shape_txt, data = rest.split(":", 1)
                shape = tuple(int(v) for v in shape_txt.split(",") if v)
                named[key] = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4").reshape(shape)
            return None, named
        shape_txt, data = s[len(_QUERY_PREFIX) :].split(":", 1)
        shape = tuple(int(v) for v in shape_txt.split(",") if v)
        return np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4").reshape(shape), None
    except Exception as exc:
        raise HashplugError(f"malformed hashplug query string: {exc}") from None


class Query(str):
    """A raw query for a hashplug table, encoded by the table's own embedding function.

    ``table.search(list_or_ndarray)`` uses the array itself as the search vector; wrapping it in ``Query``
    routes it through the table's :class:`HashplugEmbeddings` instead::

        table.search(hashplug.Query(x)).distance_type("hamming").limit(10).to_arrow()

    (add ``vector_column_name="code"`` when the table has another fixed-size vector column). A ``Query`` *is* a
    ``str``: its value is an exact text form of the query (``hashplug-query:v1:<shape>:<base64 float32>``). So
    LanceDB, which hands rerankers only the query string, remembers it, and
    ``table.search(hashplug.Query(x)).limit(40).rerank(hashplug.HammingReranker()).to_arrow()`` works as
    written; ``Query(str(q))`` parses the text form back.

    Parameters
    ----------
    x : array-like, a mapping of named arrays, or a query string
        One sample (its per-sample shape, e.g. ``(d,)`` or ``(28, 28)``), or a batch with a leading axis. For
        a model with several named inputs (NeuroHash), a dict ``{name: array}`` for one image (per-sample
        shapes) or a batch; ``q.named`` holds it (``q.x`` is then None).
    """

    x: np.ndarray | None
    named: dict[str, np.ndarray] | None

    def __new__(cls, x: Any) -> Query:
        from collections.abc import Mapping

        if isinstance(x, Query):
            x = x.named if x.named is not None else x.x
        elif isinstance(x, str):
            arr, named_in = _parse_query_string(x)
            x = named_in if named_in is not None else arr
        named: dict[str, np.ndarray] | None = None
        arr = None
        if isinstance(x, Mapping):
            if not x:
                raise HashplugError("hashplug.Query: the mapping of named inputs is empty.")
            named = {
                str(k): check_array(v, name=f"query input {k!r}", ndim=None, dtype=np.float32, finite=True,
                                    owner="hashplug.Query")
                for k, v in x.items()
            }
            text = _QUERY_PREFIX_NAMED + ";".join(
                f"{k}={','.join(str(s) for s in v.shape)}:{base64.b64encode(v.astype('<f4').tobytes()).decode('ascii')}"
                for k, v in named.items()
            )
        else:
            arr = check_array(x, name="query", ndim=None, dtype=np.float32, finite=True, owner="hashplug.Query")
            if arr.ndim == 0:
                raise HashplugError("hashplug.Query: the query must be an array of features, not a scalar.")
            shape = ",".join(str(s) for s in arr.shape)
            text = f"{_QUERY_PREFIX}{shape}:{base64.b64encode(arr.astype('<f4').tobytes()).decode('ascii')}"
        self = super().__new__(cls, text)
        self.x = arr
        self.named = named
        return self

    def to_string(self) -> str:
        """Exact, self-describing text form (a plain ``str``): ``hashplug-query:v1:<shape>:<base64 float32>``
        (named inputs: ``hashplug-query:v2:<name>=<shape>:<base64>;...``)."""
        return str.__str__(self)

    __str__ = to_string

    def __repr__(self) -> str:
        if self.named is not None:
            return f"hashplug.Query({ {k: v.shape for k, v in self.named.items()} })"
        return f"hashplug.Query(shape={self.x.shape})"

    @staticmethod
    def is_query_string(s: Any) -> bool:
        """Whether ``s`` is a :class:`Query` or its string form."""
        return isinstance(s, str) and (s.startswith(_QUERY_PREFIX) or s.startswith(_QUERY_PREFIX_NAMED))

    @classmethod
    def from_string(cls, s: str) -> Query:
        """Parse :meth:`to_string` output (a :class:`Query` is returned as it is)."""
        if isinstance(s, Query):
            return s
        if not isinstance(s, str):
            raise HashplugError(f"not a hashplug query string: got {type(s).__name__}.")
        return cls(s)


def _unwrap_annotation(tp: Any) -> Any:
    """``X`` from ``Optional[X]``, ``X | None`` and ``Annotated[X, ...]`` (else ``tp`` itself)."""
    import types
    import typing

    for _ in range(4):
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif (origin is typing.Union or origin is types.UnionType) and len(args) == 1:
            tp = args[0]
        else:
            break
    return tp


def _describe_annotation(tp: Any) -> tuple[str, str, bool]:
    """``(how it reads, the Arrow type LanceDB makes of it for a VectorField, whether it is a fixed-size
    vector)`` of a LanceModel annotation."""
    import inspect
    import typing

    from lancedb.pydantic import FixedSizeListMixin

    if inspect.isclass(tp) and issubclass(tp, FixedSizeListMixin):
        if getattr(tp, "is_multi_vector", lambda: False)():
            return f"MultiVector({tp.dim()})", f"list<fixed_size_list<{tp.value_arrow_type()}>[{tp.dim()}]>", True
        vt = tp.value_arrow_type()
        text = f"Vector({tp.dim()})" if vt == pa.float32() else f"Vector({tp.dim()}, value_type=pa.{vt}())"
        return text, str(pa.list_(vt, tp.dim())), True
    if typing.get_origin(tp) is list and typing.get_args(tp) == (float,):
        return "list[float]", "fixed_size_list<float>", False
    return getattr(tp, "__name__", None) or repr(tp), "a column that is not fixed_size_list<uint8>", False


class _AnnotationCheck:
    """Pydantic metadata that :meth:`HashplugEmbeddings.VectorField` and ``SourceField`` attach to their field.

    Pydantic calls ``__get_pydantic_core_schema__`` with the field's annotation while it builds the class, so a
    ``LanceModel`` whose declaration would make LanceDB store the codes as floats (or make the samples a second
    vector column) fails at class creation, with the right declaration in the message.
    """

    def __init__(self, func: HashplugEmbeddings, role: str) -> None:
        self.func = func
        self.role = role

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        name = getattr(handler, "field_name", None) or ("code" if self.role == "vector" else "vector")
        if self.role == "vector":
            self.func._check_code_annotation(source, name)
        else:
            self.func._check_source_annotation(source, name)
        return handler(source)

    def __repr__(self) -> str:
        return f"hashplug.{self.role}_field_check"


_upgrade_config = upgrade_config  # the 0.2 name


#: Checked models by (configuration, model file identity): see :meth:`HashplugEmbeddings.__init__`.
_CHECKED: dict[tuple[Any, ...], Any] = {}
_CHECKED_LOCK = threading.Lock()
_MAX_CHECKED = 64


def _instance_key(kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """The cache key of a configuration; None when it cannot be cached (LanceDB variables, a missing file,
    arguments that are not JSON, a location named without its sha256).

    A local path: the JSON and the file's (path, size, mtime, inode), so a file replaced in place is opened and
    checked anew. A ``{db}`` or URI location named with its ``file_sha256``: the JSON alone, since the model
    is named by content (any copy with that sha256 is the same model).
    """
    import json

    model = kwargs.get("model")
    if not isinstance(model, str) or any(isinstance(v, str) and v.startswith("$var:") for v in kwargs.values()):
        return None
    try:
        text = json.dumps(kwargs, sort_keys=True)
    except (TypeError, ValueError):
        return None
    if is_db_reference(model) or is_uri(model):
        sha = kwargs.get("file_sha256", kwargs.get("sha256"))
        return (text, "content") if isinstance(sha, str) and sha else None
    try:
        p = Path(model).expanduser().resolve()
        st = p.stat()
    except (TypeError, ValueError, OSError):
        return None
    return (text, str(p), st.st_size, st.st_mtime_ns, st.st_ino)


def clear_function_cache() -> None:
    """Forget the checked models (the next function built opens and checks its model file again)."""
    with _CHECKED_LOCK:
        _CHECKED.clear()

@register("hashplug")
class HashplugEmbeddings(EmbeddingFunction):
    """LanceDB embedding function that writes binary hash codes computed by a hashplug ONNX encoder.

    Create it through the registry; the arguments are saved (as JSON) in the table's schema metadata and the
    function is rebuilt from them whenever LanceDB opens, adds to or searches the table::

        func = get_registry().get("hashplug").create(model="enc.onnx", layout="packed")

    Parameters
    ----------
    model : str
        Where the ONNX file is: a local path (stored absolute, so a fresh process finds it from any working
        directory), a URI (``s3://bucket/enc.onnx``, ``gs://...``, anything ``pyarrow.fs`` or ``fsspec``
        opens), ``{db}/_hashplug/models/<sha256>.onnx`` (the copy in the table's own database, written by
        :meth:`for_database`; it travels with the database folder), or a LanceDB variable ``$var:name`` (set
        with ``get_registry().set_var(name, location)`` in each process).
    file_sha256 : str or None
        Expected sha256 of the file's bytes (not the ``weights_sha256`` of its model card). Filled in at
        creation; when the table is reopened a different file at ``model`` is refused with
        :class:`~hashplug.validation.ModelMismatchError`, and a ``{db}`` or URI location is found by this
        content (any copy this process already read). 0.1.0 called it ``sha256`` (still accepted).
    layout : {"packed", "indices"}
        Code column layout: ``"packed"`` bits in ``fixed_size_list<uint8>[n_bytes]`` (LanceDB's native
        ``distance_type("hamming")`` search, ``IVF_FLAT`` index), or ``"indices"`` the k active unit ids of a
        k-hot encoder in ``list<int32>`` (``LABEL_LIST`` index, searched by :func:`hashplug.search`). 0.1.0's
        keyword ``code="dense" | "sparse"`` is still accepted, with a ``DeprecationWarning``.
    providers : list of str or None
        onnxruntime execution providers (default: onnxruntime's choice).
    batch_size : int or None
        Rows per onnxruntime call (None, the default: as many as fit 1 GiB of the graph's working memory,
        at most 8,192; :func:`hashplug.runtime.rows_per_run`).
    m, k, code_kind : optional
        The encoder's shape, recorded at creation and checked against the file when the table is reopened.
    """

    model: str
    file_sha256: str | None = None
    layout: Literal["packed", "indices"] = "packed"
    providers: list[str] | None = None
    batch_size: int | None = None
    m: int | None = None
    k: int | None = None
    code_kind: str | None = None
    max_retries: int = 0  # a local model does not benefit from LanceDB's exponential-backoff retries

    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        """Build the function and check its model (see :meth:`create`).

        Every way LanceDB builds the function comes here: ``create`` (what a user calls, and what LanceDB
        < 0.41 calls when it rebuilds a table's function from its saved config) and ``cls(**config)`` (what
        LanceDB >= 0.41 calls). The model is found and checked now, in the caller's thread and frames, so a
        ``{db}`` location resolves against the table being opened and a wrong file fails the open, not a later
        read. A configuration already checked against the same file (same size, mtime and inode; or the same
        ``file_sha256`` for a model named by content) reuses that check: no file is read again.
        """
        data = upgrade_config(data)
        model = data.get("model")
        keep = isinstance(model, str) and (is_db_reference(model) or is_uri(model))
        if not keep:
            data["model"] = str(check_path(model, "model (the ONNX file)", "the hashplug embedding function"))
        if data.get("layout") is not None:
            data["layout"] = normalize_layout(data["layout"], owner="the hashplug embedding function")
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise HashplugError(f"invalid configuration of the hashplug embedding function: {exc}") from None
        key = _instance_key(data) if type(self) is HashplugEmbeddings else None
        hit = _CHECKED.get(key) if key is not None else None
        if hit is not None:
            self._encoder = hit
        else:
            enc = self._load_and_check()  # outside pydantic validation, so our own error types reach the caller
            if key is not None:
                with _CHECKED_LOCK:
                    while len(_CHECKED) >= _MAX_CHECKED:
                        _CHECKED.pop(next(iter(_CHECKED)))
                    _CHECKED.setdefault(key, enc)
        enc = self._encoder
        if self.file_sha256 is None:
            self.file_sha256 = enc.file_sha256
        for name in ("m", "k", "code_kind"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(enc, name))

    @classmethod
    def create(cls, **kwargs: Any) -> HashplugEmbeddings:
        """Create the function, check the model file, and record its absolute path, sha256 and shape.

        LanceDB saves what this records (the config) in the table's schema metadata and rebuilds the function
        from it on every ``add``, search and ``table.embedding_functions``. Each build checks the model against
        the config, once per configuration and file: a rebuild of a configuration already checked against the
        same file (same size, mtime and inode; a file replaced in place is opened and checked anew, so a
        swapped model is still refused) reads nothing. A model named by content (a ``{db}/...`` or URI
        location with its ``file_sha256``) is checked once per configuration: any copy with that sha256 is the
        same model. Where the model is looked for: :func:`hashplug.integrations.store.resolve_encoder`.
        """
        inst = super().create(**upgrade_config(kwargs))
        args = dict(inst._original_args)
        if not (isinstance(args.get("model"), str) and args["model"].startswith("$var:")):
            args["model"] = inst.model
        args.setdefault("file_sha256", None)
        sha = args["file_sha256"]
        if sha is None or (isinstance(sha, str) and sha.startswith("$var:")):
            args["file_sha256"] = inst.file_sha256
        args.setdefault("layout", inst.layout)
        for key in ("m", "k", "code_kind"):
            if args.get(key) is None:
                args[key] = getattr(inst, key)
        inst._original_args = args
        return inst

    def endpoints(self) -> list[str]:
        """Where this function reads its model from, when that is another machine (LanceDB >= 0.41).

        A model at a URI (``s3://...``, ``gs://...``, ``http://...``) is read with this process's credentials
        for that store, and a table's saved config could name any such URI (a query string can even carry an
        ``endpoint_override``). So LanceDB >= 0.41 rebuilds a function whose config names a URI only when this
        process created it or trusts it: ``get_registry().allow_endpoint(uri)``; otherwise the table's function
        is LanceDB's ``UntrustedEmbeddingFunction``, whose message names that call. A local path and a copy in
        the database's own model store (``{db}/...``) read nothing from elsewhere: no endpoint.
        """
        return [self.model] if is_uri(self.model) and not self.model.lower().startswith("memory://") else []

    def model_post_init(self, __context: Any) -> None:
        if self.layout not in LAYOUTS:  # pragma: no cover - pydantic's Literal already checks
            raise HashplugError(f"layout must be one of {list(LAYOUTS)}; got {self.layout!r}.")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise HashplugError(f"batch_size must be >= 1; got {self.batch_size}.")
        if not (is_db_reference(self.model) or is_uri(self.model)):
            self.model = str(Path(self.model).expanduser().resolve())

    def _load_and_check(self) -> Any:
        enc = resolve_encoder(self.model, self.file_sha256, self.providers, self.batch_size)
        check_model(enc, self.model, file_sha256=self.file_sha256, m=self.m, k=self.k, code_kind=self.code_kind,
                    layout=self.layout)
        self._encoder = enc
        return enc

    def for_database(self, db: Any) -> HashplugEmbeddings:
        """This function with its model copied into ``db``'s model store, so tables travel with the database.

        The model's bytes are written once (atomically) to ``<db>/_hashplug/models/<sha256>.onnx`` and the
        returned function's config names them ``{db}/_hashplug/models/<sha256>.onnx``, relative to the database
        folder: copy or move the folder (to another machine too) and the table still finds its model, checked
        by sha256. :func:`~hashplug.integrations.tables.schema` (``db=``), ``create_table`` and ``ingest`` of a
        new table call this.

        Parameters
        ----------
        db : LanceDB connection (sync or async), table, str or PathLike
            The database (or its folder / URI).

        Returns
        -------
        HashplugEmbeddings
            A function of the same configuration whose ``model`` is the stored copy (``self`` when it already
            is one).
        """
        ref = store_model(db, self, owner="HashplugEmbeddings.for_database")  # idempotent: a copy there is kept
        if ref == self.model:
            return self
        args = {**self._original_args, "model": ref, "file_sha256": self.encoder.file_sha256}
        with database_root(connection_root(db)):
            return type(self).create(**args)

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
        return self.n_bytes if self.layout == "packed" else int(self.encoder.k)

    def arrow_type(self) -> pa.DataType:
        """Arrow type of the code column this function writes."""
        return code_type(self.layout, self.n_bytes)

    # ------------------------------------------------------------------ LanceModel fields
    def VectorField(self, **kwargs: Any) -> Any:  # noqa: N802 - LanceDB's name
        """The code field of a ``LanceModel``: declare it ``Vector(func.ndims(), value_type=pa.uint8())``.

        ``code: Vector(func.ndims(), value_type=pa.uint8()) = func.VectorField()`` stores packed codes as
        ``fixed_size_list<uint8>[n_bytes]``. LanceDB's usual declarations, ``Vector(func.ndims())`` and
        ``list[float]``, would make a *float* column into which LanceDB silently casts the codes (and its
        searches then rank floats): they raise :class:`~hashplug.validation.TableSchemaError` when the class is
        created, naming this declaration. ``default`` is None unless given, so rows are built from the source
        alone. ``layout="indices"`` codes (``list<int32>``) cannot be declared in a ``LanceModel``: use
        :func:`~hashplug.integrations.tables.schema`.
        """
        from pydantic import Field

        if self.layout != "packed":
            raise TableSchemaError(
                "layout='indices' codes are list<int32>, which a LanceModel cannot declare (LanceDB maps list[int] "
                "to list<int64>); create the table with hashplug.integrations.lancedb.schema(func, ...) instead."
            )
        kwargs.setdefault("default", None)
        extra = dict(kwargs.pop("json_schema_extra", None) or {})
        extra["vector_column_for"] = self
        field = Field(json_schema_extra=extra, **kwargs)
        field.metadata.append(_AnnotationCheck(self, "vector"))
        return field

    def SourceField(self, **kwargs: Any) -> Any:  # noqa: N802 - LanceDB's name
        """The source field of a ``LanceModel``: declare it ``list[float]`` (a struct model for named inputs).

        A ``Vector(d)`` source would be a second vector column: ``table.search(x)`` with a raw ``x`` of length
        ``d`` then ranks the samples by float distance instead of searching the codes, with no error. It raises
        :class:`~hashplug.validation.TableSchemaError` when the class is created.
        """
        from pydantic import Field

        extra = dict(kwargs.pop("json_schema_extra", None) or {})
        extra["source_column_for"] = self
        field = Field(json_schema_extra=extra, **kwargs)
        field.metadata.append(_AnnotationCheck(self, "source"))
        return field

    def _check_code_annotation(self, annotation: Any, name: str) -> None:
        tp = _unwrap_annotation(annotation)
        text, arrow, fixed = _describe_annotation(tp)
        nb = self.n_bytes
        if fixed and arrow == str(pa.list_(pa.uint8(), nb)):
            return
        if (text.startswith("Vector(") or text == "list[float]") and "uint8" not in arrow:
            what = (
                f"LanceDB would store the codes as {arrow if fixed else f'fixed_size_list<float>[{nb}]'}, casting "
                "them silently, and its searches would then rank those numbers instead of Hamming distances"
            )
        elif fixed:
            what = f"the model writes {nb}-byte codes ({8 * nb} bits), which do not fit {arrow}"
        else:
            what = f"a {text} column cannot hold packed codes"
        raise TableSchemaError(
            f"LanceModel field {name!r} is declared `{text}` with func.VectorField(): {what}. Declare it "
            f"`{name}: Vector({nb}, value_type=pa.uint8()) = func.VectorField()` (Vector from lancedb.pydantic, "
            "pa is pyarrow; func.ndims() is "
            f"{nb}), or build the model with hashplug.integrations.lancedb.lance_model(func)."
        )

    def _check_source_annotation(self, annotation: Any, name: str) -> None:
        tp = _unwrap_annotation(annotation)
        text, _, fixed = _describe_annotation(tp)
        if not fixed:
            return
        raise TableSchemaError(
            f"LanceModel field {name!r} is declared `{text}` with func.SourceField(): a fixed-size vector source is a "
            "second vector column, and table.search(x) with a raw x then ranks the samples by float distance "
            "instead of searching the codes, with no error. Declare it "
            f"`{name}: list[float] = func.SourceField()` (what lance_model(func) does); to search the floats "
            "too, create the table with hashplug.integrations.lancedb.schema(func, source_type='fixed') and pass "
            "vector_column_name= to every table.search."
        )

    # ------------------------------------------------------------------ encoding
    def encode(self, X: Any) -> np.ndarray:
        """Encode samples to the column's form: packed uint8 (n, n_bytes) or int32 ids (n, k).

        ``X`` may be an ndarray of shape (n, *input_shape) or (n, prod(input_shape)), or an Arrow column; for a
        model with several named inputs, a struct column, a dict of arrays or a list of per-row dicts.
        """
        return self.encode_checked(sample_converter(self.encoder)(X, name=f"input of {self.model!r}"))

    def encode_checked(self, arr: Any) -> np.ndarray:
        """:meth:`encode` of samples already checked and converted (:func:`~hashplug.integrations.arrow.
        sample_converter`'s output): the kernel alone, nothing validated twice."""
        if n_samples(arr) == 0:
            w = self.ndims()
            return np.zeros((0, w), dtype=np.uint8 if self.layout == "packed" else INDEX_DTYPE)
        if self.layout == "packed":
            return self.encoder.encode_checked(arr, layout="packed")
        return self.encoder.encode_checked(arr, layout="indices")

    def encode_query(self, query: Any) -> np.ndarray:
        """Encode a :class:`Query`, its string form, or a raw array (or dict of named inputs) to codes of shape
        (n, width)."""
        q = query if isinstance(query, Query) else Query(query)
        card = self.encoder.card
        if card.multi_input:
            if q.named is None:
                raise HashplugError(
                    f"{Path(self.model).name} takes named inputs {[nm for nm, _, _ in card.input_specs]}; query with "
                    "hashplug.Query({name: array, ...}) for one image."
                )
            shapes = {nm: shp for nm, shp, _ in card.input_specs}
            one = all(
                v.shape == shapes.get(k) or (shapes.get(k) == (1,) and v.ndim == 0) for k, v in q.named.items()
            )
            named = {k: (v.reshape((1, *shapes[k])) if one else v) for k, v in q.named.items()}
            return self.encode(named)
        if q.x is None:
            raise HashplugError(f"{Path(self.model).name} takes one array per sample, not named inputs.")
        x = q.x
        if x.shape == self.input_shape or (x.ndim == 1 and x.size == int(np.prod(self.input_shape))):
            x = x.reshape((1, *self.input_shape))
        # the Query checked the values (float32, finite) at the edge; only the width is the model's to check
        return self.encode_checked(check_width(x, self.input_shape, name=f"input of {self.model!r}"))

    def encode_arrow(self, col: Any) -> pa.Array:
        """Encode an Arrow column of samples to an Arrow code column of :meth:`arrow_type`."""
        return codes_to_arrow(self.encode(col), self.layout)

    def compute_source_embeddings(self, data: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Codes of the source column (called by LanceDB on ``table.add``)."""
        codes = self.encode(data)
        return list(codes)

    def compute_query_embeddings(self, query: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Code of a :class:`Query` (or its string form), called by LanceDB on ``table.search(Query(x))``."""
        if self.layout == "indices":
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
        return hash((self.model, self.file_sha256, self.layout))

