"""The dataset registry: one entry per reference dataset, the only place that knows their names and facts.

Each :class:`Dataset` says where its file lives (relative to the shared data folder), the natural shape,
dtype and value scale of one sample, the retrieval :class:`Protocol` of the paper that uses it, and which
function loads it. Everything else (default paths, :func:`load_dataset`, :func:`~hashplug.data.protocol_split`,
the benchmarks) looks datasets up here with :func:`get_dataset`.

Adding a dataset: write its loader (``data/<name>.py``, returning ``(X, y)`` with a ``flat`` keyword) and
add one entry to :data:`DATASETS`.

Example
-------
>>> from hashplug.data import get_dataset
>>> ds = get_dataset("CIFAR-10")
>>> ds.name, ds.shape, ds.axes, ds.scale, ds.protocol.R
('cifar10', (32, 32, 3), 'HWC', 255.0, 1000)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ag_news, cifar10, mnist
from ._io import DataFileError, find_data_file
from .ag_news import load_ag_news
from .arrays import load_array
from .cifar10 import load_cifar10
from .digits import load_digits
from .mnist import load_mnist

__all__ = [
    "Protocol",
    "Dataset",
    "DATASETS",
    "DATA_FILES",
    "get_dataset",
    "default_data_path",
    "load_dataset",
]


@dataclass(frozen=True)
class Protocol:
    """A retrieval protocol: queries drawn per class, the rest is training set and database.

    Attributes
    ----------
    per_class : int
        Queries drawn from each class with ``np.random.default_rng(seed)`` (see
        :func:`~hashplug.data.per_class_split`).
    R : int or None
        Cut-off of the headline metric (mAP@R, precision@R); None means the whole database (mAP@All).
    metric : str
        Name of the headline metric, as reported in the benchmark's JSON.
    table : str or None
        The paper table the protocol reproduces; None for hashplug's own benchmarks.
    """

    per_class: int
    R: int | None
    metric: str
    table: str | None = None


@dataclass(frozen=True)
class Dataset:
    """One reference dataset: its file, the natural shape and scale of a sample, its protocol and loader.

    Attributes
    ----------
    name : str
        Canonical name (a key of :data:`DATASETS`).
    aliases : tuple of str
        Other accepted spellings (lower case); lookups are case-insensitive.
    file : str or None
        Default file, relative to the shared data folder (:func:`~hashplug.data.default_data_dir`);
        None for data bundled with a package.
    shape : tuple of int
        Natural shape of one sample, as the loader returns it by default.
    axes : str
        What the axes of ``shape`` are: ``"HW"`` (grey image), ``"HWC"`` (colour image, channels last) or
        ``"D"`` (a feature vector).
    dtype : str
        numpy dtype of the loaded samples.
    scale : float
        The value that means "full intensity": divide by it to get inputs in [0, 1] (255 for 8-bit pixels,
        16 for the digits, 1 for embeddings).
    n_samples, n_classes : int
        Rows and classes of the full dataset.
    protocol : Protocol or None
        The retrieval protocol, or None when the dataset has none (the digits).
    loader : callable
        ``loader(path, *, flat=False, **options) -> (X, y)``; ``loader(*, flat=False)`` when ``file`` is None.
    description : str
        One line for listings and messages.
    """

    name: str
    aliases: tuple[str, ...]
    file: str | None
    shape: tuple[int, ...]
    axes: str
    dtype: str
    scale: float
    n_samples: int
    n_classes: int
    protocol: Protocol | None
    loader: Callable[..., tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    description: str = ""

    @property
    def n_features(self) -> int:
        """Values per sample once flattened: ``prod(shape)``."""
        return math.prod(self.shape)

    def default_path(self) -> Path:
        """The default file in the shared data folder (raises :class:`DataFileError` when absent)."""
        return default_data_path(self.name)

    def load(
        self, path: str | os.PathLike[str] | None = None, *, flat: bool = False, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Load the dataset.

        Parameters
        ----------
        path : path-like or None
            The file to read; None: :meth:`default_path`. Must be None for bundled data.
        flat : bool
            Flatten every sample row-major to ``n_features`` values, ``(n, n_features)``; False (default):
            the natural shape ``(n, *shape)``.
        **options
            Passed to the loader (e.g. ``indices=`` for CIFAR-10).

        Returns
        -------
        X : ndarray of shape (n, *shape), or (n, n_features) when ``flat``
        y : ndarray of shape (n,), dtype int64
        """
        if self.file is None:
            if path is not None or options:
                got = ([f"path={os.fspath(path)!r}"] if path is not None else []) + sorted(options)
                raise DataFileError(f"{self.name} ({self.description}) takes no path or options; got {got}.")
            return self.loader(flat=flat)
        return self.loader(self.default_path() if path is None else path, flat=flat, **options)


#: The registry: every reference dataset by canonical name.
DATASETS: dict[str, Dataset] = {
    "digits": Dataset(
        name="digits",
        aliases=(),
        file=None,
        shape=(8, 8),
        axes="HW",
        dtype="float32",
        scale=16.0,
        n_samples=1797,
        n_classes=10,
        protocol=None,
        loader=load_digits,
        description="scikit-learn's bundled 8x8 digits",
    ),
    "mnist": Dataset(
        name="mnist",
        aliases=(),
        file=mnist.FILE,
        shape=(28, 28),
        axes="HW",
        dtype="uint8",
        scale=255.0,
        n_samples=70000,
        n_classes=10,
        protocol=Protocol(per_class=100, R=None, metric="mAP@All", table="BioHash paper Table 1 (MNIST)"),
        loader=load_mnist,
        description="MNIST handwritten digits, training and test images pooled",
    ),
    "cifar10": Dataset(
        name="cifar10",
        aliases=("cifar-10", "cifar_10"),
        file=cifar10.FILE,
        shape=(32, 32, 3),
        axes="HWC",
        dtype="uint8",
        scale=255.0,
        n_samples=60000,
        n_classes=10,
        protocol=Protocol(
            per_class=1000, R=1000, metric="mAP@1000", table="BioHash paper Table 2 (CIFAR-10)"
        ),
        loader=load_cifar10,
        description="CIFAR-10 colour images (JPEG quality 75), training and test images pooled",
    ),
    "ag_news": Dataset(
        name="ag_news",
        aliases=("ag-news", "agnews"),
        file=ag_news.FILE,
        shape=(384,),
        axes="D",
        dtype="float32",
        scale=1.0,
        n_samples=7600,
        n_classes=4,
        protocol=Protocol(per_class=100, R=10, metric="same-label precision@10"),
        loader=load_ag_news,
        description="AG News test split as all-MiniLM-L6-v2 sentence embeddings",
    ),
}

#: The default file of every dataset that has one, relative to the data folder (derived from :data:`DATASETS`;
#: the 0.1.0 name).
DATA_FILES: dict[str, str] = {name: ds.file for name, ds in DATASETS.items() if ds.file is not None}

_LOOKUP: dict[str, str] = {
    spelling: name for name, ds in DATASETS.items() for spelling in (name, *ds.aliases)
}


def _available() -> str:
    return ", ".join(
        f"{name} ({', '.join(ds.aliases)})" if ds.aliases else name for name, ds in DATASETS.items()
    )


def _find(name: str) -> Dataset | None:
    key = _LOOKUP.get(str(name).strip().lower())
    return None if key is None else DATASETS[key]


def get_dataset(name: str) -> Dataset:
    """The registry entry of a dataset.

    Parameters
    ----------
    name : str
        Canonical name or alias, case-insensitive (``"mnist"``, ``"CIFAR-10"``, ``"ag-news"``, ...).

    Returns
    -------
    dataset : Dataset

    Raises
    ------
    DataFileError
        For an unknown name; the message lists the available datasets and their aliases.
    """
    ds = _find(name)
    if ds is None:
        raise DataFileError(f"Unknown dataset {name!r}; available datasets: {_available()}.")
    return ds


def default_data_path(name: str) -> Path:
    """The expected path of a reference data file.

    Parameters
    ----------
    name : str
        Dataset name or alias (case-insensitive), one with a file: ``"mnist"``, ``"cifar10"``, ``"ag_news"``.

    Returns
    -------
    path : pathlib.Path
        An existing file, e.g. ``<data dir>/mnist/mnist.npz``.

    Raises
    ------
    DataFileError
        For an unknown name or a dataset without a file, when no data directory is found, or when the file is
        missing from it.
    """
    ds = get_dataset(name)
    if ds.file is None:
        with_files = ", ".join(DATA_FILES)
        raise DataFileError(
            f"{ds.name} has no data file ({ds.description}); load it with load_dataset({ds.name!r}). "
            f"Datasets with files: {with_files}."
        )
    return find_data_file(ds.file, ds.name)


def load_dataset(
    name_or_path: str | os.PathLike[str], *, flat: bool = False, **options: Any
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a reference dataset by name, or a user file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        A name of :data:`DATASETS` or one of its aliases (files found via :func:`default_data_path`), the
        path of one of the reference files (recognised by its file name, e.g. ``mnist.npz``), or the path of
        a ``.npy`` / ``.npz`` / ``.parquet`` file (read by :func:`~hashplug.data.load_array`).
    flat : bool
        True: every sample flattened row-major, ``(n_samples, n_features)`` (what the vector encoders take,
        and what hashplug 0.1.0 returned). False (default): the natural shape, e.g. ``(70000, 28, 28)`` for
        MNIST, ``(n, 32, 32, 3)`` for CIFAR-10; a user file keeps its stored shape.
    **options
        Passed to the loader (e.g. ``indices=`` for CIFAR-10, ``x_key=`` for :func:`~hashplug.data.load_array`).

    Returns
    -------
    X : ndarray of shape (n_samples, *sample_shape), or (n_samples, n_features) when ``flat``
    y : ndarray of shape (n_samples,), dtype int64, or None
        See the individual loaders for dtypes; None for a user file without labels.
    """
    if isinstance(name_or_path, str):
        ds = _find(name_or_path)
        if ds is not None:
            return ds.load(flat=flat, **options)
    p = Path(os.fspath(name_or_path)).expanduser()
    if not p.exists():
        raise DataFileError(
            f"{str(name_or_path)!r} is neither a known dataset (available: {_available()}) nor an existing file."
        )
    for ds in DATASETS.values():
        if ds.file is not None and p.name == Path(ds.file).name:
            return ds.load(p, flat=flat, **options)
    return load_array(p, flat=flat, **options)
