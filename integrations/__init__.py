"""Serving-side integrations of hashplug encoders (ONNX files) with LanceDB and Arrow.

Modules (imported on demand, so ``import hashplug.integrations`` stays light):

:mod:`hashplug.integrations.lancedb`
    The ``"hashplug"`` LanceDB embedding function (registered when the module is imported), schema helpers,
    :class:`~hashplug.integrations.lancedb.Query` and :func:`~hashplug.integrations.lancedb.search`.
:mod:`hashplug.integrations.reranker`
    :class:`~hashplug.integrations.reranker.HammingReranker` and
    :class:`~hashplug.integrations.reranker.FloatRescoreReranker`.
:mod:`hashplug.integrations.arrow`
    :func:`~hashplug.integrations.arrow.encode_batches` and :func:`~hashplug.integrations.arrow.ingest`.

None of them imports torch or onnx: encoders are known only as ONNX files opened with
:class:`hashplug.runtime.OnnxEncoder`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_lancedb"]


def register_lancedb() -> Any:
    """Register the ``"hashplug"`` embedding function with LanceDB (idempotent); returns its class."""
    from .lancedb import HashplugEmbeddings

    return HashplugEmbeddings
