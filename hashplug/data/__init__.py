"""Data loaders and retrieval-protocol splits.

Loaders take a path and never download anything; each returns ``(X, y)`` with ``X`` of shape
``(n_samples, n_features)`` and ``y`` int64 labels. The reference files live in a ``shared/data`` folder
beside the repository (:func:`default_data_dir`); users load their own ``.npy`` / ``.npz`` / ``.parquet``
files with :func:`load_array`.

Example
-------
>>> from hashplug.data import load_digits, per_class_split
>>> X, y = load_digits()
>>> q_idx, db_idx = per_class_split(y, per_class=10, seed=0)
>>> len(q_idx), len(db_idx)
(100, 1697)
"""

from __future__ import annotations

from .loaders import (
    DATA_FILES,
    DATASETS,
    DataFileError,
    default_cache_dir,
    default_data_dir,
    default_data_path,
    load_ag_news,
    load_array,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
)
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

__all__ = [
    "DATA_FILES",
    "DATASETS",
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
