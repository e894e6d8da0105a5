"""Loaders for the benchmark data sets and for users' own arrays.

Every loader takes a path (nothing is ever downloaded) and returns ``(X, y)``: ``X`` is a 2-D array of
shape ``(n_samples, n_features)``, ``y`` a 1-D ``int64`` array of labels (or ``None`` for unlabelled
user data). Images are flattened row-major, so ``X[i].reshape(28, 28)`` (MNIST) or
``X[i].reshape(32, 32, 3)`` (CIFAR-10, HWC RGB) gives the image back.

The reference files live in a read-only ``shared/data`` folder next to the repository; see
:func:`default_data_dir`. Decoded CIFAR-10 pixels are cached under :func:`default_cache_dir`, never next
to the source file.

numpy only at import time: pyarrow, Pillow, tqdm and scikit-learn load inside the functions that need them.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._files import file_sha256
from ..validation import HashplugError

__all__ = [
    "DataFileError",
    "DATASETS",
    "DATA_FILES",
    "default_data_dir",
    "default_data_path",
    "default_cache_dir",
    "load_mnist",
    "load_cifar10",
    "load_ag_news",
    "load_digits",
    "load_array",
    "load_dataset",
]

#: Expected location of each reference file, relative to the data directory.
DATA_FILES: dict[str, str] = {
    "mnist": "mnist/mnist.npz",
    "cifar10": "cifar10/cifar10_jpeg_q75.npz",
    "ag_news": "ag_news/ag_news_test_minilm.npz",
}

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10", "ag_news")

_ALIASES = {
    "digits": "digits",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "ag_news": "ag_news",
    "ag-news": "ag_news",
    "agnews": "ag_news",
}

_CIFAR_SHAPE = (32, 32, 3)
_CACHE_VERSION = 1
_X_KEYS = ("X", "x", "emb", "embeddings", "embedding", "vectors", "vector", "features", "data")
_Y_KEYS = ("y", "labels", "label", "target", "targets")


class DataFileError(HashplugError):
    """A data file is missing, corrupt, or does not hold the expected arrays or columns."""


# ---------------------------------------------------------------------------------------------------------
# locations


def _repo_root() -> Path:
    """The directory holding the ``hashplug`` package directory."""
    return Path(__file__).resolve().parent.parent.parent


def _data_dir_candidates() -> list[Path]:
    return [Path.cwd() / ".." / "shared" / "data", _repo_root() / ".." / "shared" / "data"]


def default_data_dir() -> Path | None:
    """The directory holding the reference data files, if any.

    Returns
    -------
    path : pathlib.Path or None
        ``$HASHPLUG_DATA`` when that variable is set (whether or not it exists, so that a wrong setting
        is reported instead of silently ignored); otherwise the first existing directory of
        ``./../shared/data`` (relative to the working directory) and ``<repo root>/../shared/data``
        (the repo root being the parent of the ``hashplug`` package directory); ``None`` when neither exists.
    """
    env = os.environ.get("HASHPLUG_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    for cand in _data_dir_candidates():
        if cand.is_dir():
            return cand.resolve()
    return None


def default_data_path(name: str) -> Path:
    """The expected path of a reference data file.

    Parameters
    ----------
    name : {"mnist", "cifar10", "ag_news"}
        Data set name (case-insensitive; ``"cifar-10"`` and ``"ag-news"`` are accepted too).

    Returns
    -------
    path : pathlib.Path
        An existing file, e.g. ``<data dir>/mnist/mnist.npz``.

    Raises
    ------
    DataFileError
        For an unknown name, when no data directory is found, or when the file is missing from it.
    """
    key = _ALIASES.get(str(name).lower())
    if key not in DATA_FILES:
        raise DataFileError(
            f"No reference data file for {name!r}; known names: {', '.join(sorted(DATA_FILES))}."
        )
    data_dir = default_data_dir()
    if data_dir is None:
        looked = ", ".join(str(p) for p in _data_dir_candidates())
        raise DataFileError(
            f"Cannot find the {key} data: no data directory (looked in {looked}). "
            f"Pass --data PATH (the path to {DATA_FILES[key]}) or set HASHPLUG_DATA to the data directory."
        )
    path = data_dir / DATA_FILES[key]
    if not path.is_file():
        src = "HASHPLUG_DATA" if os.environ.get("HASHPLUG_DATA", "").strip() else "the default data directory"
        raise DataFileError(
            f"Cannot find the {key} data: {path} does not exist (data directory {data_dir}, from {src}). "
            f"Pass --data PATH to the file or set HASHPLUG_DATA to the directory holding {DATA_FILES[key]}."
        )
    return path


def default_cache_dir() -> Path:
    """Where decoded data is cached: ``$HASHPLUG_CACHE`` if set, else ``~/.cache/hashplug``."""
    env = os.environ.get("HASHPLUG_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hashplug"


# ---------------------------------------------------------------------------------------------------------
# helpers


def _resolve_path(path: str | os.PathLike[str] | None, name: str | None = None) -> Path:
    if path is None:
        if name is None:
            raise DataFileError("No path given; pass the path to a data file.")
        return default_data_path(name)
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DataFileError(f"Data file {p} does not exist; check the path (or pass --data PATH).")
    if p.is_dir():
        hint = ""
        if name in DATA_FILES and (p / DATA_FILES[name]).is_file():
            hint = f" Did you mean {p / DATA_FILES[name]}?"
        raise DataFileError(f"{p} is a directory; pass the path to the data file itself.{hint}")
    return p


@contextmanager
def _open_npz(path: Path) -> Iterator[Mapping[str, Any]]:
    """Open an ``.npz`` (or ``.npy``) file without pickle, as a lazy mapping of arrays closed on exit.

    A ``.npy`` file is given as ``{"": array}``.
    """
    try:
        obj = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataFileError(
            f"Cannot read {path}: not a valid numpy .npz/.npy file or corrupt ({type(exc).__name__}: {exc}). "
            "Re-create or re-copy the file."
        ) from exc
    if isinstance(obj, np.ndarray):
        yield {"": obj}
        return
    with obj:
        yield obj


def _read_key(z: Any, key: str, path: Path, what: str = "") -> np.ndarray:
    """Read one array from an opened npz, with errors naming the path and the available keys."""
    if key not in z:
        keys = [k for k in z if k]
        found = ", ".join(repr(k) for k in keys) if keys else "a single .npy array"
        why = f" (needed for {what})" if what else ""
        raise DataFileError(f"{path} has no array {key!r}{why}; it holds {found}. Is this the right file?")
    try:
        return np.asarray(z[key])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DataFileError(
            f"Cannot read array {key!r} from {path}: the file is corrupt ({type(exc).__name__}: {exc}). "
            "Re-create or re-copy the file."
        ) from exc


def _as_labels(y: Any, n: int, path: Path | str, key: str) -> np.ndarray:
    """Labels as a 1-D int64 array of length ``n``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise DataFileError(
            f"Labels {key!r} in {path} have shape {y.shape}; expected ({n},) to match the {n} samples."
        )
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    raise DataFileError(
        f"Labels {key!r} in {path} must be integers; got dtype {y.dtype}. "
        "Encode them first, e.g. y = np.unique(labels, return_inverse=True)[1]."
    )


def _as_2d(X: np.ndarray, path: Path | str, key: str) -> np.ndarray:
    """A numeric array with >= 2 dimensions, flattened row-major to ``(n_samples, n_features)``."""
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise DataFileError(f"Array {key!r} in {path} must be numeric; got dtype {X.dtype}.")
    if X.ndim < 2:
        raise DataFileError(
            f"Array {key!r} in {path} has shape {X.shape}; expected (n_samples, n_features) "
            "(or (n_samples, ...) which is flattened)."
        )
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    return np.ascontiguousarray(X)


# ---------------------------------------------------------------------------------------------------------
# reference data sets


def load_mnist(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load all 70,000 MNIST digits (training then test images), flattened.

    Parameters
    ----------
    path : path-like or None
        ``mnist.npz`` with keys ``x_train`` (60000, 28, 28) uint8, ``y_train``, ``x_test``, ``y_test``.
        None: :func:`default_data_path` ``("mnist")``.

    Returns
    -------
    X : ndarray of shape (70000, 784), dtype uint8
        Pixel values 0-255; row ``i`` is image ``i`` flattened row-major (``X[i].reshape(28, 28)``).
        Rows 0-59999 are the official training images, 60000-69999 the test images.
    y : ndarray of shape (70000,), dtype int64
        Digit labels 0-9.
    """
    p = _resolve_path(path, "mnist")
    parts_x, parts_y = [], []
    with _open_npz(p) as z:
        raw = {k: _read_key(z, k, p, "MNIST") for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        x, yy = raw[f"x_{split}"], raw[f"y_{split}"]
        if x.ndim == 3 and x.shape[1:] == (28, 28):
            x = x.reshape(x.shape[0], 784)
        if x.ndim != 2 or x.shape[1] != 784:
            raise DataFileError(f"x_{split} in {p} has shape {x.shape}; expected (n, 28, 28) or (n, 784).")
        parts_x.append(x.astype(np.uint8, copy=False))
        parts_y.append(_as_labels(yy, x.shape[0], p, f"y_{split}"))
    return np.ascontiguousarray(np.concatenate(parts_x)), np.concatenate(parts_y)


def load_ag_news(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the AG News test-split sentence embeddings (all-MiniLM-L6-v2).

    Parameters
    ----------
    path : path-like or None
        ``ag_news_test_minilm.npz`` with keys ``emb`` (7600, 384) float16 and ``y`` (7600,) uint8.
        None: :func:`default_data_path` ``("ag_news")``.

    Returns
    -------
    X : ndarray of shape (7600, 384), dtype float32
        L2-normalised embeddings of ``title + ". " + description``.
    y : ndarray of shape (7600,), dtype int64
        Labels 0-3 (World, Sports, Business, Sci/Tech).
    """
    p = _resolve_path(path, "ag_news")
    with _open_npz(p) as z:
        emb, y_raw = _read_key(z, "emb", p, "AG News"), _read_key(z, "y", p, "AG News")
    X = _as_2d(emb, p, "emb").astype(np.float32)
    y = _as_labels(y_raw, X.shape[0], p, "y")
    return X, y


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's bundled 8x8 digits (offline, always available).

    Returns
    -------
    X : ndarray of shape (1797, 64), dtype float32
        Pixel values 0-16, each image flattened row-major.
    y : ndarray of shape (1797,), dtype int64
        Digit labels 0-9.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a base dependency
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from exc
    d = _sk_load_digits()
    return np.ascontiguousarray(d.data, dtype=np.float32), np.asarray(d.target, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10



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
        off = _read_key(z, f"{split}_offsets", p, "CIFAR-10")
        if off.ndim != 1 or off.shape[0] < 1 or not np.issubdtype(off.dtype, np.integer):
            raise DataFileError(
                f"{p}: {split}_offsets has shape {off.shape} and dtype {off.dtype}; expected (n+1,) integers. "
                "The file is corrupt or not the CIFAR-10 JPEG file."
            )
        off = off.astype(np.int64, copy=False)
        y = _as_labels(_read_key(z, f"y_{split}", p, "CIFAR-10"), off.shape[0] - 1, p, f"y_{split}")
        meta.append((split, off, y))
    return meta


def _cifar_parts(
    z: Mapping[str, Any], p: Path, meta: list[tuple[str, np.ndarray, np.ndarray]]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(split, jpeg bytes, offsets)`` for train and test, with the offsets checked against the bytes."""
    parts = []
    for split, off, _ in meta:
        jpeg = _read_key(z, f"{split}_jpeg", p, "CIFAR-10")
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
    """Decode the pooled images ``indices`` into a ``(len(indices), 3072)`` uint8 array."""
    Image = _import_pillow()
    from tqdm.auto import tqdm

    n_train = parts[0][2].shape[0] - 1
    out = np.empty((indices.shape[0], int(np.prod(_CIFAR_SHAPE))), dtype=np.uint8)
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
            if arr.shape != _CIFAR_SHAPE:
                raise DataFileError(
                    f"{p}: image {j} of the {split} split decodes to shape {arr.shape}; "
                    f"expected {_CIFAR_SHAPE}."
                )
            out[row] = arr.reshape(-1)
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
    expected = (n, int(np.prod(_CIFAR_SHAPE)))
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.shape != expected:
        warnings.warn(
            f"Ignoring cache file {cache_file}: it holds {getattr(X, 'shape', None)} "
            f"{getattr(X, 'dtype', None)}, expected {expected} uint8; decoding again.",
            stacklevel=3,
        )
        return None
    return X


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


def load_cifar10(
    path: str | os.PathLike[str] | None = None,
    *,
    indices: Iterable[int] | np.ndarray | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load all 60,000 CIFAR-10 images (training then test), decoded from JPEG and flattened.

    Decoding every image takes a while, so the full decoded array is cached as
    ``<cache_dir>/cifar10_<sha256 of the source file>_v1.npy`` and reused when its shape and dtype check
    out (a corrupt or wrong cache is ignored with a warning and rewritten). The cache is never written
    next to the source file.

    Parameters
    ----------
    path : path-like or None
        ``cifar10_jpeg_q75.npz`` with keys ``train_jpeg`` (bytes, uint8), ``train_offsets`` (50001,) int64,
        ``y_train`` (50000,) and the same ``test_*`` keys. None: :func:`default_data_path` ``("cifar10")``.
    indices : sequence of int or None
        Pooled indices (0-49999 training, 50000-59999 test) of the images to decode, in that order;
        decodes only those and bypasses the cache (e.g. ``indices=range(8)`` for a quick look).
        None: all images.
    cache_dir : path-like or None
        Cache directory. None: :func:`default_cache_dir` (``$HASHPLUG_CACHE`` or ``~/.cache/hashplug``).
    use_cache : bool
        Read and write the cache (only when ``indices`` is None).
    progress : bool
        Show a tqdm progress bar while decoding.

    Returns
    -------
    X : ndarray of shape (n, 3072), dtype uint8
        RGB pixels 0-255, each image flattened in HWC order (``X[i].reshape(32, 32, 3)``);
        ``n`` is 60000, or ``len(indices)``. JPEG quality 75 costs about 30 dB PSNR against the original.
    y : ndarray of shape (n,), dtype int64
        Class labels 0-9.
    """
    p = _resolve_path(path, "cifar10")
    with _open_npz(p) as z:
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
            return _decode_cifar(_cifar_parts(z, p, meta), idx, p, progress), y_all[idx]

        cache_file = None
        if use_cache:
            cdir = Path(os.fspath(cache_dir)).expanduser() if cache_dir is not None else default_cache_dir()
            cache_file = cdir / f"cifar10_{file_sha256(p)[:24]}_v{_CACHE_VERSION}.npy"
            X = _load_cache(cache_file, n)
            if X is not None:
                return X, y_all
        X = _decode_cifar(_cifar_parts(z, p, meta), np.arange(n), p, progress)
    if cache_file is not None:
        _save_cache(cache_file, X)
    return X, y_all


# ---------------------------------------------------------------------------------------------------------
# users' own data


def _pick_key(keys: Sequence[str], preferred: Sequence[str]) -> str | None:
    for k in preferred:
        if k in keys:
            return k
    return None


def _load_array_npz(p: Path, x_key: str | None, y_key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    with _open_npz(p) as z:
        keys = [k for k in z if k]
        if "" in z:  # a .npy file
            if x_key is not None or y_key is not None:
                raise DataFileError(
                    f"{p} is a single .npy array, which has no keys; drop x_key/y_key or save an .npz with "
                    "np.savez(path, X=X, y=y)."
                )
            return _as_2d(np.asarray(z[""]), p, "array"), None
        if not keys:
            raise DataFileError(f"{p} is an empty .npz archive; save the data with np.savez(path, X=X, y=y).")
        return _select_npz(z, keys, p, x_key, y_key)


def _select_npz(
    z: Mapping[str, Any], keys: list[str], p: Path, x_key: str | None, y_key: str | None
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
    X = _as_2d(_read_key(z, x_key, p), p, x_key)
    if y_key is None:
        y_key = _pick_key([k for k in keys if k != x_key], _Y_KEYS)
        if y_key is None:
            return X, None
    return X, _as_labels(_read_key(z, y_key, p), X.shape[0], p, y_key)


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
    return X, _as_labels(ycol.to_numpy(), X.shape[0], p, y_key)


def load_array(
    path: str | os.PathLike[str],
    x_key: str | None = None,
    y_key: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load users' own vectors (and optional labels) from ``.npy``, ``.npz`` or ``.parquet``.

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

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        npy/npz: the stored numeric dtype, arrays with more than 2 dimensions flattened row-major to
        ``(n_samples, prod(shape[1:]))``. parquet: float32.
    y : ndarray of shape (n_samples,), dtype int64, or None
        Integer labels, or None when the file has none.

    Raises
    ------
    DataFileError
        Missing or corrupt file, unsupported extension, missing key or column, wrong shapes or dtypes.
    """
    p = _resolve_path(path)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _load_array_npz(p, x_key, y_key)
    if suffix in (".parquet", ".pq"):
        return _load_array_parquet(p, x_key, y_key)
    raise DataFileError(
        f"Unsupported data file {p} (extension {suffix or 'none'!r}); use .npy, .npz or .parquet, e.g. "
        "np.savez('data.npz', X=X, y=y)."
    )


def load_dataset(name_or_path: str | os.PathLike[str], **kwargs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a reference data set by name, or a user file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        ``"digits"`` (bundled with scikit-learn), ``"mnist"``, ``"cifar10"`` or ``"ag_news"`` (found via
        :func:`default_data_path`), or the path of a ``.npy`` / ``.npz`` / ``.parquet`` file, or of one of
        the reference files (recognised by its file name, e.g. ``mnist.npz``).
    **kwargs
        Passed to the loader (e.g. ``indices=`` for CIFAR-10, ``x_key=`` for :func:`load_array`).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), dtype int64, or None
        See the individual loaders for dtypes.
    """
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10, "ag_news": load_ag_news}
    if isinstance(name_or_path, str) and name_or_path.lower() in _ALIASES:
        key = _ALIASES[name_or_path.lower()]
        if key == "digits":
            if kwargs:
                raise DataFileError(f"load_digits takes no options; got {sorted(kwargs)}.")
            return load_digits()
        return loaders[key](default_data_path(key), **kwargs)
    p = Path(os.fspath(name_or_path)).expanduser()
    if not p.exists():
        raise DataFileError(
            f"{str(name_or_path)!r} is neither a known data set ({', '.join(DATASETS)}) nor an existing file."
        )
    for key, rel in DATA_FILES.items():
        if p.name == Path(rel).name:
            return loaders[key](p, **kwargs)
    return load_array(p, **kwargs)
