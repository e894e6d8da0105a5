"""scikit-learn's bundled 8x8 digits: 1,797 images, values 0-16, always available offline."""

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
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a training extra
        raise ImportError(
            "load_digits needs scikit-learn: pip install 'hashplug[train]' (or pip install scikit-learn)."
        ) from exc
    d = _sk_load_digits()
    X = np.ascontiguousarray(d.data, dtype=np.float32).reshape(-1, 8, 8)
    return shaped(X, flat), np.asarray(d.target, dtype=np.int64)
