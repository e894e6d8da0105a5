"""The one input-checking helper and the error types every entry point uses.

numpy only: the serving side imports this module.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "HashplugError",
    "HashplugTypeError",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelMismatchError",
    "TableSchemaError",
    "IngestError",
    "check_array",
    "check_int_param",
    "check_float_param",
    "check_choice",
    "check_is_fitted",
    "check_path",
    "NotFittedError",
]


class HashplugError(ValueError):
    """Base class of every error hashplug raises for bad input (a ``ValueError``).

    ``except hashplug.HashplugError`` catches them all; the subclasses below also derive from the builtin
    type that fits (``TypeError``, ``FileNotFoundError``), so code written against the builtins keeps working.
    """


class HashplugTypeError(HashplugError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""


class ModelFileError(HashplugError):
    """A saved model or ONNX file is missing, corrupt or not a hashplug file."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """A model file (or a file the model needs) does not exist (also a ``FileNotFoundError``)."""


class ModelMismatchError(HashplugError):
    """A model file does not match the table, the data or the saved configuration."""


class TableSchemaError(HashplugError):
    """A LanceDB table's columns cannot hold or search hashplug codes (e.g. a float code column)."""


class IngestError(HashplugError):
    """Ingestion stopped on a bad chunk; what was committed before it stays committed.

    Attributes
    ----------
    rows_committed : int
        Rows of the source committed to the table before the failure (by this and earlier runs
        sharing the checkpoint).
    row : int or None
        Index, in the whole source, of the first bad row when it is known.
    """

    def __init__(self, message: str, *, rows_committed: int = 0, row: int | None = None) -> None:
        super().__init__(message)
        self.rows_committed = int(rows_committed)
        self.row = row


class NotFittedError(HashplugError, AttributeError):
    """An encoder was used before ``fit``."""


def check_array(
    X: Any,
    *,
    name: str = "X",
    ndim: int | Sequence[int] | None = 2,
    n_features: int | None = None,
    shape_tail: tuple[int, ...] | None = None,
    dtype: Any = np.float32,
    allow_empty: bool = False,
    finite: bool = True,
    owner: str | None = None,
    row_offset: int = 0,
) -> np.ndarray:
    """Validate and convert an input array.

    Parameters
    ----------
    X : array-like
        The input.
    name : str
        Name used in error messages.
    ndim : int, sequence of int or None
        Allowed numbers of dimensions (None: any).
    n_features : int or None
        Required size of the last axis of a 2-D input (or the product of the trailing axes).
    shape_tail : tuple of int or None
        Required trailing shape ``X.shape[1:]``.
    dtype : numpy dtype or None
        Target dtype (None keeps the input's numeric dtype). Non-numeric inputs are rejected.
    allow_empty : bool
        Whether a batch of 0 rows is accepted.
    finite : bool
        Reject NaN and infinity.
    owner : str or None
        Who is checking (class or function name), prefixed to messages.
    row_offset : int
        Added to the row index in messages, when ``X`` is a slice of a larger source (a chunk of an ingest).

    Returns
    -------
    X : ndarray
        C-contiguous array of ``dtype``.
    """
    who = f"{owner}: " if owner else ""
    if X is None:
        raise HashplugError(f"{who}{name} is None; pass an array of shape (n_samples, n_features).")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept
        raise HashplugError(f"{who}{name} could not be converted to a numpy array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise HashplugError(
            f"{who}{name} must be numeric; got dtype {arr.dtype}. Convert it with np.asarray(x, dtype=np.float32)."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise HashplugError(f"{who}{name} must be real-valued; got dtype {arr.dtype}.")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, numbers.Integral) else tuple(ndim)
        if arr.ndim not in allowed:
            hint = " Reshape a single sample with x.reshape(1, -1)." if arr.ndim == 1 else ""
            raise HashplugError(
                f"{who}{name} must have {' or '.join(map(str, allowed))} dimensions; got shape {arr.shape}.{hint}"
            )
    if arr.ndim >= 1 and arr.shape[0] == 0 and not allow_empty:
        raise HashplugError(f"{who}{name} is an empty batch (shape {arr.shape}); pass at least one row.")
    if shape_tail is not None and tuple(arr.shape[1:]) != tuple(shape_tail):
        if not (arr.ndim == 2 and int(np.prod(shape_tail)) == arr.shape[1]):
            raise HashplugError(
                f"{who}{name} has per-sample shape {tuple(arr.shape[1:])}, but the model expects "
                f"{tuple(shape_tail)} (or {int(np.prod(shape_tail))} flattened features)."
            )
    if n_features is not None:
        got = int(np.prod(arr.shape[1:])) if arr.ndim >= 2 else -1
        if got != n_features:
            raise HashplugError(
                f"{who}{name} has {got} features per sample (shape {arr.shape}), but {n_features} are expected; "
                "encode data with the same dimensionality the model was fitted on."
            )
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if finite and arr.size and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = [int(i) for i in np.argwhere(~np.isfinite(arr))[0]]
        if arr.ndim:
            bad[0] += int(row_offset)
        err = HashplugError(
            f"{who}{name} contains NaN or infinity (first at index {tuple(bad)}); "
            "clean or impute the data before encoding."
        )
        err.row = bad[0] if arr.ndim else None  # the first bad row, for callers that report it
        raise err
    return np.ascontiguousarray(arr)


def check_int_param(
    value: Any, name: str, owner: str, low: int | None = None, high: int | None = None, *, range_text: str | None = None
) -> int:
    """Validate an integer hyperparameter; the message names the value and the allowed range."""
    rng = range_text or _range_text(low, high)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HashplugError(f"The '{name}' parameter of {owner} must be an int in {rng}. Got {value!r} instead.")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise HashplugError(f"The '{name}' parameter of {owner} must be an int in {rng}. Got {v} instead.")
    return v


def check_float_param(
    value: Any,
    name: str,
    owner: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate a real hyperparameter; the message names the value and the allowed interval."""
    lb = "(" if low_open else "["
    hb = ")" if high_open else "]"
    rng = f"{lb}{'-inf' if low is None else low}, {'inf' if high is None else high}{hb}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise HashplugError(f"The '{name}' parameter of {owner} must be a float in {rng}. Got {value!r} instead.")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise HashplugError(f"The '{name}' parameter of {owner} must be a float in {rng}. Got {v} instead.")
    if high is not None and (v > high or (high_open and v == high)):
        raise HashplugError(f"The '{name}' parameter of {owner} must be a float in {rng}. Got {v} instead.")
    return v


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    """Validate a categorical parameter."""
    choices = list(choices)
    if value not in choices:
        raise HashplugError(
            f"The '{name}' parameter of {owner} must be one of {choices}. Got {value!r} instead."
        )
    return value


def check_path(value: Any, name: str, owner: str) -> Any:
    """Return ``value`` as a ``pathlib.Path``; anything but ``str`` / ``os.PathLike`` raises
    :class:`HashplugTypeError` naming the argument and what it got."""
    import os
    from pathlib import Path

    if isinstance(value, (str, os.PathLike)) and str(value) != "":
        return Path(value)
    raise HashplugTypeError(
        f"{owner}: {name} must be a file path (str or os.PathLike); got {type(value).__name__} {value!r:.60}."
    )


def check_is_fitted(estimator: Any, attributes: Sequence[str]) -> None:
    """Raise :class:`NotFittedError` unless every attribute exists."""
    missing = [a for a in attributes if getattr(estimator, a, None) is None]
    if missing:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet (missing {missing}); call fit(X) first."
        )


def _range_text(low: int | None, high: int | None) -> str:
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
