"""MNIST: 70,000 handwritten digits, 28x28 grey pixels (the BioHash paper's Table 1)."""

from __future__ import annotations

import os

import numpy as np

from ._io import DataFileError, as_labels, open_npz, read_key, resolve_path, shaped

__all__ = ["load_mnist"]

_SHAPE = (28, 28)


#: The data file, relative to the data directory (the registry's ``Dataset.file``).
FILE = "mnist/mnist.npz"

def load_mnist(
    path: str | os.PathLike[str] | None = None, *, flat: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load all 70,000 MNIST digits (training then test images).

    Parameters
    ----------
    path : path-like or None
        ``mnist.npz`` with keys ``x_train`` (60000, 28, 28) uint8, ``y_train``, ``x_test``, ``y_test``
        (images stored flattened as (n, 784) are accepted too). None: the registry's default file
        (:func:`~hashplug.data.default_data_path` ``("mnist")``).
    flat : bool
        Return each image flattened row-major to 784 values, ``(70000, 784)`` (what the vector encoders
        take); False (default): the natural shape ``(70000, 28, 28)``.

    Returns
    -------
    X : ndarray of shape (70000, 28, 28), or (70000, 784) when ``flat``, dtype uint8
        Pixel values 0-255 (scale 255). Rows 0-59999 are the official training images, 60000-69999 the
        test images. The flat array is a view of the natural one: ``X.reshape(70000, -1)``.
    y : ndarray of shape (70000,), dtype int64
        Digit labels 0-9.
    """
    p = resolve_path(path, "mnist", FILE)
    parts_x, parts_y = [], []
    with open_npz(p) as z:
        raw = {k: read_key(z, k, p, "MNIST") for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        x, yy = raw[f"x_{split}"], raw[f"y_{split}"]
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(x.shape[0], *_SHAPE)
        if x.ndim != 3 or x.shape[1:] != _SHAPE:
            raise DataFileError(f"x_{split} in {p} has shape {x.shape}; expected (n, 28, 28) or (n, 784).")
        parts_x.append(x.astype(np.uint8, copy=False))
        parts_y.append(as_labels(yy, x.shape[0], p, f"y_{split}"))
    X = np.ascontiguousarray(np.concatenate(parts_x))
    return shaped(X, flat), np.concatenate(parts_y)
