"""Binary code formats and exact conversions between them.

Three forms of the same code over ``m`` hash units are used everywhere in hashplug:

``packed``
    Dense bits, ``ndarray of shape (n, ceil(m / 8)), dtype=uint8``, in ``np.packbits`` order
    (``bitorder="big"``): unit ``i`` is bit ``7 - i % 8`` of byte ``i // 8``. Padding bits are zero.
``indices``
    For k-hot (sparse) codes: the ``k`` active units of each row, ascending,
    ``ndarray of shape (n, k), dtype=int64``.
``pm1``
    ``ndarray of shape (n, m), dtype=int8`` with +1 for an active unit (bit 1) and -1 otherwise
    (the ``y in {-1, 1}^m`` of the BioHash paper, eq. 6).

numpy only: the serving side imports this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._deprecation import spelled, warn_renamed
from .validation import HashplugError

__all__ = [
    "LAYOUTS",
    "INDEX_DTYPE",
    "check_layout",
    "n_bytes",
    "pack_bits",
    "unpack_bits",
    "indices_to_packed",
    "packed_to_indices",
    "pm1_to_packed",
    "packed_to_pm1",
    "indices_to_pm1",
    "convert",
    "check_packed",
    "check_indices",
    "index_bits",
    "storage_bits",
]

#: The code layouts (how an array or a column stores codes): ``packed`` bytes, k-hot ``indices``, ``pm1``.
LAYOUTS = ("packed", "indices", "pm1")

#: The one integer type of active-unit indices (``layout="indices"``) everywhere in hashplug's API and tables
#: (Arrow ``list<int32>``): ``encode``, :func:`packed_to_indices`, :func:`check_indices`. Only the ONNX graph's
#: ``indices`` output is int64 (what ONNX ``TopK`` emits); the runtime casts it once. m < 2**31 always.
INDEX_DTYPE = np.dtype(np.int32)

#: The largest m an index can name in :data:`INDEX_DTYPE`.
_MAX_M = int(np.iinfo(INDEX_DTYPE).max)


def check_layout(layout: str, code_kind: str | None = None, owner: str = "") -> str:
    """Validate a code ``layout`` (one of :data:`LAYOUTS`) for codes of ``code_kind``; returns it.

    Parameters
    ----------
    layout : str
        ``"packed"``, ``"indices"`` or ``"pm1"``.
    code_kind : {"dense", "khot"} or None, default=None
        What the encoder computes; ``"indices"`` is refused for ``"dense"``. None skips that check.
    owner : str, default=""
        Who produces the codes, for the message (e.g. ``"LSH produces dense codes"``).

    Raises
    ------
    HashplugError
        Naming the bad value and the layouts to use. The parameter is named as the caller spelled it
        (``layout``, or the deprecated ``format``).
    """
    name = spelled("layout")
    if layout not in LAYOUTS:
        raise HashplugError(f"Unknown code {name} {layout!r}; use one of {list(LAYOUTS)}.")
    if layout == "indices" and code_kind is not None and code_kind != "khot":
        raise HashplugError(
            f"{owner}; {name}='indices' is only for k-hot encoders. Use {name}='packed' or 'pm1'."
        )
    return layout


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # 0.1.0 name of LAYOUTS
        warn_renamed("hashplug.codes.FORMATS", "hashplug.codes.LAYOUTS", "hashplug.codes")
        return LAYOUTS
    raise AttributeError(f"module 'hashplug.codes' has no attribute {name!r}")


def n_bytes(m: int) -> int:
    """Bytes per packed code of ``m`` units: ``ceil(m / 8)``."""
    if int(m) < 1:
        raise HashplugError(f"The number of hash units m must be >= 1. Got {m} instead.")
    return (int(m) + 7) // 8


def index_bits(m: int) -> int:
    """Bits needed to store one unit index: ``ceil(log2 m)`` (at least 1)."""
    return max(1, int(np.ceil(np.log2(int(m)))))


def storage_bits(m: int, k: int | None, kind: str) -> int:
    """Storage per code in bits: ``m`` for dense codes, ``k * ceil(log2 m)`` for k-hot codes as indices."""
    return int(m) if kind == "dense" else int(k) * index_bits(m)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean matrix of shape (n, m) into codes of shape (n, ceil(m/8)), dtype=uint8."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise HashplugError(f"bits must be 2-D (n, m); got shape {bits.shape}.")
    return np.packbits(bits.astype(bool, copy=False), axis=1, bitorder="big")


def unpack_bits(packed: np.ndarray, m: int) -> np.ndarray:
    """Unpack codes of shape (n, ceil(m/8)) uint8 into a boolean matrix of shape (n, m)."""
    packed = check_packed(packed, m)
    return np.unpackbits(packed, axis=1, count=int(m), bitorder="big").astype(bool)


def check_packed(packed: np.ndarray, m: int, *, name: str = "codes") -> np.ndarray:
    """Validate packed codes: 2-D uint8 with ``ceil(m/8)`` columns and zero padding bits."""
    arr = np.asarray(packed)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.dtype != np.uint8:
        raise HashplugError(
            f"{name} must be packed bits of dtype uint8; got {arr.dtype}. Use hashplug.codes.pack_bits(bool_matrix)."
        )
    if arr.ndim != 2 or arr.shape[1] != n_bytes(m):
        raise HashplugError(
            f"{name} must have shape (n, {n_bytes(m)}) for m={m} units; got {arr.shape}."
        )
    pad = 8 * n_bytes(m) - int(m)
    if pad and arr.size and np.any(arr[:, -1] & np.uint8((1 << pad) - 1)):
        raise HashplugError(
            f"{name} has non-zero padding bits beyond unit m={m}; the codes were packed for a larger m."
        )
    return np.ascontiguousarray(arr)


def check_indices(indices: np.ndarray, m: int, k: int | None = None, *, name: str = "indices") -> np.ndarray:
    """Validate k-hot indices: integer (n, k), each row strictly ascending within [0, m).

    Returns
    -------
    indices : ndarray of shape (n, k), dtype=int32 (:data:`INDEX_DTYPE`), C-contiguous
    """
    arr = np.asarray(indices)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise HashplugError(f"{name} must be a 2-D integer array (n, k); got shape {arr.shape}, dtype {arr.dtype}.")
    if k is not None and arr.shape[1] != int(k):
        raise HashplugError(f"{name} must have k={k} columns; got {arr.shape[1]}.")
    if int(m) > _MAX_M + 1:
        raise HashplugError(f"m={m} units cannot be named by {INDEX_DTYPE} indices; m must be at most {_MAX_M + 1}.")
    if arr.shape[1] > int(m):
        raise HashplugError(f"{name} has k={arr.shape[1]} > m={m} active units per row; k must be in [1, m].")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= int(m):
            raise HashplugError(f"{name} must lie in [0, {int(m) - 1}]; got values in [{lo}, {hi}].")
        if arr.shape[1] > 1 and not np.all(np.diff(arr, axis=1) > 0):
            raise HashplugError(f"{name} rows must be strictly ascending (no repeats); sort each row with np.sort.")
    return np.ascontiguousarray(arr, dtype=INDEX_DTYPE)


def indices_to_packed(indices: np.ndarray, m: int) -> np.ndarray:
    """k-hot indices (n, k) -> packed codes (n, ceil(m/8)) uint8."""
    idx = check_indices(indices, m)
    n, m = idx.shape[0], int(m)
    out = np.zeros((n, -(-m // 8)), dtype=np.uint8)
    step = max(1, (1 << 26) // max(m, 1))  # rows per chunk: the boolean scratch stays under 64 MB
    for s in range(0, n, step):
        bits = np.zeros((min(step, n - s), m), dtype=bool)
        np.put_along_axis(bits, idx[s : s + step], True, axis=1)
        out[s : s + step] = pack_bits(bits)
    return out


def packed_to_indices(packed: np.ndarray, m: int, k: int | None = None) -> np.ndarray:
    """Packed codes -> ascending active-unit indices: ndarray of shape (n, k), dtype=int32 (:data:`INDEX_DTYPE`).

    Every row must have the same number of set bits (``k`` when given).
    """
    bits = unpack_bits(packed, m)
    counts = bits.sum(axis=1)
    if bits.shape[0] and (counts.min() != counts.max() or (k is not None and counts[0] != int(k))):
        want = f"k={k}" if k is not None else "the same number"
        raise HashplugError(
            f"codes are not k-hot: rows have between {counts.min()} and {counts.max()} set bits, expected {want}."
        )
    kk = int(counts[0]) if bits.shape[0] else int(k or 0)
    rows = np.nonzero(bits)[1].reshape(bits.shape[0], kk)
    return rows.astype(INDEX_DTYPE)


def pm1_to_packed(pm1: np.ndarray, m: int | None = None) -> np.ndarray:
    """+-1 codes (n, m) -> packed codes (n, ceil(m/8)) uint8 (+1 is bit 1).

    When ``m`` is given, the codes must have exactly ``m`` columns.
    """
    arr = np.asarray(pm1)
    if arr.ndim != 2 or not np.all(np.abs(arr) == 1):
        raise HashplugError("pm1 codes must be a 2-D array whose entries are all +1 or -1.")
    if m is not None and arr.shape[1] != int(m):
        raise HashplugError(
            f"pm1 codes have {arr.shape[1]} columns but m={int(m)} units were given; "
            "pass codes of shape (n, m) or the m they were made with."
        )
    return pack_bits(arr > 0)


def packed_to_pm1(packed: np.ndarray, m: int) -> np.ndarray:
    """Packed codes -> +-1 codes (n, m) int8."""
    return np.where(unpack_bits(packed, m), np.int8(1), np.int8(-1))


def indices_to_pm1(indices: np.ndarray, m: int) -> np.ndarray:
    """k-hot indices (n, k) -> +-1 codes (n, m) int8."""
    return packed_to_pm1(indices_to_packed(indices, m), m)


def convert(codes: np.ndarray, src: str, dst: str, m: int, k: int | None = None) -> np.ndarray:
    """Convert codes between the ``"packed"``, ``"indices"`` and ``"pm1"`` layouts."""
    for f in (src, dst):
        check_layout(f)
    if src == "packed":
        packed = check_packed(codes, m)
    elif src == "indices":
        packed = indices_to_packed(codes, m)
    else:
        packed = pm1_to_packed(codes, m)
    if src == dst:  # validated above; returned unchanged
        return np.asarray(codes)
    if dst == "packed":
        return packed
    if dst == "indices":
        return packed_to_indices(packed, m, k)
    return packed_to_pm1(packed, m)
