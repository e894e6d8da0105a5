"""Datasets: a small registry, loaders that return samples in their natural shape, and protocol splits.

- :mod:`.registry`: one :class:`Dataset` per reference dataset (file, natural shape, dtype, value scale,
  retrieval :class:`Protocol`, loader) in :data:`DATASETS`; :func:`get_dataset`, :func:`load_dataset`.
- one module per dataset (:mod:`.mnist`, :mod:`.cifar10`, :mod:`.ag_news`, :mod:`.digits`) and
  :mod:`.arrays` for users' own ``.npy`` / ``.npz`` / ``.parquet`` files.
- :mod:`.protocols`: query / database splits.

Loaders take a path and never download anything; each returns ``(X, y)`` with ``y`` int64 labels and ``X`` in
the natural shape of a sample (MNIST ``(n, 28, 28)``, CIFAR-10 ``(n, 32, 32, 3)``, digits ``(n, 8, 8)``,
AG News ``(n, 384)``), or flattened to ``(n, n_features)`` with ``flat=True``, which is what the vector
encoders take. The reference files live in a ``shared/data`` folder beside the repository
(:func:`default_data_dir`).

numpy only at import time: pyarrow, Pillow, tqdm and scikit-learn load inside the functions that need them.

Example
-------
>>> from hashplug.data import get_dataset, load_digits, per_class_split
>>> X, y = load_digits()
>>> X.shape, get_dataset("digits").scale
((1797, 8, 8), 16.0)
>>> load_digits(flat=True)[0].shape
(1797, 64)
>>> q_idx, db_idx = per_class_split(y, per_class=10, seed=0)
>>> len(q_idx), len(db_idx)
(100, 1697)
"""

from __future__ import annotations

from ._io import DataFileError, default_cache_dir, default_data_dir
from .ag_news import load_ag_news
from .arrays import load_array
from .cifar10 import load_cifar10
from .digits import load_digits
from .mnist import load_mnist
from .protocols import (
    PROTOCOLS,
    Split,
    ag_news_protocol,
    cifar10_protocol,
    mnist_protocol,
    per_class_split,
    protocol_split,
    validation_split,
)
from .registry import DATA_FILES, DATASETS, Dataset, Protocol, default_data_path, get_dataset, load_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "Protocol",
    "get_dataset",
    "DATA_FILES",
    "DataFileError",
    "default_cache_dir",
    "default_data_dir",
    "default_data_path",
    "load_ag_news",
    "load_array",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "PROTOCOLS",
    "Split",
    "ag_news_protocol",
    "cifar10_protocol",
    "mnist_protocol",
    "per_class_split",
    "protocol_split",
    "validation_split",
]
