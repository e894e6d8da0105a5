"""Exact Hamming indexes over code columns (numpy only; the serving side imports this package).

:class:`HammingIndex` (:mod:`hashplug.index.core`) holds a column's codes by row id, adds and deletes rows,
searches exactly (optionally among allowed rows) and saves/loads without pickle. :mod:`hashplug.index.kernels` holds the exact top-k kernels (dense packed codes, sparse k-hot postings);
:mod:`hashplug.index.mih` multi-index hashing for short codes (sublinear in N, needs numba).
"""

from __future__ import annotations

from .core import INDEX_FORMAT, HammingIndex
from .kernels import build_postings, dense_topk, merge_topk, sparse_topk, words_of
from .mih import MultiIndexTables

__all__ = ["HammingIndex", "INDEX_FORMAT", "dense_topk", "sparse_topk", "build_postings", "words_of", "merge_topk",
           "MultiIndexTables"]
