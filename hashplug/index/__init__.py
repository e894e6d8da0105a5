"""Exact Hamming indexes over code columns (numpy only; the serving side imports this package).

:mod:`hashplug.index.kernels` holds the exact top-k kernels (dense packed codes, sparse k-hot postings).
"""

from __future__ import annotations

from .kernels import build_postings, dense_topk, merge_topk, sparse_topk, words_of

__all__ = ["dense_topk", "sparse_topk", "build_postings", "words_of", "merge_topk"]
