"""scikit-learn's bundled 8x8 digits: 1,797 images, values 0-16, offline (its file read directly)."""

from __future__ import annotations

import numpy as np

from ._io import shaped

__all__ = ["load_digits"]


def load_digits(*, flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's bundled 8x8 digits (offline, always available).

    Parameters
    ----------
    flat : bool
        Return each image flattened row-major to 64 values, ``(1797, 64)`` (what the vector encoders take);
        False (default): the natural shape ``(1797, 8, 8)``.

    Returns
    -------
    X : ndarray of shape (1797, 8, 8), or (1797, 64) when ``flat``, dtype float32
        Pixel values 0-16 (scale 16); the flat array is ``X.reshape(1797, -1)``.
    y : ndarray of shape (1797,), dtype int64
        Digit labels 0-9.
    """
    X, y = _read_bundled_digits()
    if X is None:  # scikit-learn's file not where it ships it: its own loader
        try:
            from sklearn.datasets import load_digits as _sk_load_digits
        except ImportError as exc:  # pragma: no cover - scikit-learn is a training extra
            raise ImportError(
                "load_digits needs scikit-learn: pip install 'hashplug[train]' (or pip install scikit-learn)."
            ) from exc
        d = _sk_load_digits()
        X, y = d.data, d.target
    X = np.ascontiguousarray(X, dtype=np.float32).reshape(-1, 8, 8)
    return shaped(X, flat), np.asarray(y, dtype=np.int64)


def _read_bundled_digits() -> tuple[np.ndarray | None, np.ndarray | None]:
    """scikit-learn's ``datasets/data/digits.csv.gz`` read as its ``load_digits`` reads it (64 pixel columns,
    then the label), found without importing scikit-learn (1.4 s of a process's start); ``(None, None)`` when
    the file is not there. The values are small integers, so the arrays are exactly scikit-learn's."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            if data.shape != (1797, 65):
                return None, None
            return data[:, :-1], data[:, -1].astype(np.int64)
    return None, None
