"""What every loader shares: where the data lives, reading ``.npz`` files safely, checking arrays.

numpy and the standard library only. The dataset names, files and shapes are in :mod:`.registry`; this module
knows none of them (:func:`resolve_path` asks the registry for a default file at call time).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = [
    "DataFileError",
    "default_data_dir",
    "default_cache_dir",
    "find_data_file",
    "resolve_path",
    "open_npz",
    "read_key",
    "as_labels",
    "as_samples",
    "shaped",
]


class DataFileError(HashplugError):
    """A data file is missing, corrupt or does not hold the expected arrays, or a dataset name is unknown."""


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


def default_cache_dir() -> Path:
    """Where decoded data is cached: ``$HASHPLUG_CACHE`` if set, else ``~/.cache/hashplug``."""
    env = os.environ.get("HASHPLUG_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hashplug"


def find_data_file(rel: str, name: str) -> Path:
    """The existing file ``<data dir>/<rel>`` of dataset ``name``.

    Parameters
    ----------
    rel : str
        Path relative to the data directory, e.g. ``"mnist/mnist.npz"``.
    name : str
        Dataset name, for the messages.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    DataFileError
        When no data directory is found or the file is missing from it (the message says how to point at it).
    """
    data_dir = default_data_dir()
    if data_dir is None:
        looked = ", ".join(str(p) for p in _data_dir_candidates())
        raise DataFileError(
            f"Cannot find the {name} data: no data directory (looked in {looked}). "
            f"Pass --data PATH (the path to {rel}) or set HASHPLUG_DATA to the data directory."
        )
    path = data_dir / rel
    if not path.is_file():
        src = "HASHPLUG_DATA" if os.environ.get("HASHPLUG_DATA", "").strip() else "the default data directory"
        raise DataFileError(
            f"Cannot find the {name} data: {path} does not exist (data directory {data_dir}, from {src}). "
            f"Pass --data PATH to the file or set HASHPLUG_DATA to the directory holding {rel}."
        )
    return path


def resolve_path(path: str | os.PathLike[str] | None, name: str | None = None, rel: str | None = None) -> Path:
    """An existing data file: ``path`` itself, or the default file ``rel`` of dataset ``name``.

    Parameters
    ----------
    path : path-like or None
        The file to read. None: the default file of ``name`` (see :func:`hashplug.data.default_data_path`).
    name : str or None
        Dataset name, for the messages.
    rel : str or None
        The dataset's default file relative to the data directory (the registry's ``Dataset.file``, which
        each dataset module defines as ``FILE``): the default when ``path`` is None, and a hint when ``path``
        is a directory.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    DataFileError
        Missing file, a directory, or no path and no name.
    """
    if path is None:
        if rel is None:
            raise DataFileError("No path given; pass the path to a data file.")
        return find_data_file(rel, name or rel)
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DataFileError(f"Data file {p} does not exist; check the path (or pass --data PATH).")
    if p.is_dir():
        hint = ""
        if rel is not None and (p / rel).is_file():
            hint = f" Did you mean {p / rel}?"
        raise DataFileError(f"{p} is a directory; pass the path to the data file itself.{hint}")
    return p


# ---------------------------------------------------------------------------------------------------------
# reading and checking arrays


@contextmanager
def open_npz(path: Path) -> Iterator[Mapping[str, Any]]:
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


def read_key(z: Any, key: str, path: Path, what: str = "") -> np.ndarray:
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


def as_labels(y: Any, n: int, path: Path | str, key: str) -> np.ndarray:
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


def as_samples(X: np.ndarray, path: Path | str, key: str, flat: bool) -> np.ndarray:
    """A numeric array of samples, ``(n_samples, ...)``, C-contiguous; flattened row-major when ``flat``.

    Raises
    ------
    DataFileError
        For a non-numeric dtype or fewer than 2 dimensions.
    """
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise DataFileError(f"Array {key!r} in {path} must be numeric; got dtype {X.dtype}.")
    if X.ndim < 2:
        raise DataFileError(
            f"Array {key!r} in {path} has shape {X.shape}; expected (n_samples, n_features) "
            "(or (n_samples, ...), e.g. images)."
        )
    return shaped(np.ascontiguousarray(X), flat)


def shaped(X: np.ndarray, flat: bool) -> np.ndarray:
    """``X`` as it is (natural shape), or flattened row-major to ``(n_samples, n_features)`` when ``flat``.

    For a C-contiguous ``X`` the flat array is a view of the same memory: both hold the same bytes in the same
    order, so ``natural.reshape(n, -1)`` equals ``flat``.
    """
    return X.reshape(X.shape[0], -1) if flat and X.ndim != 2 else X
