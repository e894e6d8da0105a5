"""Shared helpers of the integrations: the encoder cache and Arrow <-> numpy conversions.

Serving side: numpy, pyarrow and :class:`hashplug.runtime.OnnxEncoder` only (never torch or onnx).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..validation import HashplugError, ModelNotFoundError

__all__ = [
    "CODE_KINDS",
    "META_M",
    "META_K",
    "META_KIND",
    "META_SHA",
    "load_encoder_cached",
    "column_to_numpy",
    "code_type",
    "codes_to_arrow",
    "codes_from_arrow",
    "hamming_to_query",
]

#: Storage layouts of the code column: ``"dense"`` packed bits in ``fixed_size_list<uint8>[n_bytes]``,
#: ``"sparse"`` active-unit ids of k-hot codes in ``list<int32>``.
CODE_KINDS = ("dense", "sparse")

META_M = b"hashplug.m"
META_K = b"hashplug.k"
META_KIND = b"hashplug.layout"
META_SHA = b"hashplug.sha256"

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def load_encoder_cached(
    path: str | os.PathLike, providers: list[str] | None = None, batch_size: int = 8192
) -> Any:
    """Return an :class:`~hashplug.runtime.OnnxEncoder` for ``path``, loading it once per process.

    LanceDB rebuilds an embedding function from the table's saved config on every ``add()`` (twice) and on
    every search, so the encoder (and its onnxruntime session) is kept in a process-wide cache keyed on the
    absolute path, the file's size and modification time, the providers and the batch size. A file that is
    replaced on disk is reloaded (and its new sha256 is then checked by the caller). Thread-safe.

    Parameters
    ----------
    path : str or PathLike
        The ONNX file.
    providers : list of str or None
        onnxruntime execution providers.
    batch_size : int
        Rows per onnxruntime call.

    Returns
    -------
    OnnxEncoder
    """
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"No ONNX model at {str(p)!r}. The table's embedding function was configured with this path; restore the "
            "file there (or re-create the function with the model's new location)."
        ) from None
    key = (str(p), st.st_size, st.st_mtime_ns, tuple(providers) if providers else None, int(batch_size))
    enc = _CACHE.get(key)
    if enc is not None:
        return enc
    with _LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            from ..runtime import OnnxEncoder

            enc = OnnxEncoder(
                str(p), providers=list(providers) if providers else None, batch_size=int(batch_size)
            )
            # Drop stale entries of the same file (it was replaced on disk).
            for old in [k for k in _CACHE if k[0] == key[0] and k[1:3] != key[1:3]]:
                del _CACHE[old]
            _CACHE[key] = enc
    return enc


def column_to_numpy(
    col: Any, input_shape: tuple[int, ...], *, name: str = "source", row_offset: int = 0
) -> np.ndarray:
    """Convert an Arrow column of samples to a float32 array of shape ``(n, *input_shape)``.

    Accepts ``fixed_size_list`` (nested for images), ``list`` / ``large_list`` with equal lengths,
    ``fixed_shape_tensor`` columns, numpy arrays and Python lists of vectors. Nulls, NaN, infinity and a wrong
    number of features are rejected with a :class:`~hashplug.validation.HashplugError`; row numbers in the
    messages are ``row_offset`` plus the row in ``col`` (the row in the whole source when ``col`` is a chunk).
    """
    from ..validation import check_array

    n_features = int(np.prod(input_shape))
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, (pa.Array, pa.ExtensionArray)):
        n = len(col)
        if isinstance(col.type, pa.FixedShapeTensorType):
            arr = col.to_numpy_ndarray()
        else:
            if col.null_count:
                first = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
                raise HashplugError(
                    f"{name} has {col.null_count} null rows (first at row {first + int(row_offset)}); "
                    "every row needs a sample."
                )
            vals: Any = col
            while (
                pa.types.is_fixed_size_list(vals.type)
                or pa.types.is_list(vals.type)
                or pa.types.is_large_list(vals.type)
            ):
                if not pa.types.is_fixed_size_list(vals.type):
                    lens = pc.list_value_length(vals).to_numpy(zero_copy_only=False)
                    if len(lens) and lens.min() != lens.max():
                        raise HashplugError(
                            f"{name} rows have different lengths ({int(lens.min())} to {int(lens.max())}); "
                            f"every sample needs {n_features} features."
                        )
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


def code_type(kind: str, n_bytes: int) -> pa.DataType:
    """Arrow type of the code column: ``fixed_size_list<uint8>[n_bytes]`` (dense) or ``list<int32>`` (sparse)."""
    if kind == "dense":
        return pa.list_(pa.uint8(), int(n_bytes))
    if kind == "sparse":
        return pa.list_(pa.int32())
    raise HashplugError(f"code kind must be one of {list(CODE_KINDS)}; got {kind!r}.")


def codes_to_arrow(codes: np.ndarray, kind: str) -> pa.Array:
    """Packed codes (dense) or k-hot indices (sparse) as an Arrow array of :func:`code_type`."""
    codes = np.ascontiguousarray(codes)
    n, w = codes.shape
    if kind == "dense":
        return pa.FixedSizeListArray.from_arrays(pa.array(codes.astype(np.uint8, copy=False).ravel()), w)
    offsets = pa.array(np.arange(0, n * w + 1, w, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(codes.astype(np.int32, copy=False).ravel()))


def codes_from_arrow(col: Any) -> tuple[str, Any]:
    """Read a code column back: ``("dense", packed (n, n_bytes) uint8)`` or ``("sparse", list of int arrays)``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if pa.types.is_fixed_size_list(t) and pa.types.is_uint8(t.value_type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return "dense", flat.reshape(len(col), t.list_size)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type):
        offsets = col.offsets.to_numpy(zero_copy_only=False)
        values = col.values.to_numpy(zero_copy_only=False)
        return "sparse", (offsets - offsets[0], values[offsets[0] : offsets[-1]])
    raise HashplugError(
        f"column type {t} is not a hashplug code column (fixed_size_list<uint8> or list<int32>)."
    )


def hamming_to_query(query_code: np.ndarray, col: Any) -> np.ndarray:
    """Hamming distances (int64, one per row) between one query code and an Arrow code column.

    ``query_code`` is packed uint8 (``n_bytes``,) for a dense column or the active-unit ids for a sparse one
    (either form is converted to the column's form). For sparse columns the distance is
    ``|a| + |b| - 2 |a & b|`` (``2 (k - overlap)`` when both have k units).
    """
    kind, data = codes_from_arrow(col)
    q = np.asarray(query_code).ravel()
    if kind == "dense":
        nb = data.shape[1]
        if q.dtype != np.uint8 or q.size != nb:
            q = _ids_to_packed(q, nb)
        if data.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        from ..hamming import hamming_distances

        return np.asarray(hamming_distances(q.reshape(1, -1), data)).reshape(-1).astype(np.int64)
    offsets, values = data
    if q.dtype == np.uint8:
        q = np.flatnonzero(np.unpackbits(q, bitorder="big"))
    q = np.unique(q.astype(np.int64))
    lens = np.diff(offsets)
    hit = np.isin(values, q).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(hit)])
    overlap = csum[offsets[1:]] - csum[offsets[:-1]]
    return (lens + q.size - 2 * overlap).astype(np.int64)


def _ids_to_packed(ids: np.ndarray, n_bytes: int) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= 8 * n_bytes):
        raise HashplugError(
            f"query code unit ids must lie in [0, {8 * n_bytes}); got {ids.min()}..{ids.max()}."
        )
    bits = np.zeros(8 * n_bytes, dtype=bool)
    bits[ids] = True
    return np.packbits(bits, bitorder="big")
