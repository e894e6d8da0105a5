"""Arrow <-> numpy for hashplug: sample columns in, code columns out, and the pure per-batch encode.

:func:`column_to_numpy`
    An Arrow (or numpy / list) column of samples -> float32 ``(n, *input_shape)``, rejecting nulls, NaN and
    wrong sizes with row numbers.
:func:`code_type`, :func:`codes_to_arrow`, :func:`codes_from_arrow`
    The one conversion of code columns: layout ``"packed"`` is ``fixed_size_list<uint8>[n_bytes]`` (packed
    bits), ``"indices"`` is ``list<int32>`` (the active units of k-hot codes). 0.1.0 called them
    ``"dense"`` and ``"sparse"``; :func:`normalize_layout` still takes those names.
:func:`encode_batch`
    A pure function ``RecordBatch -> RecordBatch`` that appends (or replaces) the code column: what
    :func:`encode_batches`, :func:`hashplug.ingest` and a Ray ``map_batches`` share.
:func:`encode_batches`
    Wrap a ``RecordBatchReader`` so every batch gains a code column; one batch in memory at a time.

Serving side: numpy, pyarrow and :class:`hashplug.runtime.OnnxEncoder` only (never torch, onnx or LanceDB).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..codes import INDEX_DTYPE
from ..validation import HashplugError, ModelMismatchError, check_int_param

__all__ = [
    "LAYOUTS",
    "normalize_layout",
    "column_to_numpy",
    "column_to_inputs",
    "as_arrow_column",
    "as_record_batch",
    "check_width",
    "sample_converter",
    "struct_column",
    "code_type",
    "codes_to_arrow",
    "codes_from_arrow",
    "encode_batch",
    "encode_batches",
]

#: Storage layouts of the code column: ``"packed"`` bits in ``fixed_size_list<uint8>[n_bytes]``,
#: ``"indices"`` the active-unit ids of k-hot codes in ``list<int32>``.
LAYOUTS = ("packed", "indices")
#: 0.1.0's names of the layouts.
OLD_LAYOUTS = {"dense": "packed", "sparse": "indices"}


def normalize_layout(value: Any, *, owner: str = "hashplug", warn: bool = True) -> str:
    """A layout name: ``"packed"`` or ``"indices"``; 0.1.0's ``"dense"``/``"sparse"`` map to them (with a
    ``DeprecationWarning`` when ``warn``)."""
    if value in LAYOUTS:
        return str(value)
    if value in OLD_LAYOUTS:
        if warn:
            import warnings

            warnings.warn(
                f"{owner}: the layout {value!r} is now called {OLD_LAYOUTS[value]!r}; the old name will be removed "
                "in 0.3.",
                DeprecationWarning,
                stacklevel=3,
            )
        return OLD_LAYOUTS[value]
    raise HashplugError(
        f"{owner}: layout must be 'packed' (bits in fixed_size_list<uint8>) or 'indices' (the k active units of a "
        f"k-hot code in list<int32>); got {value!r}."
    )


def _layout_arg(layout: Any, code: Any, owner: str) -> Any:
    """``layout=`` or its deprecated 0.1.0 keyword ``code=``, not both."""
    if code is None:
        return layout
    if layout is not None:
        raise HashplugError(f"{owner}: pass layout= only (code= is its deprecated 0.1.0 name).")
    new = normalize_layout(code, owner=owner, warn=False)
    import warnings

    warnings.warn(
        f"{owner}: code={code!r} is now layout={new!r}; the old keyword will be removed in 0.3.",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def column_to_numpy(
    col: Any, input_shape: tuple[int, ...], *, name: str = "source", row_offset: int = 0
) -> np.ndarray:
    """Convert an Arrow column of samples to a float32 array of shape ``(n, *input_shape)``.

    Accepts ``fixed_size_list`` (nested for images), ``list`` / ``large_list`` with equal lengths,
    ``fixed_shape_tensor`` columns, Ray Data tensor columns (``ArrowTensorType`` / ``ArrowTensorTypeV2``, what
    ``ray.data.from_numpy`` makes; read through their list storage, so this module never imports Ray), numpy
    arrays and Python lists of vectors. Nulls, NaN, infinity and a wrong number of features are rejected with a
    :class:`~hashplug.validation.HashplugError` whose ``row`` attribute is the first bad row when one row is to
    blame; row numbers in the messages are ``row_offset`` plus the row in ``col`` (the row in the whole source
    when ``col`` is a chunk).
    """
    from ..validation import check_array

    n_features = int(np.prod(input_shape))
    col = as_arrow_column(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, (pa.Array, pa.ExtensionArray)):
        n = len(col)
        if isinstance(col, pa.ExtensionArray) and not isinstance(col.type, pa.FixedShapeTensorType):
            col = _tensor_storage(col, name)
        if isinstance(col.type, pa.FixedShapeTensorType):
            arr = col.to_numpy_ndarray()
        else:
            if col.null_count:
                first = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
                err = HashplugError(
                    f"{name} has {col.null_count} null rows (first at row {first + int(row_offset)}); "
                    "every row needs a sample."
                )
                err.row = first + int(row_offset)
                raise err
            vals: Any = col
            while (
                pa.types.is_fixed_size_list(vals.type)
                or pa.types.is_list(vals.type)
                or pa.types.is_large_list(vals.type)
            ):
                if not pa.types.is_fixed_size_list(vals.type):
                    lens = pc.list_value_length(vals).to_numpy(zero_copy_only=False)
                    if len(lens) and lens.min() != lens.max():
                        _raise_ragged(lens, vals is col, n_features, name, row_offset)
                if vals.null_count:
                    raise HashplugError(f"{name} contains null values inside its samples.")
                vals = vals.flatten()
            if not (pa.types.is_floating(vals.type) or pa.types.is_integer(vals.type)):
                raise HashplugError(f"{name} must hold numbers; got Arrow type {col.type}.")
            if vals.null_count:
                raise HashplugError(f"{name} contains null values inside its samples.")
            flat = vals.to_numpy(zero_copy_only=False)
            if n and flat.size % n:
                raise HashplugError(
                    f"{name} has {flat.size} values for {n} rows; samples must all have the same size."
                )
            arr = flat.reshape(n, -1) if n else flat.reshape(0, n_features)
    else:
        arr = np.asarray(col)
        if arr.dtype == object:
            try:
                arr = np.stack([np.asarray(v, dtype=np.float32) for v in arr])
            except Exception as exc:
                raise HashplugError(f"{name} could not be stacked into an array of samples: {exc}") from None
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
    arr = check_array(
        arr,
        name=name,
        ndim=None,
        n_features=n_features,
        dtype=np.float32,
        allow_empty=True,
        finite=True,
        row_offset=row_offset,
    )
    return arr.reshape((arr.shape[0], *input_shape))


def as_arrow_column(col: Any) -> Any:
    """A column of another Arrow library (a Polars Series, anything with ``__arrow_c_stream__`` /
    ``__arrow_c_array__``) as a pyarrow array; anything else unchanged."""
    if isinstance(col, (pa.Array, pa.ChunkedArray, np.ndarray)):
        return col
    if hasattr(col, "__arrow_c_stream__"):
        return pa.chunked_array(col)
    if hasattr(col, "__arrow_c_array__"):
        return pa.array(col)
    return col


def as_record_batch(batch: Any, owner: str) -> pa.RecordBatch:
    """A pyarrow ``RecordBatch`` of one batch of rows: a pyarrow Table or RecordBatch, or Arrow data of another
    library (``__arrow_c_array__`` struct array or ``__arrow_c_stream__`` table: a Polars DataFrame, a DuckDB
    relation, ...)."""
    if isinstance(batch, pa.RecordBatch):
        return batch
    if not isinstance(batch, pa.Table):
        if hasattr(batch, "__arrow_c_array__"):
            try:
                return pa.record_batch(batch)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise HashplugError(f"{owner}: the {type(batch).__name__} is not a batch of columns ({exc}).") from None
        if hasattr(batch, "__arrow_c_stream__"):
            try:
                batch = pa.table(batch)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise HashplugError(f"{owner}: the {type(batch).__name__} is not a table of columns ({exc}).") from None
        else:
            raise HashplugError(
                f"{owner} takes a batch of rows: a pyarrow RecordBatch or Table, or Arrow data of another library "
                f"(a Polars DataFrame, a DuckDB relation: __arrow_c_array__ / __arrow_c_stream__); got "
                f"{type(batch).__name__}."
            )
    if batch.num_rows:
        return batch.combine_chunks().to_batches()[0]
    return pa.RecordBatch.from_pylist([], schema=batch.schema)


def _tensor_storage(col: pa.ExtensionArray, name: str) -> pa.Array:
    """The storage of a tensor extension column (Ray Data's ``ArrowTensorType`` / ``ArrowTensorTypeV2``, or any
    extension type with a fixed per-row ``shape`` stored as one list of values per row), as a plain Arrow list
    array that :func:`column_to_numpy` reads like any list column; other extension types are refused."""
    shape = getattr(col.type, "shape", None)
    storage = col.storage
    is_list = pa.types.is_list(storage.type) or pa.types.is_large_list(storage.type) or pa.types.is_fixed_size_list(
        storage.type
    )
    if shape is None or not is_list or any(s is None for s in np.atleast_1d(shape).tolist()):
        raise HashplugError(
            f"{name} has the extension type {col.type} (extension {getattr(col.type, 'extension_name', '?')!r}), "
            "which is not a tensor column of one fixed shape (ragged tensors are not samples of one model); "
            "give samples as fixed_size_list, equal-length list, fixed_shape_tensor or Ray tensor columns."
        )
    return storage  # an extension array's validity is its storage's


def _raise_ragged(lens: np.ndarray, outer: bool, n_features: int, name: str, row_offset: int) -> None:
    """The error for list samples of different lengths, naming the first row (source numbering) whose length
    is not the model's width when the lengths are those of whole rows (``outer``)."""
    if outer:
        bad = np.flatnonzero(lens != n_features)
        first = int(bad[0]) if bad.size else int(np.flatnonzero(lens != lens[0])[0])
        err = HashplugError(
            f"{name} row {first + int(row_offset)} has {int(lens[first])} features, but the model expects "
            f"{n_features} (the rows have {int(lens.min())} to {int(lens.max())}); fix or drop that row."
        )
        err.row = first + int(row_offset)
        raise err
    raise HashplugError(
        f"{name} rows have different lengths ({int(lens.min())} to {int(lens.max())}); "
        f"every sample needs {n_features} features."
    )


def check_width(x: np.ndarray, input_shape: tuple[int, ...], *, name: str = "source") -> np.ndarray:
    """``x`` (already a float32 array of finite values, e.g. a :class:`~hashplug.integrations.function.Query`'s)
    as ``(n, *input_shape)``: the width check of :func:`column_to_numpy` without a second pass over the values.

    A 1-D ``x`` is one sample; the message for a wrong width is :func:`~hashplug.validation.check_array`'s.
    """
    arr = x.reshape(1, -1) if x.ndim == 1 else x
    n_features = int(np.prod(input_shape))
    got = int(np.prod(arr.shape[1:])) if arr.ndim >= 2 else -1
    if got != n_features:
        raise HashplugError(
            f"{name} has {got} features per sample (shape {arr.shape}), but {n_features} are expected; "
            "encode data with the same dimensionality the model was fitted on."
        )
    return np.ascontiguousarray(arr).reshape((arr.shape[0], *input_shape))


def column_to_inputs(
    col: Any, specs: Any, *, name: str = "source", row_offset: int = 0
) -> dict[str, np.ndarray]:
    """Convert a struct column of named inputs to ``{name: float32 (n, *shape)}``.

    For encoders with several named inputs (e.g. NeuroHash): ``specs`` is the model card's
    ``input_specs`` (``(name, per-sample shape, default)``). ``col`` is an Arrow struct column (one field per
    input, each a (nested) list column as :func:`column_to_numpy` takes), a mapping of arrays, or a list of
    per-row dicts. Fields with a default may be missing (the encoder fills them); unknown fields are refused.
    """
    known = {nm: shp for nm, shp, _ in specs}
    required = [nm for nm, _, d in specs if d is None]
    col = as_arrow_column(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.StructArray):
        if col.null_count:
            first = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
            err = HashplugError(f"{name} has {col.null_count} null rows (first at row {first + int(row_offset)}).")
            err.row = first + int(row_offset)
            raise err
        fields = {col.type.field(i).name: col.field(i) for i in range(col.type.num_fields)}
    elif isinstance(col, Mapping):
        fields = dict(col)
    elif isinstance(col, (list, tuple)) and col and all(isinstance(r, Mapping) for r in col):
        keys = list(dict.fromkeys(k for r in col for k in r))
        fields = {k: [r[k] for r in col] for k in keys}
    else:
        raise HashplugError(
            f"{name}: this model takes named inputs {list(known)}; give a struct column (one field per input), a "
            f"dict of arrays or a list of per-row dicts, not {type(col).__name__}."
        )
    unknown = sorted(set(fields) - set(known))
    missing = [nm for nm in required if nm not in fields]
    if unknown or missing:
        raise HashplugError(
            f"{name}: fields {unknown} are unknown and {missing} are missing; the model takes {list(known)} "
            "(those with a default may be left out)."
        )
    out: dict[str, np.ndarray] = {}
    for nm, val in fields.items():
        if isinstance(val, (pa.Array, pa.ChunkedArray)) or not isinstance(val, np.ndarray):
            val = column_to_numpy(val, known[nm], name=f"{name} field {nm!r}", row_offset=row_offset)
        else:
            val = column_to_numpy(val.reshape(len(val), -1) if val.ndim else val, known[nm],
                                  name=f"{name} field {nm!r}", row_offset=row_offset)
        out[nm] = val
    n = {v.shape[0] for v in out.values()}
    if len(n) > 1:
        raise HashplugError(f"{name}: its fields have different numbers of rows {sorted(n)}.")
    return out


def struct_column(
    inputs: Mapping[str, Any], names: Iterable[str] | None = None, source_type: str = "list"
) -> pa.StructArray:
    """Named inputs ``{name: ndarray (n, *shape)}`` as an Arrow struct column (the source column of a table of a
    named-input model, :func:`hashplug.integrations.tables.schema`).

    Parameters
    ----------
    inputs : mapping of str to ndarray
        E.g. :func:`hashplug.data.scenes.scene_inputs` without ``object_labels``.
    names : iterable of str, optional
        The fields, in order (default: every key of ``inputs``).
    source_type : {"list", "fixed"}
        Nested ``list<float32>`` (the schema's default) or ``fixed_size_list<float32>`` per axis.

    Returns
    -------
    pyarrow.StructArray
    """
    names = list(inputs) if names is None else list(names)
    arrays = []
    for nm in names:
        a = np.ascontiguousarray(np.asarray(inputs[nm], dtype=np.float32))
        if a.ndim < 2:
            raise HashplugError(f"struct_column: input {nm!r} has shape {a.shape}; give (n, *shape) with a batch axis.")
        arr: pa.Array = pa.array(a.reshape(-1))
        for size in reversed(a.shape[1:]):
            arr = pa.FixedSizeListArray.from_arrays(arr, int(size))
        if source_type == "list":
            t: pa.DataType = pa.float32()
            for _ in a.shape[1:]:
                t = pa.list_(t)
            arr = arr.cast(t)
        elif source_type != "fixed":
            raise HashplugError(f"source_type must be 'list' or 'fixed'; got {source_type!r}.")
        arrays.append(arr)
    return pa.StructArray.from_arrays(arrays, fields=[pa.field(nm, a.type, nullable=False) for nm, a in zip(names, arrays)])


def sample_converter(encoder: Any) -> Any:
    """``conv(col, name=..., row_offset=...)`` turning a source column into what ``encoder.encode`` takes."""
    card = getattr(encoder, "card", None)
    if card is not None and getattr(card, "multi_input", False):
        specs = card.input_specs
        return lambda col, name="source", row_offset=0: column_to_inputs(col, specs, name=name, row_offset=row_offset)
    shape = tuple(int(s) for s in encoder.input_shape)
    return lambda col, name="source", row_offset=0: column_to_numpy(col, shape, name=name, row_offset=row_offset)


def n_samples(X: Any) -> int:
    """Rows of an encoder input: an array's first axis, or the rows of a dict of named inputs."""
    return next(iter(X.values())).shape[0] if isinstance(X, dict) else X.shape[0]


def code_type(layout: str, n_bytes: int) -> pa.DataType:
    """Arrow type of the code column: ``fixed_size_list<uint8>[n_bytes]`` (packed) or ``list<int32>`` (indices)."""
    layout = normalize_layout(layout, owner="code_type", warn=False)
    if layout == "packed":
        return pa.list_(pa.uint8(), int(n_bytes))
    return pa.list_(pa.int32())


def codes_to_arrow(codes: np.ndarray, layout: str) -> pa.Array:
    """Packed codes (n, n_bytes) uint8 or k-hot indices (n, k) as an Arrow array of :func:`code_type`."""
    layout = normalize_layout(layout, owner="codes_to_arrow", warn=False)
    codes = np.ascontiguousarray(codes)
    n, w = codes.shape
    if layout == "packed":
        return pa.FixedSizeListArray.from_arrays(pa.array(codes.astype(np.uint8, copy=False).ravel()), w)
    offsets = pa.array(np.arange(0, n * w + 1, w, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(codes.astype(INDEX_DTYPE, copy=False).ravel()))


def codes_from_arrow(col: Any) -> tuple[str, Any]:
    """Read a code column back.

    Returns
    -------
    ("packed", ndarray of shape (n, n_bytes), dtype=uint8) or ("indices", (offsets (n + 1,), values))
        The layout and the codes; ``indices`` rows are ``values[offsets[i]:offsets[i + 1]]``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if pa.types.is_fixed_size_list(t) and pa.types.is_uint8(t.value_type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return "packed", flat.reshape(len(col), t.list_size)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type):
        offsets = col.offsets.to_numpy(zero_copy_only=False)
        values = col.values.to_numpy(zero_copy_only=False)
        return "indices", (offsets - offsets[0], values[offsets[0] : offsets[-1]])
    raise HashplugError(
        f"column type {t} is not a hashplug code column (fixed_size_list<uint8> or list<int32>)."
    )


def _encode_fn(encoder: Any, layout: str | None) -> tuple[Any, Any, int, str]:
    """(encode(samples) -> codes, converter of source columns (:func:`sample_converter`), n_bytes, layout) for
    an OnnxEncoder or a HashplugEmbeddings."""
    if hasattr(encoder, "encode_query") and hasattr(encoder, "arrow_type"):  # HashplugEmbeddings
        if layout is not None and normalize_layout(layout, warn=False) != encoder.layout:
            raise ModelMismatchError(
                f"layout={layout!r} differs from the function's own layout {encoder.layout!r}; leave it out."
            )
        return encoder.encode_checked, sample_converter(encoder.encoder), int(encoder.n_bytes), encoder.layout
    layout = normalize_layout(layout or "packed", owner="encode_batches")
    shape = sample_converter(encoder)
    # the converter checks each column once; the kernel does not check it again (an OnnxEncoder's
    # encode_checked; another encoder object's own encode)
    run = getattr(encoder, "encode_checked", None) or encoder.encode
    if layout == "packed":
        return (lambda X: run(X, layout="packed")), shape, int(encoder.n_bytes), layout
    if encoder.code_kind != "khot":
        raise ModelMismatchError(
            f"layout='indices' needs a k-hot encoder; {getattr(encoder, 'path', 'the model')} has "
            f"{encoder.code_kind} codes; use layout='packed'."
        )
    return (lambda X: run(X, layout="indices")), shape, int(encoder.n_bytes), layout


def encode_batches(
    reader: pa.RecordBatchReader | Iterable[pa.RecordBatch],
    encoder: Any,
    *,
    source: str = "vector",
    target: str = "code",
    layout: str | None = None,
    batch_size: int | None = None,
    schema: pa.Schema | None = None,
    row_offset: int = 0,
    code: str | None = None,
) -> pa.RecordBatchReader:
    """Add a code column to every batch of a stream, with bounded memory.

    Parameters
    ----------
    reader : pyarrow.RecordBatchReader, Table or iterable of RecordBatch, or an Arrow stream of another library
        The input stream; it must have the ``source`` column. Anything with ``__arrow_c_stream__`` (a Polars
        DataFrame, a DuckDB relation) is read as a stream.
    encoder : OnnxEncoder or HashplugEmbeddings
        The model.
    source, target : str
        Input column and code column (replaced if present).
    layout : {"packed", "indices"} or None
        Code layout (default: the function's, or ``"packed"`` for an OnnxEncoder). ``code=`` is its
        deprecated 0.1.0 name (``"dense"``/``"sparse"``).
    batch_size : int or None
        Split larger input batches to at most this many rows.
    schema : pyarrow.Schema or None
        Input schema when ``reader`` is a plain iterable (default: the first batch's).
    row_offset : int
        Row number of the stream's first row in a larger source; error messages count rows from it.

    Returns
    -------
    pyarrow.RecordBatchReader
        Lazily encoded; each batch is validated (dimension, NaN, nulls) before it is yielded.
    """
    enc, shape, nb, layout = _encode_fn(encoder, _layout_arg(layout, code, "encode_batches"))
    if batch_size is not None:
        batch_size = check_int_param(batch_size, "batch_size", "encode_batches", 1)
    it: Iterator[pa.RecordBatch]
    if not isinstance(reader, (pa.RecordBatchReader, pa.Table)) and hasattr(reader, "__arrow_c_stream__"):
        try:
            reader = pa.RecordBatchReader.from_stream(reader)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise HashplugError(f"encode_batches: the {type(reader).__name__} is not a table stream ({exc}).") from None
    if isinstance(reader, pa.Table):
        reader = reader.to_reader()
    if isinstance(reader, pa.RecordBatchReader):
        in_schema, it = reader.schema, iter(reader)
    else:
        it = iter(reader)
        if schema is None:
            try:
                first = next(it)
            except StopIteration:
                raise HashplugError("encode_batches got an empty stream with no schema.") from None
            in_schema = first.schema

            def chain(
                f: pa.RecordBatch = first, rest: Iterator[pa.RecordBatch] = it
            ) -> Iterator[pa.RecordBatch]:
                yield f
                yield from rest

            it = chain()
        else:
            in_schema = schema
    if source not in in_schema.names:
        raise HashplugError(f"the input has no source column {source!r}; columns: {in_schema.names}.")
    base = pa.schema([f for f in in_schema if f.name != target], metadata=in_schema.metadata)
    out_schema = base.append(pa.field(target, code_type(layout, nb)))

    def gen() -> Iterator[pa.RecordBatch]:
        row = int(row_offset)
        for batch in it:
            step = batch_size or max(batch.num_rows, 1)
            for s in range(0, batch.num_rows, step):
                yield _encode(batch.slice(s, step), enc, shape, layout, nb, source, target, row + s)
            row += batch.num_rows

    return pa.RecordBatchReader.from_batches(out_schema, gen())


def encode_batch(
    batch: pa.RecordBatch,
    encoder: Any,
    *,
    source: str = "vector",
    target: str = "code",
    layout: str | None = None,
    row_offset: int = 0,
) -> pa.RecordBatch:
    """Append (or replace) the code column of one batch: a pure function, safe to map over batches.

    What :func:`encode_batches`, :func:`hashplug.ingest` and a Ray ``Dataset.map_batches(...,
    batch_format="pyarrow")`` share; it holds no state beside the encoder (whose onnxruntime session is
    cached per process).

    Parameters
    ----------
    batch : pyarrow.RecordBatch or pyarrow.Table, or Arrow data of another library
        Must have the ``source`` column: samples as (nested) fixed-size or equal-length lists of numbers. Any
        object with ``__arrow_c_array__`` (a struct array) or ``__arrow_c_stream__`` (a Polars DataFrame, a
        DuckDB relation) is read through the Arrow C interface.
    encoder : OnnxEncoder or HashplugEmbeddings
        The model.
    source, target : str
        Input column and code column (replaced if present, else appended last).
    layout : {"packed", "indices"} or None
        Code layout (default: the function's, or ``"packed"`` for an OnnxEncoder).
    row_offset : int
        Row number of the batch's first row in a larger source; error messages count rows from it.

    Returns
    -------
    pyarrow.RecordBatch
        The batch's other columns, then ``target``: ``fixed_size_list<uint8>[n_bytes]`` (packed) or
        ``list<int32>`` (indices).
    """
    enc, shape, nb, layout = _encode_fn(encoder, layout)
    batch = as_record_batch(batch, "encode_batch")
    if source not in batch.schema.names:
        raise HashplugError(f"the input has no source column {source!r}; columns: {batch.schema.names}.")
    return _encode(batch, enc, shape, layout, nb, source, target, row_offset)


def _encode(
    batch: pa.RecordBatch, enc: Any, conv: Any, layout: str, nb: int, source: str, target: str, row: int
) -> pa.RecordBatch:
    X = conv(batch.column(source), name=f"column {source!r}", row_offset=row)
    keep = [f for f in batch.schema if f.name != target]
    fields = [*keep, pa.field(target, code_type(layout, nb))]
    arrays = [batch.column(f.name) for f in keep] + [codes_to_arrow(enc(X), layout)]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=batch.schema.metadata))


