"""Users' own data: vectors (or images) and optional labels from ``.npy``, ``.npz`` or ``.parquet`` files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._io import DataFileError, as_labels, as_samples, open_npz, read_key, resolve_path

__all__ = ["load_array"]

_X_KEYS = ("X", "x", "emb", "embeddings", "embedding", "vectors", "vector", "features", "data")
_Y_KEYS = ("y", "labels", "label", "target", "targets")


def _pick_key(keys: Sequence[str], preferred: Sequence[str]) -> str | None:
    for k in preferred:
        if k in keys:
            return k
    return None


def _load_array_npz(
    p: Path, x_key: str | None, y_key: str | None, flat: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    with open_npz(p) as z:
        keys = [k for k in z if k]
        if "" in z:  # a .npy file
            if x_key is not None or y_key is not None:
                raise DataFileError(
                    f"{p} is a single .npy array, which has no keys; drop x_key/y_key or save an .npz with "
                    "np.savez(path, X=X, y=y)."
                )
            return as_samples(np.asarray(z[""]), p, "array", flat), None
        if not keys:
            raise DataFileError(f"{p} is an empty .npz archive; save the data with np.savez(path, X=X, y=y).")
        return _select_npz(z, keys, p, x_key, y_key, flat)


def _select_npz(
    z: Mapping[str, Any], keys: list[str], p: Path, x_key: str | None, y_key: str | None, flat: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    if x_key is None:
        x_key = _pick_key(keys, _X_KEYS)
        if x_key is None:
            rest = [k for k in keys if k not in _Y_KEYS]
            if len(rest) != 1:
                raise DataFileError(
                    f"Cannot tell which array of {p} holds the data (keys: {', '.join(map(repr, keys))}); "
                    "pass x_key=... (and y_key=... for labels)."
                )
            x_key = rest[0]
    X = as_samples(read_key(z, x_key, p), p, x_key, flat)
    if y_key is None:
        y_key = _pick_key([k for k in keys if k != x_key], _Y_KEYS)
        if y_key is None:
            return X, None
    return X, as_labels(read_key(z, y_key, p), X.shape[0], p, y_key)


def _list_column_to_2d(col: Any, p: Path, key: str) -> np.ndarray:
    """A pyarrow (fixed-size) list column of numbers as a 2-D float32 array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if arr.null_count:
        raise DataFileError(f"Column {key!r} of {p} has {arr.null_count} null rows; drop or fill them first.")
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if n else 0
        if n and (lengths != dim).any():
            bad = int(np.flatnonzero(lengths != dim)[0])
            raise DataFileError(
                f"Column {key!r} of {p} holds lists of different lengths (row 0 has {dim}, row {bad} has "
                f"{int(lengths[bad])}); every vector must have the same dimension."
            )
    values = arr.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise DataFileError(f"Column {key!r} of {p} holds lists of {values.type}; expected numbers.")
    if values.null_count:
        raise DataFileError(f"Column {key!r} of {p} has null values inside its vectors; fill them first.")
    return np.ascontiguousarray(values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, dim))


def _load_array_parquet(
    p: Path, x_key: str | None, y_key: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a base dependency
        raise ImportError("Reading parquet files needs pyarrow: pip install pyarrow") from exc
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(
            f"Cannot read {p}: not a valid parquet file or corrupt ({type(exc).__name__}: {exc})."
        ) from exc
    names = table.column_names

    def _is_list(t: Any) -> bool:
        return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)

    if x_key is None:
        list_cols = [c for c in names if _is_list(table.schema.field(c).type)]
        if len(list_cols) == 1:
            x_key = list_cols[0]
        else:
            x_key = _pick_key(list_cols, _X_KEYS)
        if x_key is None:
            what = f"several ({', '.join(map(repr, list_cols))})" if list_cols else "none"
            raise DataFileError(
                f"Cannot tell which column of {p} holds the vectors: it needs one column of (fixed-size) "
                f"lists of numbers and has {what} among {', '.join(map(repr, names))}; pass x_key=..."
            )
    if x_key not in names:
        raise DataFileError(f"{p} has no column {x_key!r}; its columns are {', '.join(map(repr, names))}.")
    if not _is_list(table.schema.field(x_key).type):
        raise DataFileError(
            f"Column {x_key!r} of {p} has type {table.schema.field(x_key).type}; expected a column of "
            "(fixed-size) lists of numbers, one vector per row."
        )
    X = _list_column_to_2d(table.column(x_key), p, x_key)
    if y_key is None:
        y_key = _pick_key([c for c in names if c != x_key], _Y_KEYS)
        if y_key is None:
            return X, None
    if y_key not in names:
        raise DataFileError(f"{p} has no column {y_key!r}; its columns are {', '.join(map(repr, names))}.")
    ycol = table.column(y_key)
    if ycol.null_count:
        raise DataFileError(f"Label column {y_key!r} of {p} has {ycol.null_count} nulls; fill or drop them.")
    return X, as_labels(ycol.to_numpy(), X.shape[0], p, y_key)


def load_array(
    path: str | os.PathLike[str],
    x_key: str | None = None,
    y_key: str | None = None,
    *,
    flat: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load users' own vectors (and optional labels) from ``.npy``, ``.npz`` or ``.parquet``.

    This is the vectors loader: arrays of images come back flattened unless ``flat=False``
    (:func:`~hashplug.data.load_dataset` with a path keeps the stored shape by default).

    Parameters
    ----------
    path : path-like
        ``.npy``: a single array, no labels. ``.npz``: arrays by name. ``.parquet``: one column of
        (fixed-size) lists of numbers, one vector per row, and optionally an integer label column.
    x_key : str or None
        Array (npz) or column (parquet) holding the data. None: the first of ``X``, ``x``, ``emb``,
        ``embeddings``, ``embedding``, ``vectors``, ``vector``, ``features``, ``data``; for parquet the only
        list column; for npz the only non-label array.
    y_key : str or None
        Array or column holding labels. None: the first of ``y``, ``labels``, ``label``, ``target``,
        ``targets`` if present, else no labels.
    flat : bool
        Flatten npy/npz arrays with more than 2 dimensions row-major to ``(n_samples, prod(shape[1:]))``
        (default, as in hashplug 0.1.0); False keeps the stored shape ``(n_samples, ...)``. Parquet
        vectors are 2-D either way.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), or the stored (n_samples, ...) when not ``flat``
        npy/npz: the stored numeric dtype. parquet: float32.
    y : ndarray of shape (n_samples,), dtype int64, or None
        Integer labels, or None when the file has none.

    Raises
    ------
    DataFileError
        Missing or corrupt file, unsupported extension, missing key or column, wrong shapes or dtypes.
    """
    p = resolve_path(path)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _load_array_npz(p, x_key, y_key, flat)
    if suffix in (".parquet", ".pq"):
        return _load_array_parquet(p, x_key, y_key)
    raise DataFileError(
        f"Unsupported data file {p} (extension {suffix or 'none'!r}); use .npy, .npz or .parquet, e.g. "
        "np.savez('data.npz', X=X, y=y)."
    )
