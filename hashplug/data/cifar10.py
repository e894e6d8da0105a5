"""CIFAR-10: 60,000 colour images, 32x32 RGB, stored as JPEG bytes (the BioHash paper's Table 2).

Images come back in their natural shape ``(n, 32, 32, 3)``: height, width, then the R, G, B channels
(HWC), which is how Pillow decodes a JPEG and how the BioHash paper treats CIFAR-10 (32x32x3 pixels).
Flattened (``flat=True``) each image is its 3,072 bytes in that same order, ``X[i].reshape(32, 32, 3)``, as
in hashplug 0.1.0. A convolutional encoder that wants channels first takes ``X.transpose(0, 3, 1, 2)``.

Decoding all images takes a while, so the decoded pixels are cached (see :func:`load_cifar10`).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import file_sha256
from ._io import DataFileError, as_labels, default_cache_dir, open_npz, read_key, resolve_path, shaped

__all__ = ["load_cifar10"]

_SHAPE = (32, 32, 3)
#: Version of the cache file's layout. v1 (hashplug 0.1.0) held (n, 3072); v2 holds (n, 32, 32, 3), the same
#: bytes in the same order.
_CACHE_VERSION = 2


#: The data file, relative to the data directory (the registry's ``Dataset.file``).
FILE = "cifar10/cifar10_jpeg_q75.npz"

def _import_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "Decoding the CIFAR-10 JPEGs needs Pillow: pip install pillow (or pip install 'hashplug[train]')."
        ) from exc
    return Image


def _cifar_meta(z: Mapping[str, Any], p: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(split, offsets, labels)`` for train and test (cheap: no JPEG bytes are read)."""
    meta = []
    for split in ("train", "test"):
        off = read_key(z, f"{split}_offsets", p, "CIFAR-10")
        if off.ndim != 1 or off.shape[0] < 1 or not np.issubdtype(off.dtype, np.integer):
            raise DataFileError(
                f"{p}: {split}_offsets has shape {off.shape} and dtype {off.dtype}; expected (n+1,) integers. "
                "The file is corrupt or not the CIFAR-10 JPEG file."
            )
        off = off.astype(np.int64, copy=False)
        y = as_labels(read_key(z, f"y_{split}", p, "CIFAR-10"), off.shape[0] - 1, p, f"y_{split}")
        meta.append((split, off, y))
    return meta


def _cifar_parts(
    z: Mapping[str, Any], p: Path, meta: list[tuple[str, np.ndarray, np.ndarray]]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(split, jpeg bytes, offsets)`` for train and test, with the offsets checked against the bytes."""
    parts = []
    for split, off, _ in meta:
        jpeg = read_key(z, f"{split}_jpeg", p, "CIFAR-10")
        if (
            jpeg.ndim != 1
            or jpeg.dtype != np.uint8
            or off[0] != 0
            or off[-1] != jpeg.shape[0]
            or (np.diff(off) <= 0).any()
        ):
            raise DataFileError(
                f"{p}: {split}_jpeg / {split}_offsets are inconsistent (jpeg {jpeg.shape} {jpeg.dtype}, "
                f"offsets {off.shape}); expected 1-D uint8 bytes and n+1 increasing offsets from 0 to their "
                "length. The file is corrupt or not the CIFAR-10 JPEG file."
            )
        parts.append((split, jpeg, off))
    return parts


def _decode_cifar(
    parts: Sequence[tuple[str, np.ndarray, np.ndarray]],
    indices: np.ndarray,
    p: Path,
    progress: bool,
) -> np.ndarray:
    """Decode the pooled images ``indices`` into a ``(len(indices), 32, 32, 3)`` uint8 array (HWC, RGB)."""
    Image = _import_pillow()
    from tqdm.auto import tqdm

    n_train = parts[0][2].shape[0] - 1
    out = np.empty((indices.shape[0], *_SHAPE), dtype=np.uint8)
    bar = tqdm(total=indices.shape[0], desc="Decoding CIFAR-10 JPEGs", unit="img", disable=not progress)
    try:
        for row, i in enumerate(indices.tolist()):
            split, jpeg, off = parts[0] if i < n_train else parts[1]
            j = i if i < n_train else i - n_train
            try:
                with Image.open(io.BytesIO(jpeg[off[j] : off[j + 1]].tobytes())) as im:
                    arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
            except Exception as exc:
                raise DataFileError(
                    f"{p}: image {j} of the {split} split is not a valid JPEG ({type(exc).__name__}: {exc}); "
                    "the file is corrupt. Re-copy it."
                ) from exc
            if arr.shape != _SHAPE:
                raise DataFileError(
                    f"{p}: image {j} of the {split} split decodes to shape {arr.shape}; expected {_SHAPE}."
                )
            out[row] = arr
            if row % 256 == 255:
                bar.update(256)
        bar.update(indices.shape[0] - bar.n)
    finally:
        bar.close()
    return out


def _load_cache(cache_file: Path, n: int) -> np.ndarray | None:
    """The cached pixels if the file exists and is valid, else None (with a warning when invalid)."""
    if not cache_file.is_file():
        return None
    try:
        X = np.load(cache_file, allow_pickle=False)
    except Exception as exc:  # corrupt / truncated cache: decode again
        warnings.warn(f"Ignoring corrupt cache file {cache_file} ({exc}); decoding again.", stacklevel=3)
        return None
    expected = (n, *_SHAPE)
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.shape != expected:
        warnings.warn(
            f"Ignoring cache file {cache_file}: it holds {getattr(X, 'shape', None)} "
            f"{getattr(X, 'dtype', None)}, expected {expected} uint8; decoding again.",
            stacklevel=3,
        )
        return None
    return np.ascontiguousarray(X)


def _save_cache(cache_file: Path, X: np.ndarray) -> None:
    """Write atomically (temp file + rename); a failure only warns."""
    tmp = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cache_file.name + ".", suffix=".tmp", dir=cache_file.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, X, allow_pickle=False)
        os.replace(tmp, cache_file)
        tmp = None
    except OSError as exc:
        warnings.warn(
            f"Could not write the decoded-pixel cache {cache_file} ({exc}); set HASHPLUG_CACHE or pass "
            "cache_dir= to a writable directory to avoid decoding again next time.",
            stacklevel=3,
        )
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _cache_file_name(source_sha256: str) -> str:
    """Name of the decoded-pixel cache of the source file with this sha256 (hex)."""
    return f"cifar10_{source_sha256[:24]}_v{_CACHE_VERSION}.npy"


def load_cifar10(
    path: str | os.PathLike[str] | None = None,
    *,
    flat: bool = False,
    indices: Iterable[int] | np.ndarray | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load all 60,000 CIFAR-10 images (training then test), decoded from JPEG.

    Decoding every image takes a while, so the full decoded array is cached as
    ``<cache_dir>/cifar10_<sha256 of the source file>_v2.npy`` (shape (60000, 32, 32, 3)) and reused when
    its shape and dtype check out (a corrupt or wrong cache is ignored with a warning and rewritten). The
    cache is never written next to the source file.

    Parameters
    ----------
    path : path-like or None
        ``cifar10_jpeg_q75.npz`` with keys ``train_jpeg`` (bytes, uint8), ``train_offsets`` (50001,) int64,
        ``y_train`` (50000,) and the same ``test_*`` keys. None: the registry's default file
        (:func:`~hashplug.data.default_data_path` ``("cifar10")``).
    flat : bool
        Return each image flattened to 3,072 values in HWC order, ``(n, 3072)`` (what the vector encoders
        take); False (default): the natural shape ``(n, 32, 32, 3)``.
    indices : sequence of int or None
        Pooled indices (0-49999 training, 50000-59999 test) of the images to decode, in that order;
        decodes only those and bypasses the cache (e.g. ``indices=range(8)`` for a quick look).
        None: all images.
    cache_dir : path-like or None
        Cache directory. None: :func:`~hashplug.data.default_cache_dir` (``$HASHPLUG_CACHE`` or
        ``~/.cache/hashplug``).
    use_cache : bool
        Read and write the cache (only when ``indices`` is None).
    progress : bool
        Show a tqdm progress bar while decoding.

    Returns
    -------
    X : ndarray of shape (n, 32, 32, 3), or (n, 3072) when ``flat``, dtype uint8
        RGB pixels 0-255 (scale 255), height x width x channel; ``n`` is 60000, or ``len(indices)``. The
        flat array is a view of the natural one, ``X.reshape(n, -1)``. JPEG quality 75 costs about 30 dB
        PSNR against the original.
    y : ndarray of shape (n,), dtype int64
        Class labels 0-9.
    """
    p = resolve_path(path, "cifar10", FILE)
    with open_npz(p) as z:
        meta = _cifar_meta(z, p)
        y_all = np.concatenate([m[2] for m in meta])
        n = y_all.shape[0]

        if indices is not None:
            idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
            if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
                raise DataFileError(
                    f"indices must be a 1-D sequence of integers; got dtype {idx.dtype}, shape {idx.shape}."
                )
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataFileError(
                    f"indices must lie in [0, {n - 1}] for {p}; got min {idx.min()}, max {idx.max()}."
                )
            return shaped(_decode_cifar(_cifar_parts(z, p, meta), idx, p, progress), flat), y_all[idx]

        cache_file = None
        if use_cache:
            cdir = Path(os.fspath(cache_dir)).expanduser() if cache_dir is not None else default_cache_dir()
            cache_file = cdir / _cache_file_name(file_sha256(p))
            X = _load_cache(cache_file, n)
            if X is not None:
                return shaped(X, flat), y_all
        X = _decode_cifar(_cifar_parts(z, p, meta), np.arange(n), p, progress)
    if cache_file is not None:
        _save_cache(cache_file, X)
    return shaped(X, flat), y_all
