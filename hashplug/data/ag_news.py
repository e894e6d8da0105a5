"""AG News: 7,600 news sentences (test split) as 384-d all-MiniLM-L6-v2 embeddings."""

from __future__ import annotations

import os

import numpy as np

from ._io import as_labels, as_samples, open_npz, read_key, resolve_path

__all__ = ["load_ag_news"]


#: The data file, relative to the data directory (the registry's ``Dataset.file``).
FILE = "ag_news/ag_news_test_minilm.npz"

def load_ag_news(
    path: str | os.PathLike[str] | None = None, *, flat: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load the AG News test-split sentence embeddings (all-MiniLM-L6-v2).

    Parameters
    ----------
    path : path-like or None
        ``ag_news_test_minilm.npz`` with keys ``emb`` (7600, 384) float16 and ``y`` (7600,) uint8.
        None: the registry's default file (:func:`~hashplug.data.default_data_path` ``("ag_news")``).
    flat : bool
        Accepted for symmetry with the image loaders: an embedding's natural shape is already a vector,
        so both values give the same array.

    Returns
    -------
    X : ndarray of shape (7600, 384), dtype float32
        L2-normalised embeddings of ``title + ". " + description`` (scale 1).
    y : ndarray of shape (7600,), dtype int64
        Labels 0-3 (World, Sports, Business, Sci/Tech).
    """
    p = resolve_path(path, "ag_news", FILE)
    with open_npz(p) as z:
        emb, y_raw = read_key(z, "emb", p, "AG News"), read_key(z, "y", p, "AG News")
    X = as_samples(emb, p, "emb", flat=True).astype(np.float32)
    y = as_labels(y_raw, X.shape[0], p, "y")
    return X, y
