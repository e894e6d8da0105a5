"""Query / database splits of the retrieval protocols.

Every split draws a fixed number of queries from each class with ``np.random.default_rng(seed)``; the
remaining samples are the database, which is also the training set. Report the seed with the results and
average several seeds.

- MNIST (BioHash, Table 1): pool all 70,000 images, 100 queries per class (1,000); the other 69,000 are
  training set and database; relevance is "same label", scored with mAP@All.
- CIFAR-10 (BioHash, Table 2): pool all 60,000 images, 1,000 queries per class (10,000); the other 50,000
  are training set and database; mAP@1000.
- AG News: the 7,600 test-split embeddings, 100 queries per class (400), 7,200 in the database.

The numbers (queries per class, the metric and its cut-off R, the paper table) are the registry's
(:class:`~hashplug.data.registry.Protocol` of each :class:`~hashplug.data.registry.Dataset`). Splits take
samples of any shape, ``(n, n_features)`` vectors or ``(n, H, W[, C])`` images: rows are selected, never
reshaped. Hyperparameters are tuned on :func:`validation_split`, which cuts its queries out of the training
set, never touching the real queries.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..validation import HashplugError, check_int_param
from .registry import DATASETS, get_dataset

__all__ = [
    "Split",
    "per_class_split",
    "protocol_split",
    "mnist_protocol",
    "cifar10_protocol",
    "ag_news_protocol",
    "validation_split",
    "PROTOCOLS",
]

#: Queries drawn per class by each dataset's protocol (derived from the registry; the 0.1.0 name).
PROTOCOLS: dict[str, int] = {name: ds.protocol.per_class for name, ds in DATASETS.items() if ds.protocol}


@dataclass(frozen=True, eq=False)
class Split:
    """A query / database split.

    Attributes
    ----------
    Xq : ndarray of shape (n_queries, *sample_shape)
        Query samples (same dtype and sample shape as the input ``X``, e.g. ``(n_queries, n_features)``
        vectors or ``(n_queries, 28, 28)`` images).
    yq : ndarray of shape (n_queries,), dtype int64
        Query labels.
    Xdb : ndarray of shape (n_db, *sample_shape)
        Database samples, which are also the training set.
    ydb : ndarray of shape (n_db,), dtype int64
        Database labels.
    q_idx : ndarray of shape (n_queries,), dtype int64
        Sorted row indices of the queries in the array that was split.
    db_idx : ndarray of shape (n_db,), dtype int64
        Sorted row indices of the database; disjoint from ``q_idx``, together they cover every row.
    seed : int
        Seed of ``np.random.default_rng`` that drew the queries.
    name : str
        Protocol name, e.g. ``"mnist"`` or ``"mnist-val"``.
    """

    Xq: np.ndarray = field(repr=False)
    yq: np.ndarray = field(repr=False)
    Xdb: np.ndarray = field(repr=False)
    ydb: np.ndarray = field(repr=False)
    q_idx: np.ndarray = field(repr=False)
    db_idx: np.ndarray = field(repr=False)
    seed: int
    name: str
    n_queries: int = field(init=False)
    n_db: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_queries", int(self.q_idx.shape[0]))
        object.__setattr__(self, "n_db", int(self.db_idx.shape[0]))


def _check_seed(seed: Any, owner: str) -> int:
    if isinstance(seed, np.integer):
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise HashplugError(
            f"The 'seed' parameter of {owner} must be a non-negative int (report it with the results). "
            f"Got {seed!r} instead."
        )
    return int(seed)


def _check_labels(y: Any, owner: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise HashplugError(f"{owner}: y must be 1-D labels of shape (n_samples,); got shape {y.shape}.")
    if y.shape[0] == 0:
        raise HashplugError(f"{owner}: y is empty; pass at least one labelled sample.")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise HashplugError(
            f"{owner}: y must hold integer class labels; got dtype {y.dtype}. "
            "Encode them with np.unique(labels, return_inverse=True)[1]."
        )
    return y.astype(np.int64, copy=False)


def per_class_split(y: Any, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``per_class`` queries from every class; the rest is the database.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer class labels.
    per_class : int
        Queries drawn (without replacement) from each class, >= 1.
    seed : int
        Seed of ``np.random.default_rng``; classes are visited in sorted label order.

    Returns
    -------
    query_idx : ndarray of shape (n_classes * per_class,), dtype int64
        Sorted query indices.
    db_idx : ndarray of shape (n_samples - n_classes * per_class,), dtype int64
        Sorted indices of every other sample.

    Raises
    ------
    HashplugError
        If a class has fewer than ``per_class`` samples, or nothing would be left for the database.
    """
    owner = "per_class_split"
    y = _check_labels(y, owner)
    per_class = check_int_param(per_class, "per_class", owner, low=1)
    seed = _check_seed(seed, owner)
    classes, counts = np.unique(y, return_counts=True)
    short = classes[counts < per_class]
    if short.size:
        detail = ", ".join(f"class {c}: {n}" for c, n in zip(classes, counts) if n < per_class)
        raise HashplugError(
            f"{owner}: cannot draw {per_class} queries per class; too few samples in {detail}. "
            "Lower per_class or drop those classes."
        )
    if per_class * classes.size >= y.shape[0]:
        raise HashplugError(
            f"{owner}: {per_class} queries from each of {classes.size} classes would leave no database "
            f"out of {y.shape[0]} samples; lower per_class."
        )
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in classes]
    is_query = np.zeros(y.shape[0], dtype=bool)
    is_query[np.concatenate(picks)] = True
    return np.flatnonzero(is_query).astype(np.int64), np.flatnonzero(~is_query).astype(np.int64)


def _make_split(
    X: Any, y: Any, per_class: int, seed: int, name: str, owner: str, base_idx: np.ndarray | None = None
) -> Split:
    if X is None:
        raise HashplugError(f"{owner}: X is None; pass the pooled data of shape (n_samples, ...).")
    X = np.asarray(X)
    y = _check_labels(y, owner)
    if X.ndim < 1 or X.shape[0] != y.shape[0]:
        raise HashplugError(
            f"{owner}: X has {X.shape[0] if X.ndim else 0} rows (shape {X.shape}) but y has {y.shape[0]} labels; "
            "they must match."
        )
    q, db = per_class_split(y, per_class, seed)
    Xq, yq, Xdb, ydb = X[q], y[q], X[db], y[db]
    if base_idx is not None:
        q, db = base_idx[q], base_idx[db]
    return Split(Xq=Xq, yq=yq, Xdb=Xdb, ydb=ydb, q_idx=q, db_idx=db, seed=_check_seed(seed, owner), name=name)


def protocol_split(name: str, X: Any, y: Any, seed: int = 0) -> Split:
    """The split of a dataset's protocol (``"mnist"``, ``"cifar10"``, ``"ag_news"``); see the registry.

    Parameters
    ----------
    name : str
        Dataset name or alias (case-insensitive); its :class:`~hashplug.data.registry.Protocol` gives the
        queries per class.
    X : array-like of shape (n_samples, ...)
        Pooled data, vectors or images (any dtype; rows are copied, not converted or reshaped).
    y : array-like of shape (n_samples,)
        Integer labels.
    seed : int
        Seed of the query draw.

    Returns
    -------
    split : Split
        Named after the dataset's canonical name.

    Raises
    ------
    HashplugError
        For an unknown name or a dataset without a protocol (the message lists those that have one).
    """
    known = ", ".join(PROTOCOLS)
    try:
        ds = get_dataset(name)
    except HashplugError:
        raise HashplugError(f"Unknown protocol {name!r}; known protocols: {known}.") from None
    if ds.protocol is None:
        raise HashplugError(f"{ds.name} has no retrieval protocol; known protocols: {known}.")
    return _make_split(X, y, ds.protocol.per_class, seed, ds.name, f"{ds.name}_protocol")


def mnist_protocol(X: Any, y: Any, seed: int = 0) -> Split:
    """MNIST protocol: 100 queries per class (1,000 of the pooled 70,000); the other 69,000 are the database.

    Parameters
    ----------
    X : array-like of shape (70000, 28, 28) or (70000, 784)
        Pooled images, e.g. from :func:`~hashplug.data.load_mnist` (uint8 stays uint8).
    y : array-like of shape (70000,)
        Labels 0-9.
    seed : int
        Seed of the query draw; report it and average several.

    Returns
    -------
    split : Split
        ``Xq`` (1000, 28, 28), ``Xdb`` (69000, 28, 28) (or ``(., 784)`` for flat input), ``name="mnist"``.
    """
    return protocol_split("mnist", X, y, seed)


def cifar10_protocol(X: Any, y: Any, seed: int = 0) -> Split:
    """CIFAR-10 protocol: 1,000 queries per class (10,000 of the pooled 60,000); 50,000 in the database.

    Parameters
    ----------
    X : array-like of shape (60000, 32, 32, 3) or (60000, 3072)
        Pooled images, e.g. from :func:`~hashplug.data.load_cifar10`.
    y : array-like of shape (60000,)
        Labels 0-9.
    seed : int
        Seed of the query draw.

    Returns
    -------
    split : Split
        ``Xq`` (10000, 32, 32, 3), ``Xdb`` (50000, 32, 32, 3) (or ``(., 3072)``), ``name="cifar10"``.
    """
    return protocol_split("cifar10", X, y, seed)


def ag_news_protocol(X: Any, y: Any, seed: int = 0) -> Split:
    """AG News protocol: 100 queries per class (400 of the 7,600 embeddings); 7,200 in the database.

    Parameters
    ----------
    X : array-like of shape (7600, 384)
        Embeddings, e.g. from :func:`~hashplug.data.load_ag_news`.
    y : array-like of shape (7600,)
        Labels 0-3.
    seed : int
        Seed of the query draw.

    Returns
    -------
    split : Split
        ``Xq`` (400, 384), ``Xdb`` (7200, 384), ``name="ag_news"``.
    """
    return protocol_split("ag_news", X, y, seed)


def validation_split(X: Any, y: Any = None, per_class: int = 100, seed: int = 0) -> Split:
    """Cut a validation query set out of the training (database) part, for hyperparameter search.

    The real queries are never touched: pass the database of a protocol split (or the split itself).

    Parameters
    ----------
    X : array-like of shape (n_train, ...), or Split
        The training set, i.e. ``split.Xdb``; or a :class:`Split`, whose ``Xdb`` / ``ydb`` are used.
    y : array-like of shape (n_train,) or None
        Training labels (``split.ydb``); must be None when ``X`` is a Split.
    per_class : int
        Validation queries drawn from each class.
    seed : int
        Seed of the draw.

    Returns
    -------
    split : Split
        Validation queries and, as database, the rest of the training set. With a Split as input,
        ``q_idx`` / ``db_idx`` index the original pooled array (subsets of its ``db_idx``) and the name
        gets a ``"-val"`` suffix; with arrays they index ``X``.
    """
    owner = "validation_split"
    if isinstance(X, Split):
        if y is not None:
            raise HashplugError(f"{owner}: pass either a Split or (X, y), not both.")
        parent = X
        return _make_split(
            parent.Xdb, parent.ydb, per_class, seed, f"{parent.name}-val", owner, parent.db_idx
        )
    if y is None:
        raise HashplugError(f"{owner}: y is None; pass the training labels (split.ydb) or a Split.")
    return _make_split(X, y, per_class, seed, "val", owner)
